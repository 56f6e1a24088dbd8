//! The approval gate: whether a planned change (or a held batch) may go ahead, by the latest
//! live decision on that exact change. It requests an approval when none applies, supersedes a
//! decision on a different change, and settles one past its deadline. It never applies anything.

use super::RunState;
use crate::Result;
use belay_connector_api::Connector;
use belay_model::{
    ApprovalRecord, ApprovalStatus, ApprovalTerms, OnTimeout, StepRecord, TrustLevel, change_hash,
    now_ms,
};
use belay_playbook::{ActionSpec, Step};
use belay_store::Write;
use serde_json::{Value, json};
use std::sync::Arc;

/// A planned change (or held batch) to ask a person about.
pub(super) struct Request<'a> {
    pub(super) step: &'a Step,
    pub(super) key: String,
    pub(super) action: &'a str,
    pub(super) with: Value,
    pub(super) target: String,
    pub(super) change_hash: String,
    pub(super) current_state: Value,
    pub(super) verdicts: &'a [crate::guard::Verdict],
    pub(super) reason: String,
    pub(super) trust: TrustLevel,
}

/// What an approval (or its absence) lets a change do.
pub(super) enum Gate {
    Proceed(String),
    Wait(String),
    Deny(String),
    Skip(String),
}

impl RunState {
    /// Who triggered the run, when a person did (`belay run --as USER` records `user:USER`).
    pub(super) fn triggered_by(&self) -> Option<String> {
        self.event.source.strip_prefix("user:").map(str::to_owned)
    }

    /// What the latest live approval for `key` says about the change with `hash`. A decision
    /// on a different change is superseded (and `None` returned, so a new one is requested).
    /// A decision read from the store goes ahead only if the audit trail vouches for it
    /// ([`Self::vouched`]).
    pub(super) async fn decided(&self, step: &Step, key: &str, hash: &str) -> Result<Option<Gate>> {
        let Some(a) = self
            .approvals
            .iter()
            .rev()
            .find(|a| a.key == key && a.status != ApprovalStatus::Superseded)
        else {
            return Ok(None);
        };
        if a.change_hash != hash {
            if matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved) {
                let mut old = a.clone();
                old.status = ApprovalStatus::Superseded;
                old.decided_at = Some(now_ms());
                old.version += 1;
                self.queue(Write::Approval(Box::new(old)));
            }
            return Ok(None);
        }
        let now = now_ms();
        Ok(Some(match a.status {
            ApprovalStatus::Approved => {
                let users: Vec<&str> = a
                    .votes
                    .iter()
                    .filter(|v| v.approve)
                    .map(|v| v.user.as_str())
                    .collect();
                let gate = Gate::Proceed(format!("approval:{} by {}", a.id, users.join(", ")));
                self.vouched(a, gate, approved_subset(a).as_deref()).await?
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
            ApprovalStatus::Expired => match timed_out(a) {
                g @ Gate::Proceed(_) => self.vouched(a, g, None).await?,
                g => g,
            },
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
        }))
    }

    /// Decides whether a change at `approve` may go ahead; requests an approval if none applies.
    pub(super) async fn approval_gate(
        &self,
        step: &Step,
        spec: &ActionSpec,
        conn: &Arc<dyn Connector>,
        rec: &StepRecord,
    ) -> Result<Gate> {
        let hash = change_hash(&self.run.id, &self.pb.hash, &rec.key, &spec.name, &rec.with);
        if let Some(g) = self.decided(step, &rec.key, &hash).await? {
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
    pub(super) fn request_approval(&self, r: Request<'_>) -> String {
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

/// The [`belay_model::subset_hash`] of the items an approval of a held batch approved, when
/// its approvers left some out (`None`: every item).
fn approved_subset(a: &ApprovalRecord) -> Option<String> {
    let without = &a.votes.iter().find(|v| v.approve)?.without;
    if without.is_empty() {
        return None;
    }
    let approved: Vec<&str> = match &a.with {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.get("key").and_then(Value::as_str))
            .filter(|k| !without.iter().any(|w| w == k))
            .collect(),
        _ => Vec::new(),
    };
    Some(belay_model::subset_hash(&a.change_hash, &approved))
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
