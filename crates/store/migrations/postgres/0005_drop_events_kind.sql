-- No query reads events by kind; the index only cost an insert per event.
DROP INDEX IF EXISTS events_kind;
