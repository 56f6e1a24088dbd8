//! Durable storage of events, runs, steps and the change journal.
//!
//! One [`Store`] trait, two implementations: [`SqliteStore`] (embedded default, one data
//! directory, a single batching writer) and [`PgStore`] (PostgreSQL, for several workers that
//! claim runs with `FOR UPDATE SKIP LOCKED` and leases). Both pass the same conformance suite
//! (`tests/conformance.rs`). Every method returns only once its writes are durable; the store
//! never decides anything, it records.
//!
//! Layout: each backend is a folder (`sqlite/`, `postgres/`) of one-job files; their schemas
//! are the numbered SQL files of `migrations/<backend>/`, embedded at build time; the column
//! lists and row decoders both share are in `rows.rs`.

mod audit;
mod cases;
mod channels;
mod codec;
mod pauses;
mod postgres;
mod principals;
mod rows;
mod secrets;
mod sessions;
mod sqlite;

pub use audit::authority::{MissingAuthority, approval_allows};
pub use audit::signing::{self as head_signing, HeadKey, PublicKey, SignedHead};
pub use audit::verify::{AuditProblem, verify_audit, verify_audit_against};
pub use channels::{ApprovalChannels, Delivery};
pub use pauses::{PauseRecord, Pauses};
pub use postgres::{PgOptions, PgStore};
pub use principals::{Lockout, Principals, TokenRecord, UserRecord};
pub use secrets::{
    KeyError, Keyring, SealedSecret, SecretInfo, SecretKey, Secrets, valid_secret_name,
};
pub use sessions::{SessionRecord, Sessions};
pub use sqlite::{
    BackupSummary, SqliteOptions, SqliteStore, Synchronous, WRITER_THREAD, backup as backup_sqlite,
};

use async_trait::async_trait;
use belay_model::{
    ApprovalRecord, ApprovalStatus, AuditDraft, AuditEntry, CaseFile, CaseOp, CaseOutcome,
    CaseRecord, CaseStatus, ChangeRecord, ChangeStatus, Demotion, Event, PlaybookVersion,
    RunRecord, RunStatus, StepRecord,
};
use serde::Serialize;
use serde_json::Value;

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation (or a write broke a store invariant).
    #[error("database error while {context}: {message}")]
    Database {
        /// What was being done, e.g. `journaling a change`.
        context: &'static str,
        /// The database's or the check's message.
        message: String,
    },
    /// Stored data is not what it must be (a row that does not decode, an expected row missing).
    #[error("stored data is invalid ({context}): {message}")]
    Corrupt {
        /// What was being read or checked.
        context: &'static str,
        /// Why it does not decode.
        message: String,
    },
    /// The store was closed (or its writer stopped); no further operation succeeds.
    #[error("the store is closed")]
    Closed,
    /// The named record (e.g. `case X`) is not stored.
    #[error("{0} does not exist")]
    NotFound(String),
}

/// A store operation's result; the error defaults to [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A change's idempotency key starts with its run's id and a slash: the stores find a run's
/// changes by that prefix, so a change filed under another run's key is refused.
pub(crate) fn check_change_key(c: &ChangeRecord) -> Result<()> {
    match c.idempotency_key.strip_prefix(c.run_id.as_str()) {
        Some(rest) if rest.starts_with('/') => Ok(()),
        _ => Err(StoreError::Database {
            context: "journaling a change",
            message: format!(
                "idempotency key `{}` does not start with its run id `{}/`",
                c.idempotency_key, c.run_id
            ),
        }),
    }
}

/// A playbook version is stored only under the hash of its source: a resumed run trusts the
/// stored text because it hashes to the run's `playbook_hash`.
pub(crate) fn check_version(v: &PlaybookVersion) -> Result<()> {
    if v.verify() {
        return Ok(());
    }
    Err(StoreError::Database {
        context: "storing a playbook version",
        message: format!(
            "the source of playbook `{}` does not hash to `{}`",
            v.name, v.hash
        ),
    })
}

