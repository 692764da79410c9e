package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/leader"
)

// ErrBusy is returned when another rebuild or verify of the same model is running.
var ErrBusy = errors.New("projections: another rebuild or verify of this model is running")

// RebuildConfig configures Rebuild and Verify.
type RebuildConfig struct {
	// Pool is the read models' database. Required.
	Pool *pgxpool.Pool
	// Source is the event store. Required.
	Source Source
	// BatchSize is how many events are read and applied per transaction. Default 5000.
	BatchSize int
	// BatchBytes bounds the events' bytes read and applied per transaction (at least one
	// event). Default 32 MiB.
	BatchBytes int64
	// LockTimeout bounds the wait for the live tables' locks at the swap (the live
	// projector's batch and running reads finish first). Reads that arrive meanwhile
	// queue behind the swap, so keep it short. Default 2s.
	LockTimeout time.Duration
	// SwapAttempts is how often the swap is tried when the locks time out. Default 10.
	SwapAttempts int
	// Decoders is how many goroutines decode the events of a replay while one reads and
	// one writes. Default GOMAXPROCS.
	Decoders int
	// LatestItemsBytes bounds the memory a rebuild's or verify's replay of the
	// workspaces model may use to keep each item's latest version, so that its finish
	// copies the items table from memory instead of computing it from the whole item
	// history (see latestItems). Past the bound it lets go of them and the finish
	// computes items in SQL as before. Default 256 MiB; negative keeps none.
	LatestItemsBytes int64
	// Progress, if set, is called after every applied batch.
	Progress func(Progress)
	// InlineAfter, set when appends write the read models themselves (the PostgreSQL
	// store's inline hook: pass postgres.ReadInlineAfter), reads in a transaction's
	// snapshot the inline events after a position: the live tables hold them before the
	// projector's checkpoint passes them. Verify applies them to its rebuild too, and
	// Rebuild's swap to the fresh tables, which would otherwise lack those its replay
	// could not reach yet (see carryInline) until the live projector applied them.
	InlineAfter func(ctx context.Context, tx pgx.Tx, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// DefaultRebuildConfig returns the defaults; Pool and Source are left to the caller.
func DefaultRebuildConfig() RebuildConfig {
	return RebuildConfig{
		BatchSize:    5000,
		BatchBytes:   32 << 20,
		LockTimeout:  2 * time.Second,
		SwapAttempts: 10,
		Decoders:     runtime.GOMAXPROCS(0),
		// About 135 MiB for the 400,000 items of the benchmark's million events.
		LatestItemsBytes: 256 << 20,
		Logger:           slog.New(slog.DiscardHandler),
	}
}

// withDefaults returns c with every zero field set from DefaultRebuildConfig.
func (c RebuildConfig) withDefaults() RebuildConfig {
	d := DefaultRebuildConfig()
	c.BatchSize = cmp.Or(c.BatchSize, d.BatchSize)
	c.BatchBytes = cmp.Or(c.BatchBytes, d.BatchBytes)
	c.LockTimeout = cmp.Or(c.LockTimeout, d.LockTimeout)
	c.SwapAttempts = cmp.Or(c.SwapAttempts, d.SwapAttempts)
	c.Decoders = cmp.Or(c.Decoders, d.Decoders)
	c.LatestItemsBytes = cmp.Or(c.LatestItemsBytes, d.LatestItemsBytes)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c RebuildConfig) Validate() error {
	if c.Pool == nil || c.Source == nil {
		return errors.New("projections: rebuild needs Pool and Source")
	}
	if c.BatchSize < 0 || c.BatchBytes < 0 || c.LockTimeout < 0 || c.SwapAttempts < 0 || c.Decoders < 0 {
		return errors.New("projections: rebuild's BatchSize, BatchBytes, LockTimeout, SwapAttempts and Decoders must not be negative")
	}
	return nil
}

// Progress reports a replay in flight.
type Progress struct {
	Model    string
	Events   int64 // events replayed so far
	Estimate int64 // events expected in all: the live model's count (may be exceeded)
	Position eventstore.Position
	Elapsed  time.Duration
}

// RebuildResult tells what a rebuild did.
type RebuildResult struct {
	Model    string
	Events   int64               // events in the swapped-in model
	Position eventstore.Position // its checkpoint
	SetAside int64               // events the rebuilt model set aside (see SetAsideOf)
	Elapsed  time.Duration
}

// Rebuild replays the whole history from position 0 into fresh tables (schema
// proj_<model>_next) while the live model keeps serving and its projector keeps
// running, then swaps them in.
//
// The swap is one transaction: it takes ACCESS EXCLUSIVE locks on the live tables (the
// checkpoint first, then the tables in the order the queries touch them, so it waits for
// the live projector's batch and for running reads to finish, and no reader or writer can
// deadlock with it), applies the few events that arrived since the replay caught up
// and, with cfg.InlineAfter, the inline events the live tables hold beyond that (see
// carryInline), and renames the live schema away and the fresh one into its place. The checkpoint
// lives in the schema, so tables and checkpoint change together. Statements waiting on
// those locks re-resolve the names once the swap commits and land on the fresh tables.
// The live projector finds the stored checkpoint not where it left it and resumes from
// the new one (every batch locks and compares the checkpoint first). The old schema is
// dropped after the swap. On failure or interrupt the live tables are untouched and the
// fresh schema is dropped.
func Rebuild(ctx context.Context, cfg RebuildConfig, model string) (RebuildResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return RebuildResult{}, err
	}
	m, err := ModelNamed(model)
	if err != nil {
		return RebuildResult{}, err
	}
	start := time.Now()
	log := cfg.Logger.With("rebuild", m.name)
	release, err := exclusive(ctx, cfg.Pool, m)
	if err != nil {
		return RebuildResult{}, err
	}
	defer release()

	live, next, old := m.Schema(), m.Schema()+"_next", m.Schema()+"_old"
	if err := migrateSchema(ctx, cfg.Pool, m, live); err != nil {
		return RebuildResult{}, err
	}
	for _, s := range []string{next, old} {
		if err := dropSchema(ctx, cfg.Pool, s); err != nil {
			return RebuildResult{}, err
		}
	}
	ok := false
	defer func() {
		if !ok {
			cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := dropSchema(cleanup, cfg.Pool, next); err != nil {
				log.Warn("dropping the unfinished rebuild", "err", err)
			}
		}
	}()
	if err := buildFresh(ctx, cfg, m, live, next, start, log); err != nil {
		return RebuildResult{}, err
	}
	cp, err := swapRetrying(ctx, cfg, m, live, next, old, log)
	if err != nil {
		return RebuildResult{}, err
	}
	ok = true
	if err := dropSchema(ctx, cfg.Pool, old); err != nil {
		log.Warn("dropping the replaced tables", "schema", old, "err", err)
	}
	_, aside, err := SetAsideOf(ctx, cfg.Pool, m.name, 1)
	if err != nil {
		return RebuildResult{}, err
	}
	return RebuildResult{Model: m.name, Events: cp.Events, Position: cp.Position, SetAside: aside, Elapsed: time.Since(start)}, nil
}

// buildFresh builds the model afresh in the schema next: its tables, the history replayed
// into them in bulk, their indexes and planner statistics, and a catch-up with what
// arrived meanwhile, so that the swap's own catch-up, during which reads of the model
// wait, stays small.
func buildFresh(ctx context.Context, cfg RebuildConfig, m *Model, live, next string, start time.Time, log *slog.Logger) error {
	if err := migrateSchema(ctx, cfg.Pool, m, next); err != nil {
		return err
	}
	restore, err := dropBulkIndexes(ctx, cfg.Pool, m, next)
	if err != nil {
		return err
	}
	liveCP, err := readCheckpoint(ctx, cfg.Pool, live, false)
	if err != nil {
		return err
	}
	log.Info("replaying the history", "into", next, "live_events", liveCP.Events)
	var latest *latestItems
	if m.keepsLatest {
		latest = newLatestItems(cfg.LatestItemsBytes)
	}
	replayed, err := replay(ctx, cfg, m, next, nil, true, liveCP.Events, start, latest)
	if err != nil {
		return err
	}
	log.Info("replayed the history", "events", replayed.Events, "took", time.Since(start).String(),
		"latest_items_in_memory", latest.usable(), "latest_items_bytes", latest.size())
	built := time.Now()
	err = completeBulk(ctx, cfg.Pool, m, next, restore, latest, log)
	latest.drop()
	if err != nil {
		return fmt.Errorf("rebuild %s: build indexes: %w", m.name, err)
	}
	log.Info("completed the bulk-loaded tables and built their indexes", "took", time.Since(built).String())
	// The fresh tables have no planner statistics until autovacuum reaches them; without
	// them the planner misjudges their size and can trade the queries' bounded index
	// scans (getChangesSince's pages) for full scans of a workspace's history.
	for _, t := range m.tables {
		qt := pgx.Identifier{next, t.name}.Sanitize()
		if _, err := cfg.Pool.Exec(ctx, `ANALYZE `+qt); err != nil {
			return fmt.Errorf("rebuild %s: analyze %s: %w", m.name, qt, err)
		}
	}
	_, err = replay(ctx, cfg, m, next, nil, false, liveCP.Events, start, nil)
	return err
}

// swapRetrying swaps the fresh tables in (see swap), again while it cannot take the
// live tables' locks in time, up to cfg.SwapAttempts times.
func swapRetrying(ctx context.Context, cfg RebuildConfig, m *Model, live, next, old string, log *slog.Logger) (checkpointRow, error) {
	for attempt := 1; ; attempt++ {
		cp, err := swap(ctx, cfg, m, live, next, old, log)
		if err == nil {
			return cp, nil
		}
		if !isLockTimeout(err) || attempt >= cfg.SwapAttempts || ctx.Err() != nil {
			return checkpointRow{}, err
		}
		log.Warn("swap could not take the live tables' locks; retrying", "attempt", attempt, "err", err)
	}
}

// exclusive takes the model's rebuild lock (a session advisory lock) so that only one
// rebuild or verify of a model runs at a time; release gives it back.
func exclusive(ctx context.Context, pool *pgxpool.Pool, m *Model) (release func(), err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: acquire: %w", m.name, err)
	}
	key := leader.Key("rebuild:" + m.name)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Release()
		return nil, fmt.Errorf("rebuild %s: lock: %w", m.name, err)
	}
	if !got {
		conn.Release()
		return nil, fmt.Errorf("%s: %w", m.name, ErrBusy)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The lock dies with the session: close it rather than return it to the pool.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}, nil
}

func dropSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	return nil
}

func isLockTimeout(err error) bool {
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) {
		switch pgErr.SQLState() {
		case "55P03", "40P01": // lock_not_available, deadlock_detected
			return true
		}
	}
	return false
}

func applyOwnTx(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string, expected eventstore.Position,
	b prepared, bulk bool) (applyResult, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return applyResult{}, fmt.Errorf("replay %s: begin: %w", schema, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	res, err := applyTx(ctx, tx, m, schema, expected, b, bulk, nil)
	if err != nil {
		return applyResult{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return applyResult{}, fmt.Errorf("replay %s: commit up to %s: %w", schema, res.checkpoint.Position, err)
	}
	return res, nil
}

// lockLive locks the model's tables in schema, the checkpoint first, in mode.
func lockLive(ctx context.Context, tx pgx.Tx, m *Model, schema, mode string) error {
	if _, err := tx.Exec(ctx, lockTablesSQL(schema, m.tables, mode)); err != nil {
		return fmt.Errorf("lock %s: %w", schema, err)
	}
	return nil
}

// lockTablesSQL locks tables of schema in mode, in the order given.
func lockTablesSQL(schema string, tables []table, mode string) string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{schema, t.name}.Sanitize()
	}
	return `LOCK TABLE ` + strings.Join(names, ", ") + ` IN ` + mode + ` MODE`
}

