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
        let now = now_ms();
        let run = RunRecord {
            id: format!("r{i}"),
            event_id: e.id.clone(),
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

#[tokio::test]
async fn sqlite_audit_tampering_is_detected() {
    tampering_is_detected(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_audit_tampering_is_detected() {
    tampering_is_detected(Backend::Postgres).await;
}
