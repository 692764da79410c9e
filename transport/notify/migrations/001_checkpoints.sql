-- Positions in the event store's global order up to which a follower of package notify
-- (the notifier, the membership binder) has finished its broker work. A row only moves
-- forward; reset it by hand (DELETE) after restoring the event store from a dump.
CREATE TABLE notify_checkpoints (
    name        text PRIMARY KEY,
    commit_pos  bigint NOT NULL CHECK (commit_pos >= 0),
    prepare_pos bigint NOT NULL CHECK (prepare_pos >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