/// What happened to an event offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accepted {
    /// Stored now, with its runs.
    New,
    /// An event with this id was accepted before; nothing was stored.
    Duplicate,
}

/// How far a file source has been ingested: its next unread byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The ingest source's configured name.
    pub source: String,
    /// Bytes from the start of the file.
    pub offset: u64,
}

/// A journaled change's outcome, recorded with its step's record in one transaction.
#[derive(Debug, Clone)]
pub struct FinishedChange {
    /// The step record, stored with the outcome.
    pub step: StepRecord,
    /// The journaled change.
    pub change_id: String,
    /// Its new status.
    pub status: ChangeStatus,
    /// The target's state after the change.
    pub after: Value,
    /// Why it failed.
    pub error: Option<String>,
}

/// One write of [`Store::write`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Inserts or replaces a step record ([`Store::put_step`]).
    Step(StepRecord),
    /// Journals a change before it is applied ([`Store::begin_change`]); answers
    /// [`Written::Change`].
    BeginChange(ChangeRecord),
    /// Records a change's outcome with its step's ([`Store::finish_change`]).
    FinishChange(FinishedChange),
    /// Moves a run to a status ([`Store::set_run_status`]).
    RunStatus {
        /// The run.
        run_id: String,
        /// Its new status; a final one releases its lease.
        status: RunStatus,
        /// Why it failed.
        error: Option<String>,
    },
    /// An entry of the audit trail that no state write implies (a decision, a violation).
    Audit(AuditDraft),
    /// Stores (inserts or replaces) an approval request the engine made or closed.
    Approval(Box<ApprovalRecord>),
}

/// The result of one [`Write`].
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Stored; nothing to return.
    Done,
    /// The journaled change: the new one, or the one already stored under its key.
    Change(Box<ChangeRecord>),
}

/// One event offered for acceptance, with the runs it starts.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The validated event (shared with the runs it starts).
    pub event: std::sync::Arc<Event>,
    /// The runs it starts (leased to this worker); none stored if it is a duplicate.
    pub runs: Vec<RunRecord>,
    /// The source's cursor just past this event.
    pub cursor: Option<Cursor>,
}

/// A named point in the change journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Unique name chosen by the person who set it.
    pub name: String,
    /// The last change journaled before the checkpoint, if any.
    pub last_change_id: Option<String>,
    /// In Unix milliseconds.
    pub created_at: i64,
    /// Who set it.
    pub actor: String,
}

/// Records people name by id (or by the first characters of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A run.
    Run,
    /// An approval.
    Approval,
    /// A journaled change.
    Change,
}

impl IdKind {
    /// The table its records are in.
    pub(crate) fn table(self) -> &'static str {
        match self {
            IdKind::Run => "runs",
            IdKind::Approval => "approvals",
            IdKind::Change => "changes",
        }
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this playbook (exact name).
    pub playbook: Option<String>,
    /// Only runs of this event.
    pub event_id: Option<String>,
    /// At most this many (the newest); all when none.
    pub limit: Option<usize>,
    /// Only runs listed after this one (its `created_at` and id): the next page.
    pub before: Option<(i64, String)>,
}

/// Which stored events to list, newest first (`Store::search_events`).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only events from this source (`user:alice`, `syslog:…`).
    pub source: Option<String>,
    /// Only events whose stored JSON contains this text (a pre-filter: callers check the
    /// field they mean).
    pub contains: Option<String>,
    /// Only events stored before this sequence number (the cursor of the next page).
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// Which approvals to list.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    /// Only approvals in this status.
    pub status: Option<ApprovalStatus>,
    /// Only approvals of this run.
    pub run_id: Option<String>,
}

