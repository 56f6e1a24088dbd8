//! The reports of a run and its steps, as `belay run` prints them: built from the records the
//! executor wrote, never from anything it did not record. The steps of the sub-playbooks a run
//! called follow the step that called them, their keys prefixed with its key (`sub/block[0]`).

use belay_model::{Decision, RunRecord, RunStatus, StepRecord, StepStatus, TrustLevel};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// One executed or planned action, as `belay run --format json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    /// The step's id in the playbook; in a sub-playbook, prefixed with the calling step's key
    /// (`sub/block`).
    pub step: String,
    /// `step` or `step[i]` for a `for_each` item, prefixed like `step` in a sub-playbook;
    /// unique within the report.
    pub key: String,
    /// The action called, or `playbook:NAME` for a sub-playbook.
    pub action: String,
    /// The resolved inputs.
    pub with: Value,
    /// What the engine did with it (applied, asked for approval, held...).
    pub decision: Decision,
    /// The effective trust level of a change step (after demotions); none for reads.
    pub trust: Option<TrustLevel>,
    /// Where the step stands.
    pub status: StepStatus,
    /// The action's result (or, for a held step, what it waits on); null otherwise.
    pub output: Value,
    /// Why it failed, was denied or would be held; left out of JSON when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    /// The run's id (UUIDv7).
    pub run_id: String,
    /// The playbook's name.
    pub playbook: String,
    /// The event that triggered it.
    pub event_id: String,
    /// Where the run stands (waiting, succeeded, failed...).
    pub status: RunStatus,
    /// Why a failed run failed; left out of JSON when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run's steps in execution order, each sub-playbook's steps after the step that
    /// called it.
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// The report of a run from its stored records (`steps` in execution order), without
    /// sub-playbook steps.
    pub fn from_records(run: &RunRecord, steps: &[StepRecord]) -> RunReport {
        RunReport::from_owned(run, steps.to_vec())
    }

    /// Like [`RunReport::from_records`], taking the records instead of copying them.
    pub(crate) fn from_owned(run: &RunRecord, steps: Vec<StepRecord>) -> RunReport {
        RunReport::with_subs(run, steps, HashMap::new())
    }

    /// A run's report with, after each step that called a sub-playbook, the steps of that
    /// child run (`subs`, by the calling record's key) under keys prefixed with its key.
    pub(crate) fn with_subs(
        run: &RunRecord,
        steps: Vec<StepRecord>,
        mut subs: HashMap<String, Vec<StepReport>>,
    ) -> RunReport {
        let mut report = RunReport {
            run_id: run.id.clone(),
            playbook: run.playbook.clone(),
            event_id: run.event_id.clone(),
            status: run.status,
            error: run.error.clone(),
            steps: steps
                .into_iter()
                .map(|s| StepReport {
                    step: s.step,
                    key: s.key,
                    action: s.action,
                    with: s.with,
                    decision: s.decision,
                    trust: s.trust,
                    status: s.status,
                    output: s.output,
                    error: s.error,
                })
                .collect(),
        };
        if !subs.is_empty() {
            let own = std::mem::take(&mut report.steps);
            for s in own {
                let children = subs.remove(&s.key).unwrap_or_default();
                let prefix = s.key.clone();
                report.steps.push(s);
                report.steps.extend(children.into_iter().map(|mut c| {
                    c.key = format!("{prefix}/{}", c.key);
                    c.step = format!("{prefix}/{}", c.step);
                    c
                }));
            }
        }
        report
    }
}
