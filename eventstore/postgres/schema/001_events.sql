-- Streams: one row per stream. Appends lock the row (upsert or update) until commit, so
-- appends to one stream serialise while appends to different streams run in parallel.
-- version is the stream_pos of the stream's last event (0: none yet).
CREATE TABLE es_streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 0)
);

-- Events. stream_pos is gap-free per stream and follows commit order within a stream.
-- Global readers follow (tx_id, global_pos) and read only rows whose transaction is older
-- than every running one (tx_id < pg_snapshot_xmin(pg_current_snapshot())), so they
-- never pass an event that may still commit.
CREATE TABLE es_events (
    global_pos  bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id   text        NOT NULL,
    stream_pos  bigint      NOT NULL CHECK (stream_pos >= 1),
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    data        bytea       NOT NULL,
    metadata    bytea       NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, stream_pos),
    CONSTRAINT es_events_event_id_key UNIQUE (event_id)
);

CREATE INDEX es_events_horizon ON es_events (tx_id, global_pos);
