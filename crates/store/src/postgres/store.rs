//! The [`Store`] implementation of [`PgStore`]: one transaction per write method, its audit
//! entries chained last; reads are delegated to [`super::read`].

use super::PgStore;
use super::error::{db_err, is_transient};
use super::read::{self, change_with_key};
use super::row::{change_from_row, get, rows_to, run_from_row};
use super::write::{NOW_MS, append_audit, insert_run, put_step};
use crate::audit;
use crate::rows::{CHANGE_COLS, RUN_COLS};
use crate::{
    Accepted, ApprovalFilter, ChangeHistory, Counts, Cursor, FinishedChange, Incoming, Result,
    RunFilter, StatRow, Store, StoreError,
};
use async_trait::async_trait;
use belay_model::{
    ApprovalRecord, AuditDraft, AuditEntry, CaseFile, CaseOp, CaseOutcome, CaseRecord, CaseStatus,
    ChangeRecord, ChangeStatus, Demotion, Event, PlaybookVersion, RunRecord, RunStatus, StepRecord,
    now_ms,
};
use tokio_postgres::types::Json;

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
        read::checkpoints(self).await
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
        read::audit_entries(self, after, limit).await
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        read::audit_head(self).await
    }

    async fn approval_trail(&self, id: &str) -> Result<Vec<AuditEntry>> {
        read::approval_trail(self, id).await
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
                "INSERT INTO changes (id, run_id, step_key, idempotency_key, action, target, with_json, before, after, inverse, trust, guardrails, allowed_by, status, error, created_at, updated_at, expires_at, items) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
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
                    &change.expires_at,
                    &(change.items as i64),
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
                None => change_with_key(&tx, &change.idempotency_key).await?.ok_or(
                    StoreError::Corrupt {
                        context: C,
                        message: "the conflicting change vanished".into(),
                    },
                )?,
            };
        tx.commit().await.map_err(db_err("committing a change"))?;
        Ok(stored)
    }

    async fn finish_change(&self, change: &FinishedChange) -> Result<()> {
        const C: &str = "recording a change outcome";
        let FinishedChange {
            step,
            change_id,
            status,
            after,
            error,
        } = change;
        let error = error.as_deref();
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let stmt = tx
            .prepare_cached("UPDATE changes SET status = $2, after = $3, error = $4, updated_at = $5 WHERE id = $1")
            .await
            .map_err(db_err(C))?;
        tx.execute(
            &stmt,
            &[change_id, &status.as_str(), after, &error, &now_ms()],
        )
        .await
        .map_err(db_err(C))?;
        put_step(&tx, step).await?;
        append_audit(
            &tx,
            vec![audit::change_finished(
                &self.worker,
                change_id,
                *status,
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

    async fn get_event(&self, source: Option<&str>, id: &str) -> Result<Option<Event>> {
        read::get_event(self, source, id).await
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        read::get_run(self, id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        read::list_runs(self, filter).await
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        read::steps(self, run_id).await
    }

    async fn changes(&self, run_id: Option<&str>) -> Result<Vec<ChangeRecord>> {
        read::changes(self, run_id).await
    }

    async fn change_heads(&self) -> Result<Vec<ChangeRecord>> {
        read::change_heads(self).await
    }

    async fn count_changes(&self, actions: &[String], since: i64) -> Result<u64> {
        read::count_changes(self, actions, since).await
    }

    async fn ids_with_prefix(
        &self,
        kind: crate::IdKind,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        const C: &str = "finding an id";
        let sql = format!(
            "SELECT id FROM {} WHERE id COLLATE \"C\" >= $1 AND id COLLATE \"C\" < $2 ORDER BY id COLLATE \"C\" LIMIT $3",
            kind.table()
        );
        let high = format!("{prefix}~");
        let rows = self
            .query(&sql, &[&prefix, &high, &(limit as i64)], C)
            .await?;
        rows.iter().map(|r| super::row::get(r, 0, C)).collect()
    }

    async fn search_events(&self, f: &crate::EventFilter) -> Result<Vec<(i64, Event)>> {
        const C: &str = "searching events";
        let rows = self
            .query(
                "SELECT seq, body FROM events WHERE ($1::text IS NULL OR kind = $1) \
                 AND ($2::text IS NULL OR source = $2) \
                 AND ($3::text IS NULL OR strpos(body::text, $3) > 0) \
                 AND seq < $4 ORDER BY seq DESC LIMIT $5",
                &[
                    &f.kind,
                    &f.source,
                    &f.contains,
                    &f.before_seq.unwrap_or(i64::MAX),
                    &i64::try_from(f.limit).unwrap_or(i64::MAX),
                ],
                C,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    super::row::get::<i64>(r, 0, C)?,
                    super::row::get_json(r, 1, C)?,
                ))
            })
            .collect()
    }

    async fn events_since(
        &self,
        since: i64,
        without_runs: bool,
        limit: usize,
    ) -> Result<Vec<Event>> {
        const C: &str = "listing events";
        let sql = format!(
            "SELECT body FROM events e WHERE received_at >= $1 {} ORDER BY seq LIMIT $2",
            if without_runs {
                "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id AND r.event_source = e.source)"
            } else {
                ""
            }
        );
        let rows = self.query(&sql, &[&since, &(limit as i64)], C).await?;
        rows.iter().map(|r| super::row::get_json(r, 0, C)).collect()
    }

    async fn expiring_changes(
        &self,
        due_by: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>> {
        read::expiring_changes(self, due_by, limit).await
    }

    async fn change_by_key(&self, idempotency_key: &str) -> Result<Option<ChangeRecord>> {
        read::change(self, read::ChangeKey::IdempotencyKey, idempotency_key).await
    }

    async fn get_change(&self, id: &str) -> Result<Option<ChangeRecord>> {
        read::change(self, read::ChangeKey::Id, id).await
    }

    async fn claim_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.claim(
            &format!(
                "status IN ('pending', 'running') AND parent_run IS NULL \
                 AND (owner IS NULL OR lease_until IS NULL OR lease_until < {NOW_MS})"
            ),
            limit,
            "claiming runs",
        )
        .await
    }

    async fn claim_released(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.claim(
            "status = 'pending' AND parent_run IS NULL AND owner IS NULL",
            limit,
            "claiming released runs",
        )
        .await
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
        read::get_approval(self, id).await
    }

    async fn approvals(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
        read::approvals(self, filter).await
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
        read::demotions(self).await
    }

    async fn put_playbook_versions(&self, versions: &[PlaybookVersion]) -> Result<()> {
        const C: &str = "storing a playbook version";
        if versions.is_empty() {
            return Ok(());
        }
        for v in versions {
            crate::check_version(v)?;
        }
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        for v in versions {
            tx.execute(
                "INSERT INTO playbook_versions (hash, name, body, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
                &[&v.hash, &v.name, &Json(v), &v.created_at],
            )
            .await
            .map_err(db_err(C))?;
        }
        tx.commit().await.map_err(db_err(C))
    }

    async fn playbook_version(&self, hash: &str) -> Result<Option<PlaybookVersion>> {
        read::playbook_version(self, hash).await
    }

    async fn playbook_versions(&self) -> Result<Vec<PlaybookVersion>> {
        read::playbook_versions(self).await
    }

    async fn put_guardrail_set(&self, set: &belay_model::GuardrailSet) -> Result<()> {
        const C: &str = "storing a guardrail set";
        let client = self.conn().await?;
        client
            .execute(
                "INSERT INTO guardrail_sets (hash, body, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (hash) DO NOTHING",
                &[&set.hash, &Json(set), &set.created_at],
            )
            .await
            .map_err(db_err(C))?;
        Ok(())
    }

    async fn guardrail_set(&self, hash: &str) -> Result<Option<belay_model::GuardrailSet>> {
        const C: &str = "reading a guardrail set";
        let row = self
            .query_opt(
                "SELECT body FROM guardrail_sets WHERE hash = $1",
                &[&hash],
                C,
            )
            .await?;
        row.map(|r| super::row::get_json(&r, 0, C)).transpose()
    }

    async fn trust_stats(&self, since: i64) -> Result<Vec<StatRow>> {
        read::trust_stats(self, since).await
    }

    async fn change_history(&self, actions: &[String], since: i64) -> Result<ChangeHistory> {
        read::change_history(self, actions, since).await
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
        read::case_file(self, id).await
    }

    async fn cases(&self, status: Option<CaseStatus>) -> Result<Vec<CaseRecord>> {
        read::cases(self, status).await
    }

    async fn cursor(&self, source: &str) -> Result<Option<u64>> {
        read::cursor(self, source).await
    }

    async fn counts(&self) -> Result<Counts> {
        read::counts(self).await
    }
}

impl PgStore {
    /// Leases to this worker up to `limit` top-level runs matching `filter` (SQL over `runs`;
    /// `$1` is this worker), skipping rows another worker holds locked; oldest first.
    async fn claim(
        &self,
        filter: &str,
        limit: usize,
        what: &'static str,
    ) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // ARRAY(...) is evaluated once, so the rows locked are exactly the rows updated.
        let sql = format!(
            "UPDATE runs SET owner = $1, lease_until = {NOW_MS} + $2 WHERE id = ANY(ARRAY(\
               SELECT id FROM runs WHERE {filter} \
               ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)) RETURNING {RUN_COLS}"
        );
        let rows = self
            .query(&sql, &[&self.worker, &self.lease_ms, &limit], what)
            .await?;
        let mut runs = rows_to(&rows, run_from_row)?;
        runs.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(runs)
    }
}
