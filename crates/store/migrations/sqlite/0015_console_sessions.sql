-- Console sessions: the cookie holds 256 random bits; only their SHA-256 is kept here. A session
-- ends at `expires_at` (absolute), after `idle_ms` without a request (checked against
-- `last_seen_at`), or at logout (the row is deleted, audited).
CREATE TABLE console_sessions (
    hash TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    principal TEXT NOT NULL,
    via TEXT NOT NULL,
    client TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Failed sign-ins per client address (whatever the user name), for throttling guessing from
-- one address; old rows are pruned as new ones are written.
CREATE TABLE login_failures (
    client TEXT NOT NULL,
    name TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX login_failures_by_client ON login_failures (client, at);
