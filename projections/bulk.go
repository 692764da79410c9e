package projections

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/stacksync-es/syncservice/domain"
)

// bulkIndex is an index of a bulk-loaded table, dropped for the load: create builds it
// again as the migrations made it, attach (if set) turns it back into the table's
// primary key or unique constraint.
type bulkIndex struct {
	table          string
	create, attach string
}

// dropBulkIndexes drops the constraints and indexes of the model's bulk-loaded tables in
// schema and returns what builds them again.
func dropBulkIndexes(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string) ([]bulkIndex, error) {
	var drop []string
	var restore []bulkIndex
	for _, t := range m.bulkLoaded {
		qt := pgx.Identifier{schema, t}.Sanitize()
		// A constraint's index is built alone (CREATE UNIQUE INDEX takes a lock that lets
		// the other builds and readers of the table run) and attached to it afterwards.
		rows, err := pool.Query(ctx, `SELECT conname, contype = 'p', pg_get_indexdef(conindid) FROM pg_constraint
			WHERE conrelid = $1::regclass AND contype IN ('p', 'u') ORDER BY conname`, qt)
		if err != nil {
			return nil, fmt.Errorf("constraints of %s: %w", qt, err)
		}
		var constraints []string
		var name, def string
		var primary bool
		_, err = pgx.ForEachRow(rows, []any{&name, &primary, &def}, func() error {
			kind := "UNIQUE"
			if primary {
				kind = "PRIMARY KEY"
			}
			constraints = append(constraints, name)
			drop = append(drop, `ALTER TABLE `+qt+` DROP CONSTRAINT `+pgx.Identifier{name}.Sanitize())
			restore = append(restore, bulkIndex{table: t, create: def,
				attach: `ALTER TABLE ` + qt + ` ADD CONSTRAINT ` + pgx.Identifier{name}.Sanitize() + ` ` + kind +
					` USING INDEX ` + pgx.Identifier{name}.Sanitize()})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("constraints of %s: %w", qt, err)
		}
		rows, err = pool.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes
			WHERE schemaname = $1 AND tablename = $2 AND NOT indexname = ANY($3) ORDER BY indexname`, schema, t, constraints)
		if err != nil {
			return nil, fmt.Errorf("indexes of %s: %w", qt, err)
		}
		_, err = pgx.ForEachRow(rows, []any{&name, &def}, func() error {
			drop = append(drop, `DROP INDEX `+pgx.Identifier{schema, name}.Sanitize())
			restore = append(restore, bulkIndex{table: t, create: def})
			return nil
		})
		if err != nil {
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

// completeBulk finishes a bulk load into schema: it trims the tables (trimBulk), then
// completes them (fillBulk) and builds their indexes again, on two connections: the
// tables fillBulk fills and then their indexes on one, the other tables' indexes on
// the other. The trim runs alone first: in the fill's transaction its deletes' locks
// kept the other connection's index builds waiting until the fill committed, with a
// core idle. When the fill copies from latest (usable), it does not read the trimmed
// tables, so it starts at once and the trim runs before the other indexes instead.
// Constraints are attached to their indexes at the end.
func completeBulk(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string, restore []bulkIndex,
	latest *latestItems, log *slog.Logger) error {
	var filled, other []string
	var attach []string
	for _, ix := range restore {
		if slices.Contains(m.bulkFilled, ix.table) {
			filled = append(filled, ix.create)
		} else {
			other = append(other, ix.create)
		}
		if ix.attach != "" {
			attach = append(attach, ix.attach)
		}
	}
	trim := func(ctx context.Context) error {
		start := time.Now()
		if err := trimBulk(ctx, pool, m, schema); err != nil {
			return err
		}
		log.Info("trimmed the bulk-loaded tables", "took", time.Since(start).String())
		return nil
	}
	fromMemory := latest.usable()
	if !fromMemory {
		if err := trim(ctx); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		start := time.Now()
		if err := fillBulk(gctx, pool, m, schema, latest); err != nil {
			return err
		}
		log.Info("filled the bulk-loaded tables", "took", time.Since(start).String(), "from_memory", fromMemory)
		start = time.Now()
		if err := execTx(gctx, pool, filled); err != nil {
			return err
		}
		log.Info("built the filled tables' indexes", "took", time.Since(start).String())
		return nil
	})
	g.Go(func() error {
		if fromMemory {
			if err := trim(gctx); err != nil {
				return err
			}
		}
		start := time.Now()
		if err := execTx(gctx, pool, other); err != nil {
			return err
		}
		log.Info("built the other indexes", "took", time.Since(start).String())
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return execTx(ctx, pool, attach)
}

// execTx runs statements in one transaction, with enough memory for the sorts of index
// builds over a large history.
func execTx(ctx context.Context, pool *pgxpool.Pool, statements []string) error {
	if len(statements) == 0 {
		return nil
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	for _, q := range append([]string{`SET LOCAL maintenance_work_mem = '256MB'`}, statements...) {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// finishBulk completes the model's tables in schema after a bulk replay: trimBulk, then
// fillBulk (from latest when it is usable).
func finishBulk(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string, latest *latestItems) error {
	if err := trimBulk(ctx, pool, m, schema); err != nil {
		return err
	}
	return fillBulk(ctx, pool, m, schema, latest)
}

// trimBulk runs the model's trimBulk statements on schema in one transaction.
func trimBulk(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string) error {
	if m.trimBulk == nil {
		return nil
	}
	if err := execTx(ctx, pool, m.trimBulk(schema)); err != nil {
		return fmt.Errorf("trim the bulk load of %s: %w", m.name, err)
	}
	return nil
}

// fillBulk runs the model's finishBulk on schema (see Model.finishBulk).
func fillBulk(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string, latest *latestItems) error {
	if m.finishBulk == nil {
		return nil
	}
	if err := m.finishBulk(ctx, pool, schema, latest); err != nil {
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
// With kept, it records there what latestItems keeps once the transaction commits.
func applyWorkspacesBulk(ctx context.Context, tx pgx.Tx, schema string, evs []decoded, kept *bulkKept) error {
	t := qualifier(schema)
	b := &pgx.Batch{}
	var ws wsUpdates
	var rows []historyRow
	for _, d := range evs {
		switch e := d.event.(type) {
		case domain.Committed:
			for _, o := range e.Items {
				if o.Stored && o.Metadata != nil && o.Metadata.ID != nil {
					rows = append(rows, historyRow{e.WorkspaceID, e.WorkspaceVersion, o.Metadata})
				}
			}
			ws.add(e.WorkspaceID, e.WorkspaceVersion, e.WorkspaceUsed, e.CommittedAt)
		case domain.ItemsMovedOut:
			queueMovedOut(b, t, &e, true) // the history rows go in fillItems
			if kept != nil {
				for _, id := range e.ItemIDs {
					kept.movedOut = append(kept.movedOut, itemKey{e.WorkspaceID, id})
				}
			}
			ws.add(e.WorkspaceID, e.WorkspaceVersion, e.WorkspaceUsed, e.At)
		case domain.ItemsMovedIn:
			for i := range e.Items {
				for j := range e.Items[i].Versions {
					rows = append(rows, historyRow{e.WorkspaceID, e.WorkspaceVersion, &e.Items[i].Versions[j]})
				}
			}
			queueMovedInMount(b, t, d)
			ws.add(e.WorkspaceID, e.WorkspaceVersion, e.WorkspaceUsed, e.At)
		default:
			queueWorkspaceEvent(b, t, d)
		}
	}
	ws.queue(b, workspacesStatements(schema))
	if err := sendBatch(ctx, tx, b); err != nil {
		return err
	}
	if len(rows) > 0 {
		return copyHistory(ctx, tx, schema, rows, kept)
	}
	return nil
}

// historyRow is one stored item version.
type historyRow struct {
	ws        uuid.UUID
	wsVersion int64
	md        *domain.ItemMetadata
}

// fillItems sets the items table in schema from item_history after a bulk replay and
// its trim (the versions of items that moved out deleted): for every item its highest
// stored version, which is what upserting each batch's latest version over an older one
// leaves. An item's versions are unique (item_history's primary key, which a rebuild
// builds; a verify would report a version stored twice as differing rows). A hash
// anti-join: sorting the whole history took ~1.7 times as long. When latest is usable
// (it kept every version the replay committed) the same rows are copied from it
// instead (copyLatestItems).
func fillItems(ctx context.Context, pool *pgxpool.Pool, schema string, latest *latestItems) error {
	if latest.usable() {
		return copyLatestItems(ctx, pool, schema, latest)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fill items of %s: begin: %w", schema, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	if err := execIn(ctx, tx, schema, fillItemsSQL(schema)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("fill items of %s: commit: %w", schema, err)
	}
	return nil
}

// fillItemsTx is the trim and fill of a bulk replay within tx: it first deletes the
// versions of items that moved out of their workspace, which a bulk replay copied
// before it met the move, then fills items as fillItems does.
func fillItemsTx(ctx context.Context, tx pgx.Tx, schema string) error {
	return execIn(ctx, tx, schema, append([]string{deleteMovedOutSQL(schema)}, fillItemsSQL(schema)...))
}

// fillItemsSQL is what fillItems runs.
func fillItemsSQL(schema string) []string {
	items, history := pgx.Identifier{schema, "items"}.Sanitize(), pgx.Identifier{schema, "item_history"}.Sanitize()
	return []string{
		`SET LOCAL work_mem = '256MB'`,
		`TRUNCATE ` + items,
		`INSERT INTO ` + items + ` (` + itemColumns + `) SELECT ` + itemColumns + ` FROM ` + history + ` h
			WHERE NOT EXISTS (SELECT FROM ` + history + ` n
				WHERE n.workspace_id = h.workspace_id AND n.item_id = h.item_id AND n.version > h.version)`,
	}
}

func execIn(ctx context.Context, tx pgx.Tx, schema string, statements []string) error {
	for _, q := range statements {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("fill items of %s: %w", schema, err)
		}
	}
	return nil
}
