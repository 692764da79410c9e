-- inline: the store's Inline hook (read models written in the append's own transaction)
-- ran for this event, so followers that keep those read models need not apply it again.
-- A constant default: PostgreSQL adds the column without rewriting the table.
ALTER TABLE es_events ADD COLUMN inline boolean NOT NULL DEFAULT false;
