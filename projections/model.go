package projections

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/pgmigrate"
)

//go:embed migrations
var migrationFiles embed.FS

// Names of the read models.
const (
	// ModelWorkspaces holds workspaces, members, the latest item versions and the item
	// history: everything getChanges, getChangesSince, getItemVersions and getWorkspaces read.
	ModelWorkspaces = "workspaces"
	// ModelAccounts holds users and devices.
	ModelAccounts = "accounts"
)

// Model is one read model: a set of tables kept in their own PostgreSQL schema together
// with the model's checkpoint, and the function that applies events to them.
type Model struct {
	name         string
	streamPrefix string  // the streams whose events the model applies
	tables       []table // in lock order; the checkpoint first
	// queue queues the statements that write decoded events into the model's tables
	// in schema; in bulk mode the bulkLoaded tables have no unique indexes (a fresh
	// replay, where the checkpoint alone rules out repeats).
	queue func(b *pgx.Batch, schema string, evs []decoded, bulk bool)
	// applyBulk, if set, writes decoded events in bulk mode instead of queue: a replay
	// into fresh tables (the workspaces model copies item versions and leaves items to
	// finishBulk). With kept it records there what a latestItems keeps.
	applyBulk func(ctx context.Context, tx pgx.Tx, schema string, evs []decoded, kept *bulkKept) error
	// bulkLoaded tables have their indexes dropped while a replay loads them and built
	// once at the end, which is much faster than maintaining them row by row.
	bulkLoaded []string
	// trimBulk, if set, gives the statements that remove from the bulkLoaded tables in
	// schema, after a bulk replay and before any of their indexes is built, what the
	// replay loaded but the model does not keep (the workspaces model: the versions of
	// items that moved out). They run alone first: their ROW EXCLUSIVE locks conflict
	// with the index builds' SHARE locks, which would otherwise wait for finishBulk's
	// transaction.
	trimBulk func(schema string) []string
	// finishBulk, if set, completes the tables in schema after a bulk replay and
	// trimBulk, before their indexes are built (the workspaces model fills items from
	// item_history, or copies them from latest when it is usable).
	finishBulk func(ctx context.Context, pool *pgxpool.Pool, schema string, latest *latestItems) error
	// keepsLatest: a bulk replay may keep each item's latest version in memory
	// (latestItems), for finishBulk.
	keepsLatest bool
	// bulkFilled are the tables finishBulk writes; the others' indexes are built meanwhile.
	bulkFilled []string
}

// table describes a read-model table for verify and for the swap's locks.
type table struct {
	name string
	key  []string // primary-key columns, for ordering and reporting differences
}

// write applies decoded events to the model's tables in schema within tx; in bulk mode
// with kept, applyBulk records there what a latestItems keeps.
func (m *Model) write(ctx context.Context, tx pgx.Tx, schema string, evs []decoded, bulk bool, kept *bulkKept) error {
	if bulk && m.applyBulk != nil {
		return m.applyBulk(ctx, tx, schema, evs, kept)
	}
	b := &pgx.Batch{}
	m.queue(b, schema, evs, bulk)
	return sendBatch(ctx, tx, b)
}

// Name returns the model's name ("workspaces", "accounts").
func (m *Model) Name() string { return m.name }

// Schema returns the PostgreSQL schema holding the model's live tables.
func (m *Model) Schema() string { return "proj_" + m.name }

// Tables returns the names of the model's tables (the checkpoint first).
func (m *Model) Tables() []string {
	out := make([]string, len(m.tables))
	for i, t := range m.tables {
		out[i] = t.name
	}
	return out
}

func (m *Model) migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations/"+m.name)
	if err != nil {
		panic(fmt.Sprintf("projections: migrations of %s: %v", m.name, err)) // embedded: cannot fail
	}
	return sub
}

var models = []*Model{workspacesModel, accountsModel}

// Models returns every read model.
func Models() []*Model { return append([]*Model(nil), models...) }

