-- Every playbook version a run used, by the SHA-256 of its source (runs.playbook_hash), so a
-- resumed run executes exactly what it was planned with. Written insert-if-absent when a run
-- starts; never updated or deleted. `body` is the version as JSON (source, sub-playbook
-- hashes, guardrail set hash).
CREATE TABLE playbook_versions (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    body JSON NOT NULL,
    created_at BIGINT NOT NULL
);
