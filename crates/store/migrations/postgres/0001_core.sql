CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    severity TEXT NOT NULL,
    body JSON NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX events_kind ON events (kind, seq);
CREATE TABLE runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    event_id TEXT COLLATE "C" NOT NULL,
    playbook TEXT NOT NULL,
    playbook_hash TEXT NOT NULL,
    parent_run TEXT COLLATE "C",
    status TEXT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    inputs JSON NOT NULL,
    error TEXT,
    owner TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_unfinished ON runs (created_at, id) WHERE status IN ('pending', 'running');
CREATE INDEX runs_owner ON runs (owner) WHERE status IN ('pending', 'running');
CREATE TABLE steps (
    run_id TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    step TEXT NOT NULL,
    seq BIGINT NOT NULL,
    item BIGINT,
    action TEXT NOT NULL,
    with_json JSON NOT NULL,
    decision TEXT NOT NULL,
    trust TEXT,
    guardrails JSON NOT NULL,
    status TEXT NOT NULL,
    output JSON NOT NULL,
    error TEXT,
    attempts BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE changes (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    run_id TEXT COLLATE "C" NOT NULL,
    step_key TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL UNIQUE,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    with_json JSON NOT NULL,
    before JSON NOT NULL,
    after JSON NOT NULL,
    inverse JSON NOT NULL,
    trust TEXT NOT NULL,
    guardrails JSON NOT NULL,
    allowed_by TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX changes_run ON changes (run_id, seq);
CREATE TABLE cursors (
    source TEXT COLLATE "C" PRIMARY KEY,
    "offset" BIGINT NOT NULL
);
