//! Executes one run: steps in order, `for_each` fan-out, sub-playbooks, retries, timeouts,
//! and the change protocol (read before-state → journal → apply → read after-state → record).

use crate::{Engine, EngineError, Result, new_run};
use belay_connector_api::{ActionError, Call as ConnectorCall, Connector, ErrorKind};
use belay_model::{
    ApprovalRecord, ApprovalStatus, ApprovalTerms, ChangeRecord, ChangeStatus, Decision, Event,
    OnTimeout, RunRecord, RunStatus, StepRecord, StepStatus, TrustLevel, change_hash, now_ms,
};
use belay_playbook::{ActionKind, ActionSpec, Call, OnError, Playbook, Step, context_value};
use belay_store::{Write, Written};
use futures::StreamExt;
use futures::future::BoxFuture;
use minijinja::Value as MjValue;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Deepest chain of sub-playbooks (cycles are rejected by lint; this is the backstop).
const MAX_DEPTH: usize = 8;
/// Most items a `for_each` may expand to.
const MAX_ITEMS: usize = 10_000;

/// One executed or planned action, as `belay run --format json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    pub step: String,
    pub key: String,
    pub action: String,
    pub with: Value,
    pub decision: Decision,
    pub trust: Option<TrustLevel>,
    pub status: StepStatus,
    pub output: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    pub run_id: String,
    pub playbook: String,
    pub event_id: String,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: Vec<StepReport>,
}

impl RunReport {
    pub fn from_records(run: &RunRecord, steps: &[StepRecord]) -> RunReport {
        RunReport::from_owned(run, steps.to_vec())
    }

    /// Like [`RunReport::from_records`], taking the records instead of copying them.
    pub(crate) fn from_owned(run: &RunRecord, steps: Vec<StepRecord>) -> RunReport {
        RunReport {
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
        }
    }
}

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

struct RunState {
    engine: Arc<Engine>,
    run: RunRecord,
    pb: Arc<Playbook>,
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
    /// Steps whose held batch a person approved: who allowed it, by step id.
    batch_allowed: HashMap<String, String>,
    /// In a dry run: the guardrail decision a step's changes would meet, by step id.
    dry_holds: HashMap<String, (Decision, String)>,
}

/// A planned change (or held batch) to ask a person about.
struct Request<'a> {
    step: &'a Step,
    key: String,
    action: &'a str,
    with: Value,
    target: String,
    change_hash: String,
    current_state: Value,
    verdicts: &'a [crate::guard::Verdict],
    reason: String,
    trust: TrustLevel,
}

/// What an approval (or its absence) lets a change do.
enum Gate {
    Proceed(String),
    Wait(String),
    Deny(String),
    Skip(String),
}

/// Executes a run; `resumed` says whether records from an earlier attempt may exist.
pub(crate) async fn execute(
    engine: Arc<Engine>,
    run: RunRecord,
    event: Option<Arc<Event>>,
    resumed: bool,
) -> Result<RunReport> {
    execute_inner(engine, run, event, 0, resumed)
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
    resumed: bool,
) -> BoxFuture<'static, Result<(RunReport, Map<String, Value>)>> {
    Box::pin(execute_body(engine, run, event, depth, resumed))
}

