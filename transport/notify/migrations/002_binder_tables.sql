-- The membership binder's own view of who is a member of which workspace and which
-- devices each user has, as of its checkpoint (notify_checkpoints row of the same name):
-- every row changes in the transaction that moves that checkpoint. The binder restores
-- every device queue's bindings from these tables after a broker restart, and binds a
-- newly registered device to every workspace its user is a member of.
CREATE TABLE binder_members (
    binder    text NOT NULL,
    workspace uuid NOT NULL,
    user_id   uuid NOT NULL,
    PRIMARY KEY (binder, user_id, workspace)
);

CREATE TABLE binder_devices (
    binder  text NOT NULL,
    user_id uuid NOT NULL,
    device  uuid NOT NULL,
    PRIMARY KEY (binder, user_id, device)
);

-- One row per binder whose tables are built from the start of the store. A binder that
-- finds a checkpoint but no row here (it ran before these tables existed) follows the
-- store again from the start to fill them; its broker work is idempotent.
CREATE TABLE binder_tables (
    binder     text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
