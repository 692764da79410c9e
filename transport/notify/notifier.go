package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/leader"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Message properties of notifyCommit events (PROTOCOL.md §2).
const (
	ContentType = "application/json"
	MessageType = "gson"
)

// Config configures a Notifier.
type Config struct {
	// DSN of the PostgreSQL database holding the checkpoint table and the advisory lock
	// that elects the single active notifier. Required.
	DSN string
	// AMQPURL is the broker to publish to. Required.
	AMQPURL string
	// Name is the checkpoint row and the leader role. Default "notifier". Two notifiers
	// with different names publish everything twice.
	Name string
	// Horizon, when set, returns the position up to which events may be published; the
	// notifier never publishes an event beyond it. syncd passes the read models'
	// checkpoints (projections.Checkpoint of the workspaces model, combined with
	// MinHorizon with every other model a read of PROTOCOL.md §5 depends on), so every
	// notified commit is already readable. It is called once per batch read; an error
	// is retried with back-off and publishes nothing.
	Horizon func(ctx context.Context) (eventstore.Position, error)
	// BatchSize is the most events read, published and confirmed as one batch.
	// Default 256.
	BatchSize int
	// ConfirmTimeout bounds the wait for the broker's confirms of one batch; on expiry
	// the batch is published again on a new channel. Default 15s.
	ConfirmTimeout time.Duration
	// PollMin and PollMax bound the adaptive wait between reads when nothing new can be
	// published (it doubles from PollMin up to PollMax while idle). Defaults 2ms, 100ms.
	PollMin, PollMax time.Duration
	// RetryMin and RetryMax bound the back-off after a store, database or channel
	// failure. Defaults 100ms, 5s.
	RetryMin, RetryMax time.Duration
	// LeaderRetry is how often a standby instance tries to take over. Default 1s.
	LeaderRetry time.Duration
	// SkipTopologyCheck, when true, lets the notifier publish on a new broker connection
	// without first waiting for the topology marker (topology.Marker). By default
	// (false) it waits, polling with back-off, until the marker exists: after a broker
	// restart the marker appears only once a Binder has restored the bindings of every
	// device queue, so nothing is published into a workspace exchange with no queue
	// bound yet. A deployment therefore needs a running Binder (the "binder" role of
	// some syncd instance, on the same broker) for a notifier to publish; set this only
	// where no Binder runs at all (tests of the notifier alone).
	SkipTopologyCheck bool
	Logger            *slog.Logger
}

// Validate fills defaults and checks required fields.
func (c *Config) Validate() error {
	if c.DSN == "" {
		return errors.New("notify: DSN is required")
	}
	if c.AMQPURL == "" {
		return errors.New("notify: AMQPURL is required")
	}
	if c.Name == "" {
		c.Name = "notifier"
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = 15 * time.Second
	}
	followDefaults(&c.BatchSize, &c.PollMin, &c.PollMax, &c.RetryMin, &c.RetryMax, &c.LeaderRetry, &c.Logger,
		2*time.Millisecond, 100*time.Millisecond)
	return nil
}

// MinHorizon combines horizons: an event may be published only when every one of hs
// allows it. It fails if any of them fails.
func MinHorizon(hs ...func(ctx context.Context) (eventstore.Position, error)) func(ctx context.Context) (eventstore.Position, error) {
	return func(ctx context.Context) (eventstore.Position, error) {
		var out eventstore.Position
		for i, h := range hs {
			p, err := h(ctx)
			if err != nil {
				return eventstore.Position{}, fmt.Errorf("horizon %d: %w", i, err)
			}
			if i == 0 || p.Less(out) {
				out = p
			}
		}
		return out, nil
	}
}

// Notifier publishes a notifyCommit event for every Committed event of the store, in
// the store's global order, at least once, after the event is durable (PROTOCOL.md §5).
type Notifier struct {
	cfg   Config
	store eventstore.Store
	log   *slog.Logger
	f     *follower
}