async fn execute_body(
    engine: Arc<Engine>,
    run: RunRecord,
    event: Option<Arc<Event>>,
    depth: usize,
    resumed: bool,
) -> Result<(RunReport, Map<String, Value>)> {
    let Some(pb) = engine.playbooks.get(&run.playbook) else {
        return fail_run(
            &engine,
            &run,
            format!("playbook `{}` is not loaded", run.playbook),
        )
        .await;
    };
    if pb.hash != run.playbook_hash {
        let msg = format!(
            "playbook `{}` changed since this run was planned (hash {} is now {}); it was not continued",
            pb.name,
            short(&run.playbook_hash),
            short(&pb.hash)
        );
        return fail_run(&engine, &run, msg).await;
    }
    let event = match event {
        Some(e) => e,
        None => match engine.store.get_event(&run.event_id).await? {
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
    let demoted = if pb.steps.iter().any(|s| {
        s.trust.unwrap_or(pb.trust) > TrustLevel::Approve && matches!(s.call, Call::Action(_))
    }) {
        engine.demotions_for(&pb.name).await?
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
        event => MjValue::from(minijinja::value::Serde(&*event)),
        vars => context_value(&pb.vars),
        inputs => context_value(&run.inputs),
        run => context_value(&json!({ "id": run.id, "playbook": run.playbook, "dry_run": run.dry_run })),
    };
    let mut st = RunState {
        engine: engine.clone(),
        run,
        pb: pb.clone(),
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
        dry_holds: HashMap::new(),
    };
    let mut failure: Option<String> = None;
    for (seq, step) in pb.steps.iter().enumerate() {
        let outcome = st.run_step(step, seq as i64).await?;
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
                return Ok((RunReport::from_owned(&st.run, st.records), st.outputs));
            }
            Outcome::Failed(message) => match step.on_error {
                OnError::Continue => {
                    st.set_output(
                        &step.id,
                        json!({ "status": "failed", "output": null, "error": message }),
                    );
                }
                OnError::Fail => {
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
    let status = if failure.is_some() {
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
    Ok((RunReport::from_owned(&st.run, st.records), st.outputs))
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

impl RunState {
    fn queue(&self, w: Write) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w);
    }

    /// Writes everything queued, plus `last`, and waits until it is durable.
    /// Tells each violated guardrail's `alert` target, through the `notify` connector, once the
    /// violation is on record. Delivery is best effort: its outcome is audited, and a failed
    /// delivery never changes what happens to the change itself.
    async fn send_alerts(
        &self,
        step: &Step,
        action: &str,
        violations: &[&crate::guard::Verdict],
    ) -> Result<()> {
        let alerts: Vec<_> = violations
            .iter()
            .filter_map(|v| v.alert.as_ref().map(|a| (a, v)))
            .collect();
        if alerts.is_empty() {
            return Ok(());
        }
        self.flush(None).await?;
        let notify = self.engine.connectors.resolve("notify.send");
        for (target, v) in alerts {
            let input = json!({
                "target": target,
                "subject": format!("belay: guardrail {} {} {action}", v.guardrail,
                    if v.on_violation == crate::guard::OnViolation::Deny { "denied" } else { "held" }),
                "message": format!(
                    "Playbook {} (run {}), step {}: {}",
                    self.run.playbook, self.run.id, step.id, v.reason
                ),
                "severity": "high",
            });
            let key = format!("{}/alert/{}/{}", self.run.id, step.id, v.guardrail);
            let outcome = match &notify {
                Some(c) => c
                    .call(ConnectorCall {
                        action: "notify.send",
                        input: &input,
                        idempotency_key: Some(&key),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message),
                None => Err("no notify connector is configured".to_owned()),
            };
            self.queue(Write::Audit(belay_model::AuditDraft {
                kind: "guardrail.alert".into(),
                actor: format!("engine:{}", self.engine.store.worker_id()),
                subject: self.run.id.clone(),
                detail: json!({
                    "step": step.id, "guardrail": v.guardrail, "target": target,
                    "delivered": outcome.is_ok(), "error": outcome.err(),
                }),
            }));
        }
        Ok(())
    }

    async fn flush(&self, last: Option<Write>) -> Result<Vec<Written>> {
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

    fn set_output(&mut self, step: &str, value: Value) {
        self.outputs_mj
            .insert(step.to_owned(), context_value(&value));
        self.outputs.insert(step.to_owned(), value);
    }

    fn ctx(&self) -> MjValue {
        minijinja::context! { steps => MjValue::from(self.outputs_mj.clone()), ..self.base.clone() }
    }

    fn record(&self, step: &Step, seq: i64, key: &str, item: Option<i64>) -> StepRecord {
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

    /// A final record from before a crash, reused instead of executing again.
    fn reuse(&mut self, key: &str) -> Option<Outcome> {
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

    async fn run_step(&mut self, step: &Step, seq: i64) -> Result<Outcome> {
        if step.for_each.is_none()
            && let Some(o) = self.reuse(&step.id)
        {
            return Ok(o);
        }
        let ctx = self.ctx();
        if let Some(cond) = &step.condition {
            match cond.eval_bool(&ctx) {
                Ok(true) => {}
                Ok(false) => {
                    let mut rec = self.record(step, seq, &step.id, None);
                    rec.decision = Decision::Skip;
                    rec.status = StepStatus::Skipped;
                    rec.finished_at = Some(now_ms());
                    self.queue(Write::Step(rec.clone()));
                    self.records.push(rec);
                    return Ok(Outcome::Done {
                        status: StepStatus::Skipped,
                        output: Value::Null,
                    });
                }
                Err(e) => {
                    return self
                        .fail_early(step, seq, &step.id, None, format!("`if`: {}", e.message))
                        .await;
                }
            }
        }
        // Steps under a rate limit run one at a time in this process, from the check until
        // their changes are journaled, so concurrent runs cannot all slip under the limit.
        let rated = match &step.call {
            Call::Action(a) => {
                let named: Vec<String> = step.guardrails.iter().map(|(g, _)| g.clone()).collect();
                self.engine
                    .guardrails
                    .governing(a, &named)
                    .iter()
                    .any(|g| g.rate.is_some() || g.baseline.is_some())
            }
            Call::Playbook(_) => false,
        };
        let engine = self.engine.clone();
        let _gate = if rated {
            Some(engine.rate_gate.lock().await)
        } else {
            None
        };
        if let Some(o) = self.guard(step, seq, &ctx).await? {
            return Ok(o);
        }
        let Some(for_each) = &step.for_each else {
            return self.run_item(step, seq, step.id.clone(), None, ctx).await;
        };
        let items = match for_each.render(&ctx) {
            Ok(Value::Array(items)) if items.len() <= MAX_ITEMS => items,
            Ok(Value::Array(items)) => {
                let msg = format!(
                    "`for_each` gave {} items, more than the limit of {MAX_ITEMS}",
                    items.len()
                );
                return self.fail_early(step, seq, &step.id, None, msg).await;
            }
            Ok(other) => {
                let msg = format!("`for_each` must give a list, it gave {}", kind_of(&other));
                return self.fail_early(step, seq, &step.id, None, msg).await;
            }
            Err(e) => {
                return self
                    .fail_early(
                        step,
                        seq,
                        &step.id,
                        None,
                        format!("`for_each`: {}", e.message),
                    )
                    .await;
            }
        };
        // Items run concurrently, at most `concurrency` at once; outputs keep item order.
        let mut reused: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            reused.push(self.reuse(&format!("{}[{i}]", step.id)));
        }
        let this: &RunState = self;
        let futs: Vec<BoxFuture<'_, (usize, ItemResult)>> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| reused[*i].is_none())
            .map(|(i, item)| {
                let ictx =
                    minijinja::context! { item => context_value(item), index => i, ..ctx.clone() };
                let key = format!("{}[{i}]", step.id);
                let fut: BoxFuture<'_, _> = Box::pin(async move {
                    (
                        i,
                        this.run_item_detached(step, seq, key, Some(i as i64), ictx)
                            .await,
                    )
                });
                fut
            })
            .collect();
        let results: Vec<(usize, ItemResult)> = futures::stream::iter(futs)
            .buffer_unordered(step.concurrency)
            .collect()
            .await;
        let mut outcomes: Vec<Option<Outcome>> = reused;
        for (i, r) in results {
            let (o, recs) = r?;
            self.records.extend(recs);
            outcomes[i] = Some(o);
        }
        self.records.sort_by_key(|r| (r.seq, r.item));
        let mut out = Vec::with_capacity(outcomes.len());
        let mut errors = Vec::new();
        let mut waiting = false;
        let mut all_planned = !outcomes.is_empty();
        for (i, o) in outcomes.into_iter().enumerate() {
            match o {
                Some(Outcome::Done { status, output }) => {
                    all_planned &= status == StepStatus::Planned;
                    out.push(output);
                }
                Some(Outcome::Failed(m)) => {
                    errors.push(format!("item {i}: {m}"));
                    out.push(Value::Null);
                }
                Some(Outcome::Waiting) => {
                    waiting = true;
                    out.push(Value::Null);
                }
                None => out.push(Value::Null),
            }
        }
        if !errors.is_empty() {
            return Ok(Outcome::Failed(errors.join("; ")));
        }
        if waiting {
            return Ok(Outcome::Waiting);
        }
        let status = if all_planned {
            StepStatus::Planned
        } else {
            StepStatus::Succeeded
        };
        Ok(Outcome::Done {
            status,
            output: Value::Array(out),
        })
    }

    /// Checks a change step's planned changes (every item at once) against the guardrails;
    /// on a violation the whole step is held (or denied) and nothing of it is applied.
    async fn guard(&mut self, step: &Step, seq: i64, ctx: &MjValue) -> Result<Option<Outcome>> {
        let Call::Action(name) = &step.call else {
            return Ok(None);
        };
        let Some(spec) = self.engine.catalog.get(name) else {
            return Ok(None);
        };
        let trust = self.trust_of(step);
        if spec.kind != ActionKind::Change
            || !matches!(
                trust,
                TrustLevel::Approve | TrustLevel::Log | TrustLevel::Guarded
            )
        {
            return Ok(None);
        }
        let named: Vec<String> = step.guardrails.iter().map(|(g, _)| g.clone()).collect();
        let governing = self.engine.guardrails.governing(name, &named);
        if governing.is_empty() {
            return Ok(None);
        }
        // The items this step would change, keyed as their records will be.
        let mut planned: Vec<(String, Option<i64>, Value)> = Vec::new();
        match &step.for_each {
            None => {
                if let Ok(w) = step.with.render(ctx) {
                    planned.push((step.id.clone(), None, w));
                }
            }
            Some(f) => {
                if let Ok(Value::Array(items)) = f.render(ctx) {
                    for (i, item) in items.iter().enumerate() {
                        let ictx = minijinja::context! { item => context_value(item), index => i, ..ctx.clone() };
                        if let Ok(w) = step.with.render(&ictx) {
                            planned.push((format!("{}[{i}]", step.id), Some(i as i64), w));
                        }
                    }
                }
            }
        }
        // Items decided before a crash are not planned again; held ones are, so that a
        // resumed run is checked (or its approved batch recognized) again.
        planned.retain(|(key, _, _)| !self.prior.get(key).is_some_and(|r| r.status.is_final()));
        if planned.is_empty() {
            return Ok(None);
        }
        // A person may have decided on this exact batch after a guardrail held it.
        let batch_key = format!("{}#batch", step.id);
        let batch: Value = planned
            .iter()
            .map(|(k, _, w)| json!({ "key": k, "with": w }))
            .collect();
        let batch_hash = change_hash(&self.run.id, &self.pb.hash, &batch_key, name, &batch);
        let mut decided: Option<(String, String)> = None;
        if trust != TrustLevel::Approve {
            match self.decided(step, &batch_key, &batch_hash) {
                Some(Gate::Proceed(by)) => {
                    self.batch_allowed.insert(step.id.clone(), by);
                    return Ok(None);
                }
                Some(Gate::Wait(id)) => {
                    return Ok(Some(self.hold_batch(step, seq, trust, planned, &id, None)));
                }
                Some(Gate::Deny(m)) => decided = Some(("deny".into(), m)),
                Some(Gate::Skip(m)) => decided = Some(("skip".into(), m)),
                None => {}
            }
        }
        if let Some((what, message)) = decided {
            for (key, item, with) in planned {
                let mut rec = self.record(step, seq, &key, item);
                rec.with = with;
                rec.trust = Some(trust);
                rec.finished_at = Some(now_ms());
                if what == "deny" {
                    rec.decision = Decision::Denied;
                    rec.status = StepStatus::Failed;
                    rec.error = Some(message.clone());
                } else {
                    rec.decision = Decision::Skip;
                    rec.status = StepStatus::Skipped;
                    rec.output = json!({ "reason": message });
                }
                self.queue(Write::Step(rec.clone()));
                self.records.push(rec);
            }
            return Ok(Some(if what == "deny" {
                Outcome::Failed(message)
            } else {
                Outcome::Done {
                    status: StepStatus::Skipped,
                    output: Value::Null,
                }
            }));
        }
        let targets: Vec<String> = planned.iter().map(|(_, _, w)| spec.target_of(w)).collect();
        let verdicts = self.verdicts(step, spec, &targets).await?;
        if self.run.dry_run {
            // Report what the guardrails would decide; hold nothing, record no approval.
            let failed: Vec<&crate::guard::Verdict> = verdicts.iter().filter(|v| !v.pass).collect();
            if !failed.is_empty() {
                let deny = failed
                    .iter()
                    .any(|v| v.on_violation == crate::guard::OnViolation::Deny);
                let reason = failed
                    .iter()
                    .map(|v| format!("{}: {}", v.guardrail, v.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                let decision = if deny {
                    Decision::GuardrailDeny
                } else if trust == TrustLevel::Approve {
                    Decision::AwaitApproval
                } else {
                    Decision::GuardrailHold
                };
                self.dry_holds.insert(step.id.clone(), (decision, reason));
            }
            return Ok(None);
        }
        let violations: Vec<&crate::guard::Verdict> = verdicts
            .iter()
            .filter(|v| {
                !v.pass
                    && (trust != TrustLevel::Approve
                        || v.on_violation == crate::guard::OnViolation::Deny)
            })
            .collect();
        if violations.is_empty() {
            return Ok(None);
        }
        let deny = violations
            .iter()
            .any(|v| v.on_violation == crate::guard::OnViolation::Deny);
        let reason = violations
            .iter()
            .map(|v| format!("{}: {}", v.guardrail, v.reason))
            .collect::<Vec<_>>()
            .join("; ");
        for v in &violations {
            self.queue(Write::Audit(belay_model::AuditDraft {
                kind: "guardrail.violation".into(),
                actor: format!("engine:{}", self.engine.store.worker_id()),
                subject: self.run.id.clone(),
                detail: json!({
                    "step": step.id, "action": name, "guardrail": v.guardrail, "reason": v.reason,
                    "on_violation": v.on_violation, "alert": v.alert, "targets": targets,
                }),
            }));
        }
        self.send_alerts(step, name, &violations).await?;
        if deny {
            for (key, item, with) in planned {
                let mut rec = self.record(step, seq, &key, item);
                rec.with = with;
                rec.trust = Some(trust);
                rec.guardrails = verdicts.iter().map(|v| v.guardrail.clone()).collect();
                rec.finished_at = Some(now_ms());
                rec.decision = Decision::GuardrailDeny;
                rec.status = StepStatus::Failed;
                rec.error = Some(format!("denied by guardrail — {reason}"));
                self.queue(Write::Step(rec.clone()));
                self.records.push(rec);
            }
            return Ok(Some(Outcome::Failed(format!(
                "denied by guardrail — {reason}"
            ))));
        }
        // Held whole: one approval decides the whole batch.
        let id = self.request_approval(Request {
            step,
            key: batch_key,
            action: name,
            with: batch,
            target: summarize_targets(&targets),
            change_hash: batch_hash,
            current_state: Value::Null,
            verdicts: &verdicts,
            reason: format!("held by guardrail — {reason}"),
            trust,
        });
        let names = verdicts.iter().map(|v| v.guardrail.clone()).collect();
        Ok(Some(self.hold_batch(
            step,
            seq,
            trust,
            planned,
            &id,
            Some((names, format!("held for a person by guardrail — {reason}"))),
        )))
    }

    /// Records every item of a held batch as held, waiting for approval `id`.
    fn hold_batch(
        &mut self,
        step: &Step,
        seq: i64,
        trust: TrustLevel,
        planned: Vec<(String, Option<i64>, Value)>,
        id: &str,
        violation: Option<(Vec<String>, String)>,
    ) -> Outcome {
        for (key, item, with) in planned {
            if let Some(prior) = self.prior.get(&key).filter(|_| violation.is_none()) {
                self.records.push(prior.clone());
                continue;
            }
            let mut rec = self.record(step, seq, &key, item);
            rec.with = with;
            rec.trust = Some(trust);
            rec.decision = Decision::GuardrailHold;
            rec.status = StepStatus::Held;
            rec.output = json!({ "approval_id": id });
            if let Some((names, message)) = &violation {
                rec.guardrails = names.clone();
                rec.error = Some(message.clone());
            }
            rec.finished_at = Some(now_ms());
            self.queue(Write::Step(rec.clone()));
            self.records.push(rec);
        }
        Outcome::Waiting
    }

    /// The guardrail verdicts on a step's planned targets, with the counts they need.
    async fn verdicts(
        &self,
        step: &Step,
        spec: &ActionSpec,
        targets: &[String],
    ) -> Result<Vec<crate::guard::Verdict>> {
        let named: Vec<String> = step.guardrails.iter().map(|(g, _)| g.clone()).collect();
        let mut recent = HashMap::new();
        let mut baselines = HashMap::new();
        for g in self.engine.guardrails.governing(&spec.name, &named) {
            let window = match (g.rate, &g.baseline) {
                (Some((_, per)), _) => Some(per),
                (None, Some(b)) => Some(b.per),
                _ => None,
            };
            if let Some(per) = window {
                let since = now_ms() - per.as_millis() as i64;
                let actions = self.engine.guardrails.actions_of(g, &self.engine.catalog);
                recent.insert(
                    g.name.clone(),
                    self.engine.store.count_changes(&actions, since).await?,
                );
            }
            if g.baseline.is_some() {
                baselines.insert(g.name.clone(), self.engine.baseline(g).await?);
            }
        }
        Ok(self.engine.guardrails.check(
            &named,
            &crate::guard::Context {
                action: spec,
                targets,
                recent: &recent,
                baselines: &baselines,
            },
        ))
    }

    /// Who triggered the run, when a person did (`belay run --as USER` records `user:USER`).
    fn triggered_by(&self) -> Option<String> {
        self.event.source.strip_prefix("user:").map(str::to_owned)
    }

    /// What the latest live approval for `key` says about the change with `hash`. A decision
    /// on a different change is superseded (and `None` returned, so a new one is requested).
    fn decided(&self, step: &Step, key: &str, hash: &str) -> Option<Gate> {
        let a = self
            .approvals
            .iter()
            .rev()
            .find(|a| a.key == key && a.status != ApprovalStatus::Superseded)?;
        if a.change_hash != hash {
            if matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved) {
                let mut old = a.clone();
                old.status = ApprovalStatus::Superseded;
                old.decided_at = Some(now_ms());
                old.version += 1;
                self.queue(Write::Approval(Box::new(old)));
            }
            return None;
        }
        let now = now_ms();
        Some(match a.status {
            ApprovalStatus::Approved => {
                let users: Vec<&str> = a
                    .votes
                    .iter()
                    .filter(|v| v.approve)
                    .map(|v| v.user.as_str())
                    .collect();
                Gate::Proceed(format!("approval:{} by {}", a.id, users.join(", ")))
            }
            ApprovalStatus::Denied => {
                let why = a
                    .votes
                    .iter()
                    .rev()
                    .find(|v| !v.approve)
                    .map(|v| match &v.comment {
                        Some(c) => format!("denied by {}: {c}", v.user),
                        None => format!("denied by {}", v.user),
                    })
                    .unwrap_or_else(|| "denied".into());
                Gate::Deny(format!("{why} (approval {})", a.id))
            }
            ApprovalStatus::Expired => timed_out(a),
            ApprovalStatus::Pending if now >= a.expires_at => {
                let mut exp = a.clone();
                exp.status = ApprovalStatus::Expired;
                exp.decided_at = Some(now);
                exp.version += 1;
                self.queue(Write::Approval(Box::new(exp)));
                timed_out(a)
            }
            ApprovalStatus::Pending | ApprovalStatus::Superseded => {
                let _ = step;
                Gate::Wait(a.id.clone())
            }
        })
    }

    /// Decides whether a change at `approve` may go ahead; requests an approval if none applies.
    async fn approval_gate(
        &self,
        step: &Step,
        spec: &ActionSpec,
        conn: &Arc<dyn Connector>,
        rec: &StepRecord,
    ) -> Result<Gate> {
        let hash = change_hash(&self.run.id, &self.pb.hash, &rec.key, &spec.name, &rec.with);
        if let Some(g) = self.decided(step, &rec.key, &hash) {
            return Ok(g);
        }
        let target = spec.target_of(&rec.with);
        let current_state = conn
            .read_state(&spec.name, &rec.with)
            .await
            .unwrap_or_else(|e| json!({ "unreadable": e.message }));
        let verdicts = self
            .verdicts(step, spec, std::slice::from_ref(&target))
            .await?;
        let held: Vec<String> = verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| format!("{}: {}", v.guardrail, v.reason))
            .collect();
        let id = self.request_approval(Request {
            step,
            key: rec.key.clone(),
            action: &spec.name,
            with: rec.with.clone(),
            target,
            change_hash: hash,
            current_state,
            verdicts: &verdicts,
            reason: if held.is_empty() {
                "trust level `approve`".into()
            } else {
                format!("trust level `approve`; guardrails: {}", held.join("; "))
            },
            trust: TrustLevel::Approve,
        });
        Ok(Gate::Wait(id))
    }

    /// Records a pending approval for a planned change (or batch); returns its id.
    fn request_approval(&self, r: Request<'_>) -> String {
        let now = now_ms();
        let terms = terms_of(r.step);
        let approval = ApprovalRecord {
            id: belay_model::new_id(),
            run_id: self.run.id.clone(),
            playbook: self.pb.name.clone(),
            step: r.step.id.clone(),
            key: r.key,
            action: r.action.to_owned(),
            with: r.with,
            target: r.target,
            change_hash: r.change_hash,
            current_state: r.current_state,
            guardrails: serde_json::to_value(r.verdicts).unwrap_or(Value::Null),
            reason: r.reason,
            trust: r.trust,
            expires_at: now.saturating_add(terms.timeout_ms),
            terms,
            triggered_by: self.triggered_by(),
            author: self.pb.author.clone(),
            history: Value::Null,
            status: ApprovalStatus::Pending,
            votes: Vec::new(),
            created_at: now,
            decided_at: None,
            version: 1,
        };
        let id = approval.id.clone();
        self.queue(Write::Approval(Box::new(approval)));
        id
    }

    async fn fail_early(
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

    async fn run_item(
        &mut self,
        step: &Step,
        seq: i64,
        key: String,
        item: Option<i64>,
        ctx: MjValue,
    ) -> Result<Outcome> {
        let (o, recs) = self.run_item_detached(step, seq, key, item, ctx).await?;
        self.records.extend(recs);
        Ok(o)
    }

    /// Executes one step or item; returns its outcome and the records it wrote.
    async fn run_item_detached(
        &self,
        step: &Step,
        seq: i64,
        key: String,
        item: Option<i64>,
        ctx: MjValue,
    ) -> ItemResult {
        let mut rec = self.record(step, seq, &key, item);
        let with = match step.with.render(&ctx) {
            Ok(v) => v,
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(format!("input {}", e.message));
                return self.finish(rec).await;
            }
        };
        rec.with = with;
        match &step.call {
            Call::Playbook(name) => self.sub_playbook(name, rec).await,
            Call::Action(name) => {
                let Some(spec) = self.engine.catalog.get(name) else {
                    rec.status = StepStatus::Failed;
                    rec.error = Some(format!("unknown action `{name}`"));
                    return self.finish(rec).await;
                };
                if let Err(errors) = spec.validate_input(&rec.with) {
                    rec.status = StepStatus::Failed;
                    rec.error = Some(format!(
                        "invalid inputs for `{name}`: {}",
                        errors.join("; ")
                    ));
                    return self.finish(rec).await;
                }
                match spec.kind {
                    ActionKind::Read => self.read(step, spec, rec).await,
                    ActionKind::Change => self.change(step, spec, rec).await,
                }
            }
        }
    }

    async fn finish(&self, mut rec: StepRecord) -> ItemResult {
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

    fn connector(&self, action: &str) -> std::result::Result<Arc<dyn Connector>, String> {
        self.engine
            .connectors
            .resolve(action)
            .ok_or_else(|| format!("no connector is configured for `{action}`"))
    }

    async fn read(&self, step: &Step, spec: &ActionSpec, mut rec: StepRecord) -> ItemResult {
        rec.decision = Decision::Read;
        let conn = match self.connector(&spec.name) {
            Ok(c) => c,
            Err(m) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(m);
                return self.finish(rec).await;
            }
        };
        let call = ConnectorCall {
            action: &spec.name,
            input: &rec.with,
            idempotency_key: None,
        };
        let (result, attempts) = self.call_with_retry(&conn, call, step).await;
        rec.attempts = attempts;
        match result {
            Ok(out) => {
                rec.status = StepStatus::Succeeded;
                rec.output = out;
            }
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(e.message);
            }
        }
        self.finish(rec).await
    }

    /// The step's effective level: its declared level, capped by any recorded demotion.
    fn trust_of(&self, step: &Step) -> TrustLevel {
        let declared = step.trust.unwrap_or(self.pb.trust);
        match self.demoted.get(&step.id) {
            Some(cap) => declared.min(*cap),
            None => declared,
        }
    }

    async fn change(&self, step: &Step, spec: &ActionSpec, mut rec: StepRecord) -> ItemResult {
        let trust = self.trust_of(step);
        rec.trust = Some(trust);
        if self.run.dry_run {
            // What would happen: applied, asked of a person, or stopped by a guardrail.
            rec.decision = match trust {
                TrustLevel::Shadow => Decision::Shadow,
                TrustLevel::Approve => Decision::AwaitApproval,
                TrustLevel::Log | TrustLevel::Guarded => Decision::DryRun,
            };
            if let Some((decision, reason)) = self.dry_holds.get(&step.id) {
                rec.decision = *decision;
                rec.error = Some(format!(
                    "would be {}: {reason}",
                    decision.as_str().replace('_', " ")
                ));
            }
            rec.status = StepStatus::Planned;
            return self.finish(rec).await;
        }
        if trust == TrustLevel::Shadow {
            rec.decision = Decision::Shadow;
            rec.status = StepStatus::Planned;
            return self.finish(rec).await;
        }
        let conn = match self.connector(&spec.name) {
            Ok(c) => c,
            Err(m) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(m);
                return self.finish(rec).await;
            }
        };
        rec.decision = Decision::Apply;
        let mut allowed_by = match self.batch_allowed.get(&step.id) {
            Some(by) => by.clone(),
            None => format!("trust:{trust}"),
        };
        if trust == TrustLevel::Approve {
            match self.approval_gate(step, spec, &conn, &rec).await? {
                Gate::Proceed(by) => allowed_by = by,
                Gate::Wait(id) => {
                    rec.decision = Decision::AwaitApproval;
                    rec.status = StepStatus::Held;
                    rec.output = json!({ "approval_id": id });
                    return self.finish(rec).await;
                }
                Gate::Deny(message) => {
                    rec.decision = Decision::Denied;
                    rec.status = StepStatus::Failed;
                    rec.error = Some(message);
                    return self.finish(rec).await;
                }
                Gate::Skip(reason) => {
                    rec.decision = Decision::Skip;
                    rec.status = StepStatus::Skipped;
                    rec.output = json!({ "reason": reason });
                    return self.finish(rec).await;
                }
            }
        }
        let key = format!("{}/{}", self.run.id, rec.key);
        let family = spec
            .name
            .split_once('.')
            .map_or(spec.name.as_str(), |(f, _)| f);
        // After a crash, the journal may already hold this change; its inputs are the ones
        // that were approved and journaled, whatever a repeated read gives now.
        let existing = if self.resumed {
            self.engine.store.change_by_key(&key).await?
        } else {
            None
        };
        if let Some(c) = &existing {
            rec.with = c.with.clone();
        }
        let _target = self
            .engine
            .target_lock(family, &spec.target_of(&rec.with))
            .lock()
            .await;
        let journaled = match existing {
            Some(c) => c,
            None => {
                let before = match conn.read_state(&spec.name, &rec.with).await {
                    Ok(v) => v,
                    Err(e) => {
                        rec.status = StepStatus::Failed;
                        rec.error = Some(format!(
                            "cannot read the target's state before the change: {}",
                            e.message
                        ));
                        return self.finish(rec).await;
                    }
                };
                let now = now_ms();
                let inverse = spec
                    .inverse
                    .as_ref()
                    .map_or(Value::Null, |i| i.resolve(&rec.with, &before));
                let change = ChangeRecord {
                    id: belay_model::new_id(),
                    run_id: self.run.id.clone(),
                    step_key: rec.key.clone(),
                    idempotency_key: key.clone(),
                    action: spec.name.clone(),
                    target: spec.target_of(&rec.with),
                    with: rec.with.clone(),
                    before,
                    after: Value::Null,
                    inverse,
                    trust,
                    guardrails: rec.guardrails.clone(),
                    allowed_by,
                    status: ChangeStatus::Pending,
                    error: None,
                    created_at: now,
                    updated_at: now,
                };
                // The journal entry is durable before the connector is called.
                match self.flush(Some(Write::BeginChange(change))).await?.pop() {
                    Some(Written::Change(c)) => *c,
                    _ => {
                        return Err(EngineError::Other(
                            "the store did not journal the change".into(),
                        ));
                    }
                }
            }
        };
        if journaled.status != ChangeStatus::Pending {
            // Journaled by an earlier attempt whose outcome is known: never apply again.
            rec.status = if journaled.status == ChangeStatus::Applied {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            };
            rec.error = journaled.error.clone();
            rec.output = json!({ "change_id": journaled.id, "resumed": true });
            return self.finish(rec).await;
        }
        let call = ConnectorCall {
            action: &spec.name,
            input: &rec.with,
            idempotency_key: Some(&key),
        };
        let (result, attempts) = self.call_with_retry(&conn, call, step).await;
        rec.attempts = attempts;
        let after = conn
            .read_state(&spec.name, &rec.with)
            .await
            .unwrap_or(Value::Null);
        let (status, error) = match result {
            Ok(out) => {
                rec.status = StepStatus::Succeeded;
                rec.output = out;
                (ChangeStatus::Applied, None)
            }
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(e.message.clone());
                (ChangeStatus::Failed, Some(e.message))
            }
        };
        rec.finished_at = Some(now_ms());
        self.queue(Write::FinishChange {
            step: rec.clone(),
            change_id: journaled.id.clone(),
            status,
            after,
            error,
        });
        let outcome = match rec.status {
            StepStatus::Failed => Outcome::Failed(rec.error.clone().unwrap_or_default()),
            s => Outcome::Done {
                status: s,
                output: rec.output.clone(),
            },
        };
        Ok((outcome, vec![rec]))
    }

    async fn call_with_retry(
        &self,
        conn: &Arc<dyn Connector>,
        call: ConnectorCall<'_>,
        step: &Step,
    ) -> (std::result::Result<Value, ActionError>, i64) {
        let timeout = step.timeout.unwrap_or(self.engine.config.action_timeout);
        let attempts = step.retry.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = match tokio::time::timeout(timeout, conn.call(call)).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::transient(format!(
                    "timed out after {}",
                    humanize(timeout)
                ))),
            };
            match r {
                Err(e) if e.kind == ErrorKind::Transient && attempt < attempts => {
                    let backoff = step
                        .retry
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(10));
                    tracing::warn!(
                        "{} attempt {attempt} failed ({}); retrying in {}",
                        call.action,
                        e.message,
                        humanize(backoff)
                    );
                    tokio::time::sleep(backoff).await;
                }
                Err(mut e) if attempt > 1 => {
                    e.message = format!("{} (after {attempt} attempts)", e.message);
                    return (Err(e), attempt as i64);
                }
                other => return (other, attempt as i64),
            }
        }
    }

    async fn sub_playbook(&self, name: &str, mut rec: StepRecord) -> ItemResult {
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

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl From<String> for EngineError {
    fn from(s: String) -> Self {
        EngineError::Other(s)
    }
}

/// The approval terms of a step (its `approval:` options, or the defaults).
fn terms_of(step: &Step) -> ApprovalTerms {
    let p = step.approval.clone().unwrap_or_default();
    ApprovalTerms {
        approvers: p.approvers,
        quorum: p.quorum.max(1),
        timeout_ms: i64::try_from(p.timeout.as_millis()).unwrap_or(i64::MAX),
        on_timeout: p.on_timeout,
        separation: p.separation,
    }
}

/// What an approval nobody answered in time turns into.
fn timed_out(a: &ApprovalRecord) -> Gate {
    let when = belay_model::ms_to_rfc3339(a.expires_at);
    match a.terms.on_timeout {
        OnTimeout::Deny => Gate::Deny(format!(
            "approval {} expired at {when} without a decision (on_timeout: deny)",
            a.id
        )),
        OnTimeout::Approve => Gate::Proceed(format!(
            "approval:{} expired at {when}; on_timeout: approve",
            a.id
        )),
        OnTimeout::Skip => Gate::Skip(format!(
            "approval {} expired at {when} without a decision (on_timeout: skip)",
            a.id
        )),
    }
}

/// A short description of a batch's targets for people.
fn summarize_targets(targets: &[String]) -> String {
    match targets {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
    }
}
