//! SQLite store: WAL, one batching writer thread, acknowledged only after commit.
//!
//! Every write goes through one thread that takes whatever is queued (up to a batch), applies
//! it in one transaction, commits, and only then answers each caller (a failed batch is replayed
//! one operation per transaction). Callers encode their rows first (JSON serialized, audit
//! entries in canonical form), so the writer only binds, chains and commits. Concurrent runs therefore share one fsync, which is how the embedded store sustains
//! thousands of durable runs per second with `synchronous=FULL`.

use crate::audit;
use crate::codec::{from_text, parse, to_text};
use crate::{
    Accepted, ApprovalFilter, ChangeHistory, Counts, Cursor, Incoming, Result, RunFilter, StatRow,
    Store, StoreError, Write, Written,
};
use async_trait::async_trait;
use belay_model::audit::text_hash;
use belay_model::{
    ApprovalRecord, AuditDraft, AuditEntry, CaseFile, CaseOp, CaseOutcome, CaseRecord, CaseStatus,
    ChangeRecord, ChangeStatus, Demotion, Event, PreparedDraft, RunRecord, RunStatus, StepRecord,
    now_ms,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// SQLite's `synchronous` setting. With WAL, `Normal` survives a killed process but may lose
/// the last commits on power loss; `Full` survives both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Normal,
    Full,
}

/// The name of the store's writer thread (Linux keeps 15 bytes of a thread's name).
pub const WRITER_THREAD: &str = "belay-writer";

/// How to open the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Most operations committed together.
    pub max_batch: usize,
    /// How long a claimed run stays leased without renewal.
    pub lease_ms: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            max_batch: 1024,
            lease_ms: 30_000,
        }
    }
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    severity TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX events_kind ON events(kind, seq);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    playbook TEXT NOT NULL,
    playbook_hash TEXT NOT NULL,
    parent_run TEXT,
    status TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    error TEXT,
    owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_event ON runs(event_id);
CREATE INDEX runs_created ON runs(created_at);
CREATE INDEX runs_unfinished ON runs(status, created_at) WHERE status IN ('pending', 'running');
CREATE TABLE steps (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    step TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item INTEGER,
    action TEXT NOT NULL,
    with_json TEXT NOT NULL,
    decision TEXT NOT NULL,
    trust TEXT,
    guardrails TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    step_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    with_json TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    inverse TEXT NOT NULL,
    trust TEXT NOT NULL,
    guardrails TEXT NOT NULL,
    allowed_by TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX changes_run ON changes(run_id, seq);
CREATE INDEX changes_recent ON changes(action, created_at);
CREATE TABLE cursors (
    source TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE checkpoints (
    name TEXT PRIMARY KEY,
    last_change_id TEXT,
    created_at INTEGER NOT NULL,
    actor TEXT NOT NULL
);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    playbook TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX approvals_run ON approvals(run_id, key);
CREATE INDEX approvals_status ON approvals(status, created_at);
CREATE INDEX approvals_created ON approvals(created_at);
CREATE TABLE demotions (
    playbook TEXT NOT NULL,
    step TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (playbook, step)
) WITHOUT ROWID;
"#,
    crate::cases::SQLITE_MIGRATION,
    // No query reads events by kind; the index only cost a B-tree insert per event.
    "DROP INDEX IF EXISTS events_kind;",
    // Step records in the order they are written (a rowid table) rather than clustered by run:
    // a commit then appends its records to the last pages instead of dirtying a page per run
    // in flight. The unique index keeps one record per run and key.
    r#"
CREATE TABLE steps_by_write (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    step TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item INTEGER,
    action TEXT NOT NULL,
    with_json TEXT NOT NULL,
    decision TEXT NOT NULL,
    trust TEXT,
    guardrails TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (run_id, key)
);
INSERT INTO steps_by_write SELECT * FROM steps;
DROP TABLE steps;
ALTER TABLE steps_by_write RENAME TO steps;
"#,
    // A run's changes are found by their idempotency keys, which start with the run's id and
    // a slash (checked when a change is journaled); one index fewer to update per change.
    "DROP INDEX IF EXISTS changes_run;",
    // Entries without a copy of the previous entry's hash (verification reads it from the
    // previous row) and with their own hash as 32 bytes: a sixth of each entry. A hash that is
    // not hex (an edited row) is kept as it was, for verification to report.
    r#"
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
"#,
];

/// One operation for the writer. Rows come encoded by the caller (JSON serialized, audit entries
/// prepared), so the single writer only binds and chains. The writer borrows operations, so a
/// failed batch can be replayed one operation at a time without copies.
// Each operation is moved once through the writer's channel; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
enum Op {
    Accept(Vec<EventRow>),
    InsertRun(RunRow, PreparedDraft),
    /// Writes, each with the audit entry it records.
    Write(Vec<(WriteRow, Option<PreparedDraft>)>),
    Claim {
        dead: Vec<String>,
        limit: usize,
    },
    Renew,
    ClaimReleased(usize),
    Audit(Vec<PreparedDraft>),
    ChangeStatus {
        change_id: String,
        status: ChangeStatus,
        note: Option<String>,
        actor: String,
    },
    Checkpoint {
        name: String,
        actor: String,
    },
    DecideApproval {
        approval: ApprovalRecord,
        expected_version: i64,
        resume: Vec<String>,
        audit: PreparedDraft,
    },
    Demote(Demotion),
    ResetTrust {
        playbook: String,
        step: String,
        actor: String,
    },
    Case(CaseOp),
}

/// One state write, encoded for its rows.
#[allow(clippy::large_enum_variant)]
enum WriteRow {
    Step(StepRow),
    /// A change's journal entry (with its step's record, if given); stores nothing if a
    /// change with its idempotency key exists.
    BeginChange(ChangeRow, Option<StepRow>),
    FinishChange {
        step: StepRow,
        change_id: String,
        status: ChangeStatus,
        after: String,
        error: Option<String>,
    },
    RunStatus {
        run_id: String,
        status: RunStatus,
        error: Option<String>,
    },
    Approval(Box<ApprovalRecord>),
    /// Only the audit entry beside it.
    Audit,
}

/// A step record's row, its JSON columns serialized.
struct StepRow {
    rec: StepRecord,
    with: String,
    guardrails: String,
    output: String,
}

impl StepRow {
    /// Serializes the record's JSON columns; the JSON values are dropped here, on the
    /// caller's thread.
    fn new(mut rec: StepRecord) -> StepRow {
        let with = to_text(&rec.with);
        let output = to_text(&rec.output);
        let guardrails = to_text(&rec.guardrails);
        rec.with = Value::Null;
        rec.output = Value::Null;
        StepRow {
            rec,
            with,
            guardrails,
            output,
        }
    }
}

/// A change record's row, its JSON columns serialized.
struct ChangeRow {
    rec: ChangeRecord,
    with: String,
    before: String,
    after: String,
    inverse: String,
    guardrails: String,
}

/// A run record's row, its inputs serialized.
struct RunRow {
    rec: RunRecord,
    inputs: String,
}

impl RunRow {
    fn new(rec: RunRecord) -> RunRow {
        RunRow {
            inputs: to_text(&rec.inputs),
            rec: RunRecord {
                inputs: Value::Null,
                ..rec
            },
        }
    }
}

/// An event offered for acceptance, with its runs, encoded.
struct EventRow {
    id: String,
    kind: String,
    source: String,
    time_ms: i64,
    severity: String,
    body: String,
    runs: Vec<RunRow>,
    cursor: Option<Cursor>,
    /// The `event.accepted` entry recorded if the event is new.
    accepted: PreparedDraft,
}

impl EventRow {
    fn new(actor: &str, event: &Event, runs: Vec<RunRecord>, cursor: Option<Cursor>) -> EventRow {
        let body = to_text(event);
        let severity = event.severity.to_string();
        let accepted = audit::prepared::event_accepted(
            actor,
            &event.id,
            &event.kind,
            &event.source,
            &severity,
            &text_hash(&body),
            runs.iter().map(|r| {
                (
                    r.id.as_str(),
                    r.playbook.as_str(),
                    r.playbook_hash.as_str(),
                    r.dry_run,
                )
            }),
        );
        EventRow {
            id: event.id.clone(),
            kind: event.kind.clone(),
            source: event.source.clone(),
            time_ms: event.time.timestamp_millis(),
            severity,
            body,
            runs: runs.into_iter().map(RunRow::new).collect(),
            cursor,
            accepted,
        }
    }
}

/// A write encoded on the caller's thread: its rows, the audit entry it records and, for a
/// new journal entry, the change itself (the answer unless its key was journaled before).
type Encoded = (WriteRow, Option<PreparedDraft>, Option<ChangeRecord>);

/// Encodes a write on the caller's thread.
fn encode(actor: &str, w: Write) -> Result<Encoded> {
    Ok(match w {
        Write::Step(s) => {
            let row = StepRow::new(s);
            let d = audit::prepared::step_finished(
                actor,
                &row.rec,
                &text_hash(&row.with),
                &text_hash(&row.output),
            );
            (WriteRow::Step(row), Some(d), None)
        }
        Write::BeginChange(c) => {
            let (row, d) = change_row(actor, &c)?;
            (WriteRow::BeginChange(row, None), Some(d), Some(c))
        }
        Write::FinishChange {
            step,
            change_id,
            status,
            after,
            error,
        } => {
            let step = StepRow::new(step);
            let after = to_text(&after);
            let d = audit::prepared::change_finished(
                actor,
                &change_id,
                status,
                &text_hash(&after),
                error.as_deref(),
                &step.rec,
                &text_hash(&step.output),
            );
            let row = WriteRow::FinishChange {
                step,
                change_id,
                status,
                after,
                error,
            };
            (row, Some(d), None)
        }
        Write::RunStatus {
            run_id,
            status,
            error,
        } => {
            let d = audit::prepared::run_status(actor, &run_id, status, error.as_deref());
            (
                WriteRow::RunStatus {
                    run_id,
                    status,
                    error,
                },
                Some(d),
                None,
            )
        }
        Write::Audit(d) => (WriteRow::Audit, Some(d.prepare()), None),
        Write::Approval(a) => {
            let d = audit::approval(actor, &a).prepare();
            (WriteRow::Approval(a), Some(d), None)
        }
    })
}

/// A change's row and its `change.journaled` entry; the record's JSON stays with the caller.
fn change_row(actor: &str, c: &ChangeRecord) -> Result<(ChangeRow, PreparedDraft)> {
    crate::check_change_key(c)?;
    let with = to_text(&c.with);
    let before = to_text(&c.before);
    let d = audit::prepared::change_journaled(actor, c, &text_hash(&with), &text_hash(&before));
    let row = ChangeRow {
        with,
        before,
        after: to_text(&c.after),
        inverse: to_text(&c.inverse),
        guardrails: to_text(&c.guardrails),
        rec: ChangeRecord {
            id: c.id.clone(),
            run_id: c.run_id.clone(),
            step_key: c.step_key.clone(),
            idempotency_key: c.idempotency_key.clone(),
            action: c.action.clone(),
            target: c.target.clone(),
            with: Value::Null,
            before: Value::Null,
            after: Value::Null,
            inverse: Value::Null,
            trust: c.trust,
            guardrails: Vec::new(),
            allowed_by: c.allowed_by.clone(),
            status: c.status,
            error: c.error.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        },
    };
    Ok((row, d))
}

#[allow(clippy::large_enum_variant)]
enum Reply {
    Checkpoint(crate::Checkpoint),
    /// Per write: the change already journaled under a new change's key, if any.
    Written(Vec<Option<ChangeRecord>>),
    AcceptedBatch(Vec<Accepted>),
    Run(RunRecord),
    Runs(Vec<RunRecord>),
    Count(u64),
    Flag(bool),
    Case(CaseOutcome),
    Unit,
}

/// The answer to a job, with its operation handed back so the caller's thread frees what it
/// allocated (the writer then never frees another thread's memory).
type Answer = (Result<Reply>, Op);

struct Job {
    op: Op,
    reply: oneshot::Sender<Answer>,
}

/// The embedded store.
pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Ends after the writer (which holds its wake-up channel).
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    worker: String,
    workers_dir: PathBuf,
    /// Held for the life of the store: other processes see this worker as alive.
    _worker_lock: File,
}

