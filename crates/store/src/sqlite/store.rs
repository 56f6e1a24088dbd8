//! The [`Store`] implementation of [`SqliteStore`]: writes are encoded here and handed to the
//! writer, reads are delegated to [`super::read`]. It never runs SQL itself.

use super::encode::{EventRow, RunRow, StepRow, WriteRow, change_row, encode};
use super::writer::{Op, Reply};
use super::{SqliteStore, db_err, read, unexpected};
use crate::audit;
use crate::{
    Accepted, ApprovalFilter, ChangeHistory, Counts, Cursor, FinishedChange, Incoming, Result,
    RunFilter, StatRow, Store, Write, Written,
};
use async_trait::async_trait;
use belay_model::{
    ApprovalRecord, AuditDraft, AuditEntry, CaseFile, CaseOp, CaseOutcome, CaseRecord, CaseStatus,
    ChangeRecord, ChangeStatus, Demotion, Event, PlaybookVersion, RunRecord, RunStatus, StepRecord,
};

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

    async fn finish_change(&self, change: &FinishedChange) -> Result<()> {
        self.write(vec![Write::FinishChange(change.clone())])
            .await
            .map(|_| ())
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
        let sql = format!(
            "SELECT id FROM {} WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3",
            kind.table()
        );
        let (low, high) = (prefix.to_owned(), format!("{prefix}~"));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql).map_err(db_err("finding an id"))?;
            let rows = stmt
                .query_map(rusqlite::params![low, high, limit as i64], |r| r.get(0))
                .map_err(db_err("finding an id"))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db_err("finding an id"))
        })
        .await
    }

    async fn search_events(&self, f: &crate::EventFilter) -> Result<Vec<(i64, Event)>> {
        let f = f.clone();
        self.read(move |c| read::search_events(c, &f)).await
    }

    async fn events_since(
        &self,
        since: i64,
        without_runs: bool,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let sql = format!(
            "SELECT body FROM events e WHERE received_at >= ?1 {} ORDER BY seq LIMIT ?2",
            if without_runs {
                "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id AND r.event_source = e.source)"
            } else {
                ""
            }
        );
        self.read(move |c| {
            read::all_bodies(
                c,
                &sql,
                rusqlite::params![since, limit as i64],
                "listing events",
                "event",
            )
        })
        .await
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
        read::checkpoints(self).await
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
        read::get_approval(self, id).await
    }

    async fn approvals(&self, filter: &ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
        read::approvals(self, filter).await
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
        read::demotions(self).await
    }

    async fn put_playbook_versions(&self, versions: &[PlaybookVersion]) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        for v in versions {
            crate::check_version(v)?;
        }
        self.submit(Op::PutVersions(versions.to_vec()))
            .await
            .map(|_| ())
    }

    async fn playbook_version(&self, hash: &str) -> Result<Option<PlaybookVersion>> {
        read::playbook_version(self, hash).await
    }

    async fn playbook_versions(&self) -> Result<Vec<PlaybookVersion>> {
        read::playbook_versions(self).await
    }

    async fn put_guardrail_set(&self, set: &belay_model::GuardrailSet) -> Result<()> {
        self.submit(Op::PutGuardrailSet(set.clone()))
            .await
            .map(|_| ())
    }

    async fn guardrail_set(&self, hash: &str) -> Result<Option<belay_model::GuardrailSet>> {
        read::body_by_id(
            self,
            "SELECT body FROM guardrail_sets WHERE hash = ?1",
            hash,
            "reading a guardrail set",
        )
        .await
    }

    async fn trust_stats(&self, since: i64) -> Result<Vec<StatRow>> {
        read::trust_stats(self, since).await
    }

    async fn change_history(&self, actions: &[String], since: i64) -> Result<ChangeHistory> {
        read::change_history(self, actions, since).await
    }

    async fn apply_case(&self, op: CaseOp) -> Result<CaseOutcome> {
        match self.submit(Op::Case(op)).await? {
            Reply::Case(o) => Ok(o),
            _ => Err(unexpected("updating a case")),
        }
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
