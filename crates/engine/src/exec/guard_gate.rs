//! The guard gate: a change step's planned changes, every item at once, checked against the
//! guardrails before any of them is journaled. A batch, rate or baseline violation holds the
//! whole step for a person (one approval decides the batch) or denies it; a never-list hit
//! holds or denies only the items it concerns ([`super::held_items`]), and the rest go ahead.
//! Every violation is audited and alerted. Nothing held or denied here is ever applied.

use super::approval_gate::Request;
use super::{Outcome, RunState};
use crate::Result;
use crate::guard::{OnViolation, Verdict};
use belay_connector_api::Call as ConnectorCall;
use belay_model::{Decision, StepStatus, TrustLevel, change_hash, now_ms};
use belay_playbook::{ActionKind, ActionSpec, Call, Step, context_value};
use belay_store::Write;
use minijinja::Value as MjValue;
use serde_json::{Value, json};
use std::collections::HashMap;

/// An item a step plans: its record's key, its `for_each` index and its rendered inputs.
pub(super) type Planned = (String, Option<i64>, Value);

/// A step's planned items as one batch a person decides on: its key (`STEP#batch`), each
/// item's key and inputs, and its change hash.
pub(super) struct Batch {
    pub(super) key: String,
    pub(super) with: Value,
    pub(super) hash: String,
}

impl Batch {
    /// The approval request of the batch after guardrails held it for `reason`: `action` on
    /// `target` (a summary of the items' targets), whatever the step's trust.
    pub(super) fn request<'a>(
        self,
        step: &'a Step,
        trust: TrustLevel,
        action: &'a str,
        target: String,
        verdicts: &'a [Verdict],
        reason: &str,
    ) -> Request<'a> {
        Request {
            step,
            key: self.key,
            action,
            with: self.with,
            target,
            change_hash: self.hash,
            current_state: Value::Null,
            verdicts,
            reason: format!("{} — {reason}", crate::approvals::HELD_BY_GUARDRAIL),
            trust,
        }
    }
}

/// Whether any of `verdicts` denies, and each one's `guardrail: reason`, joined.
pub(super) fn summary(verdicts: &[&Verdict]) -> (bool, String) {
    let deny = verdicts.iter().any(|v| v.on_violation == OnViolation::Deny);
    let reason = verdicts
        .iter()
        .map(|v| format!("{}: {}", v.guardrail, v.reason))
        .collect::<Vec<_>>()
        .join("; ");
    (deny, reason)
}

