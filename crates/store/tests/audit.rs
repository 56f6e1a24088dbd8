//! The audit trail on both backends: every state write leaves a chained entry, and editing,
//! deleting or reordering entries directly in the database makes verification name the entry.

use belay_model::{Event, RunRecord, RunStatus, now_ms};
use belay_store::{Store, verify_audit};
use serde_json::json;
use std::sync::Arc;

mod harness;
use harness::Backend;

async fn history(s: &Arc<dyn Store>) -> u64 {
    for i in 0..4 {
        let e = Event::from_json(json!({"id": format!("e{i}"), "kind": "k"})).unwrap();
        let run = harness::run_record(&format!("r{i}"), &e.id, RunStatus::Running);
        s.accept_event(&e, &[run], None).await.unwrap();
        s.set_run_status(&format!("r{i}"), RunStatus::Succeeded, None)
            .await
            .unwrap();
    }
    let n = verify_audit(s.as_ref())
        .await
        .unwrap()
        .expect("an untouched trail verifies");
    assert_eq!(n, 8, "one entry per acceptance and per run end");
    let entries = s.audit_entries(0, 100).await.unwrap();
    assert_eq!(entries[0].kind, "event.accepted");
    assert_eq!(entries[0].detail["runs"][0]["run_id"], "r0");
    assert_eq!(entries[1].kind, "run.succeeded");
    n
}

async fn tampering_is_detected(backend: Backend) {
    let cases: &[(&str, i64)] = &[
        ("UPDATE audit SET actor = 'mallory' WHERE seq = 3", 3),
        ("DELETE FROM audit WHERE seq = 5", 6),
        (
            "UPDATE audit SET seq = 100 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 100",
            4,
        ),
        ("DELETE FROM audit WHERE seq > 6", 7),
        // A hash replaced by text of another shape is reported, not a read error.
        ("UPDATE audit SET hash = 'forged' WHERE seq = 2", 2),
    ];
    for (sql, broken) in cases {
        let (s, guard) = backend.open().await;
        history(&s).await;
        guard.raw_sql(sql).await;
        let err = verify_audit(s.as_ref()).await.unwrap().expect_err(sql);
        assert_eq!(err.seq(), *broken, "{sql}: {err}");
    }
}

/// A run started in the trail, with one change journaled under `allowed_by` at `trust` and
/// applied; returns the change's id.
async fn applied_change(
    s: &Arc<dyn Store>,
    i: usize,
    trust: belay_model::TrustLevel,
    allowed_by: &str,
) -> String {
    use belay_model::{ChangeRecord, ChangeStatus, StepRecord, StepStatus};
    let run = format!("ch-r{i}");
    let e = Event::from_json(json!({"id": format!("ch-e{i}"), "kind": "k"})).unwrap();
    let now = now_ms();
    let r = harness::run_record(&run, &e.id, RunStatus::Running);
    s.accept_event(&e, &[r], None).await.unwrap();
    let c = ChangeRecord {
        id: format!("ch-c{i}"),
        run_id: run.clone(),
        step_key: "block".into(),
        idempotency_key: format!("{run}/block"),
        action: "firewall.block_ip".into(),
        target: "198.51.100.7".into(),
        with: json!({"ip": "198.51.100.7"}),
        before: json!({"present": false}),
        after: json!(null),
        inverse: json!(null),
        trust,
        guardrails: vec![],
        allowed_by: allowed_by.into(),
        status: ChangeStatus::Pending,
        error: None,
        created_at: now,
        updated_at: now,
        expires_at: None,
    };
    s.begin_change(None, &c).await.unwrap();
    let step = StepRecord {
        action: "firewall.block_ip".into(),
        with: c.with.clone(),
        trust: Some(trust),
        output: json!({}),
        finished_at: Some(now),
        ..harness::applied_step(&run, "block", 0, StepStatus::Succeeded, now)
    };
    s.finish_change(&harness::applied(step, &c.id, json!({"present": true})))
        .await
        .unwrap();
    c.id
}