fn db_err(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database {
        context,
        message: e.to_string(),
    }
}

/// WAL pages after which the writer checkpoints by itself, finishing what the checkpointer
/// thread has mostly done; the WAL then restarts from its beginning (~32 MB at most).
const WRITER_CHECKPOINT_PAGES: u32 = 8_000;

/// The checkpointer's pause after each checkpoint, so it runs once per many commits.
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

fn open_conn(path: &Path, sync: Synchronous) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err("opening the database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err("setting busy timeout"))?;
    let sync = match sync {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        // 8 KB pages for a new database (an existing one keeps its size): half the WAL frames
        // and write calls per commit, for somewhat more bytes (~25 instead of ~22 KB per
        // benchmark run), measured faster on the writer.
        "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8000; \
         PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES};"
    ))
    .map_err(db_err("setting pragmas"))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err("starting migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading schema version"))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(db_err("migrating"))?;
        tx.execute_batch(&format!("PRAGMA user_version={}", i + 1))
            .map_err(db_err("migrating"))?;
    }
    tx.commit().map_err(db_err("committing migration"))
}

impl SqliteStore {
    /// Opens (creating and migrating) the store in a data directory.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let io = |context: &'static str| {
            move |e: std::io::Error| StoreError::Database {
                context,
                message: e.to_string(),
            }
        };
        std::fs::create_dir_all(dir).map_err(io("creating the data directory"))?;
        let workers_dir = dir.join("workers");
        std::fs::create_dir_all(&workers_dir).map_err(io("creating the workers directory"))?;
        let worker = format!("w-{}-{}", std::process::id(), &belay_model::new_id()[24..]);
        let lock = File::create(workers_dir.join(format!("{worker}.lock")))
            .map_err(io("creating the worker lock"))?;
        lock.try_lock().map_err(|e| StoreError::Database {
            context: "locking the worker file",
            message: e.to_string(),
        })?;
        let path = dir.join("belay.db");
        let mut writer = open_conn(&path, options.synchronous)?;
        migrate(&mut writer)?;
        let reader = open_conn(&path, options.synchronous)?;
        let checkpointer = open_conn(&path, options.synchronous)?;
        let (committed, commits) = mpsc::sync_channel::<()>(1);
        let checkpoint_handle = std::thread::Builder::new()
            .name("belay-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointer, &commits))
            .map_err(io("starting the checkpoint thread"))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let w = Writer {
            committed,
            conn: writer,
            worker: worker.clone(),
            lease_ms: options.lease_ms,
            head: None,
            head_dirty: false,
        };
        let max_batch = options.max_batch.max(1);
        let handle = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || w.run(rx, max_batch))
            .map_err(io("starting the writer thread"))?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpoint_handle)),
            reader: Arc::new(Mutex::new(reader)),
            worker,
            workers_dir,
            _worker_lock: lock,
        })
    }

    async fn submit(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let tx = jobs.as_ref().ok_or(StoreError::Closed)?;
            tx.send(Job { op, reply }).map_err(|_| StoreError::Closed)?;
        }
        let (result, op) = rx.await.map_err(|_| StoreError::Closed)?;
        drop(op);
        result
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Database {
            context: "reading",
            message: e.to_string(),
        })?
    }

    /// Owners of unfinished runs whose process is gone (their lock file is free).
    fn dead_owners(&self, owners: Vec<String>) -> Vec<String> {
        owners
            .into_iter()
            .filter(|o| o != &self.worker)
            .filter(|o| {
                let p = self.workers_dir.join(format!("{o}.lock"));
                match File::options().write(true).open(&p) {
                    Ok(f) => {
                        let dead = f.try_lock().is_ok();
                        if dead {
                            let _ = std::fs::remove_file(&p);
                        }
                        dead
                    }
                    Err(_) => true,
                }
            })
            .collect()
    }

    /// Stops the writer after it drains what is queued.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        for thread in [&self.writer, &self.checkpointer] {
            if let Some(h) = thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = h.join();
            }
        }
    }
}

