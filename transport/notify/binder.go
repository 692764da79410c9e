package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/follow"
	"github.com/stacksync-es/syncservice/internal/leader"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// BinderConfig configures a Binder.
type BinderConfig struct {
	// DSN of the PostgreSQL database holding the checkpoint table and the advisory lock
	// that elects the single active binder. Required.
	DSN string
	// AMQPURL is the broker whose bindings are kept. Required.
	AMQPURL string
	// Name is the checkpoint row and the leader role. Default "binder".
	Name string
	// Reader reads the global order; nil: the store, read by this binder alone. syncd
	// passes the process's shared follow.Tail.
	Reader follow.Reader
	// BatchSize is the most events read and applied as one batch. Default 256.
	BatchSize int
	// BatchBytes bounds the event data of one batch read. Default DefaultBatchBytes.
	BatchBytes int
	// MaxAttempts is how often an event whose broker work the broker refuses for a
	// reason of its own (406 PRECONDITION_FAILED, 405 RESOURCE_LOCKED on a live
	// connection) is tried before it is set aside (notify_set_aside). An event that
	// does not decode is set aside at once; lost connections, access refused (403) and
	// database failures are retried without limit. Default 5.
	MaxAttempts int
	// StallAfter is how long the binder may make no progress while events are pending
	// before Healthy reports it. Default 30s.
	StallAfter time.Duration
	// PollMin and PollMax bound the adaptive wait between reads while idle.
	// Defaults 5ms, 250ms.
	PollMin, PollMax time.Duration
	// RetryMin and RetryMax bound the back-off after a failure. Defaults 100ms, 5s.
	RetryMin, RetryMax time.Duration
	// LeaderRetry is how often a standby instance tries to take over. Default 1s.
	LeaderRetry time.Duration
	// QueueOptions are the arguments of the device queues the binder declares on
	// DeviceRegistered and DeviceUpdated; unset fields take the topology defaults. They
	// must equal the RPC server's (rpc.Config.QueueOptions): a queue that exists with
	// other arguments is kept as it is.
	QueueOptions topology.QueueOptions
	Logger       *slog.Logger
	// OnAdvanced, if set, is called each time the binder's checkpoint moved (it must
	// not block): syncd wakes its notifier, whose horizon is this checkpoint, instead of
	// leaving it to find out at its next poll.
	OnAdvanced func()
	// Linger, if positive, is how long the binder waits after a batch smaller than
	// BatchSize before it reads again (see Config.Linger): syncd sets it when commits are
	// published directly, which wait for the binder only after a membership change.
	// It delays an updateDevice reply (which waits for its queue's binding) by at most
	// that long.
	Linger time.Duration
}

// Binder keeps the device event queues bound in step with workspace membership
// (PROTOCOL.md §1, §6). It follows the store's global order and keeps its own tables of
// memberships and devices (binder_members, binder_devices), changed in the transaction
// that moves its checkpoint, after the broker work of the batch succeeded:
//
//   - WorkspaceCreated (the owner) and MemberAdded bind the queue events.<user>.<device>
//     of every device of the user to multi#<workspace>; MemberRemoved unbinds them;
//   - DeviceRegistered and DeviceUpdated declare the device's queue (unless the event is
//     older than the queue expiry: then only an existing queue is bound) and bind it to
//     multi#<user> and to every workspace the user is a member of at that point of the
//     global order. With the previous rule this binds every (device, workspace) pair,
//     whatever the order in which a registration and a membership reached the RPC
//     server's read model;
//   - UserRemoved unbinds the user's devices from the user's workspaces and forgets them.
//
// On every new broker connection it checks the topology marker (topology.Marker). When
// the marker is missing (a fresh broker, or one that restarted and lost its
// non-durable exchanges and with them every binding), it binds every existing device
// queue of its tables again and only then declares the marker, which notifiers wait for.
//
// Membership bindings skip device queues that do not exist (a device that never called
// updateDevice, or whose queue expired): updateDevice declares and binds them.
type Binder struct {
	cfg   BinderConfig
	store eventstore.Store
	log   *slog.Logger
	f     *follower
}

// NewBinder checks cfg and returns a Binder; it does no I/O until Run.
func NewBinder(cfg BinderConfig, store eventstore.Store) (*Binder, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("binder: store is required")
	}
	log := cfg.Logger.With("component", "binder", "name", cfg.Name)
	f, err := newFollower(followerConfig{name: cfg.Name, reader: readerOr(cfg.Reader, store), maxAttempts: cfg.MaxAttempts, log: log},
		follow.Config{BatchSize: cfg.BatchSize, BatchBytes: int64(cfg.BatchBytes), StallAfter: cfg.StallAfter,
			PollMin: cfg.PollMin, PollMax: cfg.PollMax, RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax, Linger: cfg.Linger,
			OnAdvance: cfg.OnAdvanced})
	if err != nil {
		return nil, fmt.Errorf("binder %s: %w", cfg.Name, err)
	}
	return &Binder{cfg: cfg, store: store, log: log, f: f}, nil
}

