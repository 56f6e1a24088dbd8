//! A data directory written by an earlier release keeps working: the fixture
//! `tests/fixtures/sqlite-v8/` was written by the store before its split into one folder per
//! backend (schema version 8, migrations compiled into `sqlite.rs`). The test opens a copy,
//! reads back every kind of record, verifies the audit chain and appends to it.
//!
//! To write the fixture again (only when the format deliberately changes), run
//! `BELAY_WRITE_FIXTURE=DIR cargo test -p belay-store --test previous_layout -- --ignored`
//! and copy `DIR/belay.db` into `tests/fixtures/sqlite-v8/`.

use belay_model::{
    ApprovalRecord, AuditDraft, CaseEntry, CaseEntryKind, CaseOp, CaseRecord, CaseStatus,
    ChangeRecord, ChangeStatus, Demotion, Event, RunRecord, RunStatus, StepRecord, StepStatus,
    TrustLevel,
};
use belay_store::{
    ApprovalFilter, Cursor, FinishedChange, RunFilter, SqliteOptions, SqliteStore, Store, Write,
    verify_audit,
};
use serde_json::json;
use std::path::Path;

#[allow(dead_code)] // this test uses only the fixtures and the schema guard
mod harness;

fn draft(kind: &str, actor: &str, subject: &str, detail: serde_json::Value) -> AuditDraft {
    AuditDraft {
        kind: kind.into(),
        actor: actor.into(),
        subject: subject.into(),
        detail,
    }
}

/// A fixed point in time, so that records written then can be rebuilt now and compared.
const T0: i64 = 1_790_000_000_000;

fn event(i: usize) -> Event {
    Event::from_json(json!({
        "id": format!("fx-e{i}"), "kind": "phishing.reported", "source": "fixture",
        "time": "2026-09-21T12:00:00Z", "severity": "high",
        "observables": {"domains": [format!("evil{i}.example")]}, "data": {"n": i}
    }))
    .expect("a valid event")
}

fn run(i: usize) -> RunRecord {
    RunRecord {
        id: format!("fx-r{i}"),
        event_id: format!("fx-e{i}"),
        event_source: String::new(),
        playbook: "phishing-response".into(),
        playbook_hash: "ab".repeat(32),
        parent_run: None,
        status: RunStatus::Pending,
        dry_run: false,
        inputs: json!({"event": i}),
        error: None,
        created_at: T0 + i as i64,
        updated_at: T0 + i as i64,
    }
}

fn step(i: usize, key: &str, status: StepStatus) -> StepRecord {
    StepRecord {
        action: "dns.sinkhole_domain".into(),
        with: json!({"domain": format!("evil{i}.example")}),
        guardrails: vec!["blast-radius".into()],
        output: json!({"present": true}),
        finished_at: Some(T0 + 20),
        ..harness::applied_step(&format!("fx-r{i}"), key, 1, status, T0 + 10)
    }
}

fn change(i: usize) -> ChangeRecord {
    ChangeRecord {
        id: format!("fx-c{i}"),
        run_id: format!("fx-r{i}"),
        step_key: "sinkhole".into(),
        idempotency_key: format!("fx-r{i}/sinkhole"),
        action: "dns.sinkhole_domain".into(),
        target: format!("evil{i}.example"),
        with: json!({"domain": format!("evil{i}.example")}),
        before: json!({"present": false}),
        after: json!(null),
        inverse: json!({"action": "dns.remove_sinkhole", "with": {"domain": format!("evil{i}.example")}}),
        trust: TrustLevel::Log,
        guardrails: vec!["blast-radius".into()],
        allowed_by: "trust:log".into(),
        status: ChangeStatus::Pending,
        error: None,
        created_at: T0 + 15,
        updated_at: T0 + 15,
        expires_at: None,
    }
}

fn approval() -> ApprovalRecord {
    ApprovalRecord {
        playbook: "phishing-response".into(),
        action: "edr.isolate_host".into(),
        with: json!({"host": "eng-ws-101"}),
        target: "eng-ws-101".into(),
        change_hash: "cd".repeat(32),
        current_state: json!({"isolated": false}),
        ..harness::pending_approval("fx-a1", "fx-r1", T0 + 30)
    }
}

fn demotion() -> Demotion {
    Demotion {
        playbook: "phishing-response".into(),
        step: "sinkhole".into(),
        level: TrustLevel::Approve,
        reason: "rolled back".into(),
        change_id: Some("fx-c0".into()),
        by: "analyst".into(),
        at: T0 + 40,
        definition: None,
    }
}

