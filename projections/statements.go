package projections

import (
	"sync"
	"sync/atomic"
)

// workspacesSQL holds the statements of the workspaces model's per-commit writes for
// one schema, built once: built per commit (identifiers quoted, a kilobyte of SQL
// concatenated for each) they were a third of the bytes the inline hook allocated
// (BenchmarkInlineQueue).
type workspacesSQL struct {
	historyInsert, itemsUpsert, wsUpdate string
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

func buildWorkspacesSQL(schema string) *workspacesSQL {
	t := qualifier(schema)
	return &workspacesSQL{
		historyInsert: `INSERT INTO ` + t("item_history") + ` (` + itemColumns + `) ` + itemsFromUnnest + notMovedOut(t) +
			` ON CONFLICT (workspace_id, item_id, version) DO NOTHING`,
		itemsUpsert: `INSERT INTO ` + t("items") + ` AS items (` + itemColumns + `) ` + itemsFromUnnest + notMovedOut(t) + `
			ON CONFLICT (workspace_id, item_id) DO UPDATE SET version = EXCLUDED.version,
			ws_version = EXCLUDED.ws_version, device_id = EXCLUDED.device_id, parent_id = EXCLUDED.parent_id,
			parent_version = EXCLUDED.parent_version, temp_id = EXCLUDED.temp_id, status = EXCLUDED.status,
			modified_at = EXCLUDED.modified_at, checksum = EXCLUDED.checksum, chunks = EXCLUDED.chunks,
			size = EXCLUDED.size, is_folder = EXCLUDED.is_folder, filename = EXCLUDED.filename,
			mimetype = EXCLUDED.mimetype
			WHERE items.version < EXCLUDED.version`,
		wsUpdate: `UPDATE ` + t("workspaces") + ` w SET version = u.v, used_bytes = u.used, committed_at = u.at
		FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::timestamptz[]) AS u(id, v, used, at)
		WHERE w.workspace_id = u.id AND w.version < u.v`,
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
