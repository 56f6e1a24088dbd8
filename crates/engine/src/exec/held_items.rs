//! Items a guardrail set aside: a never-list hit holds (or denies) only the items of a batch
//! that touch a protected target while the rest go ahead; and a person's decision on held
//! items, applied to exactly those items. An approver may approve a held batch without some
//! of its items: those are denied by that approver, the rest go ahead under the approval.
//! Items set aside here are recorded as held or denied; none of them is ever applied here.

use super::approval_gate::Gate;
use super::guard_gate::{Planned, summarize_targets};
use super::{Outcome, RunState};
use crate::Result;
use crate::guard::{OnViolation, Verdict};
use belay_model::{ApprovalStatus, Decision, StepRecord, StepStatus, TrustLevel, now_ms};
use belay_playbook::Step;
use belay_store::Write;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};

impl RunState {
    /// Applies a person's decision on the items of `step` a guardrail held earlier (the
    /// latest live approval of `STEP#batch`), taking those items out of `planned`: approved
    /// ones go ahead under the approval, left-out and denied ones are recorded as denied,
    /// undecided ones stay held. Returns the step's outcome when the decision ends the step
    /// (a denied or expired whole batch, or a whole batch still waiting); items the approval
    /// does not cover stay in `planned`, to be checked as usual.
    pub(super) async fn settle_held(
        &mut self,
        step: &Step,
        seq: i64,
        trust: TrustLevel,
        action: &str,
        planned: &mut Vec<Planned>,
    ) -> Result<Option<Outcome>> {
        let key = format!("{}#batch", step.id);
        let Some(approval) = self
            .approvals
            .iter()
            .rev()
            .find(|a| a.key == key && a.status != ApprovalStatus::Superseded)
            .cloned()
        else {
            return Ok(None);
        };
        let covered: HashSet<&str> = match &approval.with {
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.get("key").and_then(Value::as_str))
                .collect(),
            _ => HashSet::new(),
        };
        let (held, rest): (Vec<Planned>, Vec<Planned>) = std::mem::take(planned)
            .into_iter()
            .partition(|(k, _, _)| covered.contains(k.as_str()));
        *planned = rest;
        if held.is_empty() {
            return Ok(None);
        }
        // Whether the step has items the approval does not cover (applied, or still to
        // check): then its decision concerns those items only, and the run goes on past it.
        let partial = !planned.is_empty()
            || self
                .prior
                .values()
                .any(|r| r.step == step.id && !covered.contains(r.key.as_str()));
        let batch = self.batch(step, action, &held);
        match self.decided(step, &batch.key, &batch.hash).await? {
            None => {
                // Superseded (the items changed since): checked again like any others.
                planned.extend(held);
                Ok(None)
            }
            Some(Gate::Proceed(by)) => {
                let without: Vec<String> = approval
                    .votes
                    .iter()
                    .find(|v| v.approve)
                    .map(|v| v.without.clone())
                    .unwrap_or_default();
                let decider = approval
                    .votes
                    .iter()
                    .rev()
                    .find(|v| v.approve)
                    .map_or_else(String::new, |v| v.user.clone());
                for (k, item, with) in held {
                    if without.contains(&k) {
                        let why = format!(
                            "denied by {decider}: approval {} approved the batch without this item",
                            approval.id
                        );
                        self.set_aside_as(step, seq, trust, (k, item, with), Decision::Denied, why);
                    } else {
                        self.batch_allowed.insert(k, by.clone());
                    }
                }
                Ok(None)
            }
            Some(Gate::Wait(id)) => {
                let outcome = self.hold_batch(step, seq, trust, held, &id, None);
                Ok(planned.is_empty().then_some(outcome))
            }
            Some(Gate::Deny(message)) | Some(Gate::Skip(message)) if partial => {
                let decision = if message.contains("on_timeout: skip") {
                    Decision::Skip
                } else {
                    Decision::Denied
                };
                for p in held {
                    self.set_aside_as(step, seq, trust, p, decision, message.clone());
                }
                Ok(None)
            }
            Some(Gate::Deny(message)) => {
                for (k, item, with) in held {
                    let mut rec = self.record(step, seq, &k, item);
                    rec.with = with;
                    rec.trust = Some(trust);
                    rec.finished_at = Some(now_ms());
                    rec.decision = Decision::Denied;
                    rec.status = StepStatus::Failed;
                    rec.error = Some(message.clone());
                    self.queue(Write::Step(rec.clone()));
                    self.records.push(rec);
                }
                Ok(Some(Outcome::Failed(message)))
            }
            Some(Gate::Skip(message)) => {
                for (k, item, with) in held {
                    let mut rec = self.record(step, seq, &k, item);
                    rec.with = with;
                    rec.trust = Some(trust);
                    rec.finished_at = Some(now_ms());
                    rec.decision = Decision::Skip;
                    rec.status = StepStatus::Skipped;
                    rec.output = json!({ "reason": message });
                    self.queue(Write::Step(rec.clone()));
                    self.records.push(rec);
                }
                Ok(Some(Outcome::Done {
                    status: StepStatus::Skipped,
                    output: Value::Null,
                }))
            }
        }
    }

    /// Sets aside the items that never-list hits concern (`verdicts`' `items`, indices into
    /// `planned`): those a denying guardrail hit are denied, the others held together for one
    /// approval. The rest of `planned` goes ahead.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hold_items(
        &mut self,
        step: &Step,
        seq: i64,
        trust: TrustLevel,
        action: &str,
        planned: Vec<Planned>,
        targets: &[String],
        verdicts: &[Verdict],
    ) -> Result<()> {
        let mut denied: BTreeSet<usize> = BTreeSet::new();
        let mut held: BTreeSet<usize> = BTreeSet::new();
        let failed: Vec<&Verdict> = verdicts
            .iter()
            .filter(|v| !v.pass && !v.items.is_empty())
            .filter(|v| trust != TrustLevel::Approve || v.on_violation == OnViolation::Deny)
            .collect();
        for v in &failed {
            let into = if v.on_violation == OnViolation::Deny {
                &mut denied
            } else {
                &mut held
            };
            into.extend(v.items.iter().copied());
        }
        held.retain(|i| !denied.contains(i));
        let reason_of = |i: usize, deny: bool| -> String {
            failed
                .iter()
                .filter(|v| v.items.contains(&i) && (v.on_violation == OnViolation::Deny) == deny)
                .map(|v| format!("{}: {}", v.guardrail, v.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut hold: Vec<Planned> = Vec::new();
        let mut hold_targets: Vec<String> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        for (i, p) in planned.into_iter().enumerate() {
            if denied.contains(&i) {
                let why = format!("denied by guardrail — {}", reason_of(i, true));
                self.set_aside_as(step, seq, trust, p, Decision::GuardrailDeny, why);
            } else if held.contains(&i) {
                let why = reason_of(i, false);
                if !reasons.contains(&why) {
                    reasons.push(why);
                }
                hold_targets.push(targets.get(i).cloned().unwrap_or_default());
                hold.push(p);
            }
        }
        if hold.is_empty() {
            return Ok(());
        }
        let reason = reasons.join("; ");
        let batch = self.batch(step, action, &hold);
        let target = summarize_targets(&hold_targets);
        let request = batch.request(step, trust, action, target, verdicts, &reason);
        self.hold_for_person(request, seq, hold, &reason);
        Ok(())
    }

    /// Records one item as not applied (denied by a person or a guardrail, or skipped), with
    /// the reason, so that the step goes on without it: its output says so.
    fn set_aside_as(
        &mut self,
        step: &Step,
        seq: i64,
        trust: TrustLevel,
        (key, item, with): Planned,
        decision: Decision,
        reason: String,
    ) {
        let mut rec: StepRecord = self.record(step, seq, &key, item);
        rec.with = with;
        rec.trust = Some(trust);
        rec.decision = decision;
        rec.status = StepStatus::Skipped;
        let status = if decision == Decision::Skip {
            "skipped"
        } else {
            "denied"
        };
        rec.output = json!({ "status": status, "reason": reason });
        rec.error = Some(reason);
        rec.finished_at = Some(now_ms());
        self.queue(Write::Step(rec.clone()));
        self.set_aside.insert(key, rec.clone());
        self.records.push(rec);
    }
}