fn case_open() -> CaseOp {
    CaseOp::Open {
        case: CaseRecord {
            id: "fx-case".into(),
            title: "Reported phish".into(),
            severity: "high".into(),
            status: CaseStatus::Open,
            resolution: None,
            description: None,
            observables: vec!["evil0.example".into()],
            assignee: None,
            opened_at: T0 + 50,
            updated_at: T0 + 50,
        },
        entry: CaseEntry {
            id: "fx-case-e1".into(),
            case_id: "fx-case".into(),
            kind: CaseEntryKind::Status,
            at: T0 + 50,
            run_id: Some("fx-r0".into()),
            key: Some("fx-r0/case".into()),
            body: json!({"status": "open"}),
        },
    }
}

/// Writes every kind of record the store keeps.
async fn write_history(s: &SqliteStore) {
    for i in 0..2 {
        let cur = Cursor {
            source: "file:/fixture".into(),
            offset: 100 * (i as u64 + 1),
        };
        s.accept_event(&event(i), &[run(i)], Some(&cur))
            .await
            .expect("accepting");
        s.begin_change(Some(&step(i, "sinkhole", StepStatus::Running)), &change(i))
            .await
            .expect("journaling");
        s.finish_change(&FinishedChange {
            step: step(i, "sinkhole", StepStatus::Succeeded),
            change_id: format!("fx-c{i}"),
            status: ChangeStatus::Applied,
            after: json!({"present": true}),
            error: None,
        })
        .await
        .expect("finishing");
    }
    s.write(vec![
        Write::Step(step(0, "notify", StepStatus::Succeeded)),
        Write::RunStatus {
            run_id: "fx-r0".into(),
            status: RunStatus::Succeeded,
            error: None,
        },
        Write::Audit(draft(
            "decision",
            "fixture",
            "fx-r0",
            json!({"why": "test"}),
        )),
    ])
    .await
    .expect("writing");
    s.put_approval(&approval()).await.expect("approval");
    s.set_change_status("fx-c0", ChangeStatus::Reverted, Some("verified"), "analyst")
        .await
        .expect("reverting");
    s.create_checkpoint("known-good", "analyst")
        .await
        .expect("checkpoint");
    s.demote(&demotion()).await.expect("demoting");
    s.apply_case(case_open()).await.expect("opening a case");
}

#[tokio::test]
#[ignore = "writes the fixture; run by hand with BELAY_WRITE_FIXTURE=DIR"]
async fn write_fixture() {
    let dir = std::env::var("BELAY_WRITE_FIXTURE").expect("BELAY_WRITE_FIXTURE=DIR");
    let s = SqliteStore::open(Path::new(&dir), SqliteOptions::default()).expect("opening");
    write_history(&s).await;
    s.close();
}

/// Copies the fixture into a fresh directory, so the committed files are never written.
fn fixture_copy() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sqlite-v8/belay.db");
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(&src, dir.path().join("belay.db")).expect("copying the fixture");
    dir
}

