-- The accounts read model: users and their devices. Created inside the model's own
-- schema (search_path is set by the caller), together with the model's checkpoint.

CREATE TABLE checkpoint (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    commit_pos    bigint NOT NULL DEFAULT 0,
    prepare_pos   bigint NOT NULL DEFAULT 0,
    events        bigint NOT NULL DEFAULT 0,
    last_event_at timestamptz
);
INSERT INTO checkpoint DEFAULT VALUES;

CREATE TABLE users (
    user_id        uuid PRIMARY KEY,
    name           text NOT NULL,
    email          text NOT NULL,
    quota_limit    bigint NOT NULL,            -- bytes, 0 = no limit
    removed        boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    removed_at     timestamptz,
    stream_version bigint NOT NULL             -- version guard: last applied event of the stream
);
CREATE INDEX users_email_idx ON users (lower(email));

CREATE TABLE devices (
    device_id      uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    name           text NOT NULL,
    os             text NOT NULL,
    ip             text,
    app_version    text,
    registered_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    stream_version bigint NOT NULL
);
CREATE INDEX devices_user_idx ON devices (user_id);
