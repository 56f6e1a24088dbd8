//! Executes one run: the run lifecycle (start, resume where its records stop, finish) and the
//! state every stage of a step shares. A step goes through the stages below, in order:
//!
//! - [`step`]: its `if`, the rate gate, then one item or a `for_each` fan-out;
//! - [`guard_gate`]: its planned changes against the guardrails, the whole batch at once
//!   ([`held_items`]: never-list hits set aside item by item, and people's decisions on held
//!   items; [`set_parts`]: the same for the targets of a set-level change; [`fan_out`]: a sub-playbook step's calls against the run tree's `batch` limits);
//! - [`plan`]: an item's inputs rendered and validated, then read, change or sub-playbook;
//! - [`read`]: a read action; [`subplaybook`]: a child run;
//! - [`change`]: trust, the [`approval_gate`] (acting on a stored decision only when the
//!   audit trail [`vouch`]es for it), then journal → apply → after-state → record;
//! - [`retry`]: each connector call's timeout and retries.
//!
//! [`state`] keeps the records and the write queue; [`report`] is what a run did; [`tree`] is
//! what the runs of one run tree share (their caller's level, their `batch` counts).
//! The executor never calls a connector's change action without its journal entry written
//! first, and a run's final status is written only after every record of it.

mod approval_gate;
mod change;
mod fan_out;
mod guard_gate;
mod held_items;
mod plan;
mod read;
mod report;
mod resolve;
mod retry;
mod set_parts;
mod state;
mod step;
mod subplaybook;
mod tree;
mod vouch;

pub use report::{RunReport, StepReport};

use crate::{Engine, EngineError, Result};
use belay_model::{
    ApprovalRecord, Decision, Event, RunRecord, RunStatus, StepRecord, StepStatus, TrustLevel,
};
use belay_playbook::{Call, OnError, Playbook, context_value};
use belay_store::Write;
use futures::future::BoxFuture;
use minijinja::Value as MjValue;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// An item's outcome with the records it wrote.
type ItemResult = Result<(Outcome, Vec<StepRecord>)>;

/// How one step (or item) ended.
enum Outcome {
    Done {
        status: StepStatus,
        output: Value,
    },
    Failed(String),
    /// Waiting for a person; the run pauses.
    Waiting,
}

/// One run being executed: what its stages read and the records they write.
struct RunState {
    engine: Arc<Engine>,
    run: RunRecord,
    pb: Arc<Playbook>,
    /// Where `pb` came from (the store or the loaded set), for the sub-playbooks it starts.
    version: crate::Version,
    event: Arc<Event>,
    base: MjValue,
    /// `steps.<id>` as expressions see it.
    outputs: Map<String, Value>,
    /// The same, converted once for expressions.
    outputs_mj: std::collections::BTreeMap<String, MjValue>,
    /// Records found in the store when resuming, by key.
    prior: HashMap<String, StepRecord>,
    records: Vec<StepRecord>,
    depth: usize,
    resumed: bool,
    /// Writes that need no immediate durability, flushed with the next one that does.
    pending: std::sync::Mutex<Vec<Write>>,
    /// Ceilings on steps' trust recorded by demotions, by step id.
    demoted: HashMap<String, TrustLevel>,
    /// This run's approvals found in the store (resumed runs only), oldest first.
    approvals: Vec<ApprovalRecord>,
    /// Items (or whole steps, for sub-playbook fan-outs) whose held batch a person approved:
    /// who allowed it, by item key or step id.
    batch_allowed: HashMap<String, String>,
    /// Items of the current step set aside before it runs (held or denied by a guardrail or a
    /// person): their records, by key; the step reports them without running them.
    set_aside: HashMap<String, StepRecord>,
    /// The part of a set-level step's targets each of its changes takes, by record key, when
    /// a guardrail set some of them apart.
    set_parts: HashMap<String, set_parts::SetPart>,
    /// In a dry run: the guardrail decision a step's changes would meet, by item key or
    /// step id.
    dry_holds: HashMap<String, (Decision, String)>,
    /// The highest level any step of this run may act at: the caller's effective level for
    /// a sub-playbook's run, `guarded` for a run no playbook called.
    ceiling: TrustLevel,
    /// Changes planned so far by the whole run tree, by `batch` guardrail.
    counts: Arc<tree::TreeCounts>,
    /// Who approved a held fan-out of sub-playbook calls that includes this run.
    tree_allowed: Option<String>,
    /// What the sub-playbooks this run called did, by the calling record's key.
    sub_reports: std::sync::Mutex<HashMap<String, Vec<StepReport>>>,
    /// An approval the audit trail does not vouch for was refused: the run fails (tampering),
    /// it is not `denied` by a person.
    unvouched: std::sync::atomic::AtomicBool,
}