/// One counted group of the trust report: records of one playbook step with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatRow {
    /// Playbook name.
    pub playbook: String,
    /// The version of the playbook the records were made with (its runs' `playbook_hash`).
    pub playbook_hash: String,
    /// Step id (without a `for_each` index).
    pub step: String,
    /// `step` (step records), `change` (journaled changes) or `approval`.
    pub kind: &'static str,
    /// The step's decision (steps only).
    pub decision: Option<String>,
    /// The record's status.
    pub status: String,
    /// The trust level it ran at (steps and changes).
    pub trust: Option<String>,
    /// Records in the group.
    pub count: u64,
}

/// Applied changes of some actions made under `log` or `guarded`, grouped by run: what a
/// baseline guardrail learns from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeHistory {
    /// When the first such change (at any time) was made.
    pub first_at: Option<i64>,
    /// `(time of the run's first change, number of changes)` per run since the given time.
    pub batches: Vec<(i64, u64)>,
}

/// Row counts, for summaries and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Accepted events.
    pub events: u64,
    /// Runs, child runs included.
    pub runs: u64,
    /// Runs `pending` or `running` (not those waiting for approval).
    pub runs_unfinished: u64,
    /// Step records (one per `for_each` item).
    pub steps: u64,
    /// Journaled changes, whatever their status.
    pub changes: u64,
    /// Changes in status `applied`.
    pub changes_applied: u64,
}

/// The storage interface the engine, the CLI and the server use (with the directory of
/// [`Principals`] the server authenticates, the [`Pauses`] of automation, console
/// [`Sessions`], the sealed [`Secrets`] and the [`ApprovalChannels`] approvals are delivered
/// through).
#[async_trait]
pub trait Store: Principals + Pauses + Sessions + Secrets + ApprovalChannels + Send + Sync {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// This process's identity as a worker; runs it executes are leased to it.
    fn worker_id(&self) -> &str;

    /// Accepts several events, in order; each is atomic with its runs and the cursor after it.
    /// Implementations may commit them together. The default accepts them one by one.
    async fn accept_batch(&self, batch: &[Incoming]) -> Result<Vec<Accepted>> {
        let mut out = Vec::with_capacity(batch.len());
        for i in batch {
            out.push(
                self.accept_event(&i.event, &i.runs, i.cursor.as_ref())
                    .await?,
            );
        }
        Ok(out)
    }

    /// Stores an event, the runs it starts and the source's new cursor in one transaction.
    /// An event whose id was accepted before is a [`Accepted::Duplicate`] and stores nothing
    /// but the cursor. New runs are leased to this worker.
    async fn accept_event(
        &self,
        event: &Event,
        runs: &[RunRecord],
        cursor: Option<&Cursor>,
    ) -> Result<Accepted>;

    /// Stores playbook versions, each unless one with its hash is stored (a version is never
    /// replaced: its hash is its content). A version whose source does not hash to its `hash`
    /// is refused. The engine stores the versions a run uses before the run itself.
    async fn put_playbook_versions(&self, versions: &[PlaybookVersion]) -> Result<()>;

    /// The stored playbook version whose source has this SHA-256 (a run's `playbook_hash`).
    async fn playbook_version(&self, hash: &str) -> Result<Option<PlaybookVersion>>;

    /// Every stored playbook version, oldest first (then by hash).
    async fn playbook_versions(&self) -> Result<Vec<PlaybookVersion>>;
    /// Stores a set of guardrail files under its hash, unless one is stored under it.
    async fn put_guardrail_set(&self, set: &belay_model::GuardrailSet) -> Result<()>;
    /// The guardrail set stored under `hash`.
    async fn guardrail_set(&self, hash: &str) -> Result<Option<belay_model::GuardrailSet>>;

    /// Stores a run (leased to this worker) unless one with its id exists; returns the stored
    /// run either way.
    async fn insert_run(&self, run: &RunRecord) -> Result<RunRecord>;

    /// Moves a run to a status; a final status releases its lease.
    async fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<()>;

    /// Inserts or replaces a step record.
    async fn put_step(&self, step: &StepRecord) -> Result<()>;

