//! Opens fresh stores of each backend for the conformance suite.

use belay_model::{
    ApprovalRecord, ApprovalStatus, ApprovalTerms, ChangeStatus, Decision, OnTimeout, RunRecord,
    RunStatus, StepRecord, StepStatus, TrustLevel,
};
use belay_store::{FinishedChange, PgOptions, PgStore, SqliteOptions, SqliteStore, Store};
use serde_json::json;
use std::sync::Arc;

/// Lease used by the suite, short so expiry can be tested.
pub const LEASE_MS: i64 = 300;

pub enum Backend {
    Sqlite,
    Postgres,
}

/// Default PostgreSQL of the suite, overridden by `BELAY_TEST_DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Keeps whatever backs a store alive for the test, and cleans it up afterwards: a temporary
/// directory, or a PostgreSQL schema that is dropped.
pub struct Guard {
    _dir: Option<tempfile::TempDir>,
    _schema: Option<SchemaGuard>,
}

/// Drops a test's schema when the test ends (best effort: a failure only leaves it behind).
pub struct SchemaGuard {
    pub url: String,
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop is synchronous and may run on the test's runtime: use a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                let conn = tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
                drop(client);
                let _ = conn.await;
            });
        });
        let _ = cleanup.join();
    }
}

impl Guard {
    /// Runs SQL directly against the database behind the store, bypassing it (for tamper tests).
    #[allow(dead_code)] // shared by several test binaries; not every one tampers
    pub async fn raw_sql(&self, sql: &str) {
        if let Some(dir) = &self._dir {
            let c = rusqlite::Connection::open(dir.path().join("belay.db")).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            c.execute_batch(sql).unwrap();
        } else if let Some(g) = &self._schema {
            let (client, conn) = tokio_postgres::connect(&g.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let conn = tokio::spawn(conn);
            client
                .batch_execute(&format!("SET search_path TO \"{}\"; {sql}", g.schema))
                .await
                .unwrap();
            drop(client);
            let _ = conn.await;
        }
    }
}

impl Backend {
    pub async fn open(&self) -> (Arc<dyn Store>, Guard) {
        let (a, _b, g) = self.open_pair().await;
        (a, g)
    }

    /// Two workers on one fresh database.
    pub async fn open_pair(&self) -> (Arc<dyn Store>, Arc<dyn Store>, Guard) {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let opts = SqliteOptions {
                    lease_ms: LEASE_MS,
                    ..Default::default()
                };
                let a = SqliteStore::open(dir.path(), opts.clone()).unwrap();
                let b = SqliteStore::open(dir.path(), opts).unwrap();
                (
                    Arc::new(a),
                    Arc::new(b),
                    Guard {
                        _dir: Some(dir),
                        _schema: None,
                    },
                )
            }
            Backend::Postgres => {
                let url = std::env::var("BELAY_TEST_DATABASE_URL")
                    .unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let opts = PgOptions {
                    schema: Some(schema.clone()),
                    lease_ms: LEASE_MS,
                    pool_size: 4,
                };
                // Both at once: their migrations must serialize on the advisory lock.
                let (a, b) = tokio::join!(
                    PgStore::connect(&url, opts.clone()),
                    PgStore::connect(&url, opts)
                );
                let guard = Guard {
                    _dir: None,
                    _schema: Some(SchemaGuard {
                        url: url.clone(),
                        schema,
                    }),
                };
                let open = |r: belay_store::Result<PgStore>| {
                    r.unwrap_or_else(|e| {
                        panic!(
                            "cannot open the PostgreSQL store at {url}: {e}\n\
                             The PostgreSQL conformance tests need a server: start one, or point \
                             BELAY_TEST_DATABASE_URL at a database this user may create schemas in."
                        )
                    })
                };
                let (a, b) = (open(a), open(b));
                (Arc::new(a), Arc::new(b), guard)
            }
        }
    }
}

/// A pending approval of step `block` in run `run_id`, asked of anyone (quorum 1, denied
/// after a minute unanswered) at `created_at` for alice's run; the caller says what it is
/// about (playbook, action, inputs, target, hash, current state).
#[allow(dead_code)] // shared by several test binaries; not every one stores approvals
pub fn pending_approval(id: &str, run_id: &str, created_at: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        run_id: run_id.into(),
        playbook: String::new(),
        step: "block".into(),
        key: "block".into(),
        action: String::new(),
        with: json!(null),
        target: String::new(),
        change_hash: String::new(),
        current_state: json!(null),
        guardrails: json!([]),
        reason: "trust level `approve`".into(),
        trust: TrustLevel::Approve,
        terms: ApprovalTerms {
            approvers: vec![],
            quorum: 1,
            timeout_ms: 60_000,
            on_timeout: OnTimeout::Deny,
            separation: true,
        },
        triggered_by: Some("alice".into()),
        author: None,
        history: json!(null),
        status: ApprovalStatus::Pending,
        votes: vec![],
        created_at,
        expires_at: created_at + 60_000,
        decided_at: None,
        version: 1,
    }
}

/// Step `key` of run `run_id`, at `seq`, applied at trust level `log` in one attempt started
/// at `started_at`; the caller says what it called, with what, under which guardrails, and
/// what it returned.
#[allow(dead_code)] // shared by several test binaries; not every one stores steps
pub fn applied_step(
    run_id: &str,
    key: &str,
    seq: i64,
    status: StepStatus,
    started_at: i64,
) -> StepRecord {
    StepRecord {
        run_id: run_id.into(),
        key: key.into(),
        step: key.into(),
        seq,
        item: None,
        action: String::new(),
        with: json!(null),
        decision: Decision::Apply,
        trust: Some(TrustLevel::Log),
        guardrails: vec![],
        status,
        output: json!(null),
        error: None,
        attempts: 1,
        started_at,
        finished_at: None,
    }
}

/// Run `id` of playbook `pb` for event `event_id`, in `status`, created now.
#[allow(dead_code)] // shared by several test binaries; not every one stores runs
pub fn run_record(id: &str, event_id: &str, status: RunStatus) -> RunRecord {
    let now = belay_model::now_ms();
    RunRecord {
        id: id.into(),
        event_id: event_id.into(),
        event_source: String::new(),
        playbook: "pb".into(),
        playbook_hash: "h".into(),
        parent_run: None,
        status,
        dry_run: false,
        inputs: json!(null),
        error: None,
        created_at: now,
        updated_at: now,
    }
}

/// The outcome of change `change_id` applied by `step`, leaving the target in `after`.
#[allow(dead_code)] // shared by several test binaries; not every one journals changes
pub fn applied(step: StepRecord, change_id: &str, after: serde_json::Value) -> FinishedChange {
    FinishedChange {
        step,
        change_id: change_id.into(),
        status: ChangeStatus::Applied,
        after,
        error: None,
    }
}