// ModelNamed returns the read model called name.
func ModelNamed(name string) (*Model, error) {
	for _, m := range models {
		if m.name == name {
			return m, nil
		}
	}
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.name
	}
	return nil, fmt.Errorf("projections: unknown model %q (known: %s)", name, strings.Join(names, ", "))
}

// Migrate creates or upgrades the live tables of every model. The projector does it for
// its own model; call it before serving Queries from a fresh database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	for _, m := range models {
		if err := migrateSchema(ctx, pool, m, m.Schema()); err != nil {
			return err
		}
	}
	return nil
}

// migrateSchema applies the model's migrations inside schema, creating it if needed. The
// migration record (schema_migrations) lives in the same schema, so it travels with the
// tables when a rebuilt schema is swapped in.
func migrateSchema(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string) error {
	if err := pgmigrate.Apply(ctx, schemaScoped{pool, schema}, "projections."+m.name, m.migrations()); err != nil {
		return fmt.Errorf("migrate projection %s in %s: %w", m.name, schema, err)
	}
	return nil
}

// schemaScoped begins transactions whose search_path is one schema, creating the schema
// first under the migration lock.
type schemaScoped struct {
	pool   *pgxpool.Pool
	schema string
}

func (s schemaScoped) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	ident := pgx.Identifier{s.schema}.Sanitize()
	for _, q := range []string{
		`SELECT pg_advisory_xact_lock(hashtext('pgmigrate'))`,
		`CREATE SCHEMA IF NOT EXISTS ` + ident,
		`SET LOCAL search_path TO ` + ident,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			_ = tx.Rollback(ctx)
			return nil, fmt.Errorf("prepare schema %s: %w", s.schema, err)
		}
	}
	return tx, nil
}

// Checkpoint returns the position up to which the named model has applied the global
// order: every event at or before it is in the model's tables, none after it. A model
// whose tables do not exist yet is at eventstore.Start. The notifier publishes only up to
// the workspaces model's checkpoint, so reads see what was notified.
func Checkpoint(ctx context.Context, db Querier, model string) (eventstore.Position, error) {
	m, err := ModelNamed(model)
	if err != nil {
		return eventstore.Position{}, err
	}
	cp, err := readCheckpoint(ctx, db, m.Schema(), false)
	if err != nil {
		return eventstore.Position{}, err
	}
	return cp.Position, nil
}

// checkpointRow is a model's stored checkpoint.
type checkpointRow struct {
	Position    eventstore.Position
	Events      int64
	LastEventAt time.Time // zero if no event was processed
	// InlineFrom: inline events (written into the model by their own append) of
	// transactions from this id on are already applied; see 003_inline_from.sql.
	InlineFrom uint64
}

// readCheckpoint reads the checkpoint of the model tables in schema; forUpdate locks it.
// Missing tables read as the start.
func readCheckpoint(ctx context.Context, db Querier, schema string, forUpdate bool) (checkpointRow, error) {
	q := `SELECT commit_pos, prepare_pos, events, last_event_at, inline_from FROM ` + pgx.Identifier{schema, "checkpoint"}.Sanitize()
	if forUpdate {
		q += ` FOR UPDATE`
	}
	var c, p, from int64
	var cp checkpointRow
	var last *time.Time
	if err := db.QueryRow(ctx, q).Scan(&c, &p, &cp.Events, &last, &from); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
			return checkpointRow{}, nil // undefined table or schema: nothing applied yet
		}
		return checkpointRow{}, fmt.Errorf("read checkpoint of %s: %w", schema, err)
	}
	cp.Position = eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}
	cp.InlineFrom = uint64(from)
	if last != nil {
		cp.LastEventAt = *last
	}
	return cp, nil
}

// toInt64 converts a position component for storage; PostgreSQL and EventStoreDB
// positions stay far below 2^63.
func toInt64(v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("position component %d exceeds the stored range", v)
	}
	return int64(v), nil
}

// decoded is a recorded event with its decoded domain event.
type decoded struct {
	rec   *eventstore.RecordedEvent
	event domain.Event
}
