package notify

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationComponent is this package's name in schema_migrations.
const migrationComponent = "notify"

// Migrate creates or updates this package's tables (the checkpoint table). Run calls it;
// it is exported for tools that prepare a database ahead of time.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", migrationComponent, err)
	}
	return pgmigrate.Apply(ctx, db, migrationComponent, sub)
}

// LoadCheckpoint returns the saved position of the follower name, eventstore.Start if it
// has none.
func LoadCheckpoint(ctx context.Context, db *pgxpool.Pool, name string) (eventstore.Position, error) {
	var c, p int64
	err := db.QueryRow(ctx, `SELECT commit_pos, prepare_pos FROM notify_checkpoints WHERE name = $1`, name).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("load checkpoint %s: %w", name, err)
	}
	return eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}, nil
}

// saveCheckpoint moves the follower's checkpoint forward to pos in tx; it never moves it
// back (a deposed leader finishing a batch late must not rewind its successor), and
// reports whether it moved.
func saveCheckpoint(ctx context.Context, tx pgx.Tx, name string, pos eventstore.Position) (bool, error) {
	if pos.Commit > math.MaxInt64 || pos.Prepare > math.MaxInt64 {
		return false, fmt.Errorf("save checkpoint %s at %s: position out of range", name, pos)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO notify_checkpoints (name, commit_pos, prepare_pos) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET commit_pos = EXCLUDED.commit_pos, prepare_pos = EXCLUDED.prepare_pos, updated_at = now()
		WHERE (notify_checkpoints.commit_pos, notify_checkpoints.prepare_pos) < (EXCLUDED.commit_pos, EXCLUDED.prepare_pos)`,
		name, int64(pos.Commit), int64(pos.Prepare))
	if err != nil {
		return false, fmt.Errorf("save checkpoint %s at %s: %w", name, pos, err)
	}
	return tag.RowsAffected() == 1, nil
}

// persistFunc writes a follower's own state for a batch in the transaction that moves
// its checkpoint past the batch. It may run more than once (a failed commit is retried).
type persistFunc func(ctx context.Context, tx pgx.Tx) error

// commitBatch moves the checkpoint of name to pos and runs persist (if not nil) in the
// same transaction. When the checkpoint is already at or past pos (another instance got
// there first), it changes nothing.
func commitBatch(ctx context.Context, db *pgxpool.Pool, name string, pos eventstore.Position, persist persistFunc) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("save checkpoint %s at %s: begin: %w", name, pos, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	moved, err := saveCheckpoint(ctx, tx, name, pos)
	if err != nil || !moved {
		return err
	}
	if persist != nil {
		if err := persist(ctx, tx); err != nil {
			return fmt.Errorf("save checkpoint %s at %s: %w", name, pos, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("save checkpoint %s at %s: commit: %w", name, pos, err)
	}
	return nil
}

// Status is a follower's progress, for metrics and the status endpoint.
type Status struct {
	// Leader reports whether this instance holds the role and is working.
	Leader bool
	// Position is the checkpoint: every event up to it has been handled.
	Position eventstore.Position
	// Handled counts the events this instance moved past (published, applied or skipped).
	Handled uint64
	// Published counts the broker messages this instance had confirmed (notifier only).
	Published uint64
	// Skipped counts Committed events that could not be decoded and were passed over.
	Skipped uint64
	// OutOfOrder counts commits published after a later workspaceVersion of the same
	// workspace on the same channel: the store's global order disagreed with the
	// workspace's order (notifier only; should stay 0).
	OutOfOrder uint64
	// Failures counts failed steps that were retried (store, database, broker channel).
	Failures uint64
	// Lag is the age of the oldest event read but not yet handled; 0 when caught up.
	Lag time.Duration
	// HeldByHorizon reports that the last read found events beyond the horizon.
	HeldByHorizon bool
	// WaitingForTopology reports that the notifier is connected but waits for the
	// topology marker, i.e. for a binder to restore the bindings after a broker restart
	// (notifier only).
	WaitingForTopology bool
	// Restores counts the times this binder found the topology marker missing on a new
	// broker connection and restored every binding of its tables (binder only).
	Restores uint64
}

// follower reads the store's global order from a PostgreSQL checkpoint and hands
// batches to a handler, saving the checkpoint after each batch the handler finished.
// Store and database failures are retried with back-off; handler failures end run.
type follower struct {
	name     string
	store    eventstore.Store
	db       *pgxpool.Pool
	batch    int
	pollMin  time.Duration
	pollMax  time.Duration
	retryMin time.Duration
	retryMax time.Duration
	horizon  func(context.Context) (eventstore.Position, error)
	log      *slog.Logger
	kick     chan struct{}

	mu     sync.Mutex
	status Status
	oldest time.Time // RecordedAt of the oldest unhandled event seen; zero when caught up
}

func (f *follower) snapshot() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	if !f.oldest.IsZero() {
		s.Lag = max(0, time.Since(f.oldest))
	}
	return s
}

func (f *follower) update(fn func(s *Status)) {
	f.mu.Lock()
	fn(&f.status)
	f.mu.Unlock()
}

// wake cuts the current idle wait short. Correctness never depends on it.
func (f *follower) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// retry runs op until it succeeds, ctx ends, or it fails with eventstore.ErrClosed,
// waiting with exponential back-off between attempts. It returns nil or the final error.
func (f *follower) retry(ctx context.Context, what string, op func(ctx context.Context) error) error {
	backoff := f.retryMin
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, eventstore.ErrClosed) {
			return fmt.Errorf("%s: %w", what, err)
		}
		f.update(func(s *Status) { s.Failures++ })
		f.log.Warn("follower step failed; retrying", "step", what, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, f.retryMax)
	}
}

// next reads the events after pos that may be handled now: at most one batch, cut at the
// horizon. more reports that further events were already visible.
func (f *follower) next(ctx context.Context, pos eventstore.Position) (evs []eventstore.RecordedEvent, more bool, err error) {
	err = f.retry(ctx, "read events", func(ctx context.Context) error {
		var err error
		evs, err = f.store.ReadAll(ctx, pos, f.batch)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	var oldest time.Time
	if len(evs) > 0 {
		oldest = evs[0].RecordedAt
	}
	more = len(evs) == f.batch
	held := false
	if f.horizon != nil && len(evs) > 0 {
		var h eventstore.Position
		if err := f.retry(ctx, "read horizon", func(ctx context.Context) error {
			var err error
			h, err = f.horizon(ctx)
			return err
		}); err != nil {
			return nil, false, err
		}
		n := 0
		for n < len(evs) && !h.Less(evs[n].Position) {
			n++
		}
		if n < len(evs) {
			held, more = true, true
		}
		evs = evs[:n]
	}
	f.mu.Lock()
	f.status.HeldByHorizon = held
	f.oldest = oldest
	f.mu.Unlock()
	return evs, more, nil
}

// run follows the store from the saved checkpoint, calling handle with each batch and
// saving the checkpoint (with what handle returned to persist) after handle succeeded,
// until ctx ends or handle fails.
// handle must have finished all its work for the batch when it returns nil.
func (f *follower) run(ctx context.Context, handle handler) error {
	var pos eventstore.Position
	if err := f.retry(ctx, "load checkpoint", func(ctx context.Context) error {
		var err error
		pos, err = LoadCheckpoint(ctx, f.db, f.name)
		return err
	}); err != nil {
		return err
	}
	f.update(func(s *Status) { s.Position = pos })
	f.log.Info("following the event store", "from", pos)
	wait := f.pollMin
	for {
		evs, more, err := f.next(ctx, pos)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-f.kick:
				wait = f.pollMin
			case <-time.After(wait):
				wait = min(wait*2, f.pollMax)
			}
			continue
		}
		wait = f.pollMin
		persist, err := handle(ctx, evs)
		if err != nil {
			return err
		}
		last := evs[len(evs)-1].Position
		if err := f.retry(ctx, "save checkpoint", func(ctx context.Context) error {
			return commitBatch(ctx, f.db, f.name, last, persist)
		}); err != nil {
			return err
		}
		pos = last
		f.update(func(s *Status) {
			s.Position = pos
			s.Handled += uint64(len(evs))
		})
		if !more {
			f.mu.Lock()
			f.oldest = time.Time{}
			f.mu.Unlock()
		}
	}
}

// handler does a follower's broker work for one batch; it returns a nil error only when
// all of it is done, and what to write with the checkpoint (nil for nothing).
type handler func(ctx context.Context, batch []eventstore.RecordedEvent) (persistFunc, error)

// onConnection runs the follower with handlers built by open on one broker connection.
// After a handler failure while the connection lives (a channel closed by the broker, a
// nack, a timeout), it waits with back-off and starts over from the checkpoint with a
// fresh handler, so the failed batch is done again. It returns when ctx ends, the
// connection closes, or open fails.
func (f *follower) onConnection(ctx context.Context, conn *amqp.Connection, what string, open func() (handler, func(), error)) error {
	backoff := f.retryMin
	for {
		h, closeFn, err := open()
		if err != nil {
			return err
		}
		handled := f.snapshot().Handled
		err = f.run(ctx, h)
		closeFn()
		if ctx.Err() != nil || conn.IsClosed() || errors.Is(err, eventstore.ErrClosed) {
			return err
		}
		if f.snapshot().Handled > handled {
			backoff = f.retryMin // progress since the last failure
		}
		f.update(func(s *Status) { s.Failures++ })
		f.log.Warn(what+" failed; redoing the batch on a new channel", "err", err, "in", backoff)
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, f.retryMax)
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// followDefaults fills the settings the notifier and the binder share: batch size 256,
// polling between pollMin and pollMax, retries between 100ms and 5s, leader retry 1s,
// a discarding logger.
func followDefaults(batch *int, pollMin, pollMax, retryMin, retryMax, leaderRetry *time.Duration, log **slog.Logger,
	defPollMin, defPollMax time.Duration) {
	if *batch <= 0 {
		*batch = 256
	}
	if *pollMin <= 0 {
		*pollMin = defPollMin
	}
	if *pollMax <= 0 {
		*pollMax = defPollMax
	}
	*pollMax = max(*pollMax, *pollMin)
	if *retryMin <= 0 {
		*retryMin = 100 * time.Millisecond
	}
	if *retryMax <= 0 {
		*retryMax = 5 * time.Second
	}
	*retryMax = max(*retryMax, *retryMin)
	if *leaderRetry <= 0 {
		*leaderRetry = time.Second
	}
	if *log == nil {
		*log = slog.New(slog.DiscardHandler)
	}
}
