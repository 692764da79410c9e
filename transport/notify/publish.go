package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/shareinfo"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Errors of publishing, for errors.Is.
var (
	// errNotConfirmed reports a message the broker did not confirm (nack, channel
	// closed, or no confirm before its deadline).
	errNotConfirmed = errors.New("broker did not confirm the message")
	// ErrTooLarge reports a notification bigger than Config.MaxMessageBytes: the broker
	// would refuse it, so it is set aside without being published.
	ErrTooLarge = errors.New("notification larger than the broker accepts")
)

// pubState is what the notifier remembers from one channel to the next (owned by the
// goroutine that runs the follower).
type pubState struct {
	// suspect is the event whose message failed last; the next channel publishes it
	// alone, so that a failure of it can be told apart from a failure of its neighbours.
	suspect uuid.UUID
	// ahead holds messages after a failed one that the broker confirmed all the same:
	// the retry passes over them instead of publishing them again.
	ahead map[msgKey]bool
	// shares caches what notifyShareProposal says of a workspace (share.go).
	shares map[uuid.UUID]shareinfo.Info
}

// publisher publishes notifyCommit events on one channel in confirm mode, with a
// window: at most cfg.MaxInFlight messages and cfg.MaxInFlightBytes of bodies are
// unconfirmed at once, and each confirm is awaited until its own deadline
// (cfg.ConfirmTimeout after its publish).
type publisher struct {
	ch       *amqp.Channel
	closed   chan *amqp.Error
	cfg      *Config
	log      *slog.Logger
	st       *pubState
	f        *follower
	store    eventstore.Store
	declared map[uuid.UUID]bool // exchanges declared on this channel
	// last is the workspaceVersion last published per workspace on this channel, to
	// detect a store whose global order disagrees with a stream's order (which would
	// break the per-workspace order of PROTOCOL.md §5). Cleared when it grows large.
	last       map[uuid.UUID]int64
	outOfOrder int
	published  int
	peak       int // the most messages this channel had in flight at once
}

// maxTracked bounds publisher.last, pubState.ahead and follower.attempts.
const maxTracked = 100_000

func openPublisher(conn *amqp.Connection, cfg *Config, st *pubState, f *follower, store eventstore.Store, log *slog.Logger) (*publisher, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable confirms: %w", err)
	}
	return &publisher{ch: ch, closed: ch.NotifyClose(make(chan *amqp.Error, 1)), cfg: cfg, log: log, st: st, f: f, store: store,
		declared: map[uuid.UUID]bool{}, last: map[uuid.UUID]int64{}}, nil
}

func (p *publisher) close() { _ = p.ch.Close() }

// inflight is a published message awaiting its confirm.
type inflight struct {
	idx      int    // in the batch
	key      msgKey // the event and which of its messages
	last     bool   // the event's last message
	rec      eventstore.RecordedEvent
	ws       uuid.UUID // the workspace the message goes to
	dc       *amqp.DeferredConfirmation
	deadline time.Time
	size     int
}

// publish sends the messages of every event of evs (a notifyCommit per commit or
// share half, the user events of share.go), in order, through the window, and returns
// how many events from the start of evs are done: every message confirmed, passed over
// (events without messages, confirmed on an earlier channel) or set aside (an event
// that does not decode or is too large). On a failure it returns the confirmed prefix
// and the error: poison when the broker refused that very message (a nack, or the
// channel closed with 406 while it was the only message in flight).
func (p *publisher) publish(ctx context.Context, evs []eventstore.RecordedEvent) (int, error) {
	finished := make([]bool, len(evs))
	var window []inflight
	bytes := 0
	// settle waits for the oldest message of the window.
	settle := func() error {
		if err := p.await(ctx, window[0], len(window) == 1); err != nil {
			p.st.suspect = window[0].rec.ID
			p.keepConfirmed(ctx, window[0].ws, window[1:])
			return err
		}
		if window[0].last {
			finished[window[0].idx] = true
		}
		bytes -= window[0].size
		window = window[1:]
		return nil
	}
	for i, rec := range evs {
		msgs, err := p.messages(ctx, rec)
		if err != nil {
			for len(window) > 0 {
				if err := settle(); err != nil {
					return prefix(finished), err
				}
			}
			return prefix(finished), err
		}
		if len(msgs) == 0 {
			finished[i] = true
			continue
		}
		alone := rec.ID == p.st.suspect
		for k, m := range msgs {
			key := msgKey{rec.ID, m.k}
			for len(window) > 0 && (alone || len(window) >= p.cfg.MaxInFlight || bytes+len(m.msg.Body) > p.cfg.MaxInFlightBytes) {
				if err := settle(); err != nil {
					return prefix(finished), err
				}
			}
			dc, err := p.send(ctx, rec, m.to, m.msg)
			if err != nil {
				p.keepConfirmed(ctx, uuid.Nil, window)
				return prefix(finished), err
			}
			window = append(window, inflight{idx: i, key: key, last: k == len(msgs)-1, rec: rec, ws: m.to, dc: dc,
				deadline: time.Now().Add(p.cfg.ConfirmTimeout), size: len(m.msg.Body)})
			bytes += len(m.msg.Body)
			p.peak = max(p.peak, len(window))
			if alone {
				if err := settle(); err != nil {
					return prefix(finished), err
				}
			}
		}
	}
	for len(window) > 0 {
		if err := settle(); err != nil {
			return prefix(finished), err
		}
	}
	return len(evs), nil
}