// Status reports the binder's progress.
func (b *Binder) Status() Status { return b.f.snapshot() }

// Healthy returns nil while the binder makes progress (or has nothing to do, or is a
// standby), and an error naming it, its checkpoint and its last error when it has made
// no progress for longer than BinderConfig.StallAfter while events are pending.
func (b *Binder) Healthy() error { return b.f.healthy("binder") }

// Wake makes an idle binder read the store now (a latency hint only).
func (b *Binder) Wake() { b.f.wake() }

// Run keeps bindings until ctx ends, then returns ctx.Err(). It waits as a standby while
// another instance holds the role, and outlives broker and database restarts.
func (b *Binder) Run(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, b.cfg.DSN)
	if err != nil {
		return fmt.Errorf("binder %s: open database: %w", b.cfg.Name, err)
	}
	defer pool.Close()
	b.f.db = pool
	return leader.Run(ctx, leader.Config{DSN: b.cfg.DSN, Name: b.cfg.Name, Retry: b.cfg.LeaderRetry, Logger: b.log},
		func(ctx context.Context) error {
			if err := Migrate(ctx, pool); err != nil {
				return err
			}
			if err := b.f.retry(ctx, "prepare tables", func(ctx context.Context) error {
				return b.prepareTables(ctx, pool)
			}); err != nil {
				return err
			}
			b.f.lead(true)
			defer b.f.lead(false)
			bc := broker.Config{URL: b.cfg.AMQPURL, Name: "syncd-" + b.cfg.Name, MinBackoff: b.cfg.RetryMin, MaxBackoff: b.cfg.RetryMax, Logger: b.log}
			return broker.Run(ctx, bc, b.session)
		})
}

// prepareTables makes sure the binder's tables are built from the start of the store: a
// binder that ran before they existed has a checkpoint but no binder_tables row, and
// follows the store again from the start.
func (b *Binder) prepareTables(ctx context.Context, db *pgxpool.Pool) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("binder %s: prepare tables: %w", b.cfg.Name, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `INSERT INTO binder_tables (binder) VALUES ($1) ON CONFLICT (binder) DO NOTHING`, b.cfg.Name)
	if err != nil {
		return fmt.Errorf("binder %s: prepare tables: %w", b.cfg.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return nil // built already
	}
	for _, q := range []string{
		`DELETE FROM notify_checkpoints WHERE name = $1`,
		`DELETE FROM binder_members WHERE binder = $1`,
		`DELETE FROM binder_devices WHERE binder = $1`,
	} {
		if _, err := tx.Exec(ctx, q, b.cfg.Name); err != nil {
			return fmt.Errorf("binder %s: prepare tables: %w", b.cfg.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("binder %s: prepare tables: commit: %w", b.cfg.Name, err)
	}
	b.log.Info("membership tables are new: following the store from the start to fill them")
	return nil
}

// session works on one broker connection: it restores the bindings if the broker lost
// them, then follows the store.
func (b *Binder) session(ctx context.Context, conn *amqp.Connection) error {
	if err := b.ensureTopology(ctx, conn); err != nil {
		return err
	}
	return b.f.onConnection(ctx, conn, "binding", func() (handler, func(), error) {
		ch := &channels{conn: conn, opts: b.cfg.QueueOptions}
		return func(ctx context.Context, evs []eventstore.RecordedEvent) (int, persistFunc, error) {
			return b.apply(ctx, ch, evs)
		}, ch.close, nil
	})
}

// ensureTopology checks the topology marker and, when it is missing, restores every
// binding of the binder's tables and then declares it. Failures are retried with
// back-off while the connection lives.
func (b *Binder) ensureTopology(ctx context.Context, conn *amqp.Connection) error {
	backoff := b.cfg.RetryMin
	for {
		ok, err := topology.MarkerExists(conn)
		if err == nil && ok {
			return nil
		}
		if err == nil {
			err = b.restore(ctx, conn)
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil || conn.IsClosed() {
			return err
		}
		b.f.failed(err)
		b.log.Warn("restoring the bindings failed; retrying", "err", err, "in", backoff)
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, b.cfg.RetryMax)
	}
}
