-- The engine acts on an approval only once its decision entries are found in the trail:
-- an index over the approval entries alone (a few per approval), so no other entry pays
-- for it.
CREATE INDEX audit_approvals ON audit (subject) WHERE kind LIKE 'approval.%';
