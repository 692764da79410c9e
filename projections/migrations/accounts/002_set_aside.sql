-- Events the projector could not apply (undecodable, or refused by PostgreSQL: a
-- constraint, a value over a limit), set aside so that every other event is still
-- applied; the checkpoint moves past them. Kept in the model's schema, so a rebuild
-- brings its own list (the events that still cannot be applied). Not compared by verify.
CREATE TABLE set_aside (
    commit_pos     bigint NOT NULL,
    prepare_pos    bigint NOT NULL,
    stream_id      text NOT NULL,
    stream_version bigint NOT NULL,
    event_type     text NOT NULL,
    error          text NOT NULL,
    set_aside_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (commit_pos, prepare_pos)
);
