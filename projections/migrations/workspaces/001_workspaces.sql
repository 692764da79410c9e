-- The workspace read model: workspaces, their members, the latest version of every item
-- (tombstones included) and every stored item version. Created inside the model's own
-- schema (search_path is set by the caller), together with the model's checkpoint, so a
-- rebuilt schema swaps in with its checkpoint in one rename.

CREATE TABLE checkpoint (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    commit_pos    bigint NOT NULL DEFAULT 0,
    prepare_pos   bigint NOT NULL DEFAULT 0,
    events        bigint NOT NULL DEFAULT 0,   -- events processed (applied or ignored)
    last_event_at timestamptz                  -- RecordedAt of the last processed event
);
INSERT INTO checkpoint DEFAULT VALUES;

CREATE TABLE workspaces (
    workspace_id uuid PRIMARY KEY,
    name         text NOT NULL,
    owner_id     uuid NOT NULL,
    is_shared    boolean NOT NULL,
    is_encrypted boolean NOT NULL,
    created_at   timestamptz NOT NULL,
    version      bigint NOT NULL DEFAULT 0,    -- current workspaceVersion
    used_bytes   bigint NOT NULL DEFAULT 0,    -- size of the live items
    committed_at timestamptz                   -- CommittedAt of the last commit
);
CREATE INDEX workspaces_owner_idx ON workspaces (owner_id);

CREATE TABLE members (
    workspace_id   uuid NOT NULL,
    user_id        uuid NOT NULL,
    name           text NOT NULL,              -- the member's own name for the workspace
    parent_item_id bigint,                     -- where the member mounts it
    removed        boolean NOT NULL DEFAULT false,
    stream_version bigint NOT NULL,            -- version guard: last applied event of the stream
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX members_user_idx ON members (user_id) WHERE NOT removed;

CREATE TABLE items (
    workspace_id   uuid NOT NULL,
    item_id        bigint NOT NULL,
    version        bigint NOT NULL,
    ws_version     bigint NOT NULL,            -- workspaceVersion of the commit that stored it
    device_id      uuid NOT NULL,
    parent_id      bigint,
    parent_version bigint,
    temp_id        bigint,
    status         text NOT NULL,
    modified_at    timestamptz NOT NULL,
    checksum       bigint NOT NULL,
    chunks         text[] NOT NULL,
    size           bigint NOT NULL,
    is_folder      boolean NOT NULL,
    filename       text NOT NULL,
    mimetype       text NOT NULL,
    PRIMARY KEY (workspace_id, item_id)
);

CREATE TABLE item_history (LIKE items INCLUDING DEFAULTS);
ALTER TABLE item_history ADD PRIMARY KEY (workspace_id, item_id, version);
-- getChangesSince: the items changed after a workspace version, in version order.
CREATE INDEX item_history_ws_version_idx ON item_history (workspace_id, ws_version, item_id);
