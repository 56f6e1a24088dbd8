-- The directory of principals: people with a password (argon2id, PHC string) and API tokens
-- (only the SHA-256 of the token is kept). Roles are a JSON array of role names. A token is
-- never deleted: revoking it sets `revoked_at`, so the audit trail's token ids stay resolvable.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    roles TEXT NOT NULL,
    password_hash TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    roles TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