// prefix counts the finished events from the start.
func prefix(finished []bool) int {
	n := 0
	for n < len(finished) && finished[n] {
		n++
	}
	return n
}

// keyed is a message to publish with its index among its event's messages.
type keyed struct {
	outMsg
	k int
}

// messages renders what rec gives to publish, leaving out messages confirmed on an
// earlier channel. None: rec gives nothing (not a commit or an event of share.go), was
// confirmed by the process that appended it (Config.Ahead), or was set aside (it does
// not decode, or is larger than the broker accepts). An error is a failed store read.
func (p *publisher) messages(ctx context.Context, rec eventstore.RecordedEvent) ([]keyed, error) {
	var out []outMsg
	var bad error
	if rec.Type == domain.TypeCommitted {
		if p.cfg.Ahead != nil && !p.st.ahead[msgKey{rec.ID, 0}] && p.cfg.Ahead(ctx, rec.ID) {
			return nil, nil
		}
		msg, ws, v, err := notification(rec)
		out, bad = []outMsg{{to: ws, msg: msg, v: v, commit: true}}, err
	} else {
		var err error
		if out, bad, err = p.shareMessages(ctx, rec); err != nil {
			return nil, err
		}
	}
	for _, m := range out {
		if bad == nil && len(m.msg.Body) > p.cfg.MaxMessageBytes {
			bad = fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(m.msg.Body), p.cfg.MaxMessageBytes)
		}
	}
	if bad != nil {
		p.f.setAside(rec, fmt.Errorf("notify event %s: %w", rec.ID, bad), 1)
		return nil, nil
	}
	var keep []keyed
	for k, m := range out {
		if p.st.ahead[msgKey{rec.ID, k}] {
			delete(p.st.ahead, msgKey{rec.ID, k})
			continue
		}
		if m.commit {
			p.checkOrder(rec, m.to, m.v)
		}
		keep = append(keep, keyed{m, k})
	}
	return keep, nil
}

// checkOrder logs a notifyCommit of ws whose version v is not after the last one
// published on this channel, and calls the fault-injection seam.
func (p *publisher) checkOrder(rec eventstore.RecordedEvent, ws uuid.UUID, v int64) {
	if prev, ok := p.last[ws]; ok && v <= prev {
		p.outOfOrder++
		p.log.Error("store's global order disagrees with the workspace's order; publishing anyway (devices catch up on the gap)",
			"workspace", ws, "workspaceVersion", v, "after", prev, "event", rec.ID, "position", rec.Position)
	}
	if len(p.last) >= maxTracked {
		clear(p.last)
	}
	p.last[ws] = v
	if p.cfg.BeforePublish != nil {
		p.cfg.BeforePublish(ws, v)
	}
}

// send declares the workspace's exchange (once per channel) and publishes msg.
func (p *publisher) send(ctx context.Context, rec eventstore.RecordedEvent, ws uuid.UUID, msg amqp.Publishing) (*amqp.DeferredConfirmation, error) {
	if !p.declared[ws] {
		if err := topology.DeclareEventExchange(p.ch, ws); err != nil {
			return nil, fmt.Errorf("publish event %s: %w", rec.ID, err)
		}
		p.declared[ws] = true
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, topology.EventExchange(ws), "", false, false, msg)
	if err != nil {
		return nil, fmt.Errorf("publish event %s to %s: %w", rec.ID, topology.EventExchange(ws), err)
	}
	return dc, nil
}

