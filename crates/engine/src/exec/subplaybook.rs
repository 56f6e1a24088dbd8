//! A sub-playbook step: a child run with a deterministic id, so a resumed parent finds the
//! child it started and never starts it twice; a finished child is read back, not executed
//! again.

use super::{ItemResult, RunState, execute_inner};
use crate::{RunReport, new_run};
use belay_model::{Decision, RunStatus, StepRecord, StepStatus};
use serde_json::{Map, Value, json};

/// Deepest chain of sub-playbooks (cycles are rejected by lint; this is the backstop).
const MAX_DEPTH: usize = 8;

impl RunState {
    /// Starts (or finds) the child run of a sub-playbook step and executes it.
    pub(super) async fn sub_playbook(&self, name: &str, mut rec: StepRecord) -> ItemResult {
        rec.decision = Decision::SubPlaybook;
        let Some(pb) = self.engine.playbooks.get(name) else {
            rec.status = StepStatus::Failed;
            rec.error = Some(format!("playbook `{name}` is not loaded"));
            return self.finish(rec).await;
        };
        if self.depth + 1 >= MAX_DEPTH {
            rec.status = StepStatus::Failed;
            rec.error = Some(format!("sub-playbooks nested deeper than {MAX_DEPTH}"));
            return self.finish(rec).await;
        }
        let child = new_run(
            &pb,
            &self.run.event_id,
            Some((&self.run.id, &rec.key)),
            rec.with.clone(),
            self.run.dry_run,
        );
        let stored = self.engine.store.insert_run(&child).await?;
        let resumed = stored.created_at != child.created_at;
        let (report, outputs) = if stored.status.is_final() {
            let steps = self.engine.store.steps(&stored.id).await?;
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
                resumed,
            )
            .await?
        };
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
