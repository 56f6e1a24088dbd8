//! A sub-playbook step: a child run with a deterministic id, so a resumed parent finds the
//! child it started and never starts it twice; a finished child is read back, not executed
//! again. Trust flows down: a child runs at the lower of its own levels and its caller's
//! effective level, so a call never lets a change act with more autonomy than the caller has.

use super::{ItemResult, RunState, execute_inner};
use crate::{Engine, Result, RunReport, new_run};
use belay_model::{Decision, RunRecord, RunStatus, StepRecord, StepStatus, TrustLevel};
use belay_playbook::Step;
use serde_json::{Map, Value, json};

/// Deepest chain of sub-playbooks (cycles are rejected by lint; this is the backstop).
const MAX_DEPTH: usize = 8;

impl RunState {
    /// Starts (or finds) the child run of a sub-playbook step and executes it.
    pub(super) async fn sub_playbook(
        &self,
        step: &Step,
        name: &str,
        mut rec: StepRecord,
    ) -> ItemResult {
        rec.decision = Decision::SubPlaybook;
        let (ceiling, _) = self.trust_now(step).await?;
        rec.trust = Some(ceiling);
        let Some(pb) = self.engine.sub_playbook(&self.version, name).await? else {
            rec.status = StepStatus::Failed;
            rec.error = Some(format!(
                "playbook `{name}` is neither loaded nor stored with `{}`",
                self.pb.name
            ));
            return self.finish(rec).await;
        };
        if self.depth + 1 >= MAX_DEPTH {
            rec.status = StepStatus::Failed;
            rec.error = Some(format!("sub-playbooks nested deeper than {MAX_DEPTH}"));
            return self.finish(rec).await;
        }
        let child = new_run(
            &pb,
            (&self.run.event_id, &self.run.event_source),
            Some((&self.run.id, &rec.key)),
            rec.with.clone(),
            self.run.dry_run,
        );
        // Its version is stored before its run (when the caller's came from the store, the
        // loaded one may not be).
        self.engine.keep_versions(&[&pb]).await?;
        let stored = self.engine.store.insert_run(&child).await?;
        let resumed = stored.created_at != child.created_at;
        let (report, outputs) = if stored.status.is_final() {
            let steps = self.engine.store.steps(&stored.id).await?;
            seed_tree(&self.engine, &self.counts, &steps).await?;
            (
                RunReport::from_records(&stored, &steps),
                outputs_from_records(&steps),
            )
        } else {
            execute_inner(
                self.engine.clone(),
                stored,
                Some(self.event.clone()),
                self.depth + 1,
                Some(super::tree::Caller {
                    ceiling,
                    counts: self.counts.clone(),
                    allowed: self
                        .batch_allowed
                        .get(&step.id)
                        .or(self.tree_allowed.as_ref())
                        .cloned(),
                }),
                resumed,
            )
            .await?
        };
        self.sub_reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.key.clone(), report.steps.clone());
        rec.output = json!({ "run_id": report.run_id, "status": report.status, "steps": outputs });
        match report.status {
            RunStatus::Succeeded => rec.status = StepStatus::Succeeded,
            RunStatus::WaitingApproval => rec.status = StepStatus::Held,
            _ => {
                rec.status = StepStatus::Failed;
                rec.error = Some(format!(
                    "sub-playbook `{name}` (run {}) {}",
                    report.run_id,
                    report.error.unwrap_or_else(|| report.status.to_string())
                ));
            }
        }
        self.finish(rec).await
    }
}

/// Counts, in the run tree's `batch` counts, the changes of finished records and of every
/// sub-playbook run below them (read from the store).
pub(super) async fn seed_tree(
    engine: &Engine,
    counts: &super::tree::TreeCounts,
    records: &[StepRecord],
) -> Result<()> {
    let finished = |rs: &[StepRecord]| -> Vec<StepRecord> {
        rs.iter().filter(|r| r.status.is_final()).cloned().collect()
    };
    let mut pending = vec![finished(records)];
    let mut seen = 0;
    while let Some(rs) = pending.pop() {
        counts.seed(&rs, &engine.guardrails, &engine.catalog);
        for r in rs.iter().filter(|r| r.decision == Decision::SubPlaybook) {
            seen += 1;
            if seen > 10_000 {
                break;
            }
            if let Some(child) = r.output.get("run_id").and_then(Value::as_str) {
                pending.push(finished(&engine.store.steps(child).await?));
            }
        }
    }
    Ok(())
}

/// The level a sub-playbook's run may act at, found from its callers' records when the run is
/// executed without its caller: the lowest effective level of the steps that called it, up to
/// the root run. `Err` says why it cannot be told (the run is then not executed).
pub(super) async fn caller_ceiling(
    engine: &Engine,
    run: &RunRecord,
) -> Result<std::result::Result<TrustLevel, String>> {
    let mut ceiling = TrustLevel::Guarded;
    let mut child = run.clone();
    for _ in 0..MAX_DEPTH {
        let Some(parent_id) = child.parent_run.clone() else {
            return Ok(Ok(ceiling));
        };
        let unknown = |why: String| {
            Ok(Err(format!(
                "cannot tell the trust level of the step that called run `{}`: {why}",
                child.id
            )))
        };
        let Some(parent) = engine.store.get_run(&parent_id).await? else {
            return unknown(format!("its caller `{parent_id}` is not stored"));
        };
        let pb = match engine
            .playbook_version(&parent.playbook, &parent.playbook_hash, false)
            .await?
        {
            Ok(v) => v.playbook,
            Err(why) => return unknown(why),
        };
        let key = child
            .id
            .strip_prefix(&format!("{parent_id}."))
            .unwrap_or_default();
        let step_id = key.split('[').next().unwrap_or_default();
        let Some(step) = pb.steps.iter().find(|s| s.id == step_id) else {
            return unknown(format!("`{}` has no step `{step_id}`", pb.name));
        };
        let mut level = step.trust.unwrap_or(pb.trust);
        if let Some(cap) = engine.demotions_for(&pb).await?.get(&step.id) {
            level = level.min(*cap);
        }
        ceiling = ceiling.min(level);
        child = parent;
    }
    Ok(Err(format!(
        "run `{}` is nested deeper than {MAX_DEPTH} sub-playbooks",
        run.id
    )))
}

/// `steps.<id>` of a finished run, rebuilt from its stored records (`for_each` items in order).
fn outputs_from_records(records: &[StepRecord]) -> Map<String, Value> {
    let mut out = Map::new();
    for r in records {
        match r.item {
            None => {
                out.insert(
                    r.step.clone(),
                    json!({ "status": r.status, "output": r.output }),
                );
            }
            Some(i) => {
                let entry = out
                    .entry(r.step.clone())
                    .or_insert_with(|| json!({ "status": "succeeded", "output": [] }));
                if let Some(items) = entry["output"].as_array_mut() {
                    let i = i.max(0) as usize;
                    if items.len() <= i {
                        items.resize(i + 1, Value::Null);
                    }
                    items[i] = r.output.clone();
                }
                if r.status == StepStatus::Failed {
                    entry["status"] = json!("failed");
                }
            }
        }
    }
    out
}
