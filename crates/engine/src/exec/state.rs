//! A run's bookkeeping while it executes: the queue of writes and when it is flushed, the
//! step records, the outputs expressions see, reuse of records from before a crash, and each
//! step's effective trust (its declared level under its caller's and any demotion). It decides
//! nothing about a step and never calls a connector.

use super::{ItemResult, Outcome, RunReport, RunState};
use crate::Result;
use belay_connector_api::Connector;
use belay_model::{Decision, StepRecord, StepStatus, TrustLevel, now_ms};
use belay_playbook::{Call, Step, context_value};
use belay_store::{PauseRecord, Write, Written};
use minijinja::Value as MjValue;
use serde_json::Value;
use std::sync::Arc;

impl RunState {
    /// Queues a write that needs no immediate durability (flushed with the next that does).
    pub(super) fn queue(&self, w: Write) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w);
    }

    /// Writes everything queued, plus `last`, and waits until it is durable.
    pub(super) async fn flush(&self, last: Option<Write>) -> Result<Vec<Written>> {
        let writes = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.extend(last);
            std::mem::take(&mut *p)
        };
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.engine.store.write(writes).await?)
    }

    /// Sets `steps.<step>` for the expressions of later steps.
    pub(super) fn set_output(&mut self, step: &str, value: Value) {
        self.outputs_mj
            .insert(step.to_owned(), context_value(&value));
        self.outputs.insert(step.to_owned(), value);
    }

    /// The expression context: the run's base plus the outputs so far.
    pub(super) fn ctx(&self) -> MjValue {
        minijinja::context! { steps => MjValue::from(self.outputs_mj.clone()), ..self.base.clone() }
    }

    /// A new record of one step or item, running, with no inputs yet.
    pub(super) fn record(&self, step: &Step, seq: i64, key: &str, item: Option<i64>) -> StepRecord {
        StepRecord {
            run_id: self.run.id.clone(),
            key: key.to_owned(),
            step: step.id.clone(),
            seq,
            item,
            action: match &step.call {
                Call::Action(a) => a.clone(),
                Call::Playbook(p) => format!("playbook:{p}"),
            },
            with: Value::Null,
            decision: Decision::Read,
            trust: None,
            guardrails: step.guardrails.iter().map(|(g, _)| g.clone()).collect(),
            status: StepStatus::Running,
            output: Value::Null,
            error: None,
            attempts: 0,
            started_at: now_ms(),
            finished_at: None,
        }
    }

    /// An item set aside by the guard gate (already recorded), or a final record from before
    /// a crash, reused instead of executing again.
    pub(super) fn reuse(&mut self, key: &str) -> Option<Outcome> {
        if let Some(rec) = self.set_aside.remove(key) {
            return Some(match rec.status {
                StepStatus::Held => Outcome::Waiting,
                StepStatus::Failed => Outcome::Failed(rec.error.unwrap_or_default()),
                status => Outcome::Done {
                    status,
                    output: rec.output,
                },
            });
        }
        let rec = self.prior.get(key)?;
        if !rec.status.is_final() {
            return None;
        }
        let outcome = match rec.status {
            StepStatus::Failed => Outcome::Failed(rec.error.clone().unwrap_or_default()),
            s => Outcome::Done {
                status: s,
                output: rec.output.clone(),
            },
        };
        self.records.push(rec.clone());
        Some(outcome)
    }

    /// Records a step that failed before any item ran (its `if` or `for_each` did not evaluate).
    pub(super) async fn fail_early(
        &mut self,
        step: &Step,
        seq: i64,
        key: &str,
        item: Option<i64>,
        message: String,
    ) -> Result<Outcome> {
        let mut rec = self.record(step, seq, key, item);
        rec.status = StepStatus::Failed;
        rec.error = Some(message.clone());
        rec.finished_at = Some(now_ms());
        self.queue(Write::Step(rec.clone()));
        self.records.push(rec);
        Ok(Outcome::Failed(message))
    }
    /// Finishes an item as failed with `message`.
    pub(super) async fn fail(&self, mut rec: StepRecord, message: String) -> ItemResult {
        rec.status = StepStatus::Failed;
        rec.error = Some(message);
        self.finish(rec).await
    }

    /// Queues an item's final record and turns it into the item's outcome.
    pub(super) async fn finish(&self, mut rec: StepRecord) -> ItemResult {
        rec.finished_at = Some(now_ms());
        self.queue(Write::Step(rec.clone()));
        let outcome = match rec.status {
            StepStatus::Failed => Outcome::Failed(rec.error.clone().unwrap_or_default()),
            StepStatus::Held => Outcome::Waiting,
            s => Outcome::Done {
                status: s,
                output: rec.output.clone(),
            },
        };
        Ok((outcome, vec![rec]))
    }

    /// The connector serving `action`, or why there is none.
    pub(super) fn connector(
        &self,
        action: &str,
    ) -> std::result::Result<Arc<dyn Connector>, String> {
        self.engine
            .connectors
            .resolve(action)
            .ok_or_else(|| format!("no connector is configured for `{action}`"))
    }
    /// The report of what the run did so far, with the steps of the sub-playbooks it called.
    pub(super) fn report(&mut self) -> RunReport {
        let subs = std::mem::take(&mut *self.sub_reports.lock().unwrap_or_else(|p| p.into_inner()));
        RunReport::with_subs(&self.run, std::mem::take(&mut self.records), subs)
    }

    /// The step's effective level: its declared level, capped by the caller's level (for a
    /// sub-playbook's run) and by any recorded demotion.
    pub(super) fn trust_of(&self, step: &Step) -> TrustLevel {
        let declared = step.trust.unwrap_or(self.pb.trust).min(self.ceiling);
        match self.demoted.get(&step.id) {
            Some(cap) => declared.min(*cap),
            None => declared,
        }
    }

    /// The step's level now: [`Self::trust_of`], or `shadow` while an admin has paused all
    /// automation or this run's playbook (read from the store each time, so a pause set by any
    /// process governs the next change step of every run), with the pause in force.
    pub(super) async fn trust_now(&self, step: &Step) -> Result<(TrustLevel, Option<PauseRecord>)> {
        let trust = self.trust_of(step);
        if trust == TrustLevel::Shadow {
            return Ok((trust, None));
        }
        match self.engine.store.pause_of(&self.pb.name).await? {
            Some(p) => Ok((TrustLevel::Shadow, Some(p))),
            None => Ok((trust, None)),
        }
    }
}
