package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/follow"
	"github.com/stacksync-es/syncservice/internal/leader"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
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
	// notifier never publishes an event beyond it. syncd passes the binder's checkpoint,
	// so a commit reaches exactly the devices of its workspace's members. It is called
	// once per batch read; an error is retried with back-off and publishes nothing.
	Horizon func(ctx context.Context) (eventstore.Position, error)
	// Ahead, when set, reports whether the notification of a commit event was already
	// confirmed by the broker on another channel of this process (a Direct publisher),
	// waiting while that publish is in flight; the notifier then skips it.
	Ahead func(ctx context.Context, eventID uuid.UUID) bool
	// ModelHorizon, when set, is a further horizon for the events whose read models
	// were not written by their own append (RecordedEvent.Inline false): syncd passes
	// the workspaces model's checkpoint, so every notified commit is already readable
	// (PROTOCOL.md §5). An inline event is readable the moment it is stored. It is read
	// only for batches holding such events.
	ModelHorizon func(ctx context.Context) (eventstore.Position, error)
	// Reader reads the global order; nil: the store, read by this notifier alone. syncd
	// passes the process's shared follow.Tail.
	Reader follow.Reader
	// BatchSize is the most events read as one batch. Default 256.
	BatchSize int
	// BatchBytes bounds the event data of one batch read: the batch ends with the event
	// that reaches it (at least one event). Default DefaultBatchBytes (16 MiB).
	BatchBytes int
	// MaxInFlight and MaxInFlightBytes bound the window of published but unconfirmed
	// messages (count, and bytes of bodies; a single larger message goes alone): the
	// next message waits for the oldest confirm. Defaults 64, 4 MiB.
	MaxInFlight, MaxInFlightBytes int
	// MaxMessageBytes is the largest notification body published; a larger one is set
	// aside unpublished (the broker would close the channel on it). Keep it at or below
	// the broker's max_message_size. Default 128 MiB (RabbitMQ's default).
	MaxMessageBytes int
	// ConfirmTimeout bounds the wait for the broker's confirm of one message, from its
	// publish; on expiry the rest of the batch (after its confirmed prefix) is tried
	// again on a new channel, the unconfirmed message first and alone. Default 15s.
	ConfirmTimeout time.Duration
	// MaxAttempts is how often a message the broker refuses (nack, or a channel closed
	// with 406 while it was alone in flight) is tried before its event is set aside
	// (notify_set_aside, ListSetAside). Confirm timeouts, lost connections and failed
	// declares are not counted: they are retried without limit. Default 5.
	MaxAttempts int
	// PoisonAfter is the least time a message's nacks must span, besides MaxAttempts
	// of them, before its event is set aside: a nack usually reports a condition of the
	// broker (a quorum queue without a leader, a resource alarm) rather than of the
	// message, so a nacked message is retried with back-off until both hold. A 406
	// while the message was alone in flight, and a notification over MaxMessageBytes,
	// are the message's own and not held back by it. Default 1 minute
	// (DefaultPoisonAfter).
	PoisonAfter time.Duration
	// StallAfter is how long the notifier may make no progress while events are
	// pending (held by the horizon included) before Healthy reports it. Default 30s.
	StallAfter time.Duration
	// PollMin and PollMax bound the adaptive wait between reads when nothing new can be
	// published (it doubles from PollMin up to PollMax while idle). Defaults 2ms, 100ms.
	PollMin, PollMax time.Duration
	// Linger, if positive, is how long the notifier waits after a batch smaller than
	// BatchSize before it reads again, so that what arrives meanwhile goes into one batch.
	// syncd sets it when the appending process publishes itself (Direct), which leaves
	// the notifier a backstop. Zero: read again at once.
	Linger time.Duration
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
	// BeforePublish is a fault-injection seam for tests, nil (off) in production: when
	// set, it is called with the workspace and workspaceVersion of every commit the
	// notifier is about to publish, after the event was read from the store (so it is
	// durable) and before its message goes to the broker. syncd sets it only from the
	// environment variable SYNCD_TEST_CRASH_BEFORE_PUBLISH (cmd/syncd/fault.go), to kill
	// itself in the window between a commit's durability and its notification.
	BeforePublish func(workspace uuid.UUID, workspaceVersion int64)
}