// swap catches the fresh schema up and puts it in the live one's place, in one
// transaction holding the live tables' locks.
func swap(ctx context.Context, cfg RebuildConfig, m *Model, live, next, old string, log *slog.Logger) (checkpointRow, error) {
	tx, err := cfg.Pool.Begin(ctx)
	if err != nil {
		return checkpointRow{}, fmt.Errorf("swap %s: begin: %w", m.name, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, cfg.LockTimeout.Milliseconds())); err != nil {
		return checkpointRow{}, fmt.Errorf("swap %s: %w", m.name, err)
	}
	if err := lockLive(ctx, tx, m, live, "ACCESS EXCLUSIVE"); err != nil {
		return checkpointRow{}, fmt.Errorf("swap %s: %w", m.name, err)
	}
	liveCP, err := readCheckpoint(ctx, tx, live, false)
	if err != nil {
		return checkpointRow{}, err
	}
	cp, err := readCheckpoint(ctx, tx, next, false)
	if err != nil {
		return checkpointRow{}, err
	}
	// Catch up the events that arrived since the replay ended; the live projector is
	// blocked on the checkpoint lock meanwhile, so this stays short.
	// Each part is applied in a savepoint, so a poison event is isolated as in a replay.
	inSavepoint := func(ctx context.Context, expected eventstore.Position, b prepared) (applyResult, error) {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return applyResult{}, fmt.Errorf("savepoint: %w", err)
		}
		defer sp.Rollback(context.Background()) //nolint:errcheck // no-op after commit
		res, err := applyTx(ctx, sp, m, next, expected, b, false, nil)
		if err != nil {
			return applyResult{}, err
		}
		return res, sp.Commit(ctx)
	}
	for {
		evs, err := eventstore.ReadAllBounded(ctx, cfg.Source, cp.Position, cfg.BatchSize, cfg.BatchBytes)
		if err != nil {
			return checkpointRow{}, fmt.Errorf("swap %s: read after %s: %w", m.name, cp.Position, err)
		}
		if len(evs) > 0 {
			cp, err = isolating(ctx, m, log, cp.Position, evs, nil, inSavepoint, func(res applyResult) {
				logAside(log, m.name, res.setAside)
			})
			if err != nil {
				return checkpointRow{}, fmt.Errorf("swap %s: %w", m.name, err)
			}
		}
		if !eventstore.MayHaveMore(evs, cfg.BatchSize, cfg.BatchBytes) {
			break
		}
	}
	if cp.Position.Less(liveCP.Position) {
		return checkpointRow{}, fmt.Errorf("swap %s: rebuilt model at %s is behind the live one at %s", m.name, cp.Position, liveCP.Position)
	}
	if err := carryInline(ctx, tx, cfg, m, next, cp.Position); err != nil {
		return checkpointRow{}, fmt.Errorf("swap %s: %w", m.name, err)
	}
	for _, q := range []string{
		`ALTER SCHEMA ` + pgx.Identifier{live}.Sanitize() + ` RENAME TO ` + pgx.Identifier{old}.Sanitize(),
		`ALTER SCHEMA ` + pgx.Identifier{next}.Sanitize() + ` RENAME TO ` + pgx.Identifier{live}.Sanitize(),
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return checkpointRow{}, fmt.Errorf("swap %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return checkpointRow{}, fmt.Errorf("swap %s: commit: %w", m.name, err)
	}
	log.Info("swapped the rebuilt model in", "position", cp.Position.String(), "events", cp.Events,
		"live_was_at", liveCP.Position.String())
	return cp, nil
}

