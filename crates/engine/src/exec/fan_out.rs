//! The guard gate of a sub-playbook step: before any child run starts, the changes its calls
//! will plan (at least one per unconditional change step of the child, per item) are counted
//! against the `batch` guardrails of the run tree, so a fan-out through sub-playbooks is held
//! or denied whole, as the same items given to the action directly are. A person's approval of
//! the held fan-out covers the children's batch counts. It never applies anything.

use super::approval_gate::Gate;
use super::{Outcome, RunState};
use crate::Result;
use crate::guard::{Guardrail, OnViolation, Verdict};
use belay_model::{Decision, StepStatus, TrustLevel, now_ms};
use belay_playbook::{ActionKind, Call, Playbook, Step};
use belay_store::Write;
use minijinja::Value as MjValue;

/// Deepest chain of sub-playbooks followed when counting (lint rejects cycles).
const MAX_DEPTH: usize = 8;

impl RunState {
    /// Checks a sub-playbook step's fan-out against the run tree's `batch` limits; on a
    /// violation the whole step is held (or denied) and no child run starts.
    pub(super) async fn guard_fan_out(
        &mut self,
        step: &Step,
        seq: i64,
        ctx: &MjValue,
        child: &str,
    ) -> Result<Option<Outcome>> {
        let (trust, _) = self.trust_now(step).await?;
        let Some(pb) = self.engine.sub_playbook(&self.version, child).await? else {
            return Ok(None);
        };
        if trust == TrustLevel::Shadow || self.tree_allowed.is_some() {
            return Ok(None);
        }
        let planned = self.planned(step, ctx);
        if planned.is_empty() {
            return Ok(None);
        }
        let calls = planned.len() as u64;
        let mut verdicts = Vec::new();
        for g in self.engine.guardrails.list.iter() {
            let Some(max) = g.batch else { continue };
            let per_call = self.least_changes(&pb, g, 0);
            let before = self.counts.peek(&g.name);
            let total = before + per_call * calls;
            if per_call == 0 || total <= max {
                continue;
            }
            if trust == TrustLevel::Approve && g.on_violation != OnViolation::Deny {
                continue;
            }
            verdicts.push(Verdict {
                guardrail: g.name.clone(),
                pass: false,
                reason: format!(
                    "{calls} call(s) of sub-playbook `{child}` would make at least {} change(s), {total} across the run tree ({before} planned before), above the limit of {max} per run",
                    per_call * calls
                ),
                on_violation: g.on_violation,
                alert: g.alert.clone(),
                learning: None,
                items: Vec::new(),
            });
        }
        let action = format!("playbook:{child}");
        let batch = self.batch(step, &action, &planned);
        match self.decided(step, &batch.key, &batch.hash).await? {
            Some(Gate::Proceed(by)) => {
                self.batch_allowed.insert(step.id.clone(), by);
                return Ok(None);
            }
            Some(Gate::Wait(id)) => {
                return Ok(Some(self.hold_batch(step, seq, trust, planned, &id, None)));
            }
            Some(Gate::Deny(m)) | Some(Gate::Skip(m)) => {
                return Ok(Some(self.deny_fan_out(step, seq, trust, planned, m)));
            }
            None => {}
        }
        if verdicts.is_empty() {
            return Ok(None);
        }
        let violations: Vec<&Verdict> = verdicts.iter().collect();
        let (deny, reason) = super::guard_gate::summary(&violations);
        if self.run.dry_run {
            // Nothing is held in a dry run: the children report what they would meet.
            return Ok(None);
        }
        self.audit_violations(step, &action, &violations, None);
        self.send_alerts(step, &action, &violations).await?;
        if deny {
            let message = format!("denied by guardrail — {reason}");
            return Ok(Some(self.deny_fan_out(step, seq, trust, planned, message)));
        }
        let target = format!("{calls} call(s) of `{child}`");
        let request = batch.request(step, trust, &action, target, &verdicts, &reason);
        Ok(Some(self.hold_for_person(request, seq, planned, &reason)))
    }

    /// Records every call of a denied fan-out as denied; no child run starts.
    fn deny_fan_out(
        &mut self,
        step: &Step,
        seq: i64,
        trust: TrustLevel,
        planned: Vec<super::guard_gate::Planned>,
        message: String,
    ) -> Outcome {
        for (key, item, with) in planned {
            let mut rec = self.record(step, seq, &key, item);
            rec.with = with;
            rec.trust = Some(trust);
            rec.finished_at = Some(now_ms());
            rec.decision = Decision::GuardrailDeny;
            rec.status = StepStatus::Failed;
            rec.error = Some(message.clone());
            self.queue(Write::Step(rec.clone()));
            self.records.push(rec);
        }
        Outcome::Failed(message)
    }

    /// The fewest changes under `g` one run of `pb` makes when it runs to the end: one per
    /// change step without `if` or `for_each` that `g` governs, and those of the sub-playbooks
    /// it calls the same way.
    fn least_changes(&self, pb: &Playbook, g: &Guardrail, depth: usize) -> u64 {
        if depth >= MAX_DEPTH {
            return 0;
        }
        pb.steps
            .iter()
            .filter(|s| s.condition.is_none() && s.for_each.is_none())
            .map(|s| match &s.call {
                Call::Action(a) => {
                    let change =
                        self.engine.catalog.get(a).map(|x| x.kind) == Some(ActionKind::Change);
                    let named: Vec<String> = s.guardrails.iter().map(|(n, _)| n.clone()).collect();
                    u64::from(change && (g.applies(a) || named.contains(&g.name)))
                }
                Call::Playbook(p) => self
                    .engine
                    .playbooks
                    .get(p)
                    .map_or(0, |child| self.least_changes(&child, g, depth + 1)),
            })
            .sum()
    }
}
