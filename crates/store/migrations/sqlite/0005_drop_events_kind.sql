-- No query reads events by kind; the index only cost a B-tree insert per event.
DROP INDEX IF EXISTS events_kind;
