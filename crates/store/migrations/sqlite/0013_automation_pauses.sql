-- Pauses of automation: while a row covers a playbook (its own name, or `*` for all automation),
-- its change steps are recorded as shadow, not applied. Lifting a pause deletes its row; both
-- switches are in the audit trail.
CREATE TABLE automation_pauses (
    scope TEXT PRIMARY KEY,
    paused_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;
