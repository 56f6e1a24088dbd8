//! PostgreSQL store: a connection pool, one transaction per method, leases for several workers.
//!
//! Workers share one database (optionally one schema of it). Each [`PgStore`] is one worker:
//! runs it creates are leased to it, and [`Store::claim_runs`] takes over unfinished top-level
//! runs whose lease expired with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never block
//! on or take each other's rows. Lease times are read from the database clock, so workers on
//! hosts with skewed clocks still agree on when a lease has expired.
//!
//! JSON columns use PostgreSQL's `json` type, not `jsonb`: it keeps documents as written (key
//! order, which the workspace preserves, and `\u0000` in strings, which `jsonb` rejects and an
//! ingested event may well contain). Nothing queries inside them.

use crate::audit;
use crate::codec::parse;
use crate::{
    Accepted, ApprovalFilter, ChangeHistory, Counts, Cursor, Incoming, Result, RunFilter, StatRow,
    Store, StoreError,
};
use async_trait::async_trait;
use belay_model::{
    ApprovalRecord, AuditDraft, AuditEntry, CaseFile, CaseOp, CaseOutcome, CaseRecord, CaseStatus,
    ChangeRecord, ChangeStatus, Demotion, Event, RunRecord, RunStatus, StepRecord, now_ms,
};
use deadpool_postgres::{
    GenericClient, HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
    Transaction,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::types::{FromSql, Json, ToSql};
use tokio_postgres::{NoTls, Row};

/// How to connect the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Schema holding belay's tables, created if missing; `None` uses the connection's default
    /// `search_path` (normally `public`).
    pub schema: Option<String>,
    /// How long a claimed run stays leased without renewal.
    pub lease_ms: i64,
    /// Most connections held open at once.
    pub pool_size: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: None,
            lease_ms: 30_000,
            pool_size: 8,
        }
    }
}

/// Each entry is one schema version, applied in order inside the migration transaction.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail JSON NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX changes_recent ON changes (action, created_at);
CREATE TABLE checkpoints (
    name TEXT PRIMARY KEY,
    last_change_id TEXT,
    created_at BIGINT NOT NULL,
    actor TEXT NOT NULL
);
CREATE TABLE audit_head (
    id INT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
"#,
    r#"
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
"#,
    crate::cases::PG_MIGRATION,
    // No query reads events by kind; the index only cost an insert per event.
    "DROP INDEX IF EXISTS events_kind;",
];

/// First key of the advisory lock serializing migrations (the second is the schema's hash).
const MIGRATION_LOCK: i32 = 0x6265_6c61; // "bela"

/// The database clock in epoch milliseconds, fixed for the statement.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::BIGINT";

const RUN_COLS: &str = "id, event_id, playbook, playbook_hash, parent_run, status, dry_run, inputs, error, created_at, updated_at";
const STEP_COLS: &str = "run_id, key, step, seq, item, action, with_json, decision, trust, guardrails, status, output, error, attempts, started_at, finished_at";
const CHANGE_COLS: &str = "id, run_id, step_key, idempotency_key, action, target, with_json, before, after, inverse, trust, guardrails, allowed_by, status, error, created_at, updated_at";

/// The PostgreSQL store; one instance is one worker.
pub struct PgStore {
    pool: Pool,
    worker: String,
    lease_ms: i64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("worker", &self.worker)
            .field("lease_ms", &self.lease_ms)
            .finish()
    }
}

/// An error and its causes on one line (tokio-postgres alone says only "db error").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let plain = c.to_string();
        match c.downcast_ref::<tokio_postgres::error::DbError>() {
            Some(db) => {
                message.push_str(&format!(
                    ": {}: {} (SQLSTATE {})",
                    db.severity(),
                    db.message(),
                    db.code().code()
                ));
                if let Some(detail) = db.detail() {
                    message.push_str(&format!("; detail: {detail}"));
                }
                if let Some(hint) = db.hint() {
                    message.push_str(&format!("; hint: {hint}"));
                }
            }
            // Wrappers often repeat their cause in their own message already.
            None if message.ends_with(&plain) => {}
            None => {
                message.push_str(": ");
                message.push_str(&plain);
            }
        }
        cause = c.source();
    }
    message
}

fn db_err(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Database {
        context,
        message: describe(&e),
    }
}

fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Closed => StoreError::Closed,
        e => StoreError::Database {
            context: "getting a database connection",
            message: describe(&e),
        },
    }
}

/// Whether PostgreSQL aborted a transaction that may succeed if run again: a deadlock or a
/// serialization failure (as [`describe`] writes their SQLSTATE).
fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Database { message, .. }
        if message.contains("(SQLSTATE 40P01)") || message.contains("(SQLSTATE 40001)"))
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `pg-HOST-PID-RANDOM`, unique per store instance.
fn new_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(63)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let id = belay_model::new_id();
    let random = id.get(24..).unwrap_or(&id);
    format!("pg-{host}-{}-{random}", std::process::id())
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, context: &'static str) -> Result<T> {
    row.try_get(idx).map_err(|e| StoreError::Corrupt {
        context,
        message: describe(&e),
    })
}

