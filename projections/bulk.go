package projections

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
)

// dropBulkIndexes drops the constraints and indexes of the model's bulk-loaded tables in
// schema and returns the statements that build them again, as the migrations made them.
func dropBulkIndexes(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string) (restore []string, err error) {
	var drop []string
	for _, t := range m.bulkLoaded {
		qt := pgx.Identifier{schema, t}.Sanitize()
		rows, err := pool.Query(ctx, `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conrelid = $1::regclass AND contype IN ('p', 'u') ORDER BY conname`, qt)
		if err != nil {
			return nil, fmt.Errorf("constraints of %s: %w", qt, err)
		}
		var constraints []string
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				rows.Close()
				return nil, err
			}
			constraints = append(constraints, name)
			drop = append(drop, `ALTER TABLE `+qt+` DROP CONSTRAINT `+pgx.Identifier{name}.Sanitize())
			restore = append(restore, `ALTER TABLE `+qt+` ADD CONSTRAINT `+pgx.Identifier{name}.Sanitize()+` `+def)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("constraints of %s: %w", qt, err)
		}
		rows, err = pool.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes
			WHERE schemaname = $1 AND tablename = $2 AND NOT indexname = ANY($3) ORDER BY indexname`, schema, t, constraints)
		if err != nil {
			return nil, fmt.Errorf("indexes of %s: %w", qt, err)
		}
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				rows.Close()
				return nil, err
			}
			drop = append(drop, `DROP INDEX `+pgx.Identifier{schema, name}.Sanitize())
			restore = append(restore, def)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("indexes of %s: %w", qt, err)
		}
	}
	for _, q := range drop {
		if _, err := pool.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare bulk load: %s: %w", q, err)
		}
	}
	return restore, nil
}

// buildIndexes runs the statements dropBulkIndexes returned, in one transaction with
// enough memory for the sorts of a large history.
func buildIndexes(ctx context.Context, pool *pgxpool.Pool, restore []string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("build indexes: begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	for _, q := range append([]string{`SET LOCAL maintenance_work_mem = '256MB'`}, restore...) {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("build indexes: %s: %w", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("build indexes: commit: %w", err)
	}
	return nil
}

// finishBulk completes the model's tables in schema after a bulk replay (see
// Model.finishBulk).
func finishBulk(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string) error {
	if m.finishBulk == nil {
		return nil
	}
	if err := m.finishBulk(ctx, pool, schema); err != nil {
		return fmt.Errorf("finish the bulk load of %s: %w", m.name, err)
	}
	return nil
}

// applyWorkspacesBulk is applyWorkspaces in bulk mode: a replay from the start into
// fresh tables, where the checkpoint alone rules out repeats. Item versions are copied
// into item_history (COPY; the table has no index to maintain); items is not written
// here but filled from item_history once the replay is done (fillItems), which gives
// the same rows as upserting the latest version batch by batch. Workspaces and members
// are written as applyWorkspaces writes them.
func applyWorkspacesBulk(ctx context.Context, tx pgx.Tx, evs []decoded) error {
	b := &pgx.Batch{}
	var ws wsUpdates
	var rows historyRows
	for _, d := range evs {
		switch e := d.event.(type) {
		case domain.Committed:
			for _, o := range e.Items {
				if o.Stored && o.Metadata != nil && o.Metadata.ID != nil {
					rows.rows = append(rows.rows, historyRow{e.WorkspaceID, e.WorkspaceVersion, o.Metadata})
				}
			}
			ws.add(e)
		default:
			queueWorkspaceEvent(b, d)
		}
	}
	ws.queue(b)
	if err := sendBatch(ctx, tx, b); err != nil {
		return err
	}
	if len(rows.rows) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"item_history"}, itemColumnNames, &rows); err != nil {
			return fmt.Errorf("copy %d item versions: %w", len(rows.rows), err)
		}
	}
	return nil
}

// itemColumnNames are itemColumns, for COPY.
var itemColumnNames = []string{"workspace_id", "item_id", "version", "ws_version", "device_id", "parent_id",
	"parent_version", "temp_id", "status", "modified_at", "checksum", "chunks", "size", "is_folder", "filename", "mimetype"}

// historyRow is one stored item version.
type historyRow struct {
	ws        uuid.UUID
	wsVersion int64
	md        *domain.ItemMetadata
}

// historyRows feeds COPY (pgx.CopyFromSource) with item_history rows written as
// itemRows writes them.
type historyRows struct {
	rows []historyRow
	next int
}

func (r *historyRows) Next() bool { r.next++; return r.next <= len(r.rows) }

func (r *historyRows) Err() error { return nil }

func (r *historyRows) Values() ([]any, error) {
	h := r.rows[r.next-1]
	md := h.md
	var parent *int64
	if md.ParentID != nil {
		v := int64(*md.ParentID)
		parent = &v
	}
	chunks := make([]string, len(md.Chunks))
	for i, c := range md.Chunks {
		chunks[i] = pgText(c)
	}
	return []any{[16]byte(h.ws), int64(*md.ID), md.Version, h.wsVersion, [16]byte(md.DeviceID), parent,
		md.ParentVersion, md.TempID, pgText(string(md.Status)), md.ModifiedAt, md.Checksum, chunks, md.Size,
		md.IsFolder, pgText(md.Filename), pgText(md.Mimetype)}, nil
}

// fillItems sets the items table in schema from item_history after a bulk replay: for
// every item its highest stored version, which is what upserting each batch's latest
// version over an older one leaves (an item's versions are unique: item_history's
// primary key).
func fillItems(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fill items of %s: begin: %w", schema, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	items, history := pgx.Identifier{schema, "items"}.Sanitize(), pgx.Identifier{schema, "item_history"}.Sanitize()
	for _, q := range []string{
		`SET LOCAL work_mem = '256MB'`,
		`TRUNCATE ` + items,
		`INSERT INTO ` + items + ` (` + itemColumns + `) SELECT DISTINCT ON (workspace_id, item_id) ` + itemColumns +
			` FROM ` + history + ` ORDER BY workspace_id, item_id, version DESC`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("fill items of %s: %w", schema, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("fill items of %s: commit: %w", schema, err)
	}
	return nil
}