// Notifier publishes a notifyCommit event for every Committed event of the store, in
// the store's global order, at least once, after the event is durable (PROTOCOL.md §5).
type Notifier struct {
	cfg   Config
	store eventstore.Store
	log   *slog.Logger
	f     *follower
	pub   pubState
	peak  atomic.Int64 // the most messages in flight at once on any channel (for tests)
}

// New checks cfg and returns a Notifier; it does no I/O until Run.
func New(cfg Config, store eventstore.Store) (*Notifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("notify: store is required")
	}
	log := cfg.Logger.With("component", "notifier", "name", cfg.Name)
	f, err := newFollower(followerConfig{name: cfg.Name, reader: readerOr(cfg.Reader, store), maxAttempts: cfg.MaxAttempts,
		horizon: cfg.Horizon, modelHorizon: cfg.ModelHorizon, log: log,
		hold: shareEnds(store)},
		follow.Config{BatchSize: cfg.BatchSize, BatchBytes: int64(cfg.BatchBytes), StallAfter: cfg.StallAfter,
			PollMin: cfg.PollMin, PollMax: cfg.PollMax, RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax, Linger: cfg.Linger})
	if err != nil {
		return nil, fmt.Errorf("notifier %s: %w", cfg.Name, err)
	}
	return &Notifier{cfg: cfg, store: store, log: log, f: f}, nil
}

// Healthy returns nil while the notifier makes progress (or has nothing to do, or is a
// standby), and an error naming it, its checkpoint and its last error when it has made
// no progress for longer than Config.StallAfter while events are pending.
func (n *Notifier) Healthy() error { return n.f.healthy("notifier") }

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
			n.f.lead(true)
			defer n.f.lead(false)
			bc := broker.Config{URL: n.cfg.AMQPURL, Name: "syncd-" + n.cfg.Name, MinBackoff: n.cfg.RetryMin, MaxBackoff: n.cfg.RetryMax, Logger: n.log}
			return broker.Run(ctx, bc, n.session)
		})
}

// session publishes on one connection, opening a new channel after a channel failure
// (nack, confirm timeout, channel closed by the broker) while the connection lives; the
// checkpoint has moved past the confirmed prefix of the failed batch by then.
// Unless SkipTopologyCheck, it first waits until the topology marker exists.
func (n *Notifier) session(ctx context.Context, conn *amqp.Connection) error {
	if !n.cfg.SkipTopologyCheck {
		if err := n.waitForTopology(ctx, conn); err != nil {
			return err
		}
	}
	return n.f.onConnection(ctx, conn, "publishing", func() (handler, func(), error) {
		p, err := openPublisher(conn, &n.cfg, &n.pub, n.f, n.store, n.log)
		if err != nil {
			return nil, nil, fmt.Errorf("notifier %s: %w", n.cfg.Name, err)
		}
		return func(ctx context.Context, evs []eventstore.RecordedEvent) (int, persistFunc, error) {
			published, outOfOrder := p.published, p.outOfOrder
			done, err := p.publish(ctx, evs)
			n.f.update(func(s *Status) {
				s.Published += uint64(p.published - published)
				s.OutOfOrder += uint64(p.outOfOrder - outOfOrder)
			})
			if int64(p.peak) > n.peak.Load() {
				n.peak.Store(int64(p.peak))
			}
			if err != nil {
				return done, nil, fmt.Errorf("notifier %s: %w", n.cfg.Name, err)
			}
			return done, nil, nil
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
			if conn.IsClosed() || ctx.Err() != nil {
				return fmt.Errorf("notifier %s: %w", n.cfg.Name, err)
			}
			n.f.failed(err)
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
