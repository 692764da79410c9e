package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Update is what the event consumer delivers: per workspace in workspaceVersion order,
// every version exactly once, either as the notification of one commit or as a
// catch-up page covering several versions.
type Update struct {
	WorkspaceID uuid.UUID
	FromVersion int64 // exclusive
	ToVersion   int64 // inclusive
	// Commit is the notification of version ToVersion (FromVersion = ToVersion-1), or
	// nil for a catch-up page.
	Commit *wire.CommitNotification
	// Items, on a catch-up page, holds every item changed in (FromVersion, ToVersion],
	// in its state as of ToVersion, parents before children.
	Items []domain.ItemMetadata
	// MovedOut, on a catch-up page, lists the items that left the workspace by a
	// share within the page's range (PROTOCOL.md §8); Local re-homes them.
	MovedOut []protocol.MovedOutItem
}

// SubscribeOptions configure the event consumer.
type SubscribeOptions struct {
	// Device whose event queue is consumed. Default: the device of the last
	// UpdateDevice. The queue must exist: UpdateDevice makes the server declare it.
	Device uuid.UUID
	// Versions holds the last applied workspaceVersion of each workspace the caller
	// already has; the others start at 0 (everything is caught up).
	Versions map[uuid.UUID]int64
	// Handler receives the updates, one at a time, from one goroutine. Required. It
	// should not block for long: events wait while it runs.
	Handler func(Update)
	// UserEvents, if set, receives the user events of PROTOCOL.md §8
	// (notifyShareProposal, notifyUpdateWorkspace, notifyUnshare), from the same
	// goroutine as Handler. Without it they are passed over.
	UserEvents func(UserEvent)
}

// events is the client's event consumer.
type events struct {
	started chan struct{} // closed by Subscribe

	mu       sync.Mutex
	device   uuid.UUID
	handler  func(Update)
	onUser   func(UserEvent)
	versions map[uuid.UUID]int64
	waiters  map[string]chan wire.CommitNotification // by requestId
}

func (e *events) init() {
	e.started = make(chan struct{})
	e.versions = map[uuid.UUID]int64{}
	e.waiters = map[string]chan wire.CommitNotification{}
}

// Subscribe starts consuming the device's event queue, now and after every reconnect.
// At start and after each reconnect it catches up every workspace of the user with
// getChangesSince from the last applied version, and again whenever a notification
// skips a version. It may be called once.
func (c *Client) Subscribe(opts SubscribeOptions) error {
	if opts.Handler == nil {
		return errors.New("client: Subscribe needs a Handler")
	}
	if opts.Device == uuid.Nil {
		opts.Device = c.DeviceID()
	}
	if opts.Device == uuid.Nil {
		return errors.New("client: Subscribe needs a device: call UpdateDevice first or set Device")
	}
	e := &c.ev
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.handler != nil {
		return errors.New("client: Subscribe called twice")
	}
	e.device, e.handler, e.onUser = opts.Device, opts.Handler, opts.UserEvents
	maps.Copy(e.versions, opts.Versions)
	close(e.started)
	return nil
}

// Versions returns the last applied workspaceVersion of every workspace seen.
func (c *Client) Versions() map[uuid.UUID]int64 {
	c.ev.mu.Lock()
	defer c.ev.mu.Unlock()
	return maps.Clone(c.ev.versions)
}

func (e *events) subscribed() bool {
	select {
	case <-e.started:
		return true
	default:
		return false
	}
}

func (e *events) await(requestID string) <-chan wire.CommitNotification {
	w := make(chan wire.CommitNotification, 1)
	e.mu.Lock()
	e.waiters[requestID] = w
	e.mu.Unlock()
	return w
}

func (e *events) forget(requestID string) {
	e.mu.Lock()
	delete(e.waiters, requestID)
	e.mu.Unlock()
}

func (e *events) version(ws uuid.UUID) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.versions[ws]
}

func (e *events) setVersion(ws uuid.UUID, v int64) {
	e.mu.Lock()
	e.versions[ws] = v
	e.mu.Unlock()
}

// forgetVersion stops tracking ws: Versions no longer lists it, and a later event of
// it counts from 0.
func (e *events) forgetVersion(ws uuid.UUID) {
	e.mu.Lock()
	delete(e.versions, ws)
	e.mu.Unlock()
}

// deliver hands u to the handler and records its version.
func (e *events) deliver(u Update) {
	e.mu.Lock()
	h := e.handler
	e.mu.Unlock()
	h(u)
	e.mu.Lock()
	e.versions[u.WorkspaceID] = u.ToVersion
	e.mu.Unlock()
}

