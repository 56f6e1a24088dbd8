-- Time-boxed changes: when the engine reverts a change (a step's `expires:`), in Unix ms.
-- The index holds only changes still applied with an expiry, which the scheduler reads in
-- order of their time.
ALTER TABLE changes ADD COLUMN expires_at INTEGER;
CREATE INDEX changes_expiring ON changes (expires_at) WHERE expires_at IS NOT NULL AND status = 'applied';

-- The guardrail files in force, by the hash playbook versions record (`guardrails_hash`):
-- written insert-if-absent, never updated. `body` is the set as JSON (each file's name and text).
CREATE TABLE guardrail_sets (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