/// Copies committed WAL pages back into the database on its own thread, so the writer's
/// commits rarely wait for a checkpoint. Passive: it never blocks the writer or readers (a page
/// a reader still needs is copied next time). Ends when the writer is gone.
fn checkpoint_loop(conn: &Connection, commits: &mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("background checkpoint failed: {e}");
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
        let _ = std::fs::remove_file(self.workers_dir.join(format!("{}.lock", self.worker)));
    }
}

/// Rows inserted by one statement when a transaction writes that many or more into a table.
const ROWS_PER_INSERT: usize = 8;

/// A multi-row INSERT: one row's form and [`ROWS_PER_INSERT`] rows' form.
struct InsertSql {
    one: String,
    many: String,
    columns: usize,
}

impl InsertSql {
    fn new(head: &str, columns: usize) -> InsertSql {
        let row = format!("({})", vec!["?"; columns].join(", "));
        InsertSql {
            one: format!("{head} VALUES {row}"),
            many: format!("{head} VALUES {}", vec![row; ROWS_PER_INSERT].join(", ")),
            columns,
        }
    }
}

static AUDIT_INSERT: std::sync::LazyLock<InsertSql> = std::sync::LazyLock::new(|| {
    InsertSql::new(
        "INSERT INTO audit (seq, at, kind, actor, subject, detail, hash)",
        7,
    )
});

static STEP_INSERT: std::sync::LazyLock<InsertSql> = std::sync::LazyLock::new(|| {
    InsertSql::new(
        "INSERT OR REPLACE INTO steps (run_id, key, step, seq, item, action, with_json, decision, \
         trust, guardrails, status, output, error, attempts, started_at, finished_at)",
        16,
    )
});

struct Writer {
    /// Wakes the checkpointer (a full channel means it is already due to run).
    committed: mpsc::SyncSender<()>,
    conn: Connection,
    worker: String,
    lease_ms: i64,
    /// The chain head inside the current transaction (loaded on first append).
    head: Option<(i64, String)>,
    head_dirty: bool,
}

