package notify

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Direct publishes a commit's notifyCommit from the process that appended it, right
// after the append's transaction committed, instead of leaving it to the notifier's
// next read of the store (DESIGN.md: "the process that committed may publish first").
// The Notifier stays the backstop: it publishes every commit Direct did not get
// confirmed (Direct declined it, the broker was away, the process crashed between the
// append and the confirm), and skips, through Ahead, those it did.
//
// Direct publishes only what the notifier would publish at that moment, in the same
// order: the commit's read models must already hold it (the append applied them
// inline), the binder must have applied the workspace's latest membership change, and
// the workspace's previous commit must have gone out first, on this channel or as
// confirmed by the notifier's checkpoint. Anything else is declined and left to the
// notifier.
type Direct struct {
	cfg DirectConfig
	log *slog.Logger

	mu       sync.Mutex // serialises publishing and the channel's state
	ch       *amqp.Channel
	declared map[uuid.UUID]bool
	last     map[uuid.UUID]lastSent                   // per workspace: the publish last sent on ch
	state    map[uuid.UUID]*amqp.DeferredConfirmation // event id → its publish's confirm
	order    []uuid.UUID                              // state's keys, oldest first, to bound it

	bound     atomic.Pointer[eventstore.Position] // the binder's last known position
	published atomic.Pointer[eventstore.Position] // the notifier's last known checkpoint

	sent, declined atomic.Int64
	waiting        atomic.Bool // connected, waiting for the topology marker
	// blocked is set while the broker blocks this connection's publishers (a resource
	// alarm): a publish would then wait in a socket write, holding the workspace of the
	// commit (and amqp091's writes do not heed ctx), so Publish declines instead.
	blocked atomic.Bool
}

// confirmation is what Direct reads of a publish's confirm (amqp.DeferredConfirmation).
type confirmation interface {
	Done() <-chan struct{}
	Acked() bool
}

// lastSent is a workspace's last publish on the channel: its version, and the confirms
// of the workspace's publishes on the channel the broker has not acked yet (or whose ack
// follows one not yet known), oldest first.
type lastSent struct {
	version   int64
	unsettled []confirmation
}

// settle drops the leading confirms the broker acked and reports whether it refused
// (nacked) any publish still listed: what followed a refused publish on the channel is
// no longer in order, however many acked publishes came after it.
func settle(pending []confirmation) (rest []confirmation, nacked bool) {
	acked := 0 // leading confirms known acked
	for i, c := range pending {
		select {
		case <-c.Done():
			if !c.Acked() {
				return pending, true
			}
			if i == acked {
				acked++
			}
		default:
		}
	}
	return pending[acked:], false
}

// DirectConfig configures a Direct publisher.
type DirectConfig struct {
	// AMQPURL is the broker to publish to. Required.
	AMQPURL string
	// Bound returns the binder's checkpoint; Published the notifier's. Both required.
	// Direct reads them only when what it knows already does not let a commit through.
	Bound, Published func(ctx context.Context) (eventstore.Position, error)
	// MaxMessageBytes: larger notifications are left to the notifier (which sets them
	// aside). Default 128 MiB.
	MaxMessageBytes int
	// ConfirmTimeout bounds how long Ahead waits for a confirm. Default 5s.
	ConfirmTimeout time.Duration
	// Remember bounds the events whose outcome Direct keeps for the notifier. Default
	// 65,536.
	Remember int
	// BeforePublish is the notifier's fault-injection seam (Config.BeforePublish).
	BeforePublish func(workspace uuid.UUID, workspaceVersion int64)
	Logger        *slog.Logger
}

// Commit is what Direct needs to know of one appended commit.
type Commit struct {
	EventID  uuid.UUID
	Event    domain.Committed
	Position eventstore.Position // the commit's place in the global order
	// Prev is the place of the workspace stream's event before this one (zero for
	// none), MembersAt that of the stream's latest membership change.
	Prev, MembersAt eventstore.Position
	// Inline reports that the append wrote the read models itself.
	Inline bool
}

// NewDirect checks cfg and returns a Direct publisher; it connects in Run.
func NewDirect(cfg DirectConfig) (*Direct, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Direct{cfg: cfg, log: cfg.Logger.With("component", "direct-publisher"), state: map[uuid.UUID]*amqp.DeferredConfirmation{}}, nil
}

// Run keeps a confirming channel to the broker open until ctx ends, reconnecting with
// back-off; while it has none, Publish declines everything.
func (d *Direct) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := d.session(ctx)
		if ctx.Err() != nil {
			break
		}
		d.log.Warn("direct publishing paused; the notifier publishes meanwhile", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return ctx.Err()
}

// session serves one connection: it installs a confirming channel and keeps it until
// the channel or connection closes. The broker's confirms reach each publish's
// amqp.DeferredConfirmation on the connection's reader, without waking a goroutine
// (a confirms listener here was one wake-up per commit).
func (d *Direct) session(ctx context.Context) error {
	// broker.Dial: AMQPURL may list a cluster's nodes; the one that answered last first.
	conn, err := broker.Dial(ctx, broker.Config{URL: d.cfg.AMQPURL, Name: "syncd direct publisher"})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	blocking := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	defer d.blocked.Store(false)
	// A fresh or restarted broker has lost the workspace exchanges' bindings: a commit
	// published before the binder restored them would reach no device, and its confirm
	// would make the notifier skip it. Publish only once the binder's marker is back.
	if err := d.waitForTopology(ctx, conn); err != nil {
		return err
	}
	d.mu.Lock()
	d.ch, d.declared, d.last = ch, map[uuid.UUID]bool{}, map[uuid.UUID]lastSent{}
	d.mu.Unlock()
	d.log.Info("direct publishing on")
	defer d.drop(ch)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-closed:
			return fmt.Errorf("channel closed: %w", err)
		case b := <-blocking:
			d.blocked.Store(b.Active)
			d.log.Warn("broker blocks publishers; the notifier publishes meanwhile", "blocked", b.Active, "reason", b.Reason)
		}
	}
}

