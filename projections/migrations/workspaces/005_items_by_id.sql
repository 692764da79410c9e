-- Item ids are unique across workspaces (PROTOCOL.md §8 rule 5): createShareProposal
-- finds the workspace of an item the caller's personal workspace does not hold with one
-- lookup by id (is it nobody's, another user's, or a shared workspace's the caller is a
-- member of). The primary key (workspace_id, item_id) cannot serve a lookup by item_id
-- alone. Share moves delete the item's row in the source and insert it in the target,
-- so the index follows an item wherever its row is.
CREATE INDEX items_item_idx ON items (item_id);