// carryInline gives the fresh tables in next, caught up to pos within the swap's tx
// (which holds the live tables' locks), the inline events the live tables hold beyond
// pos. Those are the inline appends of the global order after pos: appends that
// committed after the catch-up's read, and appends that committed before it but lie
// beyond the store's horizon (a transaction still open anywhere in the PostgreSQL
// cluster holds the global order back, for as long as it stays open). Without them the
// swap would take acknowledged commits out of the reads until the live projector
// passed them, and for good when none runs (syncctl's own appends).
//
// With cfg.InlineAfter, it applies them: the inline appends that wrote into the live
// tables have committed (the locks waited for them), so this statement's snapshot sees
// them all; later ones, even of transactions older than this one that waited for the
// locks, write into the fresh tables once the swap commits. So the fresh tables hold
// every inline event after their checkpoint, and inline_from stays 0: the live
// projector skips them all, as it did on the live tables. Without cfg.InlineAfter (a
// store that cannot read them) it records its own transaction id as inline_from: the
// live projector applies the inline events of older transactions again (every write is
// idempotent), and the model misses them until it does.
func carryInline(ctx context.Context, tx pgx.Tx, cfg RebuildConfig, m *Model, next string, pos eventstore.Position) error {
	if cfg.InlineAfter != nil {
		if _, err := applyInline(ctx, tx, cfg, m, next, pos, 0, false); err != nil {
			return fmt.Errorf("carry the inline events after %s: %w", pos, err)
		}
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE `+pgx.Identifier{next, "checkpoint"}.Sanitize()+
		` SET inline_from = pg_current_xact_id()::text::bigint`); err != nil {
		return fmt.Errorf("mark inline events: %w", err)
	}
	return nil
}