/// Audit entries one operation records, in order: prepared by the caller (borrowed from the
/// operation) or drafted by the writer.
type Entries<'a> = Vec<Cow<'a, PreparedDraft>>;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>, max_batch: usize) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    /// Applies a batch in one transaction and answers every caller after the commit. If the
    /// batch fails, each operation is replayed in a transaction of its own, so one bad
    /// operation cannot fail the others.
    fn commit_batch(&mut self, batch: Vec<Job>) {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|j| (j.op, j.reply)).unzip();
        match self.transact(&ops) {
            Ok(results) => {
                for ((reply, op), r) in replies.into_iter().zip(ops).zip(results) {
                    let _ = reply.send((Ok(r), op));
                }
            }
            Err(e) if ops.len() == 1 => {
                if let (Some(reply), Some(op)) =
                    (replies.into_iter().next(), ops.into_iter().next())
                {
                    let _ = reply.send((Err(e), op));
                }
            }
            Err(_) => {
                for (reply, op) in replies.into_iter().zip(ops) {
                    let r = self
                        .transact(std::slice::from_ref(&op))
                        .and_then(|mut v| v.pop().ok_or(StoreError::Closed));
                    let _ = reply.send((r, op));
                }
            }
        }
    }

    fn transact(&mut self, ops: &[Op]) -> Result<Vec<Reply>> {
        self.exec_cached("BEGIN IMMEDIATE")
            .map_err(db_err("beginning a write"))?;
        self.head = None;
        self.head_dirty = false;
        let mut out = Vec::with_capacity(ops.len());
        // Every operation's step records and audit entries, stored together before the commit
        // (the transaction is all or nothing, so their order is all that matters).
        let mut entries = Entries::new();
        let mut steps = Vec::new();
        for op in ops {
            match self.apply(op, &mut entries, &mut steps) {
                Ok(r) => out.push(r),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        if let Err(e) = put_steps(&self.conn, &steps).and_then(|_| self.append_audit(&entries)) {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        if let (true, Some((seq, hash))) = (self.head_dirty, &self.head) {
            let r = self
                .conn
                .prepare_cached(
                    "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2) \
                     ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                )
                .and_then(|mut st| st.execute(params![seq, hash]));
            if let Err(e) = r {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(db_err("recording the audit head")(e));
            }
        }
        match self.exec_cached("COMMIT") {
            Ok(()) => {
                let _ = self.committed.try_send(());
                Ok(out)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(db_err("committing")(e))
            }
        }
    }

    /// Runs a parameterless statement through the statement cache.
    fn exec_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Chains and stores the audit entries of a transaction's operations, in their order.
    fn append_audit(&mut self, entries: &[Cow<'_, PreparedDraft>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let (seq, hash) = match self.head.take() {
            Some(h) => h,
            None => self
                .conn
                .query_row(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, hash_text(r.get_ref(1)?))),
                )
                .optional()
                .map_err(db_err("reading the audit head"))?
                .unwrap_or((0, belay_model::audit::GENESIS.to_string())),
        };
        let now = now_ms();
        // Chain first, then insert ROWS_PER_INSERT entries per statement.
        let mut hashes = Vec::with_capacity(entries.len() + 1);
        hashes.push(hash);
        for (i, d) in entries.iter().enumerate() {
            let next = d.hash(seq + 1 + i as i64, now, &hashes[i]);
            hashes.push(next);
        }
        insert_audit(&self.conn, entries, seq + 1, now, &hashes)
            .map_err(db_err("appending to the audit trail"))?;
        let hash = hashes.pop().unwrap_or_default();
        self.head = Some((seq + entries.len() as i64, hash));
        self.head_dirty = true;
        Ok(())
    }

    /// Applies one state write; returns the change already journaled under a new change's key.
    fn apply_row<'a>(
        &self,
        row: &'a WriteRow,
        now: i64,
        steps: &mut Vec<&'a StepRow>,
    ) -> Result<Option<ChangeRecord>> {
        let c = &self.conn;
        match row {
            WriteRow::Step(s) => steps.push(s),
            WriteRow::BeginChange(change, step) => {
                if let Some(existing) = journal_change(c, change)? {
                    return Ok(Some(existing));
                }
                if let Some(step) = step {
                    steps.push(step);
                }
            }
            WriteRow::FinishChange {
                step,
                change_id,
                status,
                after,
                error,
            } => {
                c.prepare_cached("UPDATE changes SET status = ?2, after = ?3, error = ?4, updated_at = ?5 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![change_id, status.as_str(), after, error, now]))
                    .map_err(db_err("recording a change outcome"))?;
                steps.push(step);
            }
            WriteRow::RunStatus {
                run_id,
                status,
                error,
            } => {
                c.prepare_cached(
                    "UPDATE runs SET status = ?2, error = ?3, updated_at = ?4, \
                     owner = CASE WHEN ?5 THEN NULL ELSE owner END, \
                     lease_until = CASE WHEN ?5 THEN NULL ELSE lease_until END WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        run_id,
                        status.as_str(),
                        error,
                        now,
                        status.is_final()
                    ])
                })
                .map_err(db_err("updating a run"))?;
            }
            WriteRow::Approval(a) => put_approval(c, a)?,
            WriteRow::Audit => {}
        }
        Ok(None)
    }

    fn apply<'a>(
        &mut self,
        op: &'a Op,
        entries: &mut Entries<'a>,
        steps: &mut Vec<&'a StepRow>,
    ) -> Result<Reply> {
        let now = now_ms();
        let c = &self.conn;
        match op {
            Op::Write(writes) => {
                let mut out = Vec::with_capacity(writes.len());
                for (row, draft) in writes {
                    let existing = self.apply_row(row, now, steps)?;
                    // A journal entry that already existed records nothing new.
                    if let (Some(d), None) = (draft, &existing) {
                        entries.push(Cow::Borrowed(d));
                    }
                    out.push(existing);
                }
                Ok(Reply::Written(out))
            }
            Op::Accept(items) => {
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    if let Some(cur) = &e.cursor {
                        c.prepare_cached("INSERT INTO cursors (source, offset) VALUES (?1, ?2) ON CONFLICT(source) DO UPDATE SET offset = excluded.offset")
                            .and_then(|mut s| s.execute(params![cur.source, cur.offset as i64]))
                            .map_err(db_err("storing the cursor"))?;
                    }
                    let inserted = c
                        .prepare_cached("INSERT INTO events (id, kind, source, time_ms, severity, body, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING")
                        .and_then(|mut s| {
                            s.execute(params![e.id, e.kind, e.source, e.time_ms, e.severity, e.body, now])
                        })
                        .map_err(db_err("storing an event"))?;
                    if inserted == 0 {
                        entries.push(Cow::Owned(audit::prepared::event_duplicate(
                            &self.worker,
                            &e.id,
                            &e.kind,
                            &e.source,
                        )));
                        out.push(Accepted::Duplicate);
                        continue;
                    }
                    for run in &e.runs {
                        self.insert_run(run, now)?;
                    }
                    entries.push(Cow::Borrowed(&e.accepted));
                    out.push(Accepted::New);
                }
                Ok(Reply::AcceptedBatch(out))
            }
            Op::InsertRun(run, started) => {
                if self.insert_run(run, now)? {
                    entries.push(Cow::Borrowed(started));
                }
                let stored = self
                    .conn
                    .prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))
                    .and_then(|mut s| s.query_row([&run.rec.id], run_from_row))
                    .map_err(db_err("reading a run"))??;
                Ok(Reply::Run(stored))
            }
            Op::Claim { dead, limit } => {
                for owner in dead {
                    c.execute("UPDATE runs SET lease_until = 0 WHERE owner = ?1 AND status IN ('pending', 'running')", [owner])
                        .map_err(db_err("releasing a dead worker's runs"))?;
                }
                let mut stmt = c
                    .prepare_cached(&format!(
                        "UPDATE runs SET owner = ?1, lease_until = ?2 WHERE id IN (\
                           SELECT id FROM runs WHERE status IN ('pending', 'running') AND parent_run IS NULL \
                           AND (owner IS NULL OR owner = ?1 OR lease_until IS NULL OR lease_until < ?3) \
                           ORDER BY created_at LIMIT ?4) RETURNING {RUN_COLS}"
                    ))
                    .map_err(db_err("claiming runs"))?;
                let rows = stmt
                    .query_map(
                        params![self.worker, now + self.lease_ms, now, *limit as i64],
                        run_from_row,
                    )
                    .map_err(db_err("claiming runs"))?;
                let mut runs = Vec::new();
                for r in rows {
                    runs.push(r.map_err(db_err("claiming runs"))??);
                }
                runs.sort_by_key(|r| r.created_at);
                Ok(Reply::Runs(runs))
            }
            Op::Audit(drafts) => {
                entries.extend(drafts.iter().map(Cow::Borrowed));
                Ok(Reply::Unit)
            }
            Op::ChangeStatus {
                change_id,
                status,
                note,
                actor,
            } => {
                let n = c
                    .execute(
                        "UPDATE changes SET status = ?2, updated_at = ?3 WHERE id = ?1",
                        params![change_id, status.as_str(), now],
                    )
                    .map_err(db_err("updating a change"))?;
                if n == 0 {
                    return Err(StoreError::Database {
                        context: "updating a change",
                        message: format!("no change `{change_id}`"),
                    });
                }
                entries.push(Cow::Owned(
                    audit::change_status(actor, change_id, *status, note.as_deref()).prepare(),
                ));
                Ok(Reply::Unit)
            }
            Op::Checkpoint { name, actor } => {
                let last: Option<String> = c
                    .query_row(
                        "SELECT id FROM changes ORDER BY seq DESC LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err("creating a checkpoint"))?;
                c.execute(
                    "INSERT INTO checkpoints (name, last_change_id, created_at, actor) VALUES (?1, ?2, ?3, ?4)",
                    params![name, last, now, actor],
                )
                .map_err(|e| StoreError::Database { context: "creating a checkpoint", message: format!("checkpoint `{name}`: {e}") })?;
                entries.push(Cow::Owned(
                    audit::checkpoint(actor, name, last.as_deref()).prepare(),
                ));
                Ok(Reply::Checkpoint(crate::Checkpoint {
                    name: name.clone(),
                    last_change_id: last,
                    created_at: now,
                    actor: actor.clone(),
                }))
            }
            Op::DecideApproval {
                approval,
                expected_version,
                resume,
                audit,
            } => {
                let n = c
                    .execute(
                        "UPDATE approvals SET status = ?2, version = ?3, body = ?4 WHERE id = ?1 AND version = ?5",
                        params![
                            approval.id,
                            approval.status.as_str(),
                            approval.version,
                            to_text(approval),
                            expected_version
                        ],
                    )
                    .map_err(db_err("recording a decision"))?;
                if n == 0 {
                    return Ok(Reply::Flag(false));
                }
                for run in resume {
                    c.execute(
                        "UPDATE runs SET status = 'pending', owner = NULL, lease_until = NULL, updated_at = ?2 \
                         WHERE id = ?1 AND status = 'waiting_approval'",
                        params![run, now],
                    )
                    .map_err(db_err("resuming a run"))?;
                }
                entries.push(Cow::Borrowed(audit));
                Ok(Reply::Flag(true))
            }
            Op::Demote(d) => {
                c.execute(
                    "INSERT INTO demotions (playbook, step, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(playbook, step) DO UPDATE SET body = excluded.body",
                    params![d.playbook, d.step, to_text(d)],
                )
                .map_err(db_err("demoting a step"))?;
                entries.push(Cow::Owned(audit::demoted(d).prepare()));
                Ok(Reply::Unit)
            }
            Op::ResetTrust {
                playbook,
                step,
                actor,
            } => {
                let n = c
                    .execute(
                        "DELETE FROM demotions WHERE playbook = ?1 AND step = ?2",
                        params![playbook, step],
                    )
                    .map_err(db_err("resetting trust"))?;
                if n > 0 {
                    entries.push(Cow::Owned(
                        audit::trust_reset(actor, playbook, step).prepare(),
                    ));
                }
                Ok(Reply::Flag(n > 0))
            }
            Op::Case(op) => crate::cases::sqlite_apply(c, op).map(Reply::Case),
            Op::ClaimReleased(limit) => {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "UPDATE runs SET owner = ?1, lease_until = ?2 WHERE id IN (\
                           SELECT id FROM runs WHERE status = 'pending' AND parent_run IS NULL AND owner IS NULL \
                           ORDER BY created_at LIMIT ?3) RETURNING {RUN_COLS}"
                    ))
                    .map_err(db_err("claiming released runs"))?;
                let rows = stmt
                    .query_map(
                        params![self.worker, now + self.lease_ms, *limit as i64],
                        run_from_row,
                    )
                    .map_err(db_err("claiming released runs"))?;
                let mut runs = Vec::new();
                for r in rows {
                    runs.push(r.map_err(db_err("claiming released runs"))??);
                }
                runs.sort_by_key(|r| r.created_at);
                Ok(Reply::Runs(runs))
            }
            Op::Renew => {
                let n = c
                    .prepare_cached("UPDATE runs SET lease_until = ?2 WHERE owner = ?1 AND status IN ('pending', 'running')")
                    .and_then(|mut s| s.execute(params![self.worker, now + self.lease_ms]))
                    .map_err(db_err("renewing leases"))?;
                Ok(Reply::Count(n as u64))
            }
        }
    }

    /// Stores a run unless its id exists; true when it was stored now.
    fn insert_run(&self, row: &RunRow, now: i64) -> Result<bool> {
        let run = &row.rec;
        let owner = (!run.status.is_final()).then_some(self.worker.as_str());
        let lease = owner.map(|_| now + self.lease_ms);
        self.conn
            .prepare_cached(
                "INSERT INTO runs (id, event_id, playbook, playbook_hash, parent_run, status, dry_run, inputs, error, owner, lease_until, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT(id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.id,
                    run.event_id,
                    run.playbook,
                    run.playbook_hash,
                    run.parent_run,
                    run.status.as_str(),
                    run.dry_run,
                    row.inputs,
                    run.error,
                    owner,
                    lease,
                    run.created_at,
                    run.updated_at
                ])
            })
            .map_err(db_err("storing a run"))
            .map(|n| n > 0)
    }
}

