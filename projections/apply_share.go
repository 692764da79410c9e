package projections

import (
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
)

// The workspaces model's side of a share (PROTOCOL.md §8). ItemsMovedOut, in the source
// workspace W, removes the moved items' rows from W's items and item_history and notes
// each of them in moved_out at W's workspaceVersion of the move (getChangesSince pages
// of W list them in movedOut). ItemsMovedIn, in the shared workspace S, writes every
// moved version into S's item_history and the latest into items, all at S's
// workspaceVersion of the move-in, as a commit would: ids, versions and content intact,
// parents already re-rooted by the event. It also makes F the owner's mount point of S.
// Both move their workspace's version and used bytes like a commit. An item's rows
// never come back to a workspace it moved out of: every item write skips the items
// moved_out names (a replayed older commit of W changes nothing).

// notMovedOut is the condition, on itemsFromUnnest's rows u, that the item did not move
// out of the row's workspace.
func notMovedOut(t func(string) string) string {
	return ` WHERE NOT EXISTS (SELECT FROM ` + t("moved_out") + ` mo WHERE mo.workspace_id = u.ws AND mo.item_id = u.id)`
}

// queueMovedOut queues the writes of an ItemsMovedOut. In bulk mode (a replay into
// fresh tables without indexes) the items' rows are deleted once at the end
// (deleteMovedOut) instead of scanning the unindexed history for every move.
func queueMovedOut(b *pgx.Batch, t func(string) string, e *domain.ItemsMovedOut, bulk bool) {
	ids := make([]int64, len(e.ItemIDs))
	for i, id := range e.ItemIDs {
		ids[i] = int64(id)
	}
	b.Queue(`INSERT INTO `+t("moved_out")+` (workspace_id, ws_version, item_id, to_workspace_id)
		SELECT $1, $2, id, $4 FROM unnest($3::bigint[]) AS id ON CONFLICT DO NOTHING`,
		e.WorkspaceID, e.WorkspaceVersion, ids, e.ToWorkspaceID)
	if bulk {
		return
	}
	b.Queue(`DELETE FROM `+t("items")+` WHERE workspace_id = $1 AND item_id = ANY($2)`, e.WorkspaceID, ids)
	b.Queue(`DELETE FROM `+t("item_history")+` WHERE workspace_id = $1 AND item_id = ANY($2)`, e.WorkspaceID, ids)
}

// queueMovedInMount queues the member write of an ItemsMovedIn: the owner's mount point
// of S becomes F, unless the owner has one already (domain.Workspace does the same).
func queueMovedInMount(b *pgx.Batch, t func(string) string, d decoded) {
	e := d.event.(domain.ItemsMovedIn)
	b.Queue(`UPDATE `+t("members")+` m SET parent_item_id = $2, stream_version = $3
		FROM `+t("workspaces")+` w
		WHERE w.workspace_id = $1 AND m.workspace_id = $1 AND m.user_id = w.owner_id
		AND m.parent_item_id IS NULL AND m.stream_version < $3`,
		e.WorkspaceID, int64(e.FolderID), int64(d.rec.StreamVersion))
}

// deleteMovedOutSQL deletes, after a bulk replay, the item versions of items that moved
// out of their workspace, before items is filled from item_history.
func deleteMovedOutSQL(schema string) string {
	t := qualifier(schema)
	return `DELETE FROM ` + t("item_history") + ` h USING ` + t("moved_out") + ` mo
		WHERE h.workspace_id = mo.workspace_id AND h.item_id = mo.item_id AND EXISTS (SELECT FROM ` + t("moved_out") + `)`
}
