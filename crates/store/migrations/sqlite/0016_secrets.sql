-- Secrets at rest: connector credentials sealed with XChaCha20-Poly1305 (the name as associated
-- data) under a key kept outside the store; `key_id` names that key. No value is ever stored in
-- the clear, and setting or deleting one is audited by name.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    rotated_at INTEGER
) WITHOUT ROWID;