// New checks cfg and returns a Notifier; it does no I/O until Run.
func New(cfg Config, store eventstore.Store) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("notify: store is required")
	}
	log := cfg.Logger.With("component", "notifier", "name", cfg.Name)
	return &Notifier{
		cfg:   cfg,
		store: store,
		log:   log,
		f: &follower{
			name: cfg.Name, store: store, batch: cfg.BatchSize,
			pollMin: cfg.PollMin, pollMax: cfg.PollMax, retryMin: cfg.RetryMin, retryMax: cfg.RetryMax,
			horizon: cfg.Horizon, log: log, kick: make(chan struct{}, 1),
		},
	}, nil
}

// Status reports the notifier's progress (position, lag, counters).
func (n *Notifier) Status() Status { return n.f.snapshot() }

// Position is the checkpoint: every Committed event up to it has been confirmed by the
// broker (as known to this instance).
func (n *Notifier) Position() eventstore.Position { return n.f.snapshot().Position }

// Wake makes an idle notifier read the store now instead of at its next poll. It is a
// latency hint only: without it every event is still published within PollMax.
func (n *Notifier) Wake() { n.f.wake() }

// Run publishes until ctx ends, then returns ctx.Err(). It waits as a standby while
// another instance holds the role, and outlives broker and database restarts.
func (n *Notifier) Run(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, n.cfg.DSN)
	if err != nil {
		return fmt.Errorf("notifier %s: open database: %w", n.cfg.Name, err)
	}
	defer pool.Close()
	n.f.db = pool
	return leader.Run(ctx, leader.Config{DSN: n.cfg.DSN, Name: n.cfg.Name, Retry: n.cfg.LeaderRetry, Logger: n.log},
		func(ctx context.Context) error {
			if err := Migrate(ctx, pool); err != nil {
				return err
			}
			n.f.update(func(s *Status) { s.Leader = true })
			defer n.f.update(func(s *Status) { s.Leader = false })
			bc := broker.Config{URL: n.cfg.AMQPURL, Name: "syncd-" + n.cfg.Name, MinBackoff: n.cfg.RetryMin, MaxBackoff: n.cfg.RetryMax, Logger: n.log}
			return broker.Run(ctx, bc, n.session)
		})
}

// session publishes on one connection, opening a new channel after a channel failure
// (nack, confirm timeout, channel closed by the broker) while the connection lives.
// Unless SkipTopologyCheck, it first waits until the topology marker exists.
func (n *Notifier) session(ctx context.Context, conn *amqp.Connection) error {
	if !n.cfg.SkipTopologyCheck {
		if err := n.waitForTopology(ctx, conn); err != nil {
			return err
		}
	}
	return n.f.onConnection(ctx, conn, "publishing", func() (handler, func(), error) {
		p, err := openPublisher(conn, n.cfg.ConfirmTimeout, n.log)
		if err != nil {
			return nil, nil, fmt.Errorf("notifier %s: %w", n.cfg.Name, err)
		}
		return func(ctx context.Context, evs []eventstore.RecordedEvent) (persistFunc, error) {
			before := p.outOfOrder
			published, skipped, err := p.publish(ctx, evs)
			if err != nil {
				return nil, err
			}
			n.f.update(func(s *Status) {
				s.Published += uint64(published)
				s.Skipped += uint64(skipped)
				s.OutOfOrder += uint64(p.outOfOrder - before)
			})
			return nil, nil
		}, p.close, nil
	})
}

// topologyPollMax bounds the wait between two checks of the topology marker.
const topologyPollMax = time.Second

