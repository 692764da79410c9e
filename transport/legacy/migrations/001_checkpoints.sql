-- Positions in the event store's global order up to which a legacy publisher (package
-- transport/legacy) has published every commit to the legacy StackSync broker, confirmed.
-- A row only moves forward; reset it by hand (DELETE) after restoring the store from a dump.
CREATE TABLE legacy_checkpoints (
    name        text PRIMARY KEY,
    commit_pos  bigint NOT NULL CHECK (commit_pos >= 0),
    prepare_pos bigint NOT NULL CHECK (prepare_pos >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