#[tokio::test]
async fn store_written_by_the_previous_layout_opens_reads_verifies_and_appends() {
    let dir = fixture_copy();
    let s = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("opening the fixture");

    assert_eq!(
        verify_audit(&s).await.expect("reading the trail"),
        Ok(13),
        "the trail written by the previous layout verifies"
    );
    let c = s.counts().await.expect("counting");
    assert_eq!(
        (c.events, c.runs, c.runs_unfinished, c.steps, c.changes),
        (2, 2, 1, 3, 2)
    );
    assert_eq!(s.get_event(None, "fx-e1").await.unwrap(), Some(event(1)));
    assert_eq!(s.cursor("file:/fixture").await.unwrap(), Some(200));

    let r1 = s.get_run("fx-r1").await.unwrap().expect("run fx-r1");
    // The migration to ids unique per source gives each run its event's source.
    let expected = RunRecord {
        event_source: "fixture".into(),
        ..run(1)
    };
    assert_eq!(r1, expected);
    let r0 = s.get_run("fx-r0").await.unwrap().expect("run fx-r0");
    assert_eq!(r0.status, RunStatus::Succeeded);
    assert_eq!(
        s.list_runs(&RunFilter::default())
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["fx-r1", "fx-r0"]
    );

    let steps = s.steps("fx-r0").await.unwrap();
    assert_eq!(steps.len(), 2);
    assert!(steps.contains(&step(0, "sinkhole", StepStatus::Succeeded)));
    assert!(steps.contains(&step(0, "notify", StepStatus::Succeeded)));

    let changes = s.changes(None).await.unwrap();
    assert_eq!(
        changes.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["fx-c0", "fx-c1"]
    );
    let c1 = &changes[1];
    assert_eq!(c1.status, ChangeStatus::Applied);
    assert_eq!(c1.after, json!({"present": true}));
    assert_eq!(c1.with, change(1).with);
    assert_eq!(c1.inverse, change(1).inverse);
    assert_eq!(changes[0].status, ChangeStatus::Reverted);
    assert_eq!(
        s.change_by_key("fx-r1/sinkhole").await.unwrap().as_ref(),
        Some(c1)
    );
    assert_eq!(s.changes(Some("fx-r1")).await.unwrap(), vec![c1.clone()]);

    assert_eq!(
        s.get_approval("fx-a1").await.unwrap(),
        Some(approval()),
        "approvals keep their body"
    );
    assert_eq!(
        s.approvals(&ApprovalFilter::default()).await.unwrap().len(),
        1
    );
    let trail = s.approval_trail("fx-a1").await.unwrap();
    assert_eq!(
        trail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["approval.requested"],
        "an approval's entries written by the previous layout are found by its id"
    );
    assert_eq!(trail[0].compute_hash(), trail[0].hash);
    assert_eq!(s.demotions().await.unwrap(), vec![demotion()]);
    let cps = s.checkpoints().await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].last_change_id.as_deref(), Some("fx-c1"));
    let case = s.case_file("fx-case").await.unwrap().expect("the case");
    assert_eq!(case.entries.len(), 2);
    assert_eq!(s.cases(None).await.unwrap().len(), 1);

    // The run its writer left unfinished is claimable: that worker is gone.
    let claimed = s.claim_runs(10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["fx-r1"]
    );

    // Appending continues the old chain.
    let head = s.audit_head().await.unwrap().expect("a recorded head");
    assert_eq!(head.0, 13);
    s.set_run_status("fx-r1", RunStatus::Succeeded, None)
        .await
        .unwrap();
    s.append_audit(vec![draft("note", "test", "fx", json!({}))])
        .await
        .unwrap();
    assert_eq!(verify_audit(&s).await.unwrap(), Ok(15));

    // Runs recorded before playbook versions were kept have none stored; versions of new
    // runs are stored beside them.
    assert_eq!(s.playbook_version(&"ab".repeat(32)).await.unwrap(), None);
    let source = "name: phishing-response\nsteps: []\n";
    let v = belay_model::PlaybookVersion {
        hash: belay_model::sha256_hex(source.as_bytes()),
        name: "phishing-response".into(),
        source: source.into(),
        calls: Default::default(),
        guardrails_hash: String::new(),
        created_at: T0,
    };
    s.put_playbook_versions(std::slice::from_ref(&v))
        .await
        .unwrap();
    assert_eq!(s.playbook_version(&v.hash).await.unwrap(), Some(v));
    let entries = s.audit_entries(13, 10).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].prev_hash, head.1,
        "the first new entry commits to the old head"
    );
    s.close();

    // And it opens again.
    let s = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("opening again");
    assert_eq!(verify_audit(&s).await.unwrap(), Ok(15));
}

/// A PostgreSQL schema keeps its versions in `belay_schema`, one row per migration: a schema
/// migrated before (here by a first worker) opens without migrating again and keeps its data.
#[tokio::test]
async fn postgres_schema_already_migrated_opens_with_the_same_version_rows() {
    use belay_store::{PgOptions, PgStore};
    let url = std::env::var("BELAY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| harness::DEFAULT_DATABASE_URL.into());
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let _drop_schema = harness::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let opts = PgOptions {
        schema: Some(schema.clone()),
        ..Default::default()
    };
    let versions = || async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connecting");
        let conn = tokio::spawn(conn);
        let rows = client
            .query(
                &format!(
                    "SELECT version, applied_at FROM \"{schema}\".belay_schema ORDER BY version"
                ),
                &[],
            )
            .await
            .expect("reading belay_schema");
        drop(client);
        let _ = conn.await;
        rows.iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1)))
            .collect::<Vec<_>>()
    };
    let first = PgStore::connect(&url, opts.clone())
        .await
        .expect("first open");
    first
        .accept_event(&event(0), &[run(0)], None)
        .await
        .expect("accepting");
    first.close();
    let before = versions().await;
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("the migrations folder")
        .count() as i32;
    assert_eq!(
        before.iter().map(|v| v.0).collect::<Vec<_>>(),
        (1..=files).collect::<Vec<_>>(),
        "one row per migration file"
    );
    let again = PgStore::connect(&url, opts).await.expect("second open");
    assert_eq!(versions().await, before, "nothing migrated twice");
    assert_eq!(again.get_run("fx-r0").await.unwrap(), Some(run(0)));
    assert_eq!(verify_audit(&again).await.unwrap(), Ok(1));
    again.close();
}