/// Inserts `rows` with `sql` (one row's placeholders after `VALUES`), [`ROWS_PER_INSERT`] rows
/// per statement while that many remain. `bind` binds row `i` from parameter `first + 1` on.
fn insert_rows<T>(
    conn: &Connection,
    sql: &InsertSql,
    rows: &[T],
    bind: impl Fn(&mut rusqlite::CachedStatement<'_>, usize, usize, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut first = 0;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let many = chunk.len() == ROWS_PER_INSERT;
        let mut stmt = conn.prepare_cached(if many { &sql.many } else { &sql.one })?;
        for (j, row) in chunk.iter().enumerate() {
            bind(
                &mut stmt,
                if many { j * sql.columns } else { 0 },
                first + j,
                row,
            )?;
            if !many {
                stmt.raw_execute()?;
            }
        }
        if many {
            stmt.raw_execute()?;
        }
        first += chunk.len();
    }
    Ok(())
}

/// A stored entry hash as the chain spells it: its 32 bytes in hex. A value of another type
/// (a row edited by hand) is returned as it reads, for verification to report, never as an
/// error that would stop the trail from being read or appended to.
fn hash_text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Blob(b) => hex::encode(b),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    }
}

/// Inserts chained entries (`hashes[i + 1]` is entry i's hash, stored as its 32 bytes).
fn insert_audit(
    conn: &Connection,
    entries: &[Cow<'_, PreparedDraft>],
    first_seq: i64,
    now: i64,
    hashes: &[String],
) -> rusqlite::Result<()> {
    insert_rows(conn, &AUDIT_INSERT, entries, |stmt, col, i, d| {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&hashes[i + 1], &mut hash)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        stmt.raw_bind_parameter(col + 1, first_seq + i as i64)?;
        stmt.raw_bind_parameter(col + 2, now)?;
        stmt.raw_bind_parameter(col + 3, &d.kind)?;
        stmt.raw_bind_parameter(col + 4, &d.actor)?;
        stmt.raw_bind_parameter(col + 5, &d.subject)?;
        stmt.raw_bind_parameter(col + 6, &d.canonical)?;
        stmt.raw_bind_parameter(col + 7, &hash[..])
    })
}

/// Stores step records (a later record of the same step replaces an earlier one).
fn put_steps(c: &Connection, rows: &[&StepRow]) -> Result<()> {
    insert_rows(c, &STEP_INSERT, rows, |st, col, _, row| {
        let s = &row.rec;
        st.raw_bind_parameter(col + 1, &s.run_id)?;
        st.raw_bind_parameter(col + 2, &s.key)?;
        st.raw_bind_parameter(col + 3, &s.step)?;
        st.raw_bind_parameter(col + 4, s.seq)?;
        st.raw_bind_parameter(col + 5, s.item)?;
        st.raw_bind_parameter(col + 6, &s.action)?;
        st.raw_bind_parameter(col + 7, &row.with)?;
        st.raw_bind_parameter(col + 8, s.decision.as_str())?;
        st.raw_bind_parameter(col + 9, s.trust.map(|t| t.as_str()))?;
        st.raw_bind_parameter(col + 10, &row.guardrails)?;
        st.raw_bind_parameter(col + 11, s.status.as_str())?;
        st.raw_bind_parameter(col + 12, &row.output)?;
        st.raw_bind_parameter(col + 13, &s.error)?;
        st.raw_bind_parameter(col + 14, s.attempts)?;
        st.raw_bind_parameter(col + 15, s.started_at)?;
        st.raw_bind_parameter(col + 16, s.finished_at)
    })
    .map_err(db_err("storing a step"))
}

/// Journals a change unless its idempotency key exists; returns the existing change if so.
fn journal_change(c: &Connection, row: &ChangeRow) -> Result<Option<ChangeRecord>> {
    let change = &row.rec;
    let inserted = c
        .prepare_cached(
            "INSERT INTO changes (id, run_id, step_key, idempotency_key, action, target, with_json, before, after, inverse, trust, guardrails, allowed_by, status, error, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) ON CONFLICT(idempotency_key) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                change.id,
                change.run_id,
                change.step_key,
                change.idempotency_key,
                change.action,
                change.target,
                row.with,
                row.before,
                row.after,
                row.inverse,
                change.trust.as_str(),
                row.guardrails,
                change.allowed_by,
                change.status.as_str(),
                change.error,
                change.created_at,
                change.updated_at
            ])
        })
        .map_err(db_err("journaling a change"))?;
    if inserted > 0 {
        return Ok(None);
    }
    change_by_key(c, &change.idempotency_key)?
        .ok_or(StoreError::Corrupt {
            context: "journaling a change",
            message: "conflicting key vanished".into(),
        })
        .map(Some)
}

