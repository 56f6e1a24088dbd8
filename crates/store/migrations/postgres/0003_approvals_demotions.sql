CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    playbook TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    body JSON NOT NULL
);
CREATE INDEX approvals_run ON approvals (run_id, key);
CREATE INDEX approvals_status ON approvals (status, created_at);
CREATE INDEX approvals_created ON approvals (created_at);
CREATE TABLE demotions (
    playbook TEXT NOT NULL,
    step TEXT NOT NULL,
    body JSON NOT NULL,
    PRIMARY KEY (playbook, step)
);
