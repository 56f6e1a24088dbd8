-- Entries without a copy of the previous entry's hash (verification reads it from the
-- previous row) and with their own hash as 32 bytes: a sixth of each entry. A hash that is
-- not hex (an edited row) is kept as it was, for verification to report.
CREATE TABLE audit_chained (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO audit_chained
    SELECT seq, at, kind, actor, subject, detail, coalesce(unhex(hash), CAST(hash AS BLOB)) FROM audit;
DROP TABLE audit;
ALTER TABLE audit_chained RENAME TO audit;