// run consumes events on conn until ctx ends, starting over (with a fresh channel,
// so unacked events are redelivered) after a failure. The wait before starting over
// doubles from the client's MinBackoff up to its MaxBackoff while no event gets acked,
// so an event whose processing keeps failing is retried slowly, never in a hot loop.
func (e *events) run(ctx context.Context, c *Client, conn *amqp.Connection) {
	select {
	case <-e.started:
	case <-ctx.Done():
		return
	}
	minB, maxB := c.cfg.MinBackoff, c.cfg.MaxBackoff
	if minB <= 0 {
		minB = defaultEventMinBackoff
	}
	if maxB < minB {
		maxB = max(minB, defaultEventMaxBackoff)
	}
	wait := minB
	for {
		acked, err := e.consume(ctx, c, conn)
		if ctx.Err() != nil {
			return
		}
		if acked {
			wait = minB // progress since the last failure: start the backoff over
		}
		c.log.Warn("event consumer failed; restarting", "err", err, "after", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(2*wait, maxB)
	}
}

// Backoff bounds of the event consumer's restarts when the Config leaves them unset.
const (
	defaultEventMinBackoff = 100 * time.Millisecond
	defaultEventMaxBackoff = 5 * time.Second
)

// consume runs one channel's consumer until it fails; acked reports whether it acked
// at least one event.
func (e *events) consume(ctx context.Context, c *Client, conn *amqp.Connection) (bool, error) {
	acked := false
	e.mu.Lock()
	dev := e.device
	e.mu.Unlock()
	q := topology.DeviceQueue(c.cfg.UserID, dev)
	ch, err := conn.Channel()
	if err != nil {
		return acked, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return acked, fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			// The queue expired while the device was away: updateDevice re-creates it.
			if _, uerr := c.UpdateDevice(ctx, &dev); uerr != nil {
				return acked, fmt.Errorf("consume %s: %w; re-declaring it: %v", q, err, uerr)
			}
		}
		return acked, fmt.Errorf("consume %s: %w", q, err)
	}
	// Events arriving during the catch-up wait in deliveries and are de-duplicated.
	if err := e.catchUpAll(ctx, c); err != nil {
		return acked, err
	}
	acked, err = e.loop(ctx, c, deliveries)
	if err != nil {
		err = fmt.Errorf("consume %s: %w", q, err)
	}
	return acked, err
}

// maxUnackedProcessed bounds the processed events one ack frame covers.
const maxUnackedProcessed = 64

// loop processes the deliveries of one channel, one after another, until one fails;
// acked reports whether it acked at least one event. An event is acked only once it is
// processed; when the next event is already waiting (the client library hands it over at
// once), its ack is left to the ack of a later one (multiple=true covers every earlier
// delivery of the channel, all of them processed): a device that receives a burst
// (several commits of its workspaces at once) acks it with one frame instead of one per
// event. Before loop waits for more, and before it returns, the processed events are
// acked; a failed one and those after it are not (the next channel gets them again).
func (e *events) loop(ctx context.Context, c *Client, deliveries <-chan amqp.Delivery) (acked bool, err error) {
	var last *amqp.Delivery // processed, not acked yet
	pending := 0
	flush := func() error {
		if last == nil {
			return nil
		}
		d := last
		last, pending = nil, 0
		if err := d.Ack(true); err != nil {
			return fmt.Errorf("ack event: %w", err)
		}
		acked = true
		return nil
	}
	defer func() {
		if ferr := flush(); err == nil {
			err = ferr
		}
	}()
	for {
		if ctx.Err() != nil {
			return acked, ctx.Err()
		}
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-deliveries: // waiting already: the pending events' ack can wait for its
		default:
			if err := flush(); err != nil {
				return acked, err
			}
			select {
			case <-ctx.Done():
				return acked, ctx.Err()
			case d, ok = <-deliveries:
			}
		}
		if !ok {
			return acked, errors.New("delivery stream ended")
		}
		if err := e.process(ctx, c, d); err != nil {
			return acked, err // not acked: redelivered on the next channel
		}
		last = &d
		if pending++; pending >= maxUnackedProcessed {
			if err := flush(); err != nil {
				return acked, err
			}
		}
	}
}

// catchUpAll catches up every workspace of the user.
func (e *events) catchUpAll(ctx context.Context, c *Client) error {
	wss, err := c.GetWorkspaces(ctx)
	if err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	for _, w := range wss {
		if _, err := e.catchUp(ctx, c, w.ID); err != nil {
			return err
		}
	}
	return nil
}

