-- Event ids are unique per source: one source cannot make another's alert a duplicate by
-- sending its id first. A run names its event by both.
CREATE TABLE events_by_source (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    severity TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (source, id)
);
INSERT INTO events_by_source (seq, id, kind, source, time_ms, severity, body, received_at)
    SELECT seq, id, kind, source, time_ms, severity, body, received_at FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_by_source RENAME TO events;
CREATE INDEX events_id ON events(id, seq);

ALTER TABLE runs ADD COLUMN event_source TEXT NOT NULL DEFAULT '';
UPDATE runs SET event_source = COALESCE((SELECT e.source FROM events e WHERE e.id = runs.event_id), '');
DROP INDEX IF EXISTS runs_event;
CREATE INDEX runs_event ON runs(event_id, event_source);
