//! The audit entries every store writes in the same transaction as the state they describe,
//! so the trail can never miss a committed change nor record one that was rolled back.
//!
//! [`authority`] checks that the trail vouches for every applied change, [`verify`] walks the
//! whole trail, [`signing`] signs and checks its head with an Ed25519 key.

pub mod authority;
pub mod signing;
pub mod verify;

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

/// An approval as the trail records it: who decided what, when, with which comment. A held
/// batch's entry also lists each item's key and the hash of its inputs, so that the trail
/// binds the batch's decision to every change it allows.
pub fn approval(actor: &str, a: &ApprovalRecord) -> AuditDraft {
    let kind = match a.status {
        ApprovalStatus::Pending if a.votes.is_empty() => "approval.requested",
        ApprovalStatus::Pending => "approval.vote",
        ApprovalStatus::Approved => "approval.granted",
        ApprovalStatus::Denied => "approval.denied",
        ApprovalStatus::Expired => "approval.expired",
        ApprovalStatus::Superseded => "approval.superseded",
    };
    let mut detail = json!({
        "run_id": a.run_id, "playbook": a.playbook, "step": a.key, "action": a.action,
        "target": a.target, "change_hash": a.change_hash, "with_sha256": value_hash(&a.with),
        "reason": a.reason, "status": a.status, "quorum": a.terms.quorum,
        "votes": a.votes, "expires_at": a.expires_at, "on_timeout": a.terms.on_timeout,
    });
    if let (true, Value::Array(items)) = (a.key.ends_with("#batch"), &a.with) {
        let items: Vec<Value> = items
            .iter()
            .map(|i| json!({ "key": i["key"], "with_sha256": value_hash(&i["with"]) }))
            .collect();
        detail["items"] = Value::Array(items);
    }
    // The channel the deciding vote came through (chat, email, api, cli).
    if let Some(channel) = a.votes.last().and_then(|v| v.channel.as_deref())
        && kind != "approval.requested"
        && kind != "approval.expired"
        && kind != "approval.superseded"
    {
        detail["channel"] = json!(channel);
    }
    draft(kind, actor, &a.id, detail)
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

/// The same entries for the hot path, prepared directly in canonical form (no intermediate
/// JSON value) from hashes of JSON texts the caller serialized once for its rows.
pub mod prepared {
    use belay_model::audit::{CanonicalObject, PreparedDraft};
    use belay_model::{ChangeRecord, ChangeStatus, RunStatus, StepRecord};

    fn draft(kind: String, actor: &str, subject: &str, canonical: String) -> PreparedDraft {
        PreparedDraft {
            kind,
            actor: actor.into(),
            subject: subject.into(),
            canonical,
        }
    }

    /// [`super::event_accepted`]; `runs` are `(run_id, playbook, playbook_hash, dry_run)`.
    pub fn event_accepted<'a>(
        actor: &str,
        id: &str,
        kind: &str,
        source: &str,
        severity: &str,
        event_sha256: &str,
        runs: impl Iterator<Item = (&'a str, &'a str, &'a str, bool)>,
    ) -> PreparedDraft {
        let mut list = String::from("[");
        for (i, (run_id, playbook, hash, dry_run)) in runs.enumerate() {
            if i > 0 {
                list.push(',');
            }
            list.push_str(
                &CanonicalObject::new()
                    .field("dry_run", dry_run)
                    .field("playbook", playbook)
                    .field("playbook_hash", hash)
                    .field("run_id", run_id)
                    .finish(),
            );
        }
        list.push(']');
        let detail = CanonicalObject::new()
            .field("event_sha256", event_sha256)
            .field("kind", kind)
            .raw("runs", &list)
            .field("severity", severity)
            .field("source", source)
            .finish();
        draft("event.accepted".into(), actor, id, detail)
    }

    /// [`super::event_duplicate`].
    pub fn event_duplicate(actor: &str, id: &str, kind: &str, source: &str) -> PreparedDraft {
        let detail = CanonicalObject::new()
            .field("kind", kind)
            .field("source", source)
            .finish();
        draft("event.duplicate".into(), actor, id, detail)
    }

    /// [`super::run_status`].
    pub fn run_status(
        actor: &str,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> PreparedDraft {
        let detail = CanonicalObject::new()
            .field("error", error)
            .field("status", status)
            .finish();
        draft(format!("run.{status}"), actor, run_id, detail)
    }

    /// [`super::step_finished`].
    pub fn step_finished(
        actor: &str,
        s: &StepRecord,
        with_sha256: &str,
        output_sha256: &str,
    ) -> PreparedDraft {
        let detail = CanonicalObject::new()
            .field("action", &s.action)
            .field("attempts", s.attempts)
            .field("decision", s.decision)
            .field("error", &s.error)
            .field("guardrails", &s.guardrails)
            .field("output_sha256", output_sha256)
            .field("status", s.status)
            .field("step", &s.key)
            .field("trust", s.trust)
            .field("with_sha256", with_sha256)
            .finish();
        draft("step.finished".into(), actor, &s.run_id, detail)
    }

    /// [`super::change_journaled`].
    pub fn change_journaled(
        actor: &str,
        c: &ChangeRecord,
        with_sha256: &str,
        before_sha256: &str,
    ) -> PreparedDraft {
        let detail = CanonicalObject::new()
            .field("action", &c.action)
            .field("allowed_by", &c.allowed_by)
            .field("before_sha256", before_sha256)
            .field("guardrails", &c.guardrails)
            .field("idempotency_key", &c.idempotency_key)
            .value("inverse", &c.inverse)
            .field("run_id", &c.run_id)
            .field("step", &c.step_key)
            .field("target", &c.target)
            .field("trust", c.trust)
            .field("with_sha256", with_sha256)
            .finish();
        draft("change.journaled".into(), actor, &c.id, detail)
    }

    /// [`super::change_finished`].
    pub fn change_finished(
        actor: &str,
        change_id: &str,
        status: ChangeStatus,
        after_sha256: &str,
        error: Option<&str>,
        step: &StepRecord,
        output_sha256: &str,
    ) -> PreparedDraft {
        let detail = CanonicalObject::new()
            .field("after_sha256", after_sha256)
            .field("attempts", step.attempts)
            .field("error", error)
            .field("output_sha256", output_sha256)
            .field("run_id", &step.run_id)
            .field("status", status)
            .field("step", &step.key)
            .field("step_status", step.status)
            .finish();
        draft(format!("change.{status}"), actor, change_id, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belay_model::audit::text_hash;
    use belay_model::{Decision, StepStatus, TrustLevel};

    fn step() -> StepRecord {
        StepRecord {
            run_id: "r1".into(),
            key: "block[0]".into(),
            step: "block".into(),
            seq: 1,
            item: Some(0),
            action: "fw.block".into(),
            with: json!({"target": "10.0.0.1", "reason": "x \"y\""}),
            decision: Decision::Apply,
            trust: Some(TrustLevel::Log),
            guardrails: vec!["g1".into(), "g2".into()],
            status: StepStatus::Succeeded,
            output: json!({"z": 1, "a": [true, null]}),
            error: Some("e\n".into()),
            attempts: 2,
            started_at: 1,
            finished_at: Some(2),
        }
    }

    fn change() -> ChangeRecord {
        ChangeRecord {
            id: "c1".into(),
            run_id: "r1".into(),
            step_key: "block[0]".into(),
            idempotency_key: "r1/block[0]".into(),
            action: "fw.block".into(),
            target: "10.0.0.1".into(),
            with: json!({"target": "10.0.0.1"}),
            before: json!({"present": false}),
            after: Value::Null,
            inverse: json!({"with": {"b": 1, "a": 2}, "action": "fw.unblock"}),
            trust: TrustLevel::Guarded,
            guardrails: vec![],
            allowed_by: "trust:guarded".into(),
            status: ChangeStatus::Pending,
            error: None,
            created_at: 1,
            updated_at: 1,
            expires_at: None,
            items: 1,
        }
    }

    fn text(v: &Value) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn prepared_entries_equal_drafted_ones() {
        let (s, c) = (step(), change());
        let (ws, os) = (text_hash(&text(&s.with)), text_hash(&text(&s.output)));
        assert_eq!(
            prepared::step_finished("w", &s, &ws, &os),
            step_finished("w", &s).prepare()
        );
        let (wc, bc) = (text_hash(&text(&c.with)), text_hash(&text(&c.before)));
        assert_eq!(
            prepared::change_journaled("w", &c, &wc, &bc),
            change_journaled("w", &c).prepare()
        );
        let after = json!({"present": true});
        assert_eq!(
            prepared::change_finished(
                "w",
                "c1",
                ChangeStatus::Applied,
                &text_hash(&text(&after)),
                Some("oops"),
                &s,
                &os
            ),
            change_finished("w", "c1", ChangeStatus::Applied, &after, Some("oops"), &s).prepare()
        );
        assert_eq!(
            prepared::run_status("w", "r1", RunStatus::Failed, Some("bad")),
            run_status("w", "r1", RunStatus::Failed, Some("bad")).prepare()
        );
        let e =
            Event::from_json(json!({"id": "e1", "kind": "k.x", "source": "s", "severity": "high"}))
                .unwrap();
        let run = RunRecord {
            id: "r1".into(),
            event_id: "e1".into(),
            event_source: String::new(),
            playbook: "pb".into(),
            playbook_hash: "h".into(),
            parent_run: None,
            status: RunStatus::Running,
            dry_run: true,
            inputs: Value::Null,
            error: None,
            created_at: 1,
            updated_at: 1,
        };
        let runs = [run.clone(), run];
        assert_eq!(
            prepared::event_accepted(
                "w",
                &e.id,
                &e.kind,
                &e.source,
                &e.severity.to_string(),
                &text_hash(&text(&e.to_value())),
                runs.iter().map(|r| (
                    r.id.as_str(),
                    r.playbook.as_str(),
                    r.playbook_hash.as_str(),
                    r.dry_run
                )),
            ),
            event_accepted("w", &e, &runs).prepare()
        );
        assert_eq!(
            prepared::event_duplicate("w", &e.id, &e.kind, &e.source),
            event_duplicate("w", &e).prepare()
        );
    }
}
