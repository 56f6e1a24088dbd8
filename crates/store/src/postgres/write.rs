//! Statements shared by the write transactions: storing runs, steps and events, and chaining
//! the audit trail (always last in a transaction, so every worker takes the head's lock in the
//! same order). Never commits: the caller's transaction does.

use super::PgStore;
use super::error::db_err;
use super::row::{get, run_from_row};
use crate::audit;
use crate::rows::RUN_COLS;
use crate::{Accepted, Cursor, Result, StoreError};
use belay_model::{AuditDraft, AuditEntry, Event, RunRecord, StepRecord, now_ms};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::Json;

/// The database clock in epoch milliseconds, fixed for the statement.
pub(super) const NOW_MS: &str = "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::BIGINT";
pub(super) async fn insert_run(
    c: &impl GenericClient,
    run: &RunRecord,
    owner: Option<&str>,
    lease_ms: i64,
) -> Result<Option<RunRecord>> {
    // A final run is not leased: owner and lease stay NULL (NULL + lease is NULL).
    let lease = owner.map(|_| lease_ms);
    let sql = format!(
        "INSERT INTO runs (id, event_id, event_source, playbook, playbook_hash, parent_run, status, dry_run, inputs, error, owner, lease_until, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {NOW_MS} + $12, $13, $14) ON CONFLICT (id) DO NOTHING RETURNING {RUN_COLS}"
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
                &run.event_source,
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
pub(super) async fn append_audit(tx: &Transaction<'_>, drafts: Vec<AuditDraft>) -> Result<()> {
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

pub(super) async fn put_step(c: &impl GenericClient, s: &StepRecord) -> Result<()> {
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

impl PgStore {
    /// Stores an event, its runs (only if the event is new) and the cursor, in `tx`.
    pub(super) async fn accept_in(
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, id) DO NOTHING",
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
}
