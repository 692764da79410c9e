package notify

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/follow"
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

// checkpoints is the followers' checkpoint table.
var checkpoints = follow.Table{Name: "notify_checkpoints"}

// LoadCheckpoint returns the saved position of the follower name, eventstore.Start if it
// has none.
func LoadCheckpoint(ctx context.Context, db *pgxpool.Pool, name string) (eventstore.Position, error) {
	return checkpoints.Load(ctx, db, name)
}

// persistFunc writes a follower's own state for a batch in the transaction that moves
// its checkpoint past the batch. It may run more than once (a failed commit is retried).
type persistFunc func(ctx context.Context, tx pgx.Tx) error

// commitBatch moves the checkpoint of name to pos, records the events of aside (all at
// or before pos) as set aside and runs persist (if not nil), in one transaction. When
// the checkpoint is already at or past pos (another instance got there first), it
// changes nothing. It returns the entries of aside whose rows are new.
func commitBatch(ctx context.Context, db *pgxpool.Pool, name string, pos eventstore.Position, aside []setAsideEntry,
	persist persistFunc) ([]setAsideEntry, error) {
	if len(aside) == 0 && persist == nil {
		return nil, checkpoints.Move(ctx, db, name, pos)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("save checkpoint %s at %s: begin: %w", name, pos, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// Not waiting for this commit's WAL flush is safe: a checkpoint lost with a
	// database crash only makes the follower do its work again from an older one
	// (republish, which devices drop as duplicates; bind again), and the broker holds
	// what it did. It spares the commit path one WAL flush per batch.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return nil, fmt.Errorf("save checkpoint %s at %s: %w", name, pos, err)
	}
	moved, err := checkpoints.Save(ctx, tx, name, pos)
	if err != nil || !moved {
		return nil, err
	}
	var added []setAsideEntry
	for _, e := range aside {
		isNew, err := insertSetAside(ctx, tx, name, e)
		if err != nil {
			return nil, fmt.Errorf("save checkpoint %s at %s: %w", name, pos, err)
		}
		if isNew {
			added = append(added, e)
		}
	}
	if persist != nil {
		if err := persist(ctx, tx); err != nil {
			return nil, fmt.Errorf("save checkpoint %s at %s: %w", name, pos, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("save checkpoint %s at %s: commit: %w", name, pos, err)
	}
	return added, nil
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
	// Skipped counts the events this instance set aside (recorded in notify_set_aside,
	// logged at error level): events that can never be handled (undecodable, refused by
	// the broker MaxAttempts times, too large), passed over so every other workspace
	// keeps being served.
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

// follower is the notifier's and the binder's follower of the global order: the loop of
// follow.Follower, the checkpoint in notify_checkpoints, and poison isolation. It hands
// batches to a handler and saves the checkpoint past the prefix of each batch the
// handler finished (also when it failed later in the batch). Store and database
// failures are retried with back-off; handler failures end run. An event that failed
// for a reason of its own (poison) maxAttempts times, or that the handler gave up on
// (setAside), is recorded in notify_set_aside and passed over.
type follower struct {
	*follow.Follower
	name        string
	db          *pgxpool.Pool
	maxAttempts int
	retryMin    time.Duration
	retryMax    time.Duration
	log         *slog.Logger

	// Owned by the goroutine in run.
	attempts map[uuid.UUID]*attempt // events that failed for a reason of their own
	aside    []setAsideEntry        // set aside, to record with the next checkpoint past them

	mu    sync.Mutex
	extra Status // the counters of this package's own (Published, Skipped, ...)
}

// followerConfig is what newFollower needs besides the shared loop's settings.
type followerConfig struct {
	name        string
	reader      follow.Reader
	maxAttempts int
	horizon     func(context.Context) (eventstore.Position, error)
	// modelHorizon holds back only events that are not Inline (see Config.ModelHorizon).
	modelHorizon func(context.Context) (eventstore.Position, error)
	// hold, if set, returns the position horizon must have reached before rec may be
	// handled (rec's own, or later: the end of a share's append, see shareEnd).
	hold func(ctx context.Context, rec eventstore.RecordedEvent) (eventstore.Position, error)
	log  *slog.Logger
}

// newFollower returns the follower fc names, its loop configured by lc (Name, Reader,
// Load and Allow are filled here).
func newFollower(fc followerConfig, lc follow.Config) (*follower, error) {
	f := &follower{name: fc.name, maxAttempts: fc.maxAttempts, log: fc.log, retryMin: lc.RetryMin, retryMax: lc.RetryMax}
	lc.Name, lc.Reader, lc.Logger = fc.name, fc.reader, fc.log
	lc.Load = func(ctx context.Context) (eventstore.Position, error) { return LoadCheckpoint(ctx, f.db, f.name) }
	if fc.horizon != nil || fc.modelHorizon != nil {
		lc.Allow = func(ctx context.Context, evs []eventstore.RecordedEvent) (int, error) {
			return f.allowed(ctx, evs, fc.horizon, fc.modelHorizon, fc.hold)
		}
	}
	var err error
	if f.Follower, err = follow.New(lc); err != nil {
		return nil, err
	}
	return f, nil
}

// attempt counts the poison failures of one event.
type attempt struct {
	n     int
	err   error
	first time.Time     // of the first failure
	span  time.Duration // the failures must span this long before the event is set aside
}

// exhausted reports whether the event has failed often enough, and over a long enough
// time, to be set aside.
func (a *attempt) exhausted(maxAttempts int, now time.Time) bool {
	return a.n >= maxAttempts && now.Sub(a.first) >= a.span
}

// readerOr returns r, or a reader of s of its own when r is nil.
func readerOr(r follow.Reader, s eventstore.Store) follow.Reader {
	if r != nil {
		return r
	}
	return follow.StoreReader{Store: s}
}

// readAllBounded reads at most limit events after from, holding at most maxBytes of
// data (at least one event): the store bounds the read itself where it can
// (eventstore.BoundedReader), so a batch of large events never sits in memory whole.
func readAllBounded(ctx context.Context, s eventstore.Store, from eventstore.Position, limit, maxBytes int) ([]eventstore.RecordedEvent, error) {
	return eventstore.ReadAllBounded(ctx, s, from, limit, int64(maxBytes))
}

// setAside gives up on rec: it is recorded with the checkpoint that moves past it.
// A retry of the batch that sets it aside again changes nothing.
func (f *follower) setAside(rec eventstore.RecordedEvent, err error, attempts int) {
	for _, e := range f.aside {
		if e.rec.ID == rec.ID {
			return
		}
	}
	f.aside = append(f.aside, setAsideEntry{rec: rec, err: err, attempts: attempts})
}

// healthy reports a follower that has made no progress for longer than stallAfter
// while events are pending; nil otherwise (also while it is not the leader).
func (f *follower) healthy(what string) error { return f.Healthy(what) }

// lead records whether this instance holds the role (see follow.Follower.SetLeader).
func (f *follower) lead(leader bool) { f.SetLeader(leader) }

func (f *follower) snapshot() Status {
	core := f.Status()
	f.mu.Lock()
	s := f.extra
	f.mu.Unlock()
	s.Leader, s.Position, s.Handled, s.Failures = core.Leader, core.Position, core.Handled, core.Failures
	s.Lag, s.HeldByHorizon = core.Lag, core.HeldByHorizon
	return s
}

// failed counts a failed step and keeps its error for Healthy.
func (f *follower) failed(err error) { f.Failed(err) }

// update changes the counters of this package's own (the follow.Status fields of s
// are ignored).
func (f *follower) update(fn func(s *Status)) {
	f.mu.Lock()
	fn(&f.extra)
	f.mu.Unlock()
}

// wake cuts the current idle wait short. Correctness never depends on it.
func (f *follower) wake() { f.Wake() }

// retry runs op until it succeeds, ctx ends, or it fails with eventstore.ErrClosed,
// waiting with exponential back-off between attempts. It returns nil or the final error.
func (f *follower) retry(ctx context.Context, what string, op func(ctx context.Context) error) error {
	return f.Retry(ctx, what, op)
}

// allowed returns how many of evs, from the first, the horizons let through.
func (f *follower) allowed(ctx context.Context, evs []eventstore.RecordedEvent,
	horizon, modelHorizon func(context.Context) (eventstore.Position, error),
	hold func(context.Context, eventstore.RecordedEvent) (eventstore.Position, error)) (int, error) {
	read := func(name string, h func(context.Context) (eventstore.Position, error)) (eventstore.Position, error) {
		var p eventstore.Position
		err := f.retry(ctx, "read "+name, func(ctx context.Context) error {
			var err error
			p, err = h(ctx)
			return err
		})
		return p, err
	}
	n := len(evs)
	if horizon != nil {
		h, err := read("horizon", horizon)
		if err != nil {
			return 0, err
		}
		n = 0
		for n < len(evs) && !h.Less(evs[n].Position) {
			if hold != nil {
				var end eventstore.Position
				if err := f.retry(ctx, "read the end of a share", func(ctx context.Context) error {
					var err error
					end, err = hold(ctx, evs[n])
					return err
				}); err != nil {
					return 0, err
				}
				if h.Less(end) {
					break
				}
			}
			n++
		}
	}
	if modelHorizon == nil || !slices.ContainsFunc(evs[:n], func(e eventstore.RecordedEvent) bool { return !e.Inline }) {
		return n, nil
	}
	h, err := read("model horizon", modelHorizon)
	if err != nil {
		return 0, err
	}
	for i := range evs[:n] {
		if !evs[i].Inline && h.Less(evs[i].Position) {
			return i, nil
		}
	}
	return n, nil
}

// run follows the store from the saved checkpoint, calling handle with each batch and
// saving the checkpoint past what handle finished (with what it returned to persist),
// until ctx ends or handle fails. After a failure of handle, the event it stopped at
// counts an attempt if the failure was its own (poison); once it has maxAttempts of
// them (spanning the time the poison error asks for, see poisonAfter), the next run
// sets it aside instead of handing it to handle again.
func (f *follower) run(ctx context.Context, handle handler) error {
	return f.Run(ctx, func(ctx context.Context, evs []eventstore.RecordedEvent) (int, error) {
		if a := f.attempts[evs[0].ID]; a != nil && a.exhausted(f.maxAttempts, time.Now()) {
			f.setAside(evs[0], a.err, a.n)
			if err := f.advance(ctx, evs[:1], nil); err != nil {
				return 0, err
			}
			return 1, nil
		}
		done, persist, herr := handle(ctx, evs)
		if done > 0 {
			if err := f.advance(ctx, evs[:done], persist); err != nil {
				return 0, err
			}
		}
		if herr != nil && done < len(evs) && isPoison(herr) {
			f.countAttempt(evs[done], herr)
		}
		return done, herr
	})
}

// countAttempt records a failure of rec of its own.
func (f *follower) countAttempt(rec eventstore.RecordedEvent, err error) {
	if f.attempts == nil || len(f.attempts) >= maxTracked {
		f.attempts = map[uuid.UUID]*attempt{}
	}
	a := f.attempts[rec.ID]
	if a == nil {
		a = &attempt{first: time.Now()}
		f.attempts[rec.ID] = a
	}
	a.n++
	a.err = err
	a.span = poisonSpan(err) // the latest failure says how sure it is
	f.log.Warn("event failed for a reason of its own", "event", rec.ID, "stream", rec.Stream, "position", rec.Position,
		"attempt", a.n, "of", f.maxAttempts, "failing_for", time.Since(a.first).Round(time.Millisecond), "set_aside_after", a.span, "err", err)
}

// advance saves the checkpoint at the last of handled, recording the events set aside
// up to it, and persist.
func (f *follower) advance(ctx context.Context, handled []eventstore.RecordedEvent, persist persistFunc) error {
	last := handled[len(handled)-1].Position
	var aside, later []setAsideEntry
	for _, e := range f.aside {
		if last.Less(e.rec.Position) {
			later = append(later, e)
		} else {
			aside = append(aside, e)
		}
	}
	var added []setAsideEntry
	if err := f.retry(ctx, "save checkpoint", func(ctx context.Context) error {
		var err error
		added, err = commitBatch(ctx, f.db, f.name, last, aside, persist)
		return err
	}); err != nil {
		return err
	}
	f.aside = later
	for _, e := range added {
		f.log.Error("event set aside: it can never be handled; moving past it", "event", e.rec.ID, "type", e.rec.Type,
			"stream", e.rec.Stream, "version", e.rec.StreamVersion, "position", e.rec.Position, "attempts", e.attempts, "err", e.err)
	}
	for _, ev := range handled {
		delete(f.attempts, ev.ID)
	}
	f.update(func(s *Status) { s.Skipped += uint64(len(added)) })
	return nil
}

// handler does a follower's broker work for one batch. It returns how many events of
// the batch, from its start, are done (all of them when err is nil), and what to write
// with the checkpoint past them (nil for nothing). An error that is the fault of the
// event at batch[done] (the broker refused that very message or binding) is wrapped
// with poison; any other error is retried without limit.
type handler func(ctx context.Context, batch []eventstore.RecordedEvent) (done int, persist persistFunc, err error)

// onConnection runs the follower with handlers built by open on one broker connection.
// After a handler failure while the connection lives (a channel closed by the broker, a
// nack, a timeout), it waits with back-off and starts over from the checkpoint with a
// fresh handler, so the rest of the failed batch (after what was done) is tried again. It returns when ctx ends, the
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
		f.failed(err)
		f.log.Warn(what+" failed; redoing the rest of the batch on a new channel", "err", err, "in", backoff)
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, f.retryMax)
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error { return follow.Sleep(ctx, d) }

// DefaultBatchBytes bounds the event data of one batch a follower reads.
const DefaultBatchBytes = 16 << 20