// await waits for w's confirm until its deadline. alone reports that w is the only
// unconfirmed message on the channel, so that a channel the broker closed with 406
// (PRECONDITION_FAILED: the message is over its max_message_size) is w's fault.
func (p *publisher) await(ctx context.Context, w inflight, alone bool) error {
	wctx, cancel := context.WithDeadline(ctx, w.deadline)
	defer cancel()
	ok, err := w.dc.WaitContext(wctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("event %s: no confirm within %s: %w", w.rec.ID, p.cfg.ConfirmTimeout, errNotConfirmed)
	case ok:
		p.published++
		if p.st.suspect == w.rec.ID {
			p.st.suspect = uuid.Nil
		}
		return nil
	case !p.ch.IsClosed():
		// A nack is as often the broker's condition (a quorum queue without a leader, a
		// full disk) as the message's fault: it sets the event aside only once the
		// nacks have lasted PoisonAfter.
		return poisonAfter(fmt.Errorf("event %s: the broker nacked it: %w", w.rec.ID, errNotConfirmed), p.cfg.PoisonAfter)
	}
	var reason *amqp.Error
	select {
	case reason = <-p.closed:
	case <-time.After(time.Second): // the close reason is sent before the confirms end
	}
	if reason != nil && reason.Code == amqp.PreconditionFailed && alone {
		return poison(fmt.Errorf("event %s: the broker refused it: %w: %w", w.rec.ID, reason, errNotConfirmed))
	}
	return fmt.Errorf("event %s: channel closed (%v): %w", w.rec.ID, reason, errNotConfirmed)
}

// keepConfirmed remembers which messages of rest (after a failed one, to workspace
// failedWS; uuid.Nil when the failed message is not before rest) the broker confirmed,
// so that the retry does not publish them again. A confirmed message is not
// remembered when an earlier message of the same workspace was not confirmed: the
// retry publishes it again after that one, so that the workspace's notifications end
// in workspaceVersion order (PROTOCOL.md §5). While the channel lives (the failure was
// a nack) it waits for each until its deadline.
func (p *publisher) keepConfirmed(ctx context.Context, failedWS uuid.UUID, rest []inflight) {
	if p.st.ahead == nil || len(p.st.ahead) >= maxTracked {
		p.st.ahead = map[msgKey]bool{}
	}
	unconfirmed := map[uuid.UUID]bool{} // workspaces with an earlier message to publish again
	if failedWS != uuid.Nil {
		unconfirmed[failedWS] = true
	}
	for _, w := range rest {
		if !p.ch.IsClosed() {
			wctx, cancel := context.WithDeadline(ctx, w.deadline)
			_, _ = w.dc.WaitContext(wctx)
			cancel()
		}
		if !w.dc.Acked() {
			unconfirmed[w.ws] = true
			continue
		}
		p.published++
		if unconfirmed[w.ws] {
			continue // published again after the earlier one
		}
		p.st.ahead[w.key] = true
	}
}

// notification renders the message of a stored Committed event and names its workspace
// and workspaceVersion.
func notification(rec eventstore.RecordedEvent) (amqp.Publishing, uuid.UUID, int64, error) {
	ev, err := domain.Decode(rec.Type, rec.Data)
	if err != nil {
		return amqp.Publishing{}, uuid.Nil, 0, err
	}
	c, ok := ev.(domain.Committed)
	if !ok {
		return amqp.Publishing{}, uuid.Nil, 0, fmt.Errorf("event %s decoded as %T", rec.ID, ev)
	}
	if c.WorkspaceID == uuid.Nil {
		return amqp.Publishing{}, uuid.Nil, 0, fmt.Errorf("event %s: commit without a workspace id", rec.ID)
	}
	body, err := wire.EncodeNotifyCommit(rec.ID.String(), c)
	if err != nil {
		return amqp.Publishing{}, uuid.Nil, 0, err
	}
	return amqp.Publishing{
		ContentType:   ContentType,
		Type:          MessageType,
		AppId:         c.WorkspaceID.String(),
		CorrelationId: uuid.NewString(),
		MessageId:     rec.ID.String(),
		DeliveryMode:  amqp.Persistent,
		Body:          body,
	}, c.WorkspaceID, c.WorkspaceVersion, nil
}