    /// Journals a change before it is applied, with its step if given, in one transaction. If
    /// a change with the same idempotency key exists, stores nothing and returns the existing one.
    /// The key must start with the change's run id and a slash.
    async fn begin_change(
        &self,
        step: Option<&StepRecord>,
        change: &ChangeRecord,
    ) -> Result<ChangeRecord>;

    /// Applies writes in order and returns once all are durable. The engine queues what needs
    /// no immediate durability (read results, change outcomes) and flushes it with the next
    /// write that does (a change's journal entry, a run's end). Implementations may commit
    /// the whole list together; the default applies the writes one by one.
    async fn write(&self, writes: Vec<Write>) -> Result<Vec<Written>> {
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            out.push(match w {
                Write::Step(s) => self.put_step(&s).await.map(|_| Written::Done)?,
                Write::BeginChange(c) => {
                    Written::Change(Box::new(self.begin_change(None, &c).await?))
                }
                Write::FinishChange(c) => self.finish_change(&c).await.map(|_| Written::Done)?,
                Write::RunStatus {
                    run_id,
                    status,
                    error,
                } => self
                    .set_run_status(&run_id, status, error.as_deref())
                    .await
                    .map(|_| Written::Done)?,
                Write::Audit(d) => self.append_audit(vec![d]).await.map(|_| Written::Done)?,
                Write::Approval(a) => self.put_approval(&a).await.map(|_| Written::Done)?,
            });
        }
        Ok(out)
    }

    /// Records a change's outcome and its step's, in one transaction.
    async fn finish_change(&self, change: &FinishedChange) -> Result<()>;

    /// The event with this id from `source`, if accepted. Ids are unique per source; without
    /// a source, the first event accepted under the id.
    async fn get_event(&self, source: Option<&str>, id: &str) -> Result<Option<Event>>;
    /// Stored events matching `filter`, newest first, each with its sequence number.
    async fn search_events(&self, filter: &EventFilter) -> Result<Vec<(i64, Event)>>;
    /// Ids of `kind` starting with `prefix`, in order, at most `limit` (ids are UUIDs: letters,
    /// digits and dashes, all below `~`).
    async fn ids_with_prefix(
        &self,
        kind: IdKind,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>>;
    /// Events received at or after `since` (Unix ms), oldest first, at most `limit`; with
    /// `without_runs`, only those that started no run at all.
    async fn events_since(
        &self,
        since: i64,
        without_runs: bool,
        limit: usize,
    ) -> Result<Vec<Event>>;
    /// The run with this id.
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>>;
    /// Runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// A run's step records, in execution order.
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>>;
    /// Journaled changes in the order they were made, optionally of one run.
    async fn changes(&self, run_id: Option<&str>) -> Result<Vec<ChangeRecord>>;
    /// Applied changes with an expiry (a step's `expires:`), soonest first, at most `limit`:
    /// all of them, or those due at `due_by` (Unix ms) when given.
    async fn expiring_changes(
        &self,
        due_by: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>>;
    /// Every journaled change in the order they were made, each without its inputs,
    /// before-state, after-state and inverse (JSON `null`): what selecting changes needs, at a
    /// size that does not grow with what each change held.
    async fn change_heads(&self) -> Result<Vec<ChangeRecord>>;
    /// One journaled change by its id.
    async fn get_change(&self, id: &str) -> Result<Option<ChangeRecord>>;
    /// The change journaled under this idempotency key (`run/step-key`).
    async fn change_by_key(&self, idempotency_key: &str) -> Result<Option<ChangeRecord>>;
    /// Changes of the given actions journaled at or after `since` that are applied or in
    /// flight (for rate guardrails, across every worker).
    async fn count_changes(&self, actions: &[String], since: i64) -> Result<u64>;

    /// Leases up to `limit` unfinished top-level runs to this worker: runs whose lease
    /// expired, whose owner is known to be gone, or that nobody owns. Never the runs this
    /// worker holds itself: those are being executed already, and claiming them again would
    /// execute them twice.
    async fn claim_runs(&self, limit: usize) -> Result<Vec<RunRecord>>;
    /// Leases up to `limit` top-level runs nobody owns (runs a decision made resumable), without
    /// touching runs any worker, this one included, is executing.
    async fn claim_released(&self, limit: usize) -> Result<Vec<RunRecord>>;
    /// Extends the leases of every unfinished run this worker owns.
    async fn renew_leases(&self) -> Result<u64>;

    /// Marks a journaled change (e.g. `reverted` after a verified rollback), audited as `actor`.
    async fn set_change_status(
        &self,
        change_id: &str,
        status: ChangeStatus,
        note: Option<&str>,
        actor: &str,
    ) -> Result<()>;

    /// Names the current end of the change journal ("known good"). Fails if the name exists.
    async fn create_checkpoint(&self, name: &str, actor: &str) -> Result<Checkpoint>;
    /// Checkpoints, oldest first.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;

    /// Appends entries to the audit trail (state writes append their own entries).
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<()>;
    /// Audit entries with `seq > after`, in order, at most `limit`.
    async fn audit_entries(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>>;
    /// The last entry's sequence number and hash as recorded beside the trail.
    async fn audit_head(&self) -> Result<Option<(i64, String)>>;
    /// The entries recording approval `id` (`approval.*` entries with it as subject), in
    /// order, each with the stored hash of the entry before it.
    async fn approval_trail(&self, id: &str) -> Result<Vec<AuditEntry>>;

    /// Inserts or replaces an approval, audited by its status.
    async fn put_approval(&self, approval: &ApprovalRecord) -> Result<()>;
    /// Records a person's decision: stores `approval` only if the stored one still has
    /// `expected_version` (returns false if someone else decided first). In the same
    /// transaction, each of `resume` that waits for approval becomes pending again (claimable).
    async fn decide_approval(
        &self,
        approval: &ApprovalRecord,
        expected_version: i64,
        resume: &[String],
        audit: AuditDraft,
    ) -> Result<bool>;
    /// The approval with this id.
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>>;
    /// Approvals, oldest first.
    async fn approvals(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRecord>>;

    /// Records (or replaces) a step's demotion, audited.
    async fn demote(&self, demotion: &Demotion) -> Result<()>;
    /// Lifts a step's demotion, audited as `actor`; false if it was not demoted.
    async fn reset_trust(&self, playbook: &str, step: &str, actor: &str) -> Result<bool>;
    /// Every step demotion in force.
    async fn demotions(&self) -> Result<Vec<Demotion>>;

    /// Counts of steps, changes and approvals per playbook step since `since`.
    async fn trust_stats(&self, since: i64) -> Result<Vec<StatRow>>;
    /// What a baseline guardrail learns from: see [`ChangeHistory`].
    async fn change_history(&self, actions: &[String], since: i64) -> Result<ChangeHistory>;

    /// Applies one change to a case file atomically; an unknown case is `NotFound` (except
    /// for `Open`).
    async fn apply_case(&self, op: CaseOp) -> Result<CaseOutcome>;
    /// A case with its whole file, or None.
    async fn case_file(&self, id: &str) -> Result<Option<CaseFile>>;
    /// Cases, the most recently updated first.
    async fn cases(&self, status: Option<CaseStatus>) -> Result<Vec<CaseRecord>>;

    /// The stored cursor (next unread byte) of a file source, by its name.
    async fn cursor(&self, source: &str) -> Result<Option<u64>>;
    /// Row counts of the main tables.
    async fn counts(&self) -> Result<Counts>;
}

/// The audit entry recording an approval's current state, as decided by `actor`.
pub fn approval_audit(actor: &str, approval: &ApprovalRecord) -> AuditDraft {
    audit::approval(actor, approval)
}