pub(crate) fn get_json<T: DeserializeOwned>(
    row: &Row,
    idx: usize,
    context: &'static str,
) -> Result<T> {
    let value: Value = get(row, idx, context)?;
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        context,
        message: e.to_string(),
    })
}

fn get_enum<T: std::str::FromStr<Err = String>>(
    row: &Row,
    idx: usize,
    context: &'static str,
) -> Result<T> {
    let text: String = get(row, idx, context)?;
    parse(&text, context)
}

fn run_from_row(r: &Row) -> Result<RunRecord> {
    const C: &str = "reading a run";
    Ok(RunRecord {
        id: get(r, 0, C)?,
        event_id: get(r, 1, C)?,
        playbook: get(r, 2, C)?,
        playbook_hash: get(r, 3, C)?,
        parent_run: get(r, 4, C)?,
        status: get_enum(r, 5, "run status")?,
        dry_run: get(r, 6, C)?,
        inputs: get(r, 7, "run inputs")?,
        error: get(r, 8, C)?,
        created_at: get(r, 9, C)?,
        updated_at: get(r, 10, C)?,
    })
}

fn step_from_row(r: &Row) -> Result<StepRecord> {
    const C: &str = "reading a step";
    let trust: Option<String> = get(r, 8, "step trust")?;
    Ok(StepRecord {
        run_id: get(r, 0, C)?,
        key: get(r, 1, C)?,
        step: get(r, 2, C)?,
        seq: get(r, 3, C)?,
        item: get(r, 4, C)?,
        action: get(r, 5, C)?,
        with: get(r, 6, "step inputs")?,
        decision: get_enum(r, 7, "step decision")?,
        trust: trust.map(|t| parse(&t, "step trust")).transpose()?,
        guardrails: get_json(r, 9, "step guardrails")?,
        status: get_enum(r, 10, "step status")?,
        output: get(r, 11, "step output")?,
        error: get(r, 12, C)?,
        attempts: get(r, 13, C)?,
        started_at: get(r, 14, C)?,
        finished_at: get(r, 15, C)?,
    })
}

fn change_from_row(r: &Row) -> Result<ChangeRecord> {
    const C: &str = "reading a change";
    Ok(ChangeRecord {
        id: get(r, 0, C)?,
        run_id: get(r, 1, C)?,
        step_key: get(r, 2, C)?,
        idempotency_key: get(r, 3, C)?,
        action: get(r, 4, C)?,
        target: get(r, 5, C)?,
        with: get(r, 6, "change inputs")?,
        before: get(r, 7, "change before-state")?,
        after: get(r, 8, "change after-state")?,
        inverse: get(r, 9, "change inverse")?,
        trust: get_enum(r, 10, "change trust")?,
        guardrails: get_json(r, 11, "change guardrails")?,
        allowed_by: get(r, 12, C)?,
        status: get_enum(r, 13, "change status")?,
        error: get(r, 14, C)?,
        created_at: get(r, 15, C)?,
        updated_at: get(r, 16, C)?,
    })
}

