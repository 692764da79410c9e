package follow

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Table is a checkpoint table of followers: a row (name, commit_pos, prepare_pos,
// updated_at) per follower, created by its owner's migrations (the notifier's and
// binder's notify_checkpoints). Save only ever moves a row forward, so a deposed leader
// finishing a batch late never rewinds its successor.
type Table struct {
	// Name is the table's (trusted, constant) SQL name.
	Name string
}

// Querier is what Table needs of a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Load returns the saved position of the follower name, eventstore.Start if it has none.
func (t Table) Load(ctx context.Context, db Querier, name string) (eventstore.Position, error) {
	var c, p int64
	err := db.QueryRow(ctx, `SELECT commit_pos, prepare_pos FROM `+t.Name+` WHERE name = $1`, name).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("load checkpoint %s: %w", name, err)
	}
	return eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}, nil
}

// saveSQL moves checkpoint $1 forward to ($2, $3), never back.
func (t Table) saveSQL() string {
	return `INSERT INTO ` + t.Name + ` (name, commit_pos, prepare_pos) VALUES ($1, $2, $3)
	ON CONFLICT (name) DO UPDATE SET commit_pos = EXCLUDED.commit_pos, prepare_pos = EXCLUDED.prepare_pos, updated_at = now()
	WHERE (` + t.Name + `.commit_pos, ` + t.Name + `.prepare_pos) < (EXCLUDED.commit_pos, EXCLUDED.prepare_pos)`
}

func posArgs(name string, pos eventstore.Position) ([]any, error) {
	if pos.Commit > math.MaxInt64 || pos.Prepare > math.MaxInt64 {
		return nil, fmt.Errorf("save checkpoint %s at %s: position out of range", name, pos)
	}
	return []any{name, int64(pos.Commit), int64(pos.Prepare)}, nil
}

// Save moves the follower's checkpoint forward to pos in tx (never back), and reports
// whether it moved.
func (t Table) Save(ctx context.Context, tx Querier, name string, pos eventstore.Position) (bool, error) {
	args, err := posArgs(name, pos)
	if err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, t.saveSQL(), args...)
	if err != nil {
		return false, fmt.Errorf("save checkpoint %s at %s: %w", name, pos, err)
	}
	return tag.RowsAffected() == 1, nil
}

// BatchSender is what Move needs of a pool or connection.
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Move is Save with nothing else to write: one pipelined round trip, an implicit
// transaction that does not wait for its WAL flush (a checkpoint lost with a database
// crash only makes the follower repeat work from an older one).
func (t Table) Move(ctx context.Context, db BatchSender, name string, pos eventstore.Position) error {
	args, err := posArgs(name, pos)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	b.Queue(t.saveSQL(), args...)
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save checkpoint %s at %s: %w", name, pos, err)
	}
	return nil
}
