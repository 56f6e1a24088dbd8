//! The audit entries every store writes in the same transaction as the state they describe,
//! so the trail can never miss a committed change nor record one that was rolled back.

use belay_model::audit::value_hash;
use belay_model::{
    ApprovalRecord, ApprovalStatus, AuditDraft, ChangeRecord, ChangeStatus, Demotion, Event,
    RunRecord, RunStatus, StepRecord,
};
use serde_json::{Value, json};

fn draft(kind: &str, actor: &str, subject: &str, detail: Value) -> AuditDraft {
    AuditDraft {
        kind: kind.into(),
        actor: actor.into(),
        subject: subject.into(),
        detail,
    }
}

pub fn event_accepted(actor: &str, e: &Event, runs: &[RunRecord]) -> AuditDraft {
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| json!({ "run_id": r.id, "playbook": r.playbook, "playbook_hash": r.playbook_hash, "dry_run": r.dry_run }))
        .collect();
    draft(
        "event.accepted",
        actor,
        &e.id,
        json!({ "kind": e.kind, "source": e.source, "severity": e.severity, "event_sha256": value_hash(&e.to_value()), "runs": runs }),
    )
}

pub fn event_duplicate(actor: &str, e: &Event) -> AuditDraft {
    draft(
        "event.duplicate",
        actor,
        &e.id,
        json!({ "kind": e.kind, "source": e.source }),
    )
}

pub fn run_started(actor: &str, r: &RunRecord) -> AuditDraft {
    draft(
        "run.started",
        actor,
        &r.id,
        json!({ "event_id": r.event_id, "playbook": r.playbook, "playbook_hash": r.playbook_hash, "parent_run": r.parent_run, "dry_run": r.dry_run, "inputs_sha256": value_hash(&r.inputs) }),
    )
}

pub fn run_status(actor: &str, run_id: &str, status: RunStatus, error: Option<&str>) -> AuditDraft {
    draft(
        &format!("run.{status}"),
        actor,
        run_id,
        json!({ "status": status, "error": error }),
    )
}

pub fn step_finished(actor: &str, s: &StepRecord) -> AuditDraft {
    draft(
        "step.finished",
        actor,
        &s.run_id,
        json!({
            "step": s.key, "action": s.action, "decision": s.decision, "trust": s.trust,
            "guardrails": s.guardrails, "status": s.status, "attempts": s.attempts, "error": s.error,
            "with_sha256": value_hash(&s.with), "output_sha256": value_hash(&s.output),
        }),
    )
}

pub fn change_journaled(actor: &str, c: &ChangeRecord) -> AuditDraft {
    draft(
        "change.journaled",
        actor,
        &c.id,
        json!({
            "run_id": c.run_id, "step": c.step_key, "idempotency_key": c.idempotency_key,
            "action": c.action, "target": c.target, "trust": c.trust, "guardrails": c.guardrails,
            "allowed_by": c.allowed_by, "with_sha256": value_hash(&c.with),
            "before_sha256": value_hash(&c.before), "inverse": c.inverse,
        }),
    )
}

/// A change's outcome together with its step's (one entry for both).
pub fn change_finished(
    actor: &str,
    change_id: &str,
    status: ChangeStatus,
    after: &Value,
    error: Option<&str>,
    step: &StepRecord,
) -> AuditDraft {
    draft(
        &format!("change.{status}"),
        actor,
        change_id,
        json!({
            "status": status, "after_sha256": value_hash(after), "error": error,
            "run_id": step.run_id, "step": step.key, "step_status": step.status,
            "attempts": step.attempts, "output_sha256": value_hash(&step.output),
        }),
    )
}

pub fn change_status(
    actor: &str,
    change_id: &str,
    status: ChangeStatus,
    note: Option<&str>,
) -> AuditDraft {
    draft(
        &format!("change.{status}"),
        actor,
        change_id,
        json!({ "status": status, "note": note }),
    )
}

pub fn checkpoint(actor: &str, name: &str, last_change_id: Option<&str>) -> AuditDraft {
    draft(
        "checkpoint.created",
        actor,
        name,
        json!({ "last_change_id": last_change_id }),
    )
}

/// An approval as the trail records it: who decided what, when, with which comment.
pub fn approval(actor: &str, a: &ApprovalRecord) -> AuditDraft {
    let kind = match a.status {
        ApprovalStatus::Pending if a.votes.is_empty() => "approval.requested",
        ApprovalStatus::Pending => "approval.vote",
        ApprovalStatus::Approved => "approval.granted",
        ApprovalStatus::Denied => "approval.denied",
        ApprovalStatus::Expired => "approval.expired",
        ApprovalStatus::Superseded => "approval.superseded",
    };
    draft(
        kind,
        actor,
        &a.id,
        json!({
            "run_id": a.run_id, "playbook": a.playbook, "step": a.key, "action": a.action,
            "target": a.target, "change_hash": a.change_hash, "with_sha256": value_hash(&a.with),
            "reason": a.reason, "status": a.status, "quorum": a.terms.quorum,
            "votes": a.votes, "expires_at": a.expires_at,
        }),
    )
}

pub fn demoted(d: &Demotion) -> AuditDraft {
    draft(
        "trust.demoted",
        &d.by,
        &format!("{}/{}", d.playbook, d.step),
        json!({ "playbook": d.playbook, "step": d.step, "level": d.level, "reason": d.reason, "change_id": d.change_id }),
    )
}

pub fn trust_reset(actor: &str, playbook: &str, step: &str) -> AuditDraft {
    draft(
        "trust.reset",
        actor,
        &format!("{playbook}/{step}"),
        json!({ "playbook": playbook, "step": step }),
    )
}
