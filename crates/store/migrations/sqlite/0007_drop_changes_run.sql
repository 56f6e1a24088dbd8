-- A run's changes are found by their idempotency keys, which start with the run's id and
-- a slash (checked when a change is journaled); one index fewer to update per change.
DROP INDEX IF EXISTS changes_run;
