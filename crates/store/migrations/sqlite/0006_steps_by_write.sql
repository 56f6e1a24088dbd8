-- Step records in the order they are written (a rowid table) rather than clustered by run:
-- a commit then appends its records to the last pages instead of dirtying a page per run
-- in flight. The unique index keeps one record per run and key.
CREATE TABLE steps_by_write (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    step TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item INTEGER,
    action TEXT NOT NULL,
    with_json TEXT NOT NULL,
    decision TEXT NOT NULL,
    trust TEXT,
    guardrails TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (run_id, key)
);
INSERT INTO steps_by_write SELECT * FROM steps;
DROP TABLE steps;
ALTER TABLE steps_by_write RENAME TO steps;