// waitForTopology waits until the topology marker exists on the broker (see
// Notifier.waitForTopology); meanwhile Publish declines everything.
func (d *Direct) waitForTopology(ctx context.Context, conn *amqp.Connection) error {
	wait := 20 * time.Millisecond
	d.waiting.Store(true)
	defer d.waiting.Store(false)
	for {
		ok, err := topology.MarkerExists(conn)
		if err != nil {
			return fmt.Errorf("check the topology marker: %w", err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// drop retires ch. amqp091 resolves every publish on it still waiting for its confirm
// as not confirmed when the channel closes: the notifier resolves those by publishing
// them again.
func (d *Direct) drop(ch *amqp.Channel) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch != ch {
		return
	}
	d.ch, d.last = nil, nil
}

// Publish sends c's notifyCommit if the notifier would publish it now, and reports
// whether it did (the confirm comes later; Ahead reports it). It never blocks on the
// broker beyond writing the message, and reads a checkpoint from the database only
// when the positions it knows do not let c through. The caller calls it in
// workspaceVersion order per workspace (the service does, holding the workspace).
func (d *Direct) Publish(ctx context.Context, c Commit) bool {
	ws, v := c.Event.WorkspaceID, c.Event.WorkspaceVersion
	if !c.Inline || d.blocked.Load() || !d.passed(ctx, &d.bound, d.cfg.Bound, c.MembersAt) {
		d.declined.Add(1)
		return false
	}
	d.mu.Lock()
	prev, sent := d.last[ws]
	if sent {
		var nacked bool
		if prev.unsettled, nacked = settle(prev.unsettled); nacked {
			// The broker refused a publish of ws (a nack: it failed inside the broker):
			// what follows it on this channel is no longer in order until the notifier,
			// which publishes the refused one again, has passed it.
			delete(d.last, ws)
			sent = false
		} else {
			d.last[ws] = prev
		}
	}
	inOrder := d.ch != nil && (v == 1 || (sent && prev.version == v-1))
	d.mu.Unlock()
	if !inOrder && !d.passed(ctx, &d.published, d.cfg.Published, c.Prev) {
		d.declined.Add(1)
		return false
	}
	body, err := wire.EncodeNotifyCommit(c.EventID.String(), c.Event)
	if err != nil || len(body) > d.cfg.MaxMessageBytes {
		d.declined.Add(1)
		return false
	}
	if d.cfg.BeforePublish != nil {
		d.cfg.BeforePublish(ws, v)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.declined.Add(1)
		return false
	}
	if !d.declared[ws] {
		if err := topology.DeclareEventExchange(d.ch, ws); err != nil {
			d.log.Warn("declare event exchange", "workspace", ws, "err", err)
			d.declined.Add(1)
			return false
		}
		d.declared[ws] = true
	}
	msg := amqp.Publishing{ContentType: ContentType, Type: MessageType, AppId: ws.String(), CorrelationId: uuid.NewString(),
		MessageId: c.EventID.String(), DeliveryMode: amqp.Persistent, Body: body}
	dc, err := d.ch.PublishWithDeferredConfirmWithContext(ctx, topology.EventExchange(ws), "", false, false, msg)
	if err != nil || dc == nil { // nil: not in confirm mode, which session set
		d.declined.Add(1)
		return false
	}
	d.remember(c.EventID, dc)
	if len(d.last) >= maxTracked {
		clear(d.last)
	}
	d.last[ws] = lastSent{version: v, unsettled: append(d.last[ws].unsettled, dc)}
	d.sent.Add(1)
	return true
}

// remember starts tracking id's outcome, forgetting the oldest beyond Remember.
func (d *Direct) remember(id uuid.UUID, dc *amqp.DeferredConfirmation) {
	d.state[id] = dc
	d.order = append(d.order, id)
	for len(d.order) > d.cfg.Remember {
		delete(d.state, d.order[0])
		d.order = d.order[1:]
	}
}

// passed reports whether the position known in cache (refreshed through read when it
// falls short) has reached at.
func (d *Direct) passed(ctx context.Context, cache *atomic.Pointer[eventstore.Position], read func(context.Context) (eventstore.Position, error), at eventstore.Position) bool {
	if p := cache.Load(); p != nil && !p.Less(at) {
		return true
	}
	if at == (eventstore.Position{}) {
		return true
	}
	p, err := read(ctx)
	if err != nil {
		return false
	}
	cache.Store(&p)
	return !p.Less(at)
}

// Ahead reports whether Direct got the broker's confirm for event id, waiting (at most
// ConfirmTimeout) while that publish is in flight. The notifier skips such events.
func (d *Direct) Ahead(ctx context.Context, id uuid.UUID) bool {
	d.mu.Lock()
	dc := d.state[id]
	d.mu.Unlock()
	if dc == nil {
		return false
	}
	t := time.NewTimer(d.cfg.ConfirmTimeout)
	defer t.Stop()
	select {
	case <-dc.Done():
		return dc.Acked()
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// Counts returns how many commits Direct sent and declined since it started.
func (d *Direct) Counts() (sent, declined int64) { return d.sent.Load(), d.declined.Load() }
