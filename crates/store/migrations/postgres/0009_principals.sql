-- The directory of principals: people with a password (argon2id, PHC string) and API tokens
-- (only the SHA-256 of the token is kept). Roles are a JSON array of role names. A token is
-- never deleted: revoking it sets `revoked_at`, so the audit trail's token ids stay resolvable.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    roles JSON NOT NULL,
    password_hash TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    roles JSON NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);
