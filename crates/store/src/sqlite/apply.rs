//! Each operation's statements inside the writer's transaction. Called only by the writer
//! thread; it never commits (the writer does, once per batch).

use super::db_err;
use super::encode::{ChangeRow, RunRow, StepRow, WriteRow};
use super::read::change_with_key;
use super::row::run_from_row;
use super::writer::{Entries, Op, Reply, Writer};
use crate::audit;
use crate::codec::to_text;
use crate::rows::RUN_COLS;
use crate::{Accepted, Result, StoreError};
use belay_model::{ApprovalRecord, ChangeRecord, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use std::borrow::Cow;

impl Writer {
    /// Applies one state write; returns the change already journaled under a new change's key.
    pub(super) fn apply_row<'a>(
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

    pub(super) fn apply<'a>(
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
                        .prepare_cached("INSERT INTO events (id, kind, source, time_ms, severity, body, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(source, id) DO NOTHING")
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
                claim(
                    c,
                    &format!(
                        "UPDATE runs SET owner = ?1, lease_until = ?2 WHERE id IN (\
                           SELECT id FROM runs WHERE status IN ('pending', 'running') AND parent_run IS NULL \
                           AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?3) \
                           ORDER BY created_at LIMIT ?4) RETURNING {RUN_COLS}"
                    ),
                    params![self.worker, now + self.lease_ms, now, *limit as i64],
                    "claiming runs",
                )
            }
            Op::Principal(p) => super::principals::apply(c, p, now, entries),
            Op::Pause(p) => super::pauses::apply(c, p, entries),
            Op::Session(s) => super::sessions::apply(c, s, entries),
            Op::Secret(s) => super::secrets::apply(c, s, entries),
            Op::Channel(op) => super::channels::apply(c, op, entries),
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
            Op::PutVersions(versions) => {
                let mut stmt = c
                    .prepare_cached(
                        "INSERT INTO playbook_versions (hash, name, body, created_at) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT(hash) DO NOTHING",
                    )
                    .map_err(db_err("storing a playbook version"))?;
                for v in versions {
                    stmt.execute(params![v.hash, v.name, to_text(v), v.created_at])
                        .map_err(db_err("storing a playbook version"))?;
                }
                Ok(Reply::Unit)
            }
            Op::PutGuardrailSet(set) => {
                c.prepare_cached(
                    "INSERT INTO guardrail_sets (hash, body, created_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(hash) DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![set.hash, to_text(set), set.created_at]))
                .map_err(db_err("storing a guardrail set"))?;
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
            Op::ClaimReleased(limit) => claim(
                c,
                &format!(
                    "UPDATE runs SET owner = ?1, lease_until = ?2 WHERE id IN (\
                           SELECT id FROM runs WHERE status = 'pending' AND parent_run IS NULL AND owner IS NULL \
                           ORDER BY created_at LIMIT ?3) RETURNING {RUN_COLS}"
                ),
                params![self.worker, now + self.lease_ms, *limit as i64],
                "claiming released runs",
            ),
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
    pub(super) fn insert_run(&self, row: &RunRow, now: i64) -> Result<bool> {
        let run = &row.rec;
        let owner = (!run.status.is_final()).then_some(self.worker.as_str());
        let lease = owner.map(|_| now + self.lease_ms);
        self.conn
            .prepare_cached(
                "INSERT INTO runs (id, event_id, event_source, playbook, playbook_hash, parent_run, status, dry_run, inputs, error, owner, lease_until, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT(id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.id,
                    run.event_id,
                    run.event_source,
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

/// Runs a claiming statement (an `UPDATE` returning the run columns): the runs it claimed,
/// oldest first.
fn claim(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: &'static str,
) -> Result<Reply> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err(context))?;
    let rows = stmt
        .query_map(params, run_from_row)
        .map_err(db_err(context))?;
    let mut runs = Vec::new();
    for r in rows {
        runs.push(r.map_err(db_err(context))??);
    }
    runs.sort_by_key(|r| r.created_at);
    Ok(Reply::Runs(runs))
}

/// Journals a change unless its idempotency key exists; returns the existing change if so.
pub(super) fn journal_change(c: &Connection, row: &ChangeRow) -> Result<Option<ChangeRecord>> {
    let change = &row.rec;
    let inserted = c
        .prepare_cached(
            "INSERT INTO changes (id, run_id, step_key, idempotency_key, action, target, with_json, before, after, inverse, trust, guardrails, allowed_by, status, error, created_at, updated_at, expires_at, items) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) ON CONFLICT(idempotency_key) DO NOTHING",
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
                change.updated_at,
                change.expires_at,
                change.items as i64
            ])
        })
        .map_err(db_err("journaling a change"))?;
    if inserted > 0 {
        return Ok(None);
    }
    change_with_key(c, &change.idempotency_key)?
        .ok_or(StoreError::Corrupt {
            context: "journaling a change",
            message: "conflicting key vanished".into(),
        })
        .map(Some)
}

pub(super) fn put_approval(c: &Connection, a: &ApprovalRecord) -> Result<()> {
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
