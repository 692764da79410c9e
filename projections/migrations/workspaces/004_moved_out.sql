-- Items that left a workspace by a share (ItemsMovedOut, PROTOCOL.md §8): the source
-- workspace's versions and history of these items are gone from items and item_history
-- (they live on in the shared workspace), and getChangesSince pages of the source whose
-- range includes ws_version list them in movedOut. The key orders them as item_history's
-- ws_version index orders item versions, so a page walk reads both in one order.
CREATE TABLE moved_out (
    workspace_id    uuid NOT NULL,             -- the source workspace
    ws_version      bigint NOT NULL,           -- its workspaceVersion of the move
    item_id         bigint NOT NULL,
    to_workspace_id uuid NOT NULL,             -- the shared workspace it moved to
    PRIMARY KEY (workspace_id, ws_version, item_id)
);
-- Writes of item versions skip items that left the workspace (a replayed older commit
-- must not bring them back): one lookup by item.
CREATE INDEX moved_out_item_idx ON moved_out (workspace_id, item_id);
