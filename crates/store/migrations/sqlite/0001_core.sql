CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    severity TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX events_kind ON events(kind, seq);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    playbook TEXT NOT NULL,
    playbook_hash TEXT NOT NULL,
    parent_run TEXT,
    status TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    error TEXT,
    owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_event ON runs(event_id);
CREATE INDEX runs_created ON runs(created_at);
CREATE INDEX runs_unfinished ON runs(status, created_at) WHERE status IN ('pending', 'running');
CREATE TABLE steps (
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
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    step_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    with_json TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    inverse TEXT NOT NULL,
    trust TEXT NOT NULL,
    guardrails TEXT NOT NULL,
    allowed_by TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX changes_run ON changes(run_id, seq);
CREATE INDEX changes_recent ON changes(action, created_at);
CREATE TABLE cursors (
    source TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
) WITHOUT ROWID;