const RUN_COLS: &str = "id, event_id, playbook, playbook_hash, parent_run, status, dry_run, inputs, error, created_at, updated_at";
const STEP_COLS: &str = "run_id, key, step, seq, item, action, with_json, decision, trust, guardrails, status, output, error, attempts, started_at, finished_at";
const CHANGE_COLS: &str = "id, run_id, step_key, idempotency_key, action, target, with_json, before, after, inverse, trust, guardrails, allowed_by, status, error, created_at, updated_at";

type RowResult<T> = rusqlite::Result<Result<T>>;

/// The JSON document in the `body` column of the row `sql` selects by id, decoded.
fn one_body<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    id: &str,
    context: &'static str,
) -> Result<Option<T>> {
    let body: Option<String> = c
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(db_err(context))?;
    body.map(|b| from_text(&b, context)).transpose()
}

fn put_approval(c: &Connection, a: &ApprovalRecord) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO approvals (id, run_id, key, playbook, step, status, version, created_at, expires_at, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(id) DO UPDATE SET \
         status = excluded.status, version = excluded.version, expires_at = excluded.expires_at, body = excluded.body",
    )
    .and_then(|mut st| {
        st.execute(params![
            a.id,
            a.run_id,
            a.key,
            a.playbook,
            a.step,
            a.status.as_str(),
            a.version,
            a.created_at,
            a.expires_at,
            to_text(a)
        ])
    })
    .map_err(db_err("storing an approval"))?;
    Ok(())
}

fn run_from_row(r: &Row) -> RowResult<RunRecord> {
    let status: String = r.get(5)?;
    let inputs: String = r.get(7)?;
    Ok((|| {
        Ok(RunRecord {
            id: r.get(0).map_err(db_err("reading a run"))?,
            event_id: r.get(1).map_err(db_err("reading a run"))?,
            playbook: r.get(2).map_err(db_err("reading a run"))?,
            playbook_hash: r.get(3).map_err(db_err("reading a run"))?,
            parent_run: r.get(4).map_err(db_err("reading a run"))?,
            status: parse(&status, "run status")?,
            dry_run: r.get(6).map_err(db_err("reading a run"))?,
            inputs: from_text(&inputs, "run inputs")?,
            error: r.get(8).map_err(db_err("reading a run"))?,
            created_at: r.get(9).map_err(db_err("reading a run"))?,
            updated_at: r.get(10).map_err(db_err("reading a run"))?,
        })
    })())
}

fn step_from_row(r: &Row) -> RowResult<StepRecord> {
    let get_s = |i: usize| r.get::<_, String>(i);
    let (with, decision, trust, guardrails, status, output) = (
        get_s(6)?,
        get_s(7)?,
        r.get::<_, Option<String>>(8)?,
        get_s(9)?,
        get_s(10)?,
        get_s(11)?,
    );
    Ok((|| {
        let e = db_err("reading a step");
        Ok(StepRecord {
            run_id: r.get(0).map_err(&e)?,
            key: r.get(1).map_err(&e)?,
            step: r.get(2).map_err(&e)?,
            seq: r.get(3).map_err(&e)?,
            item: r.get(4).map_err(&e)?,
            action: r.get(5).map_err(&e)?,
            with: from_text(&with, "step inputs")?,
            decision: parse(&decision, "step decision")?,
            trust: trust.map(|t| parse(&t, "step trust")).transpose()?,
            guardrails: from_text(&guardrails, "step guardrails")?,
            status: parse(&status, "step status")?,
            output: from_text(&output, "step output")?,
            error: r.get(12).map_err(&e)?,
            attempts: r.get(13).map_err(&e)?,
            started_at: r.get(14).map_err(&e)?,
            finished_at: r.get(15).map_err(&e)?,
        })
    })())
}

fn change_from_row(r: &Row) -> RowResult<ChangeRecord> {
    let get_s = |i: usize| r.get::<_, String>(i);
    let (with, before, after, inverse, trust, guardrails, status) = (
        get_s(6)?,
        get_s(7)?,
        get_s(8)?,
        get_s(9)?,
        get_s(10)?,
        get_s(11)?,
        get_s(13)?,
    );
    Ok((|| {
        let e = db_err("reading a change");
        Ok(ChangeRecord {
            id: r.get(0).map_err(&e)?,
            run_id: r.get(1).map_err(&e)?,
            step_key: r.get(2).map_err(&e)?,
            idempotency_key: r.get(3).map_err(&e)?,
            action: r.get(4).map_err(&e)?,
            target: r.get(5).map_err(&e)?,
            with: from_text(&with, "change inputs")?,
            before: from_text(&before, "change before-state")?,
            after: from_text(&after, "change after-state")?,
            inverse: from_text(&inverse, "change inverse")?,
            trust: parse(&trust, "change trust")?,
            guardrails: from_text(&guardrails, "change guardrails")?,
            allowed_by: r.get(12).map_err(&e)?,
            status: parse(&status, "change status")?,
            error: r.get(14).map_err(&e)?,
            created_at: r.get(15).map_err(&e)?,
            updated_at: r.get(16).map_err(&e)?,
        })
    })())
}

fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T>>>,
    context: &'static str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(db_err(context))??);
    }
    Ok(out)
}

fn change_by_key(c: &Connection, key: &str) -> Result<Option<ChangeRecord>> {
    c.prepare_cached(&format!(
        "SELECT {CHANGE_COLS} FROM changes WHERE idempotency_key = ?1"
    ))
    .and_then(|mut s| s.query_row([key], change_from_row).optional())
    .map_err(db_err("reading a change"))?
    .transpose()
}