/// Executes a run; `resumed` says whether records from an earlier attempt may exist.
pub(crate) async fn execute(
    engine: Arc<Engine>,
    run: RunRecord,
    event: Option<Arc<Event>>,
    resumed: bool,
) -> Result<RunReport> {
    execute_inner(engine, run, event, 0, None, resumed)
        .await
        .map(|(r, _)| r)
}

async fn fail_run(
    engine: &Engine,
    run: &RunRecord,
    message: String,
) -> Result<(RunReport, Map<String, Value>)> {
    engine
        .store
        .set_run_status(&run.id, RunStatus::Failed, Some(&message))
        .await?;
    let mut r = run.clone();
    r.status = RunStatus::Failed;
    r.error = Some(message);
    Ok((RunReport::from_records(&r, &[]), Map::new()))
}

fn execute_inner(
    engine: Arc<Engine>,
    run: RunRecord,
    event: Option<Arc<Event>>,
    depth: usize,
    caller: Option<tree::Caller>,
    resumed: bool,
) -> BoxFuture<'static, Result<(RunReport, Map<String, Value>)>> {
    Box::pin(execute_body(engine, run, event, depth, caller, resumed))
}

async fn execute_body(
    engine: Arc<Engine>,
    run: RunRecord,
    event: Option<Arc<Event>>,
    depth: usize,
    caller: Option<tree::Caller>,
    resumed: bool,
) -> Result<(RunReport, Map<String, Value>)> {
    let version = match engine.version_of(&run, resumed).await? {
        Ok(v) => v,
        Err(message) => return fail_run(&engine, &run, message).await,
    };
    let pb = version.playbook.clone();
    let event = match event {
        Some(e) => e,
        None => match engine
            .store
            .get_event(run.trigger_source(), &run.event_id)
            .await?
        {
            Some(e) => Arc::new(e),
            None => {
                return fail_run(
                    &engine,
                    &run,
                    format!("event `{}` of the run is missing", run.event_id),
                )
                .await;
            }
        },
    };
    let (ceiling, counts, tree_allowed) = match caller {
        Some(c) => (c.ceiling, c.counts, c.allowed),
        None => match subplaybook::caller_ceiling(&engine, &run).await? {
            Ok(c) => (c, Default::default(), None),
            Err(message) => return fail_run(&engine, &run, message).await,
        },
    };
    let prior: HashMap<String, StepRecord> = if resumed {
        engine
            .store
            .steps(&run.id)
            .await?
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect()
    } else {
        HashMap::new()
    };
    if resumed {
        let records: Vec<StepRecord> = prior.values().cloned().collect();
        subplaybook::seed_tree(&engine, &counts, &records).await?;
    }
    let demoted = if pb.steps.iter().any(|s| {
        s.trust.unwrap_or(pb.trust).min(ceiling) > TrustLevel::Approve
            && matches!(s.call, Call::Action(_))
    }) {
        engine.demotions_for(&pb).await?
    } else {
        HashMap::new()
    };
    let approvals = if resumed {
        engine
            .store
            .approvals(&belay_store::ApprovalFilter {
                run_id: Some(run.id.clone()),
                ..Default::default()
            })
            .await?
    } else {
        Vec::new()
    };
    let base = minijinja::context! {
        event => belay_playbook::event_value(event.clone()),
        vars => context_value(&pb.vars),
        inputs => context_value(&run.inputs),
        run => context_value(&json!({ "id": run.id, "playbook": run.playbook, "dry_run": run.dry_run })),
    };
    let mut st = RunState {
        engine: engine.clone(),
        run,
        pb: pb.clone(),
        version,
        event: event.clone(),
        base,
        outputs: Map::new(),
        outputs_mj: Default::default(),
        prior,
        records: Vec::new(),
        depth,
        resumed,
        pending: Default::default(),
        demoted,
        approvals,
        batch_allowed: HashMap::new(),
        set_aside: HashMap::new(),
        set_parts: HashMap::new(),
        dry_holds: HashMap::new(),
        ceiling,
        counts,
        tree_allowed,
        sub_reports: Default::default(),
        unvouched: Default::default(),
    };
    let mut failure: Option<String> = None;
    // Whether the failure is a denied change: the run ends `denied`, not `failed`.
    let mut denied = false;
    for (seq, step) in pb.steps.iter().enumerate() {
        let started = std::time::Instant::now();
        let outcome = st.run_step(step, seq as i64).await?;
        let (call, kind) = match &step.call {
            belay_playbook::Call::Action(a) => (a.clone(), "action"),
            belay_playbook::Call::Playbook(p) => (p.clone(), "playbook"),
        };
        let ended = match &outcome {
            Outcome::Done { status, .. } => status.as_str(),
            Outcome::Failed(_) => "failed",
            Outcome::Waiting => "waiting",
        };
        metrics::histogram!("belay_step_duration_seconds", "call" => call, "kind" => kind,
            "status" => ended)
        .record(started.elapsed().as_secs_f64());
        match outcome {
            Outcome::Done { status, output } => {
                st.set_output(&step.id, json!({ "status": status, "output": output }));
            }
            Outcome::Waiting => {
                st.flush(Some(Write::RunStatus {
                    run_id: st.run.id.clone(),
                    status: RunStatus::WaitingApproval,
                    error: None,
                }))
                .await?;
                st.run.status = RunStatus::WaitingApproval;
                return Ok((st.report(), st.outputs));
            }
            Outcome::Failed(message) => match step.on_error {
                OnError::Continue => {
                    st.set_output(
                        &step.id,
                        json!({ "status": "failed", "output": null, "error": message }),
                    );
                }
                OnError::Fail => {
                    denied = st
                        .records
                        .last()
                        .is_some_and(|r| r.decision == Decision::Denied)
                        && !st.unvouched.load(std::sync::atomic::Ordering::Relaxed);
                    failure = Some(format!("step `{}` failed: {message}", step.id));
                    break;
                }
                OnError::Rollback => {
                    // Make the outcomes of the changes so far durable, then undo them.
                    st.flush(None).await?;
                    let opts = crate::rollback::RollbackOptions {
                        dry_run: false,
                        force: false,
                        actor: format!("engine:on_error:{}", st.run.id),
                    };
                    let sel = crate::rollback::Selection::Run(st.run.id.clone());
                    let report = crate::rollback::rollback(&engine, sel, opts).await?;
                    let undone = report.count(crate::rollback::Outcome::Reverted);
                    let left = report.items.len()
                        - undone
                        - report.count(crate::rollback::Outcome::Unchanged);
                    failure = Some(format!(
                        "step `{}` failed: {message}; rolled back {undone} earlier change(s){}",
                        step.id,
                        if left > 0 {
                            format!(", {left} could not be undone")
                        } else {
                            String::new()
                        }
                    ));
                    break;
                }
            },
        }
    }
    let status = if failure.is_some() && denied {
        RunStatus::Denied
    } else if failure.is_some() {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    st.flush(Some(Write::RunStatus {
        run_id: st.run.id.clone(),
        status,
        error: failure.clone(),
    }))
    .await?;
    st.run.status = status;
    st.run.error = failure;
    Ok((st.report(), st.outputs))
}

impl From<String> for EngineError {
    fn from(s: String) -> Self {
        EngineError::Other(s)
    }
}
