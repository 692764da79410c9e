-- inline_from: events the append wrote into this model itself (RecordedEvent.Inline)
-- are skipped by the projector when their transaction id (Position.Commit) is at least
-- inline_from. A rebuild's swap sets it to its own transaction id: inline events of
-- older transactions may have gone into the tables it replaced, so the projector
-- applies those again (every write is idempotent).
ALTER TABLE checkpoint ADD COLUMN inline_from bigint NOT NULL DEFAULT 0;