// waitForTopology polls for the topology marker on conn with back-off (RetryMin doubling
// up to a second) until it exists or ctx ends (the connection closed, or shutdown).
func (n *Notifier) waitForTopology(ctx context.Context, conn *amqp.Connection) error {
	wait := n.cfg.RetryMin
	began := time.Now()
	warned := began
	defer n.f.update(func(s *Status) { s.WaitingForTopology = false })
	for first := true; ; first = false {
		ok, err := topology.MarkerExists(conn)
		if err != nil {
			if conn.IsClosed() {
				return fmt.Errorf("notifier %s: %w", n.cfg.Name, err)
			}
			n.f.update(func(s *Status) { s.Failures++ })
			n.log.Warn("cannot check the topology marker; retrying", "err", err, "in", wait)
		} else if ok {
			if !first {
				n.log.Info("topology marker present; publishing", "waited", time.Since(began).Round(time.Millisecond))
			}
			return nil
		} else if first {
			n.f.update(func(s *Status) { s.WaitingForTopology = true })
			n.log.Info("topology marker missing (fresh or restarted broker); waiting for a binder to restore the device queues' bindings",
				"marker", topology.Marker)
		} else if time.Since(warned) >= 30*time.Second {
			warned = time.Now()
			n.log.Warn("still waiting for the topology marker: is a binder running on this broker?",
				"marker", topology.Marker, "waited", time.Since(began).Round(time.Second))
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, min(topologyPollMax, n.cfg.RetryMax))
	}
}

// publisher publishes notifyCommit events on one channel in confirm mode.
type publisher struct {
	ch       *amqp.Channel
	timeout  time.Duration
	log      *slog.Logger
	declared map[uuid.UUID]bool // exchanges declared on this channel
	// last is the workspaceVersion last published per workspace on this channel, to
	// detect a store whose global order disagrees with a stream's order (which would
	// break the per-workspace order of PROTOCOL.md §5). Cleared when it grows large.
	last       map[uuid.UUID]int64
	outOfOrder int
}

// maxTracked bounds publisher.last.
const maxTracked = 100_000

func openPublisher(conn *amqp.Connection, timeout time.Duration, log *slog.Logger) (*publisher, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable confirms: %w", err)
	}
	return &publisher{ch: ch, timeout: timeout, log: log, declared: map[uuid.UUID]bool{}, last: map[uuid.UUID]int64{}}, nil
}

func (p *publisher) close() { _ = p.ch.Close() }

// errNotConfirmed reports a batch the broker did not confirm in full.
var errNotConfirmed = errors.New("broker did not confirm every message")

// publish sends the notifyCommit of every Committed event of evs, in order, and waits
// until the broker confirmed all of them. Other event types are passed over, and so is
// a Committed event that does not decode (logged and counted as skipped: it can never
// be published, and must not wedge the notifier).
func (p *publisher) publish(ctx context.Context, evs []eventstore.RecordedEvent) (published, skipped int, err error) {
	pending := make([]*amqp.DeferredConfirmation, 0, len(evs))
	for _, rec := range evs {
		if rec.Type != domain.TypeCommitted {
			continue
		}
		msg, ws, v, err := notification(rec)
		if err != nil {
			p.log.Error("cannot notify a stored commit; skipping it", "event", rec.ID, "stream", rec.Stream, "position", rec.Position, "err", err)
			skipped++
			continue
		}
		if prev, ok := p.last[ws]; ok && v <= prev {
			p.outOfOrder++
			p.log.Error("store's global order disagrees with the workspace's order; publishing anyway (devices catch up on the gap)",
				"workspace", ws, "workspaceVersion", v, "after", prev, "event", rec.ID, "position", rec.Position)
		}
		if len(p.last) >= maxTracked {
			clear(p.last)
		}
		p.last[ws] = v
		if !p.declared[ws] {
			if err := topology.DeclareEventExchange(p.ch, ws); err != nil {
				return 0, 0, fmt.Errorf("publish event %s: %w", rec.ID, err)
			}
			p.declared[ws] = true
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, topology.EventExchange(ws), "", false, false, msg)
		if err != nil {
			return 0, 0, fmt.Errorf("publish event %s to %s: %w", rec.ID, topology.EventExchange(ws), err)
		}
		pending = append(pending, dc)
	}
	wctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	for i, dc := range pending {
		ok, err := dc.WaitContext(wctx)
		if err != nil {
			return 0, 0, fmt.Errorf("wait for confirm %d of %d: %w", i+1, len(pending), err)
		}
		if !ok {
			return 0, 0, fmt.Errorf("confirm %d of %d: %w (nack or channel closed)", i+1, len(pending), errNotConfirmed)
		}
	}
	return len(pending), skipped, nil
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