fn unexpected(context: &'static str) -> StoreError {
    StoreError::Corrupt {
        context,
        message: "the writer answered with another kind of reply".into(),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
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
        let row = EventRow::new(&self.worker, event, runs.to_vec(), cursor.cloned());
        match self.submit(Op::Accept(vec![row])).await? {
            Reply::AcceptedBatch(a) => a.into_iter().next().ok_or(unexpected("accepting an event")),
            _ => Err(unexpected("accepting an event")),
        }
    }

    async fn accept_batch(&self, batch: &[Incoming]) -> Result<Vec<Accepted>> {
        let rows = batch
            .iter()
            .map(|i| EventRow::new(&self.worker, &i.event, i.runs.clone(), i.cursor.clone()))
            .collect();
        match self.submit(Op::Accept(rows)).await? {
            Reply::AcceptedBatch(a) => Ok(a),
            _ => Err(unexpected("accepting events")),
        }
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<RunRecord> {
        let started = audit::run_started(&self.worker, run).prepare();
        match self
            .submit(Op::InsertRun(RunRow::new(run.clone()), started))
            .await?
        {
            Reply::Run(r) => Ok(r),
            _ => Err(unexpected("storing a run")),
        }
    }

    async fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<()> {
        self.write(vec![Write::RunStatus {
            run_id: run_id.into(),
            status,
            error: error.map(Into::into),
        }])
        .await
        .map(|_| ())
    }

    async fn put_step(&self, step: &StepRecord) -> Result<()> {
        self.write(vec![Write::Step(step.clone())])
            .await
            .map(|_| ())
    }

    async fn write(&self, writes: Vec<Write>) -> Result<Vec<Written>> {
        // Encode on the caller's thread; keep each new change to answer with.
        let mut new_changes = Vec::with_capacity(writes.len());
        let mut rows = Vec::with_capacity(writes.len());
        for w in writes {
            let (row, draft, new) = encode(&self.worker, w)?;
            rows.push((row, draft));
            new_changes.push(new);
        }
        let Reply::Written(existing) = self.submit(Op::Write(rows)).await? else {
            return Err(unexpected("writing"));
        };
        Ok(new_changes
            .into_iter()
            .zip(existing)
            .map(|(new, existing)| match existing.or(new) {
                Some(c) => Written::Change(Box::new(c)),
                None => Written::Done,
            })
            .collect())
    }

    async fn begin_change(
        &self,
        step: Option<&StepRecord>,
        change: &ChangeRecord,
    ) -> Result<ChangeRecord> {
        let (row, draft) = change_row(&self.worker, change)?;
        let step = step.cloned().map(StepRow::new);
        match self
            .submit(Op::Write(vec![(
                WriteRow::BeginChange(row, step),
                Some(draft),
            )]))
            .await?
        {
            Reply::Written(mut v) => Ok(v.pop().flatten().unwrap_or_else(|| change.clone())),
            _ => Err(unexpected("journaling a change")),
        }
    }

    async fn finish_change(
        &self,
        step: &StepRecord,
        change_id: &str,
        status: ChangeStatus,
        after: &Value,
        error: Option<&str>,
    ) -> Result<()> {
        self.write(vec![Write::FinishChange {
            step: step.clone(),
            change_id: change_id.into(),
            status,
            after: after.clone(),
            error: error.map(Into::into),
        }])
        .await
        .map(|_| ())
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>> {
        let id = id.to_owned();
        self.read(move |c| {
            one_body(
                c,
                "SELECT body FROM events WHERE id = ?1",
                &id,
                "reading an event",
            )
        })
        .await
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))
                .and_then(|mut s| s.query_row([&id], run_from_row).optional())
                .map_err(db_err("reading a run"))?
                .transpose()
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let f = filter.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {RUN_COLS} FROM runs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR playbook = ?2) \
                     AND (?3 IS NULL OR event_id = ?3) ORDER BY created_at DESC, id DESC LIMIT ?4"
                ))
                .map_err(db_err("listing runs"))?;
            let limit = f.limit.map_or(-1, |l| l as i64);
            let rows = stmt
                .query_map(params![f.status.map(|s| s.as_str()), f.playbook, f.event_id, limit], run_from_row)
                .map_err(db_err("listing runs"))?;
            collect(rows, "listing runs")
        })
        .await
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let id = run_id.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {STEP_COLS} FROM steps WHERE run_id = ?1 ORDER BY seq, item, key"
                ))
                .map_err(db_err("reading steps"))?;
            let rows = stmt
                .query_map([&id], step_from_row)
                .map_err(db_err("reading steps"))?;
            collect(rows, "reading steps")
        })
        .await
    }

    async fn changes(&self, run_id: Option<&str>) -> Result<Vec<ChangeRecord>> {
        let id = run_id.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&match id {
                    // Keys of a run's changes are `RUN/...` ('0' follows '/'), so the key index
                    // finds them.
                    Some(_) => format!("SELECT {CHANGE_COLS} FROM changes WHERE idempotency_key >= ?1 || '/' AND idempotency_key < ?1 || '0' ORDER BY seq"),
                    None => format!("SELECT {CHANGE_COLS} FROM changes ORDER BY seq"),
                })
                .map_err(db_err("listing changes"))?;
            let rows = match &id {
                Some(id) => stmt.query_map([id], change_from_row),
                None => stmt.query_map([], change_from_row),
            }
            .map_err(db_err("listing changes"))?;
            collect(rows, "listing changes")
        })
        .await
    }

    async fn count_changes(&self, actions: &[String], since: i64) -> Result<u64> {
        let actions = serde_json::to_string(actions).unwrap_or_else(|_| "[]".into());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM changes WHERE created_at >= ?1 AND status IN ('pending', 'applied') \
                 AND action IN (SELECT value FROM json_each(?2))",
            )
            .and_then(|mut s| s.query_row(params![since, actions], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(db_err("counting recent changes"))
        })
        .await
    }

    async fn change_by_key(&self, idempotency_key: &str) -> Result<Option<ChangeRecord>> {
        let key = idempotency_key.to_owned();
        self.read(move |c| change_by_key(c, &key)).await
    }

    async fn claim_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let owners: Vec<String> = self
            .read(|c| {
                let mut s = c
                    .prepare_cached("SELECT DISTINCT owner FROM runs WHERE status IN ('pending', 'running') AND owner IS NOT NULL")
                    .map_err(db_err("listing run owners"))?;
                let rows = s.query_map([], |r| r.get::<_, String>(0)).map_err(db_err("listing run owners"))?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err("listing run owners"))
            })
            .await?;
        let dead = self.dead_owners(owners);
        match self.submit(Op::Claim { dead, limit }).await? {
            Reply::Runs(r) => Ok(r),
            _ => Err(unexpected("claiming runs")),
        }
    }

    async fn claim_released(&self, limit: usize) -> Result<Vec<RunRecord>> {
        match self.submit(Op::ClaimReleased(limit)).await? {
            Reply::Runs(r) => Ok(r),
            _ => Err(unexpected("claiming released runs")),
        }
    }

    async fn renew_leases(&self) -> Result<u64> {
        match self.submit(Op::Renew).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(unexpected("renewing leases")),
        }
    }

    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<()> {
        let drafts = drafts.into_iter().map(AuditDraft::prepare).collect();
        self.submit(Op::Audit(drafts)).await.map(|_| ())
    }

    async fn set_change_status(
        &self,
        change_id: &str,
        status: ChangeStatus,
        note: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        self.submit(Op::ChangeStatus {
            change_id: change_id.into(),
            status,
            note: note.map(Into::into),
            actor: actor.into(),
        })
        .await
        .map(|_| ())
    }

    async fn create_checkpoint(&self, name: &str, actor: &str) -> Result<crate::Checkpoint> {
        match self
            .submit(Op::Checkpoint {
                name: name.into(),
                actor: actor.into(),
            })
            .await?
        {
            Reply::Checkpoint(c) => Ok(c),
            _ => Err(unexpected("creating a checkpoint")),
        }
    }

    async fn checkpoints(&self) -> Result<Vec<crate::Checkpoint>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT name, last_change_id, created_at, actor FROM checkpoints ORDER BY created_at, name")
                .map_err(db_err("listing checkpoints"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(crate::Checkpoint { name: r.get(0)?, last_change_id: r.get(1)?, created_at: r.get(2)?, actor: r.get(3)? })
                })
                .map_err(db_err("listing checkpoints"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err("listing checkpoints"))
        })
        .await
    }

    async fn audit_entries(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(move |c| {
            let mut stmt = c
                // Each entry with the hash of the row stored before it (from entry `after`
                // itself, which the window includes and the outer query drops).
                .prepare_cached(
                    "SELECT seq, at, kind, actor, subject, detail, prev, hash FROM (\
                       SELECT seq, at, kind, actor, subject, detail, hash, \
                         LAG(hash) OVER (ORDER BY seq) AS prev FROM audit \
                       WHERE seq >= ?1 ORDER BY seq LIMIT ?2 + 1) \
                     WHERE seq > ?1 ORDER BY seq",
                )
                .map_err(db_err("reading the audit trail"))?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| {
                    let detail: String = r.get(5)?;
                    // No row before: the chain's start, or (after a deletion) nothing to
                    // commit to, which verification reports.
                    let prev = match r.get_ref(6)? {
                        ValueRef::Null if after == 0 => belay_model::audit::GENESIS.to_string(),
                        v => hash_text(v),
                    };
                    let hash = hash_text(r.get_ref(7)?);
                    Ok(from_text(&detail, "audit detail").map(|detail| AuditEntry {
                        seq: r.get(0).unwrap_or_default(),
                        at: r.get(1).unwrap_or_default(),
                        kind: r.get(2).unwrap_or_default(),
                        actor: r.get(3).unwrap_or_default(),
                        subject: r.get(4).unwrap_or_default(),
                        detail,
                        prev_hash: prev,
                        hash,
                    }))
                })
                .map_err(db_err("reading the audit trail"))?;
            collect(rows, "reading the audit trail")
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        self.read(|c| {
            c.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(db_err("reading the audit head"))
        })
        .await
    }

    async fn put_approval(&self, approval: &ApprovalRecord) -> Result<()> {
        self.write(vec![Write::Approval(Box::new(approval.clone()))])
            .await
            .map(|_| ())
    }

    async fn decide_approval(
        &self,
        approval: &ApprovalRecord,
        expected_version: i64,
        resume: &[String],
        audit: AuditDraft,
    ) -> Result<bool> {
        match self
            .submit(Op::DecideApproval {
                approval: approval.clone(),
                expected_version,
                resume: resume.to_vec(),
                audit: audit.prepare(),
            })
            .await?
        {
            Reply::Flag(f) => Ok(f),
            _ => Err(unexpected("recording a decision")),
        }
    }

    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            one_body(
                c,
                "SELECT body FROM approvals WHERE id = ?1",
                &id,
                "reading an approval",
            )
        })
        .await
    }

    async fn approvals(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
        let status = filter.status.map(|s| s.as_str());
        let run = filter.run_id.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT body FROM approvals WHERE (?1 IS NULL OR status = ?1) \
                     AND (?2 IS NULL OR run_id = ?2) ORDER BY created_at, id",
                )
                .map_err(db_err("listing approvals"))?;
            let rows = stmt
                .query_map(params![status, run], |r| r.get::<_, String>(0))
                .map_err(db_err("listing approvals"))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(from_text(
                    &r.map_err(db_err("listing approvals"))?,
                    "approval",
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn demote(&self, demotion: &Demotion) -> Result<()> {
        self.submit(Op::Demote(demotion.clone())).await.map(|_| ())
    }

    async fn reset_trust(&self, playbook: &str, step: &str, actor: &str) -> Result<bool> {
        match self
            .submit(Op::ResetTrust {
                playbook: playbook.into(),
                step: step.into(),
                actor: actor.into(),
            })
            .await?
        {
            Reply::Flag(f) => Ok(f),
            _ => Err(unexpected("resetting trust")),
        }
    }

    async fn demotions(&self) -> Result<Vec<Demotion>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT body FROM demotions ORDER BY playbook, step")
                .map_err(db_err("listing demotions"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err("listing demotions"))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(from_text(
                    &r.map_err(db_err("listing demotions"))?,
                    "demotion",
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn trust_stats(&self, since: i64) -> Result<Vec<StatRow>> {
        self.read(move |c| {
            let mut out = Vec::new();
            let queries: [(&'static str, &str); 3] = [
                ("step", "SELECT r.playbook, s.step, s.decision, s.status, s.trust, COUNT(*) FROM steps s JOIN runs r ON r.id = s.run_id \
                          WHERE s.started_at >= ?1 AND r.dry_run = 0 GROUP BY 1, 2, 3, 4, 5"),
                ("change", "SELECT r.playbook, CASE WHEN instr(c.step_key, '[') > 0 THEN substr(c.step_key, 1, instr(c.step_key, '[') - 1) ELSE c.step_key END, \
                            NULL, c.status, c.trust, COUNT(*) FROM changes c JOIN runs r ON r.id = c.run_id WHERE c.created_at >= ?1 AND r.dry_run = 0 GROUP BY 1, 2, 3, 4, 5"),
                ("approval", "SELECT playbook, step, NULL, status, NULL, COUNT(*) FROM approvals WHERE created_at >= ?1 GROUP BY 1, 2, 3, 4, 5"),
            ];
            for (kind, sql) in queries {
                let mut stmt = c.prepare_cached(sql).map_err(db_err("counting for the trust report"))?;
                let rows = stmt
                    .query_map([since], |r| {
                        Ok(StatRow {
                            playbook: r.get(0)?,
                            step: r.get(1)?,
                            kind,
                            decision: r.get(2)?,
                            status: r.get(3)?,
                            trust: r.get(4)?,
                            count: r.get::<_, i64>(5)? as u64,
                        })
                    })
                    .map_err(db_err("counting for the trust report"))?;
                for r in rows {
                    out.push(r.map_err(db_err("counting for the trust report"))?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn change_history(&self, actions: &[String], since: i64) -> Result<ChangeHistory> {
        let actions = serde_json::to_string(actions).unwrap_or_else(|_| "[]".into());
        self.read(move |c| {
            const C: &str = "reading the change history";
            let filter = "action IN (SELECT value FROM json_each(?1)) AND trust IN ('log', 'guarded') \
                          AND status IN ('applied', 'reverted', 'drifted')";
            let first_at: Option<i64> = c
                .prepare_cached(&format!("SELECT MIN(created_at) FROM changes WHERE {filter}"))
                .and_then(|mut s| s.query_row([&actions], |r| r.get(0)))
                .map_err(db_err(C))?;
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT MIN(created_at), COUNT(*) FROM changes WHERE {filter} AND created_at >= ?2 \
                     GROUP BY run_id ORDER BY 1"
                ))
                .map_err(db_err(C))?;
            let rows = stmt
                .query_map(params![actions, since], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(db_err(C))?;
            let batches = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err(C))?;
            Ok(ChangeHistory { first_at, batches })
        })
        .await
    }

    async fn apply_case(&self, op: CaseOp) -> Result<CaseOutcome> {
        match self.submit(Op::Case(op)).await? {
            Reply::Case(o) => Ok(o),
            _ => Err(unexpected("updating a case")),
        }
    }

    async fn case_file(&self, id: &str) -> Result<Option<CaseFile>> {
        let id = id.to_owned();
        self.read(move |c| crate::cases::sqlite_file(c, &id)).await
    }

    async fn cases(&self, status: Option<CaseStatus>) -> Result<Vec<CaseRecord>> {
        self.read(move |c| crate::cases::sqlite_list(c, status))
            .await
    }

    async fn cursor(&self, source: &str) -> Result<Option<u64>> {
        let source = source.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT offset FROM cursors WHERE source = ?1")
                .and_then(|mut s| s.query_row([&source], |r| r.get::<_, i64>(0)).optional())
                .map(|o| o.map(|v| v as u64))
                .map_err(db_err("reading a cursor"))
        })
        .await
    }

    async fn counts(&self) -> Result<Counts> {
        self.read(|c| {
            let one = |sql: &str| -> Result<u64> {
                c.query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map(|v| v as u64)
                    .map_err(db_err("counting"))
            };
            Ok(Counts {
                events: one("SELECT COUNT(*) FROM events")?,
                runs: one("SELECT COUNT(*) FROM runs")?,
                runs_unfinished: one(
                    "SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')",
                )?,
                steps: one("SELECT COUNT(*) FROM steps")?,
                changes: one("SELECT COUNT(*) FROM changes")?,
                changes_applied: one("SELECT COUNT(*) FROM changes WHERE status = 'applied'")?,
            })
        })
        .await
    }
}
