package projections

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// workspacesSQL holds the statements of the workspaces model's per-commit writes for
// one schema, built once: built per commit (identifiers quoted, a kilobyte of SQL
// concatenated for each) they were a third of the bytes the inline hook allocated
// (BenchmarkInlineQueue).
type workspacesSQL struct {
	// commitWrites writes a batch's item versions into item_history, each item's latest
	// into items, and moves its workspaces forward, in one statement.
	commitWrites string
	// wsUpdate moves workspaces forward alone (a bulk replay, which copies the items).
	wsUpdate string
}

// maxCachedSchemas bounds the schemas whose statements are kept: the live one and the
// few a rebuild fills; any beyond get theirs built per call.
const maxCachedSchemas = 16

var (
	workspacesSQLCache sync.Map // schema → *workspacesSQL
	cachedSchemas      atomic.Int32
)

// workspacesStatements returns schema's statements, built on first use.
func workspacesStatements(schema string) *workspacesSQL {
	if q, ok := workspacesSQLCache.Load(schema); ok {
		return q.(*workspacesSQL)
	}
	q := buildWorkspacesSQL(schema)
	if cachedSchemas.Add(1) <= maxCachedSchemas {
		workspacesSQLCache.Store(schema, q)
	}
	return q
}

// wsMoveForward is the update of workspaces from the unnest wu(id, v, used, at): a
// workspace's version, used bytes and commit time only move forward.
func wsMoveForward(t func(string) string, first int) string {
	return `UPDATE ` + t("workspaces") + fmt.Sprintf(` w SET version = wu.v, used_bytes = wu.used, committed_at = wu.at
	FROM unnest($%d::uuid[], $%d::bigint[], $%d::bigint[], $%d::timestamptz[]) AS wu(id, v, used, at)
	WHERE w.workspace_id = wu.id AND w.version < wu.v`, first, first+1, first+2, first+3)
}

// buildWorkspacesSQL builds schema's statements. commitWrites is one statement, not
// three (history, items, workspaces), because PostgreSQL's work per statement, not per
// row, was most of what an inline commit cost it: the statements' CPU per 1-item
// commit went from about 0.55-0.7 ms to 0.27-0.34 ms (docs/benchmarks.md,
// "PostgreSQL's work per commit"). u is materialized (referenced twice), so the
// moved_out lookup runs once per row; data-modifying CTEs run to completion whether
// or not the main statement reads them, and all of it sees the same snapshot: each
// CTE writes a table of its own.
func buildWorkspacesSQL(schema string) *workspacesSQL {
	t := qualifier(schema)
	return &workspacesSQL{
		commitWrites: `WITH u AS (` + itemsFromUnnest + notMovedOut(t) + `),
		h AS (INSERT INTO ` + t("item_history") + ` (` + itemColumns + `) SELECT ` + uColumns + ` FROM u
			ON CONFLICT (workspace_id, item_id, version) DO NOTHING),
		i AS (INSERT INTO ` + t("items") + ` AS items (` + itemColumns + `) SELECT ` + uColumns + ` FROM u WHERE u.latest
			ON CONFLICT (workspace_id, item_id) DO UPDATE SET version = EXCLUDED.version,
			ws_version = EXCLUDED.ws_version, device_id = EXCLUDED.device_id, parent_id = EXCLUDED.parent_id,
			parent_version = EXCLUDED.parent_version, temp_id = EXCLUDED.temp_id, status = EXCLUDED.status,
			modified_at = EXCLUDED.modified_at, checksum = EXCLUDED.checksum, chunks = EXCLUDED.chunks,
			size = EXCLUDED.size, is_folder = EXCLUDED.is_folder, filename = EXCLUDED.filename,
			mimetype = EXCLUDED.mimetype
			WHERE items.version < EXCLUDED.version)
		` + wsMoveForward(t, 18),
		wsUpdate: wsMoveForward(t, 1),
	}
}

// inlineLocks are the statements Inline queues before each model's writes, by model.
var inlineLocks sync.Map // *Model → string

// inlineLockSQL is lockTablesSQL of m's live data tables in ROW EXCLUSIVE mode, built once.
func inlineLockSQL(m *Model) string {
	if s, ok := inlineLocks.Load(m); ok {
		return s.(string)
	}
	s := lockTablesSQL(m.Schema(), m.tables[1:], "ROW EXCLUSIVE")
	inlineLocks.Store(m, s)
	return s
}