// catchUp reads the changes of ws after the last applied version, page by page, and
// delivers each page. A permanent answer does not fail it (an error would leave the
// event that asked for the catch-up unacked, at the head of the queue, for ever):
//   - InvalidRequest, which the server answers when sinceVersion is ahead of the
//     workspace (the device kept a version the server no longer has): the version is
//     reset to 0 and the workspace caught up from 0, once;
//   - Unauthorized (the user left or was removed from the workspace), WorkspaceNotFound,
//     or InvalidRequest again from 0: the workspace's version is forgotten and the
//     catch-up skipped, with a warning.
//
// skipped reports the latter. Other failures (timeouts, Busy, Internal, a lost
// connection) are returned, for the consumer to retry with backoff.
func (e *events) catchUp(ctx context.Context, c *Client, ws uuid.UUID) (skipped bool, err error) {
	reset := false
	for {
		last := e.version(ws)
		page, err := c.GetChangesSince(ctx, ws, last, c.cfg.ChangesLimit)
		if err != nil {
			err = fmt.Errorf("catch up workspace %s from %d: %w", ws, last, err)
			switch {
			case !permanent(err):
				return false, err
			case errors.Is(err, protocol.ErrInvalid) && last > 0 && !reset:
				c.log.Warn("catch-up refused (version ahead of the workspace?); catching up from 0",
					"workspace", ws, "last", last, "err", err)
				reset = true
				e.setVersion(ws, 0)
				continue
			default:
				c.log.Warn("catch-up refused; no longer tracking the workspace", "workspace", ws, "last", last, "err", err)
				e.forgetVersion(ws)
				return true, nil
			}
		}
		if page.ToVersion > last {
			e.deliver(Update{WorkspaceID: ws, FromVersion: last, ToVersion: page.ToVersion, Items: page.Items, MovedOut: page.MovedOut})
		}
		if !page.HasMore || page.ToVersion <= last {
			return false, nil
		}
	}
}

// permanent reports whether err carries a server answer that retrying the same
// catch-up cannot change: Unauthorized, WorkspaceNotFound or InvalidRequest.
func permanent(err error) bool {
	var ce *Error
	if !errors.As(err, &ce) {
		return false
	}
	return errors.Is(ce, protocol.ErrUnauthorized) || errors.Is(ce, protocol.ErrWorkspaceNotFound) ||
		errors.Is(ce, protocol.ErrInvalid)
}

// process handles one event: wakes a CommitAndWait, drops duplicates, catches up a
// gap, delivers the next version.
func (e *events) process(ctx context.Context, c *Client, d amqp.Delivery) error {
	n, ok := wire.ParseNotifyCommit(d.Body) // every notifyCommit the server sends, in one pass
	if !ok {
		var handled bool
		if n, handled = decodeEvent(c, e, d.Body); handled {
			return nil
		}
	}
	ws, err := uuid.Parse(n.WorkspaceID)
	if err != nil {
		c.log.Warn("ignoring a notifyCommit without a workspace id", "workspaceId", n.WorkspaceID)
		return nil
	}
	e.mu.Lock()
	if w := e.waiters[n.RequestID]; w != nil {
		select {
		case w <- n:
		default:
		}
	}
	e.mu.Unlock()
	v := n.WorkspaceVersion
	if last := e.version(ws); v > last+1 {
		c.log.Debug("gap in workspace versions; catching up", "workspace", ws, "last", last, "got", v)
		skipped, err := e.catchUp(ctx, c, ws)
		if err != nil {
			return err
		}
		if skipped {
			return nil // the device no longer follows ws: the event is dropped (acked)
		}
	}
	last := e.version(ws)
	switch {
	case v <= last:
		return nil // seen, or covered by the catch-up
	case v > last+1:
		return fmt.Errorf("workspace %s: version %d still missing after a catch-up to %d", ws, last+1, last)
	}
	e.deliver(Update{WorkspaceID: ws, FromVersion: last, ToVersion: v, Commit: &n})
	return nil
}

// decodeEvent decodes, through encoding/json, an event ParseNotifyCommit declined: a
// user event (handled here), an unusual notifyCommit (returned), or anything else
// (logged and dropped). handled says the event needs nothing more.
func decodeEvent(c *Client, e *events, body []byte) (n wire.CommitNotification, handled bool) {
	var raw struct {
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &raw); err == nil && raw.Method != wire.MethodNotifyCommit {
		u, ok, err := userEvent(raw.Method, raw.Params)
		if ok && err == nil {
			e.handleUserEvent(c, u)
			return n, true
		}
		c.log.Warn("ignoring an event that is neither a notifyCommit nor a user event", "err", err, "method", raw.Method)
		return n, true
	}
	var env struct {
		Method string                    `json:"method"`
		Params []wire.CommitNotification `json:"params"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Method != wire.MethodNotifyCommit || len(env.Params) != 1 {
		c.log.Warn("ignoring an event that is not a notifyCommit", "err", err, "method", env.Method)
		return n, true
	}
	return env.Params[0], false
}