fn rows_to<T>(rows: &[Row], f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// Brings the schema up to date in one transaction, serialized across processes by an
/// advisory lock, so workers starting together neither race nor half-migrate.
async fn migrate(client: &mut deadpool_postgres::Client, schema: Option<&str>) -> Result<()> {
    const C: &str = "migrating the schema";
    let tx = client.transaction().await.map_err(db_err(C))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE($2::TEXT, current_schema(), '')))",
        &[&MIGRATION_LOCK, &schema],
    )
    .await
    .map_err(db_err("waiting for the migration lock"))?;
    if let Some(schema) = schema {
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&schema],
            )
            .await
            .map_err(db_err("looking up the schema"))
            .and_then(|r| get(&r, 0, "looking up the schema"))?;
        if !exists {
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            ))
            .await
            .map_err(db_err("creating the schema"))?;
        }
    }
    // Checked first so that a role without CREATE rights can use an up-to-date schema.
    let has_table: bool = tx
        .query_one("SELECT to_regclass('belay_schema') IS NOT NULL", &[])
        .await
        .map_err(db_err("reading the schema version"))
        .and_then(|r| get(&r, 0, "reading the schema version"))?;
    if !has_table {
        tx.batch_execute(
            "CREATE TABLE belay_schema (version INT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(db_err("creating the schema version table"))?;
    }
    let version: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM belay_schema", &[])
        .await
        .map_err(db_err("reading the schema version"))
        .and_then(|r| get(&r, 0, "reading the schema version"))?;
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(StoreError::Database {
            context: "checking the schema version",
            message: format!(
                "the database schema is at version {version} but this belay knows only up to {known}; upgrade belay"
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(db_err(C))?;
        tx.execute(
            "INSERT INTO belay_schema (version, applied_at) VALUES ($1, $2)",
            &[&(i as i32 + 1), &now_ms()],
        )
        .await
        .map_err(db_err(C))?;
    }
    tx.commit()
        .await
        .map_err(db_err("committing the migration"))
}

async fn insert_run(
    c: &impl GenericClient,
    run: &RunRecord,
    owner: Option<&str>,
    lease_ms: i64,
) -> Result<Option<RunRecord>> {
    // A final run is not leased: owner and lease stay NULL (NULL + lease is NULL).
    let lease = owner.map(|_| lease_ms);
    let sql = format!(
        "INSERT INTO runs (id, event_id, playbook, playbook_hash, parent_run, status, dry_run, inputs, error, owner, lease_until, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {NOW_MS} + $11, $12, $13) ON CONFLICT (id) DO NOTHING RETURNING {RUN_COLS}"
    );
    let stmt = c
        .prepare_cached(&sql)
        .await
        .map_err(db_err("storing a run"))?;
    let row = c
        .query_opt(
            &stmt,
            &[
                &run.id,
                &run.event_id,
                &run.playbook,
                &run.playbook_hash,
                &run.parent_run,
                &run.status.as_str(),
                &run.dry_run,
                &run.inputs,
                &run.error,
                &owner,
                &lease,
                &run.created_at,
                &run.updated_at,
            ],
        )
        .await
        .map_err(db_err("storing a run"))?;
    row.as_ref().map(run_from_row).transpose()
}

/// Chains `drafts` onto the audit trail inside `tx`. Called last in every write transaction:
/// the head row's lock serializes appends across workers, and taking it last keeps the lock
/// order the same everywhere (no deadlocks).
async fn append_audit(tx: &Transaction<'_>, drafts: Vec<AuditDraft>) -> Result<()> {
    const C: &str = "appending to the audit trail";
    if drafts.is_empty() {
        return Ok(());
    }
    let head = tx
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(db_err(C))?;
    let (mut seq, mut hash): (i64, String) = (get(&head, 0, C)?, get(&head, 1, C)?);
    let stmt = tx
        .prepare_cached("INSERT INTO audit (seq, at, kind, actor, subject, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .await
        .map_err(db_err(C))?;
    let now = now_ms();
    for d in drafts {
        let e = AuditEntry::chain(d, seq, &hash, now);
        tx.execute(
            &stmt,
            &[
                &e.seq,
                &e.at,
                &e.kind,
                &e.actor,
                &e.subject,
                &e.detail,
                &e.prev_hash,
                &e.hash,
            ],
        )
        .await
        .map_err(db_err(C))?;
        seq = e.seq;
        hash = e.hash;
    }
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&seq, &hash],
    )
    .await
    .map_err(db_err(C))?;
    Ok(())
}

async fn put_step(c: &impl GenericClient, s: &StepRecord) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO steps (run_id, key, step, seq, item, action, with_json, decision, trust, guardrails, status, output, error, attempts, started_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (run_id, key) DO UPDATE SET step = EXCLUDED.step, seq = EXCLUDED.seq, item = EXCLUDED.item, \
             action = EXCLUDED.action, with_json = EXCLUDED.with_json, decision = EXCLUDED.decision, trust = EXCLUDED.trust, \
             guardrails = EXCLUDED.guardrails, status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error, \
             attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at",
        )
        .await
        .map_err(db_err("storing a step"))?;
    c.execute(
        &stmt,
        &[
            &s.run_id,
            &s.key,
            &s.step,
            &s.seq,
            &s.item,
            &s.action,
            &s.with,
            &s.decision.as_str(),
            &s.trust.map(|t| t.as_str()),
            &Json(&s.guardrails),
            &s.status.as_str(),
            &s.output,
            &s.error,
            &s.attempts,
            &s.started_at,
            &s.finished_at,
        ],
    )
    .await
    .map_err(db_err("storing a step"))?;
    Ok(())
}

