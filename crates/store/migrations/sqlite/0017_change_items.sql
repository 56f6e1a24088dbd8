-- How many targets a change changes: the items of a set-level change (`*_many`), else 1.
-- Rate and baseline guardrails count each of them as one change.
ALTER TABLE changes ADD COLUMN items INTEGER NOT NULL DEFAULT 1;
