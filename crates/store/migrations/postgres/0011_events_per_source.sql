-- Event ids are unique per source: one source cannot make another's alert a duplicate by
-- sending its id first. A run names its event by both.
ALTER TABLE events DROP CONSTRAINT events_id_key;
ALTER TABLE events ADD CONSTRAINT events_source_id_key UNIQUE (source, id);
CREATE INDEX events_id ON events (id, seq);

ALTER TABLE runs ADD COLUMN event_source TEXT NOT NULL DEFAULT '';
UPDATE runs SET event_source = e.source FROM events e WHERE e.id = runs.event_id;
DROP INDEX IF EXISTS runs_event;
CREATE INDEX runs_event ON runs (event_id, event_source);