/// A change the trail records as applied must be preceded by the authority it claims:
/// verification names the change when it is not, though every entry chains.
async fn changes_without_their_authority_are_named(backend: Backend) {
    use belay_model::TrustLevel;
    use belay_store::AuditProblem;
    let (s, _guard) = backend.open().await;
    applied_change(&s, 0, TrustLevel::Log, "trust:log").await;
    assert!(
        verify_audit(s.as_ref()).await.unwrap().is_ok(),
        "a change at `log` needs no decision"
    );
    let forged = applied_change(&s, 1, TrustLevel::Approve, "approval:ghost by mallory").await;
    match verify_audit(s.as_ref()).await.unwrap() {
        Err(AuditProblem::Authority(m)) => {
            assert_eq!(m.change_id, forged);
            assert!(
                m.reason.contains("approval ghost is not in the trail"),
                "{m}"
            );
        }
        other => panic!("an approval missing from the trail was not reported: {other:?}"),
    }

    let (s, _guard) = backend.open().await;
    // A guardrail held the step; applying it at `guarded` without a decision lacks authority.
    s.append_audit(vec![belay_model::AuditDraft {
        kind: "guardrail.violation".into(),
        actor: "engine:w".into(),
        subject: "ch-r2".into(),
        detail: json!({"step": "block", "guardrail": "protected", "on_violation": "hold"}),
    }])
    .await
    .unwrap();
    let held = applied_change(&s, 2, TrustLevel::Guarded, "trust:guarded").await;
    let err = verify_audit(s.as_ref()).await.unwrap().unwrap_err();
    assert!(
        matches!(&err, AuditProblem::Authority(m) if m.change_id == held && m.reason.contains("guardrail protected held step block")),
        "{err}"
    );
}

/// Heads signed outside the database catch what the recorded head cannot: deleting the
/// trail's last entries and rewriting the head to match.
async fn truncation_is_detected_against_signed_heads(backend: Backend) {
    use belay_store::{AuditProblem, HeadKey, head_signing::sign_head, verify_audit_against};
    let (s, guard) = backend.open().await;
    let key = HeadKey::from_seed([3; 32]);
    history(&s).await;
    let first = sign_head(s.as_ref(), &key, None, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.seq, 8);
    history_more(&s).await;
    let second = sign_head(s.as_ref(), &key, Some(&first), now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.seq, 10);
    let signed = [first.clone(), second.clone()];
    assert_eq!(
        verify_audit_against(s.as_ref(), &signed).await.unwrap(),
        Ok(10)
    );

    let head_hash = match backend {
        Backend::Sqlite => "lower(hex(hash))",
        Backend::Postgres => "hash",
    };
    guard
        .raw_sql(&format!(
            "DELETE FROM audit WHERE seq > 9; UPDATE audit_head SET seq = 9, hash = (SELECT {head_hash} FROM audit WHERE seq = 9) WHERE id = 1"
        ))
        .await;
    assert_eq!(
        verify_audit(s.as_ref()).await.unwrap(),
        Ok(9),
        "without the signed heads the rewrite goes unnoticed"
    );
    let err = verify_audit_against(s.as_ref(), &signed)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, AuditProblem::SignedHead { seq: 10, reason } if reason.contains("ends at entry 9")),
        "{err}"
    );
    // Nor is the rewritten trail signed again.
    let refused = sign_head(s.as_ref(), &key, Some(&second), now_ms())
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().seq(), 10);
}

/// Two more entries after [`history`].
async fn history_more(s: &Arc<dyn Store>) {
    let e = Event::from_json(json!({"id": "e-more", "kind": "k"})).unwrap();
    let now = now_ms();
    let run = RunRecord {
        id: "r-more".into(),
        event_id: e.id.clone(),
        event_source: e.source.clone(),
        playbook: "pb".into(),
        playbook_hash: "h".into(),
        parent_run: None,
        status: RunStatus::Running,
        dry_run: false,
        inputs: json!(null),
        error: None,
        created_at: now,
        updated_at: now,
    };
    s.accept_event(&e, &[run], None).await.unwrap();
    s.set_run_status("r-more", RunStatus::Succeeded, None)
        .await
        .unwrap();
}

/// Each scenario as a test on each backend (`sqlite::NAME`, `postgres::NAME`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(Backend::Sqlite).await; })*
        }
        mod postgres {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(Backend::Postgres).await; })*
        }
    };
}

on_both_backends!(
    tampering_is_detected,
    changes_without_their_authority_are_named,
    truncation_is_detected_against_signed_heads
);