async fn change_by_key(c: &impl GenericClient, key: &str) -> Result<Option<ChangeRecord>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {CHANGE_COLS} FROM changes WHERE idempotency_key = $1"
        ))
        .await
        .map_err(db_err("reading a change"))?;
    let row = c
        .query_opt(&stmt, &[&key])
        .await
        .map_err(db_err("reading a change"))?;
    row.as_ref().map(change_from_row).transpose()
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or a `key=value` connection string), creates the
    /// schema if one is named and missing, and migrates it.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore> {
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Database {
                    context: "parsing the database URL",
                    message: describe(&e),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("belay");
        }
        let schema = options.schema.filter(|s| !s.is_empty());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let mut builder = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(30)));
        if let Some(schema) = &schema {
            // Set on every new connection; `Fast` recycling never resets it.
            let set = format!("SET search_path TO {}", quote_ident(schema));
            builder = builder.post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                let set = set.clone();
                Box::pin(
                    async move { client.batch_execute(&set).await.map_err(HookError::Backend) },
                )
            }));
        }
        let pool = builder.build().map_err(|e| StoreError::Database {
            context: "creating the connection pool",
            message: describe(&e),
        })?;
        let mut client = pool.get().await.map_err(|e| match e {
            PoolError::Closed => StoreError::Closed,
            e => StoreError::Database {
                context: "connecting to PostgreSQL",
                message: describe(&e),
            },
        })?;
        migrate(&mut client, schema.as_deref()).await?;
        drop(client);
        Ok(PgStore {
            pool,
            worker: new_worker_id(),
            lease_ms: options.lease_ms,
        })
    }

    /// Closes the pool: later calls fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.pool.close();
    }

    async fn conn(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(pool_err)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<Vec<Row>> {
        let c = self.conn().await?;
        let stmt = c.prepare_cached(sql).await.map_err(db_err(context))?;
        c.query(&stmt, params).await.map_err(db_err(context))
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<Option<Row>> {
        let c = self.conn().await?;
        let stmt = c.prepare_cached(sql).await.map_err(db_err(context))?;
        c.query_opt(&stmt, params).await.map_err(db_err(context))
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<u64> {
        let c = self.conn().await?;
        let stmt = c.prepare_cached(sql).await.map_err(db_err(context))?;
        c.execute(&stmt, params).await.map_err(db_err(context))
    }

    /// Stores an event, its runs (only if the event is new) and the cursor, in `tx`.
    async fn accept_in(
        &self,
        tx: &Transaction<'_>,
        event: &Event,
        runs: &[RunRecord],
        cursor: Option<&Cursor>,
        drafts: &mut Vec<AuditDraft>,
    ) -> Result<Accepted> {
        if let Some(cur) = cursor {
            let offset = i64::try_from(cur.offset).map_err(|_| StoreError::Database {
                context: "storing the cursor",
                message: format!("offset {} is out of range", cur.offset),
            })?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO cursors (source, \"offset\") VALUES ($1, $2) \
                     ON CONFLICT (source) DO UPDATE SET \"offset\" = EXCLUDED.\"offset\"",
                )
                .await
                .map_err(db_err("storing the cursor"))?;
            tx.execute(&stmt, &[&cur.source, &offset])
                .await
                .map_err(db_err("storing the cursor"))?;
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO events (id, kind, source, time_ms, severity, body, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(db_err("storing an event"))?;
        let inserted = tx
            .execute(
                &stmt,
                &[
                    &event.id,
                    &event.kind,
                    &event.source,
                    &event.time.timestamp_millis(),
                    &event.severity.to_string(),
                    &Json(event),
                    &now_ms(),
                ],
            )
            .await
            .map_err(db_err("storing an event"))?;
        if inserted == 0 {
            drafts.push(audit::event_duplicate(&self.worker, event));
            return Ok(Accepted::Duplicate);
        }
        for run in runs {
            insert_run(tx, run, self.owner_for(run), self.lease_ms).await?;
        }
        drafts.push(audit::event_accepted(&self.worker, event, runs));
        Ok(Accepted::New)
    }

    /// This worker as a run's owner, unless the run is already final.
    fn owner_for(&self, run: &RunRecord) -> Option<&str> {
        (!run.status.is_final()).then_some(self.worker.as_str())
    }
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn worker_id(&self) -> &str {
        &self.worker
    }

    async fn accept_event(
        &self,
        event: &Event,
        runs: &[RunRecord],
        cursor: Option<&Cursor>,
    ) -> Result<Accepted> {
        let mut client = self.conn().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db_err("accepting an event"))?;
        let mut drafts = Vec::new();
        let accepted = self
            .accept_in(&tx, event, runs, cursor, &mut drafts)
            .await?;
        append_audit(&tx, drafts).await?;
        tx.commit().await.map_err(db_err("committing an event"))?;
        Ok(accepted)
    }

    /// One transaction for the whole batch (one commit instead of one per event), retried
    /// when PostgreSQL aborts it to break a deadlock with another batch sharing event ids.
    async fn accept_batch(&self, batch: &[Incoming]) -> Result<Vec<Accepted>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 1;
        loop {
            let outcome = async {
                let mut client = self.conn().await?;
                let tx = client
                    .transaction()
                    .await
                    .map_err(db_err("accepting events"))?;
                let mut out = Vec::with_capacity(batch.len());
                let mut drafts = Vec::new();
                for i in batch {
                    out.push(
                        self.accept_in(&tx, &i.event, &i.runs, i.cursor.as_ref(), &mut drafts)
                            .await?,
                    );
                }
                append_audit(&tx, drafts).await?;
                tx.commit().await.map_err(db_err("committing events"))?;
                Ok(out)
            }
            .await;
            match outcome {
                Err(e) if attempt < 3 && is_transient(&e) => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<RunRecord> {
        let mut client = self.conn().await?;
        {
            let tx = client
                .transaction()
                .await
                .map_err(db_err("storing a run"))?;
            let stored = insert_run(&tx, run, self.owner_for(run), self.lease_ms).await?;
            if let Some(stored) = stored {
                append_audit(&tx, vec![audit::run_started(&self.worker, run)]).await?;
                tx.commit().await.map_err(db_err("committing a run"))?;
                return Ok(stored);
            }
            tx.rollback().await.map_err(db_err("storing a run"))?;
        }
        // A separate statement, so that it sees a conflicting row committed meanwhile.
        let stmt = client
            .prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"))
            .await
            .map_err(db_err("reading a run"))?;
        let row = client
            .query_opt(&stmt, &[&run.id])
            .await
            .map_err(db_err("reading a run"))?;
        match row {
            Some(r) => run_from_row(&r),
            None => Err(StoreError::Corrupt {
                context: "storing a run",
                message: "a conflicting run vanished".into(),
            }),
        }
    }

    async fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<()> {
        const C: &str = "updating a run";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        tx.execute(
            "UPDATE runs SET status = $2, error = $3, updated_at = $4, \
             owner = CASE WHEN $5 THEN NULL ELSE owner END, \
             lease_until = CASE WHEN $5 THEN NULL ELSE lease_until END WHERE id = $1",
            &[
                &run_id,
                &status.as_str(),
                &error,
                &now_ms(),
                &status.is_final(),
            ],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(
            &tx,
            vec![audit::run_status(&self.worker, run_id, status, error)],
        )
        .await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn put_step(&self, step: &StepRecord) -> Result<()> {
        let mut client = self.conn().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db_err("storing a step"))?;
        put_step(&tx, step).await?;
        append_audit(&tx, vec![audit::step_finished(&self.worker, step)]).await?;
        tx.commit().await.map_err(db_err("storing a step"))
    }

    async fn set_change_status(
        &self,
        change_id: &str,
        status: ChangeStatus,
        note: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        const C: &str = "updating a change";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let n = tx
            .execute(
                "UPDATE changes SET status = $2, updated_at = $3 WHERE id = $1",
                &[&change_id, &status.as_str(), &now_ms()],
            )
            .await
            .map_err(db_err(C))?;
        if n == 0 {
            return Err(StoreError::Database {
                context: C,
                message: format!("no change `{change_id}`"),
            });
        }
        append_audit(
            &tx,
            vec![audit::change_status(actor, change_id, status, note)],
        )
        .await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn create_checkpoint(&self, name: &str, actor: &str) -> Result<crate::Checkpoint> {
        const C: &str = "creating a checkpoint";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        // Lock the journal's end so no change slips in between reading it and naming it.
        tx.execute("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE", &[])
            .await
            .map_err(db_err(C))?;
        let last: Option<String> = tx
            .query_opt("SELECT id FROM changes ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(db_err(C))?
            .map(|r| get(&r, 0, C))
            .transpose()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO checkpoints (name, last_change_id, created_at, actor) VALUES ($1, $2, $3, $4)",
            &[&name, &last, &now, &actor],
        )
        .await
        .map_err(|e| StoreError::Database { context: C, message: format!("checkpoint `{name}`: {e}") })?;
        append_audit(&tx, vec![audit::checkpoint(actor, name, last.as_deref())]).await?;
        tx.commit().await.map_err(db_err(C))?;
        Ok(crate::Checkpoint {
            name: name.into(),
            last_change_id: last,
            created_at: now,
            actor: actor.into(),
        })
    }

    async fn checkpoints(&self) -> Result<Vec<crate::Checkpoint>> {
        const C: &str = "listing checkpoints";
        let rows = self
            .query("SELECT name, last_change_id, created_at, actor FROM checkpoints ORDER BY created_at, name", &[], C)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::Checkpoint {
                    name: get(r, 0, C)?,
                    last_change_id: get(r, 1, C)?,
                    created_at: get(r, 2, C)?,
                    actor: get(r, 3, C)?,
                })
            })
            .collect()
    }

    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<()> {
        let mut client = self.conn().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db_err("appending to the audit trail"))?;
        append_audit(&tx, drafts).await?;
        tx.commit()
            .await
            .map_err(db_err("appending to the audit trail"))
    }

    async fn audit_entries(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        const C: &str = "reading the audit trail";
        let rows = self
            .query(
                "SELECT seq, at, kind, actor, subject, detail, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &(limit as i64)],
                C,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: get(r, 0, C)?,
                    at: get(r, 1, C)?,
                    kind: get(r, 2, C)?,
                    actor: get(r, 3, C)?,
                    subject: get(r, 4, C)?,
                    detail: get(r, 5, C)?,
                    prev_hash: get(r, 6, C)?,
                    hash: get(r, 7, C)?,
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        const C: &str = "reading the audit head";
        let row = self
            .query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[], C)
            .await?;
        row.map(|r| Ok((get(&r, 0, C)?, get(&r, 1, C)?)))
            .transpose()
    }

    async fn begin_change(
        &self,
        step: Option<&StepRecord>,
        change: &ChangeRecord,
    ) -> Result<ChangeRecord> {
        const C: &str = "journaling a change";
        crate::check_change_key(change)?;
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO changes (id, run_id, step_key, idempotency_key, action, target, with_json, before, after, inverse, trust, guardrails, allowed_by, status, error, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING {CHANGE_COLS}"
            ))
            .await
            .map_err(db_err(C))?;
        let row = tx
            .query_opt(
                &stmt,
                &[
                    &change.id,
                    &change.run_id,
                    &change.step_key,
                    &change.idempotency_key,
                    &change.action,
                    &change.target,
                    &change.with,
                    &change.before,
                    &change.after,
                    &change.inverse,
                    &change.trust.as_str(),
                    &Json(&change.guardrails),
                    &change.allowed_by,
                    &change.status.as_str(),
                    &change.error,
                    &change.created_at,
                    &change.updated_at,
                ],
            )
            .await
            .map_err(db_err(C))?;
        let stored =
            match row {
                Some(row) => {
                    if let Some(step) = step {
                        put_step(&tx, step).await?;
                    }
                    append_audit(&tx, vec![audit::change_journaled(&self.worker, change)]).await?;
                    change_from_row(&row)?
                }
                // A separate statement, so that it sees a conflicting change committed meanwhile.
                None => change_by_key(&tx, &change.idempotency_key).await?.ok_or(
                    StoreError::Corrupt {
                        context: C,
                        message: "the conflicting change vanished".into(),
                    },
                )?,
            };
        tx.commit().await.map_err(db_err("committing a change"))?;
        Ok(stored)
    }

    async fn finish_change(
        &self,
        step: &StepRecord,
        change_id: &str,
        status: ChangeStatus,
        after: &Value,
        error: Option<&str>,
    ) -> Result<()> {
        const C: &str = "recording a change outcome";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let stmt = tx
            .prepare_cached("UPDATE changes SET status = $2, after = $3, error = $4, updated_at = $5 WHERE id = $1")
            .await
            .map_err(db_err(C))?;
        tx.execute(
            &stmt,
            &[&change_id, &status.as_str(), after, &error, &now_ms()],
        )
        .await
        .map_err(db_err(C))?;
        put_step(&tx, step).await?;
        append_audit(
            &tx,
            vec![audit::change_finished(
                &self.worker,
                change_id,
                status,
                after,
                error,
                step,
            )],
        )
        .await?;
        tx.commit()
            .await
            .map_err(db_err("committing a change outcome"))
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>> {
        let row = self
            .query_opt(
                "SELECT body FROM events WHERE id = $1",
                &[&id],
                "reading an event",
            )
            .await?;
        row.map(|r| get_json(&r, 0, "event body")).transpose()
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let row = self
            .query_opt(
                &format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"),
                &[&id],
                "reading a run",
            )
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        // Only the filters given appear in the SQL, so each shape gets a plan that uses its index.
        let status = filter.status.map(|s| s.as_str());
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut conds = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(s) = &status {
            params.push(s);
            conds.push(format!("status = ${}", params.len()));
        }
        if let Some(p) = &filter.playbook {
            params.push(p);
            conds.push(format!("playbook = ${}", params.len()));
        }
        if let Some(e) = &filter.event_id {
            params.push(e);
            conds.push(format!("event_id = ${}", params.len()));
        }
        params.push(&limit);
        let filter_sql = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {RUN_COLS} FROM runs {filter_sql} ORDER BY created_at DESC, id DESC LIMIT ${}",
            params.len()
        );
        let rows = self.query(&sql, &params, "listing runs").await?;
        rows_to(&rows, run_from_row)
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        // NULLS FIRST: the order SQLite gives, so a step's own record precedes its items'.
        let rows = self
            .query(
                &format!("SELECT {STEP_COLS} FROM steps WHERE run_id = $1 ORDER BY seq, item NULLS FIRST, key"),
                &[&run_id],
                "reading steps",
            )
            .await?;
        rows_to(&rows, step_from_row)
    }

    async fn changes(&self, run_id: Option<&str>) -> Result<Vec<ChangeRecord>> {
        let rows = match run_id {
            Some(id) => {
                self.query(
                    &format!("SELECT {CHANGE_COLS} FROM changes WHERE run_id = $1 ORDER BY seq"),
                    &[&id],
                    "listing changes",
                )
                .await?
            }
            None => {
                self.query(
                    &format!("SELECT {CHANGE_COLS} FROM changes ORDER BY seq"),
                    &[],
                    "listing changes",
                )
                .await?
            }
        };
        rows_to(&rows, change_from_row)
    }

    async fn count_changes(&self, actions: &[String], since: i64) -> Result<u64> {
        const C: &str = "counting recent changes";
        let row = self
            .query_opt(
                "SELECT COUNT(*) FROM changes WHERE created_at >= $1 AND status IN ('pending', 'applied') AND action = ANY($2)",
                &[&since, &actions],
                C,
            )
            .await?;
        let n: i64 = match row {
            Some(r) => get(&r, 0, C)?,
            None => 0,
        };
        Ok(n as u64)
    }

    async fn change_by_key(&self, idempotency_key: &str) -> Result<Option<ChangeRecord>> {
        let client = self.conn().await?;
        change_by_key(&client, idempotency_key).await
    }

    async fn claim_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // ARRAY(...) is evaluated once, so the rows locked are exactly the rows updated.
        let sql = format!(
            "UPDATE runs SET owner = $1, lease_until = {NOW_MS} + $2 WHERE id = ANY(ARRAY(\
               SELECT id FROM runs WHERE status IN ('pending', 'running') AND parent_run IS NULL \
               AND (owner IS NULL OR owner = $1 OR lease_until IS NULL OR lease_until < {NOW_MS}) \
               ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)) RETURNING {RUN_COLS}"
        );
        let rows = self
            .query(
                &sql,
                &[&self.worker, &self.lease_ms, &limit],
                "claiming runs",
            )
            .await?;
        let mut runs = rows_to(&rows, run_from_row)?;
        runs.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(runs)
    }

    async fn claim_released(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "UPDATE runs SET owner = $1, lease_until = {NOW_MS} + $2 WHERE id = ANY(ARRAY(\
               SELECT id FROM runs WHERE status = 'pending' AND parent_run IS NULL AND owner IS NULL \
               ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)) RETURNING {RUN_COLS}"
        );
        let rows = self
            .query(
                &sql,
                &[&self.worker, &self.lease_ms, &limit],
                "claiming released runs",
            )
            .await?;
        let mut runs = rows_to(&rows, run_from_row)?;
        runs.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(runs)
    }

    async fn renew_leases(&self) -> Result<u64> {
        self.execute(
            &format!("UPDATE runs SET lease_until = {NOW_MS} + $2 WHERE owner = $1 AND status IN ('pending', 'running')"),
            &[&self.worker, &self.lease_ms],
            "renewing leases",
        )
        .await
    }

    async fn put_approval(&self, approval: &ApprovalRecord) -> Result<()> {
        const C: &str = "storing an approval";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        tx.execute(
            "INSERT INTO approvals (id, run_id, key, playbook, step, status, version, created_at, expires_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO UPDATE SET \
             status = excluded.status, version = excluded.version, expires_at = excluded.expires_at, body = excluded.body",
            &[
                &approval.id,
                &approval.run_id,
                &approval.key,
                &approval.playbook,
                &approval.step,
                &approval.status.as_str(),
                &approval.version,
                &approval.created_at,
                &approval.expires_at,
                &Json(approval),
            ],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![audit::approval(&self.worker, approval)]).await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn decide_approval(
        &self,
        approval: &ApprovalRecord,
        expected_version: i64,
        resume: &[String],
        audit: AuditDraft,
    ) -> Result<bool> {
        const C: &str = "recording a decision";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let n = tx
            .execute(
                "UPDATE approvals SET status = $2, version = $3, body = $4 WHERE id = $1 AND version = $5",
                &[
                    &approval.id,
                    &approval.status.as_str(),
                    &approval.version,
                    &Json(approval),
                    &expected_version,
                ],
            )
            .await
            .map_err(db_err(C))?;
        if n == 0 {
            return Ok(false);
        }
        for run in resume {
            tx.execute(
                "UPDATE runs SET status = 'pending', owner = NULL, lease_until = NULL, updated_at = $2 \
                 WHERE id = $1 AND status = 'waiting_approval'",
                &[run, &now_ms()],
            )
            .await
            .map_err(db_err(C))?;
        }
        append_audit(&tx, vec![audit]).await?;
        tx.commit().await.map_err(db_err(C))?;
        Ok(true)
    }

    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>> {
        const C: &str = "reading an approval";
        let row = self
            .query_opt("SELECT body FROM approvals WHERE id = $1", &[&id], C)
            .await?;
        row.map(|r| get_json(&r, 0, C)).transpose()
    }

    async fn approvals(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
        const C: &str = "listing approvals";
        let status = filter.status.map(|s| s.as_str());
        let rows = self
            .query(
                "SELECT body FROM approvals WHERE ($1::TEXT IS NULL OR status = $1) \
                 AND ($2::TEXT IS NULL OR run_id = $2) ORDER BY created_at, id",
                &[&status, &filter.run_id],
                C,
            )
            .await?;
        rows.iter().map(|r| get_json(r, 0, C)).collect()
    }

    async fn demote(&self, demotion: &Demotion) -> Result<()> {
        const C: &str = "demoting a step";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        tx.execute(
            "INSERT INTO demotions (playbook, step, body) VALUES ($1, $2, $3) \
             ON CONFLICT (playbook, step) DO UPDATE SET body = excluded.body",
            &[&demotion.playbook, &demotion.step, &Json(demotion)],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![audit::demoted(demotion)]).await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn reset_trust(&self, playbook: &str, step: &str, actor: &str) -> Result<bool> {
        const C: &str = "resetting trust";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let n = tx
            .execute(
                "DELETE FROM demotions WHERE playbook = $1 AND step = $2",
                &[&playbook, &step],
            )
            .await
            .map_err(db_err(C))?;
        if n > 0 {
            append_audit(&tx, vec![audit::trust_reset(actor, playbook, step)]).await?;
        }
        tx.commit().await.map_err(db_err(C))?;
        Ok(n > 0)
    }

    async fn demotions(&self) -> Result<Vec<Demotion>> {
        const C: &str = "listing demotions";
        let rows = self
            .query("SELECT body FROM demotions ORDER BY playbook, step", &[], C)
            .await?;
        rows.iter().map(|r| get_json(r, 0, C)).collect()
    }

    async fn trust_stats(&self, since: i64) -> Result<Vec<StatRow>> {
        const C: &str = "counting for the trust report";
        let queries: [(&'static str, &str); 3] = [
            (
                "step",
                "SELECT r.playbook, s.step, s.decision, s.status, s.trust, COUNT(*) FROM steps s JOIN runs r ON r.id = s.run_id \
                      WHERE s.started_at >= $1 AND NOT r.dry_run GROUP BY 1, 2, 3, 4, 5",
            ),
            (
                "change",
                "SELECT r.playbook, split_part(c.step_key, '[', 1), NULL::TEXT, c.status, c.trust, COUNT(*) \
                        FROM changes c JOIN runs r ON r.id = c.run_id WHERE c.created_at >= $1 AND NOT r.dry_run GROUP BY 1, 2, 3, 4, 5",
            ),
            (
                "approval",
                "SELECT playbook, step, NULL::TEXT, status, NULL::TEXT, COUNT(*) FROM approvals WHERE created_at >= $1 GROUP BY 1, 2, 3, 4, 5",
            ),
        ];
        let mut out = Vec::new();
        for (kind, sql) in queries {
            for r in self.query(sql, &[&since], C).await? {
                let count: i64 = get(&r, 5, C)?;
                out.push(StatRow {
                    playbook: get(&r, 0, C)?,
                    step: get(&r, 1, C)?,
                    kind,
                    decision: get(&r, 2, C)?,
                    status: get(&r, 3, C)?,
                    trust: get(&r, 4, C)?,
                    count: count as u64,
                });
            }
        }
        Ok(out)
    }

    async fn change_history(&self, actions: &[String], since: i64) -> Result<ChangeHistory> {
        const C: &str = "reading the change history";
        const FILTER: &str = "action = ANY($1) AND trust IN ('log', 'guarded') AND status IN ('applied', 'reverted', 'drifted')";
        let first = self
            .query_opt(
                &format!("SELECT MIN(created_at) FROM changes WHERE {FILTER}"),
                &[&actions],
                C,
            )
            .await?;
        let first_at: Option<i64> = match first {
            Some(r) => get(&r, 0, C)?,
            None => None,
        };
        let rows = self
            .query(
                &format!(
                    "SELECT MIN(created_at), COUNT(*) FROM changes WHERE {FILTER} AND created_at >= $2 GROUP BY run_id ORDER BY 1"
                ),
                &[&actions, &since],
                C,
            )
            .await?;
        let mut batches = Vec::with_capacity(rows.len());
        for r in &rows {
            let (at, n): (i64, i64) = (get(r, 0, C)?, get(r, 1, C)?);
            batches.push((at, n as u64));
        }
        Ok(ChangeHistory { first_at, batches })
    }

    async fn apply_case(&self, op: CaseOp) -> Result<CaseOutcome> {
        const C: &str = "updating a case";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let outcome = crate::cases::pg::apply(&tx, &op).await?;
        tx.commit().await.map_err(db_err(C))?;
        Ok(outcome)
    }

    async fn case_file(&self, id: &str) -> Result<Option<CaseFile>> {
        crate::cases::pg::file(&self.conn().await?, id).await
    }

    async fn cases(&self, status: Option<CaseStatus>) -> Result<Vec<CaseRecord>> {
        crate::cases::pg::list(&self.conn().await?, status).await
    }

    async fn cursor(&self, source: &str) -> Result<Option<u64>> {
        const C: &str = "reading a cursor";
        let row = self
            .query_opt(
                "SELECT \"offset\" FROM cursors WHERE source = $1",
                &[&source],
                C,
            )
            .await?;
        row.map(|r| {
            let offset: i64 = get(&r, 0, C)?;
            u64::try_from(offset).map_err(|_| StoreError::Corrupt {
                context: C,
                message: format!("negative offset {offset}"),
            })
        })
        .transpose()
    }

    async fn counts(&self) -> Result<Counts> {
        const C: &str = "counting";
        let rows = self
            .query(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM runs), \
                 (SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')), (SELECT COUNT(*) FROM steps), \
                 (SELECT COUNT(*) FROM changes), (SELECT COUNT(*) FROM changes WHERE status = 'applied')",
                &[],
                C,
            )
            .await?;
        let row = rows.first().ok_or(StoreError::Corrupt {
            context: C,
            message: "no row".into(),
        })?;
        let n = |i: usize| -> Result<u64> {
            get::<i64>(row, i, C).map(|v| u64::try_from(v).unwrap_or(0))
        };
        Ok(Counts {
            events: n(0)?,
            runs: n(1)?,
            runs_unfinished: n(2)?,
            steps: n(3)?,
            changes: n(4)?,
            changes_applied: n(5)?,
        })
    }
}
