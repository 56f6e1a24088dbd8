//! The single writer thread and its group commit: takes whatever operations are queued (up to a
//! batch), applies them in one transaction, chains their audit entries, commits, and only then
//! answers each caller. It never answers before the commit is durable.

use super::db_err;
use super::encode::{EventRow, RunRow, WriteRow};
use super::insert::{insert_audit, put_steps};
use super::row::hash_text;
use crate::{Accepted, Result, StoreError};
use belay_model::{
    ApprovalRecord, CaseOp, CaseOutcome, ChangeRecord, ChangeStatus, Demotion, PreparedDraft,
    RunRecord, now_ms,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::borrow::Cow;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// One operation for the writer. Rows come encoded by the caller (JSON serialized, audit entries
/// prepared), so the single writer only binds and chains. The writer borrows operations, so a
/// failed batch can be replayed one operation at a time without copies.
// Each operation is moved once through the writer's channel; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
pub(super) enum Op {
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
    PutVersions(Vec<belay_model::PlaybookVersion>),
    PutGuardrailSet(belay_model::GuardrailSet),
    ResetTrust {
        playbook: String,
        step: String,
        actor: String,
    },
    Case(CaseOp),
    /// A write to the users and tokens (`principals.rs`).
    Principal(super::principals::PrincipalOp),
    /// A pause of automation switched on or off (`pauses.rs`).
    Pause(super::pauses::PauseOp),
    /// A console session started, used or ended, or a failed sign-in (`sessions.rs`).
    Session(super::sessions::SessionOp),
    /// A write to the sealed secrets (`secrets.rs`).
    Secret(super::secrets::SecretOp),
    /// A delivery of an approval or a use of an e-mail link (`channels.rs`).
    Channel(super::channels::ChannelOp),
}

#[allow(clippy::large_enum_variant)]
pub(super) enum Reply {
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
pub(super) type Answer = (Result<Reply>, Op);

pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Answer>,
}

pub(super) struct Writer {
    /// Wakes the checkpointer (a full channel means it is already due to run).
    pub(super) committed: mpsc::SyncSender<()>,
    pub(super) conn: Connection,
    pub(super) worker: String,
    pub(super) lease_ms: i64,
    /// The chain head inside the current transaction (loaded on first append).
    pub(super) head: Option<(i64, String)>,
    pub(super) head_dirty: bool,
}

/// Audit entries one operation records, in order: prepared by the caller (borrowed from the
/// operation) or drafted by the writer.
pub(super) type Entries<'a> = Vec<Cow<'a, PreparedDraft>>;

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Job>, max_batch: usize) {
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
    pub(super) fn commit_batch(&mut self, batch: Vec<Job>) {
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

    pub(super) fn transact(&mut self, ops: &[Op]) -> Result<Vec<Reply>> {
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
    pub(super) fn exec_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Chains and stores the audit entries of a transaction's operations, in their order.
    pub(super) fn append_audit(&mut self, entries: &[Cow<'_, PreparedDraft>]) -> Result<()> {
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
}