impl RunState {
    /// Checks a change step's planned changes (every item at once) against the guardrails;
    /// on a violation the whole step is held (or denied) and nothing of it is applied.
    pub(super) async fn guard(
        &mut self,
        step: &Step,
        seq: i64,
        ctx: &MjValue,
    ) -> Result<Option<Outcome>> {
        let name = match &step.call {
            Call::Action(name) => name,
            Call::Playbook(child) => return self.guard_fan_out(step, seq, ctx, child).await,
        };
        let engine = self.engine.clone();
        let Some(spec) = engine.catalog.get(name) else {
            return Ok(None);
        };
        let (trust, _) = self.trust_now(step).await?;
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
        let mut planned = self.planned(step, ctx);
        if planned.is_empty() {
            return Ok(None);
        }
        // `batch` limits count the whole run tree: what this step plans goes on top of what
        // the tree planned before it (its own earlier steps, its callers', its siblings').
        // Each target of a set-level change counts as one change.
        let limits = super::tree::batch_limits(&self.engine.guardrails, name, &named);
        let n = planned
            .iter()
            .map(|(_, _, w)| spec.target_count(w) as u64)
            .sum();
        let before = self.counts.reserve(&limits, n);
        // A person may have decided on items a guardrail held earlier (the whole batch, or
        // the items a never-list held): those are settled first, the rest checked below.
        if trust != TrustLevel::Approve {
            if let Some(outcome) = self
                .settle_held(step, seq, trust, name, &mut planned)
                .await?
            {
                return Ok(Some(outcome));
            }
            if planned.is_empty() {
                return Ok(None);
            }
        }
        let targets: Vec<String> = planned
            .iter()
            .flat_map(|(_, _, w)| spec.targets_of(w))
            .collect();
        let mut verdicts = self.verdicts(step, spec, &targets).await?;
        // A set-level change (`*_many`) is one item of many targets. Outside a dry run and a
        // `for_each`, a never-list hit on some of its targets holds (or denies) those targets
        // apart (`super::set_parts`); otherwise it holds the whole change.
        let set_level = targets.len() != planned.len();
        if set_level && (self.run.dry_run || step.for_each.is_some()) {
            verdicts.iter_mut().for_each(|v| v.items.clear());
        }
        if self.tree_allowed.is_none() {
            super::tree::check_tree(&mut verdicts, &limits, &before, n);
        }
        let violations: Vec<&Verdict> = verdicts
            .iter()
            .filter(|v| {
                !v.pass && (trust != TrustLevel::Approve || v.on_violation == OnViolation::Deny)
            })
            .collect();
        // A never-list hit on some items only holds (or denies) those items; any other
        // violation, or hits on every item, concern the whole batch.
        let by_item = !violations.is_empty()
            && violations.iter().all(|v| !v.items.is_empty())
            && violations
                .iter()
                .flat_map(|v| v.items.iter())
                .collect::<std::collections::HashSet<_>>()
                .len()
                < targets.len();
        // The hit targets of a set-level change become items of their own, decided apart.
        let (planned, targets) = if by_item && set_level {
            self.split_set(spec, planned, &targets, &mut verdicts)
        } else {
            (planned, targets)
        };
        let violations: Vec<&Verdict> = verdicts
            .iter()
            .filter(|v| {
                !v.pass && (trust != TrustLevel::Approve || v.on_violation == OnViolation::Deny)
            })
            .collect();
        if self.run.dry_run {
            // Report what the guardrails would decide; hold nothing, record no approval.
            let failed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.pass).collect();
            if !failed.is_empty() {
                let (deny, reason) = summary(&failed);
                let decision = if deny {
                    Decision::GuardrailDeny
                } else if trust == TrustLevel::Approve {
                    Decision::AwaitApproval
                } else {
                    Decision::GuardrailHold
                };
                if by_item {
                    for i in violations.iter().flat_map(|v| v.items.iter()) {
                        if let Some((key, _, _)) = planned.get(*i) {
                            self.dry_holds
                                .insert(key.clone(), (decision, reason.clone()));
                        }
                    }
                } else {
                    self.dry_holds.insert(step.id.clone(), (decision, reason));
                }
            }
            return Ok(None);
        }
        self.audit_learning(step, name, &verdicts, n as usize);
        if violations.is_empty() {
            return Ok(None);
        }
        let keys: Vec<String> = planned.iter().map(|(k, _, _)| k.clone()).collect();
        self.audit_violations(step, name, &violations, Some((&targets, &keys)));
        self.send_alerts(step, name, &violations).await?;
        if by_item {
            self.hold_items(step, seq, trust, name, planned, &targets, &verdicts)?;
            return Ok(None);
        }
        let (deny, reason) = summary(&violations);
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
        let target = summarize_targets(&targets);
        let batch = self.batch(step, name, &planned);
        let request = batch.request(step, trust, name, target, &verdicts, &reason);
        Ok(Some(self.hold_for_person(request, seq, planned, &reason)))
    }

    /// The items `step` would run, keyed as their records will be. Items decided before a
    /// crash are not planned again; held ones are, so that a resumed run is checked (or its
    /// approved batch recognized) again.
    pub(super) fn planned(&self, step: &Step, ctx: &MjValue) -> Vec<Planned> {
        let mut planned: Vec<Planned> = Vec::new();
        match &step.for_each {
            None => {
                if let Ok(w) = step.with.render(ctx) {
                    planned.push((step.id.clone(), None, self.with_native_expiry(step, w)));
                }
                // Targets of a set-level change held apart earlier are decided on again.
                planned.extend(self.prior_parts(step));
            }
            Some(f) => {
                if let Ok(Value::Array(items)) = f.render(ctx) {
                    for (i, item) in items.iter().enumerate() {
                        let ictx = minijinja::context! { item => context_value(item), index => i, ..ctx.clone() };
                        if let Ok(w) = step.with.render(&ictx) {
                            let w = self.with_native_expiry(step, w);
                            planned.push((format!("{}[{i}]", step.id), Some(i as i64), w));
                        }
                    }
                }
            }
        }
        planned.retain(|(key, _, _)| !self.prior.get(key).is_some_and(|r| r.status.is_final()));
        planned
    }

    /// What a person decides on when a step's planned items are held whole.
    pub(super) fn batch(&self, step: &Step, action: &str, planned: &[Planned]) -> Batch {
        let key = format!("{}#batch", step.id);
        let with: Value = planned
            .iter()
            .map(|(k, _, w)| json!({ "key": k, "with": w }))
            .collect();
        let hash = change_hash(&self.run.id, &self.pb.hash, &key, action, &with);
        Batch { key, with, hash }
    }

    /// Audits each violation of a step's planned `action`, with the targets when known (and
    /// the items' keys beside them): all of them, or those of the items the violation concerns.
    pub(super) fn audit_violations(
        &mut self,
        step: &Step,
        action: &str,
        violations: &[&Verdict],
        planned: Option<(&[String], &[String])>,
    ) {
        for v in violations {
            let mut detail = json!({
                "step": step.id, "action": action, "guardrail": v.guardrail, "reason": v.reason,
                "on_violation": v.on_violation, "alert": v.alert,
            });
            match planned {
                Some((targets, keys)) if !v.items.is_empty() => {
                    let pick = |of: &[String]| -> Vec<String> {
                        v.items.iter().filter_map(|i| of.get(*i).cloned()).collect()
                    };
                    detail["targets"] = json!(pick(targets));
                    detail["items"] = json!(pick(keys));
                }
                Some((targets, _)) => detail["targets"] = json!(targets),
                None => {}
            }
            self.queue(Write::Audit(belay_model::AuditDraft {
                kind: "guardrail.violation".into(),
                actor: format!("engine:{}", self.engine.store.worker_id()),
                subject: self.run.id.clone(),
                detail,
            }));
        }
    }

    /// Audits each baseline guardrail that let a step's `n` planned changes of `action` through
    /// while still learning (its verdict passes and says how much history it has and needs).
    pub(super) fn audit_learning(&self, step: &Step, action: &str, verdicts: &[Verdict], n: usize) {
        for v in verdicts.iter().filter(|v| v.pass) {
            let Some(l) = &v.learning else { continue };
            self.queue(Write::Audit(belay_model::AuditDraft {
                kind: "guardrail.learning".into(),
                actor: format!("engine:{}", self.engine.store.worker_id()),
                subject: self.run.id.clone(),
                detail: json!({
                    "step": step.id, "action": action, "guardrail": v.guardrail,
                    "reason": v.reason, "changes": n, "history_ms": l.history_ms,
                    "min_history_ms": l.min_history_ms, "while_learning": l.while_learning,
                }),
            }));
        }
    }

    /// Requests the approval of a batch guardrails held (for `reason`) and holds its planned
    /// items until a person decides.
    pub(super) fn hold_for_person(
        &mut self,
        request: Request<'_>,
        seq: i64,
        planned: Vec<Planned>,
        reason: &str,
    ) -> Outcome {
        let (step, trust, verdicts) = (request.step, request.trust, request.verdicts);
        let id = self.request_approval(request);
        self.hold_batch(step, seq, trust, planned, &id, Some((verdicts, reason)))
    }

    /// Records every item of a held batch as held, waiting for approval `id`; when guardrails
    /// held it (`violation`: their verdicts and reason), each item says so.
    pub(super) fn hold_batch(
        &mut self,
        step: &Step,
        seq: i64,
        trust: TrustLevel,
        planned: Vec<Planned>,
        id: &str,
        violation: Option<(&[Verdict], &str)>,
    ) -> Outcome {
        let violation = violation.map(|(verdicts, reason)| {
            let names: Vec<String> = verdicts.iter().map(|v| v.guardrail.clone()).collect();
            for name in &names {
                metrics::counter!("belay_guardrail_holds_total", "guardrail" => name.clone())
                    .increment(1);
            }
            (names, format!("held for a person by guardrail — {reason}"))
        });
        for (key, item, with) in planned {
            if let Some(prior) = self.prior.get(&key).filter(|_| violation.is_none()) {
                self.set_aside.insert(key, prior.clone());
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
            self.set_aside.insert(key, rec.clone());
            self.records.push(rec);
        }
        Outcome::Waiting
    }

    /// The guardrail verdicts on a step's planned targets, with the counts they need.
    pub(super) async fn verdicts(
        &self,
        step: &Step,
        spec: &ActionSpec,
        targets: &[String],
    ) -> Result<Vec<Verdict>> {
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
                let figures = self.engine.baseline(g).await?;
                // The switch from learning to enforcing is in the trail, once.
                if !self.run.dry_run
                    && let Some(entry) = self.engine.first_enforcing(g, &figures).await?
                {
                    self.queue(Write::Audit(entry));
                }
                baselines.insert(g.name.clone(), figures);
            }
        }
        let kind = spec
            .target
            .as_ref()
            .map_or(belay_playbook::TargetType::Generic, |t| t.kind);
        let governing = self.engine.guardrails.governing(&spec.name, &named);
        let identities = self.identities(&governing, kind, targets).await;
        Ok(self.engine.guardrails.check_at(
            &named,
            &crate::guard::Context {
                action: spec,
                targets,
                recent: &recent,
                baselines: &baselines,
                identities: &identities,
            },
            self.trust_of(step) == TrustLevel::Guarded,
        ))
    }

    /// Tells each violated guardrail's `alert` target, through the `notify` connector, once the
    /// violation is on record. Delivery is best effort: its outcome is audited, and a failed
    /// delivery never changes what happens to the change itself.
    pub(super) async fn send_alerts(
        &self,
        step: &Step,
        action: &str,
        violations: &[&Verdict],
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
                    if v.on_violation == OnViolation::Deny { "denied" } else { "held" }),
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
                        before: None,
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
}

/// A short description of a batch's targets for people.
pub(super) fn summarize_targets(targets: &[String]) -> String {
    match targets {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
    }
}
