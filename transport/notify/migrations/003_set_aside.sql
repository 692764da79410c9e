-- Events a follower of package notify (the notifier, the membership binder) could never
-- handle and moved past, so that every other workspace keeps being served: a commit
-- that does not decode, a notification the broker refused again and again (nack) or
-- that is bigger than the broker accepts, a membership event that does not decode.
-- One row per (follower, event); the follower's checkpoint is past the event. An
-- operator inspects them (notify.ListSetAside) and resolves each by hand (see
-- docs/operations.md), then deletes the row.
CREATE TABLE notify_set_aside (
    follower       text NOT NULL,
    commit_pos     bigint NOT NULL,
    prepare_pos    bigint NOT NULL,
    event_id       uuid NOT NULL,
    stream         text NOT NULL,
    stream_version bigint NOT NULL,
    event_type     text NOT NULL,
    error          text NOT NULL,
    attempts       integer NOT NULL,
    set_aside_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower, commit_pos, prepare_pos)
);
