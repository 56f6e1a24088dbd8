CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX cases_updated ON cases(updated_at);
CREATE TABLE case_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT UNIQUE,
    body TEXT NOT NULL
);
CREATE INDEX case_entries_case ON case_entries(case_id, seq);
