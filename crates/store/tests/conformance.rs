//! One conformance suite, run against every store implementation.
//!
//! PostgreSQL tests use `BELAY_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each in a schema of its own.

use belay_model::{
    ChangeRecord, ChangeStatus, Decision, Event, RunRecord, RunStatus, StepRecord, StepStatus,
    TrustLevel, now_ms,
};
use belay_store::{Accepted, Cursor, RunFilter, SqliteOptions, SqliteStore, Store, Write, Written};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

mod harness;
use harness::Backend;

fn event(id: &str) -> Event {
    Event::from_json(json!({"id": id, "kind": "test.event", "observables": {"ips": ["192.0.2.1"]}, "data": {"n": 1}}))
        .unwrap()
}

fn run(id: &str, event_id: &str) -> RunRecord {
    let now = now_ms();
    RunRecord {
        id: id.into(),
        event_id: event_id.into(),
        playbook: "pb".into(),
        playbook_hash: "h".into(),
        parent_run: None,
        status: RunStatus::Pending,
        dry_run: false,
        inputs: json!(null),
        error: None,
        created_at: now,
        updated_at: now,
    }
}

fn step(run_id: &str, key: &str, seq: i64, status: StepStatus) -> StepRecord {
    StepRecord {
        run_id: run_id.into(),
        key: key.into(),
        step: key.into(),
        seq,
        item: None,
        action: "blocklist.add".into(),
        with: json!({"list": "l", "entry": key}),
        decision: Decision::Apply,
        trust: Some(TrustLevel::Log),
        guardrails: vec!["g1".into()],
        status,
        output: json!({"k": key}),
        error: None,
        attempts: 1,
        started_at: now_ms(),
        finished_at: None,
    }
}

fn change(run_id: &str, key: &str) -> ChangeRecord {
    ChangeRecord {
        id: belay_model::new_id(),
        run_id: run_id.into(),
        step_key: "s".into(),
        idempotency_key: key.into(),
        action: "blocklist.add".into(),
        target: "192.0.2.1".into(),
        with: json!({"list": "l", "entry": "192.0.2.1"}),
        before: json!({"present": false}),
        after: json!(null),
        inverse: json!({"action": "blocklist.remove", "with": {"list": "l", "entry": "192.0.2.1"}}),
        trust: TrustLevel::Log,
        guardrails: vec![],
        allowed_by: "trust:log".into(),
        status: ChangeStatus::Pending,
        error: None,
        created_at: now_ms(),
        updated_at: now_ms(),
    }
}

async fn accepting_stores_event_and_runs_once(s: Arc<dyn Store>) {
    let e = event("e1");
    let cur = Cursor {
        source: "file:/x".into(),
        offset: 10,
    };
    assert_eq!(
        s.accept_event(&e, &[run("r1", "e1"), run("r2", "e1")], Some(&cur))
            .await
            .unwrap(),
        Accepted::New
    );
    let cur2 = Cursor {
        source: "file:/x".into(),
        offset: 20,
    };
    assert_eq!(
        s.accept_event(&e, &[run("r3", "e1")], Some(&cur2))
            .await
            .unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(s.get_event("e1").await.unwrap(), Some(e));
    assert!(
        s.get_run("r3").await.unwrap().is_none(),
        "a duplicate event starts no run"
    );
    assert_eq!(
        s.cursor("file:/x").await.unwrap(),
        Some(20),
        "the cursor advances past duplicates"
    );
    assert_eq!(s.cursor("file:/y").await.unwrap(), None);
    let c = s.counts().await.unwrap();
    assert_eq!((c.events, c.runs, c.runs_unfinished), (1, 2, 2));
    assert!(s.get_event("nope").await.unwrap().is_none());
}

async fn runs_are_listed_filtered_and_finished(s: Arc<dyn Store>) {
    let mut r1 = run("r1", "e1");
    r1.created_at -= 10;
    s.accept_event(&event("e1"), &[r1, run("r2", "e1")], None)
        .await
        .unwrap();
    let again = s
        .insert_run(&RunRecord {
            playbook: "other".into(),
            ..run("r2", "e1")
        })
        .await
        .unwrap();
    assert_eq!(again.playbook, "pb", "insert_run keeps the stored run");
    s.set_run_status("r1", RunStatus::Failed, Some("boom"))
        .await
        .unwrap();
    let all = s.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"],
        "newest first"
    );
    let failed = s
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("boom"));
    let limited = s
        .list_runs(&RunFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(s.counts().await.unwrap().runs_unfinished, 1);
}

async fn steps_are_replaced_and_ordered(s: Arc<dyn Store>) {
    s.accept_event(&event("e1"), &[run("r1", "e1")], None)
        .await
        .unwrap();
    s.put_step(&step("r1", "b", 2, StepStatus::Running))
        .await
        .unwrap();
    s.put_step(&step("r1", "a", 1, StepStatus::Running))
        .await
        .unwrap();
    s.put_step(&step("r1", "b", 2, StepStatus::Succeeded))
        .await
        .unwrap();
    let steps = s.steps("r1").await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].key, "a");
    assert_eq!(steps[1].status, StepStatus::Succeeded);
    assert_eq!(
        steps[1],
        step("r1", "b", 2, StepStatus::Succeeded).clone_with_times(&steps[1])
    );
}

trait SameTimes {
    fn clone_with_times(self, other: &StepRecord) -> StepRecord;
}
impl SameTimes for StepRecord {
    fn clone_with_times(mut self, other: &StepRecord) -> StepRecord {
        self.started_at = other.started_at;
        self
    }
}

async fn a_change_key_is_journaled_once(s: Arc<dyn Store>) {
    s.accept_event(&event("e1"), &[run("r1", "e1")], None)
        .await
        .unwrap();
    let first = change("r1", "r1/s");
    let stored = s
        .begin_change(Some(&step("r1", "s", 1, StepStatus::Running)), &first)
        .await
        .unwrap();
    assert_eq!(stored, first);
    let second = s
        .begin_change(
            Some(&step("r1", "s", 1, StepStatus::Running)),
            &change("r1", "r1/s"),
        )
        .await
        .unwrap();
    assert_eq!(
        second.id, first.id,
        "the same idempotency key returns the first journal entry"
    );
    s.finish_change(
        &step("r1", "s", 1, StepStatus::Succeeded),
        &first.id,
        ChangeStatus::Applied,
        &json!({"present": true}),
        None,
    )
    .await
    .unwrap();
    let got = s.change_by_key("r1/s").await.unwrap().unwrap();
    assert_eq!(got.status, ChangeStatus::Applied);
    assert_eq!(got.after, json!({"present": true}));
    assert_eq!(got.before, json!({"present": false}));
    assert_eq!(got.inverse, first.inverse);
    assert_eq!(
        s.steps("r1").await.unwrap()[0].status,
        StepStatus::Succeeded
    );
    let c2 = change("r1", "r1/t");
    s.begin_change(Some(&step("r1", "t", 2, StepStatus::Running)), &c2)
        .await
        .unwrap();
    let all = s.changes(Some("r1")).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|c| c.idempotency_key.as_str())
            .collect::<Vec<_>>(),
        ["r1/s", "r1/t"]
    );
    assert!(s.changes(Some("r9")).await.unwrap().is_empty());
    // The batched write path: a step, a new journal entry, a duplicate key, an outcome, a run end.
    let c3 = change("r1", "r1/u");
    let out = s
        .write(vec![
            Write::Step(step("r1", "v", 3, StepStatus::Succeeded)),
            Write::BeginChange(c3.clone()),
            Write::BeginChange(change("r1", "r1/s")),
            Write::FinishChange {
                step: step("r1", "u", 4, StepStatus::Succeeded),
                change_id: c3.id.clone(),
                status: ChangeStatus::Failed,
                after: json!({"present": false}),
                error: Some("refused".into()),
            },
            Write::RunStatus {
                run_id: "r1".into(),
                status: RunStatus::Failed,
                error: Some("step u failed".into()),
            },
        ])
        .await
        .unwrap();
    assert_eq!(out[1], Written::Change(Box::new(c3.clone())));
    assert_eq!(
        out[2],
        Written::Change(Box::new(s.change_by_key("r1/s").await.unwrap().unwrap())),
        "duplicates return the stored entry"
    );
    assert_eq!(
        s.change_by_key("r1/u")
            .await
            .unwrap()
            .unwrap()
            .error
            .as_deref(),
        Some("refused")
    );
    assert_eq!(s.steps("r1").await.unwrap().len(), 4);
    assert_eq!(
        s.get_run("r1").await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    let c = s.counts().await.unwrap();
    assert_eq!((c.changes, c.changes_applied), (3, 1));
}

async fn claims_respect_live_leases(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let mut child = run("child", "e1");
    child.parent_run = Some("r1".into());
    a.accept_event(
        &event("e1"),
        &[run("r1", "e1"), run("r2", "e1"), child],
        None,
    )
    .await
    .unwrap();
    a.set_run_status("r2", RunStatus::Succeeded, None)
        .await
        .unwrap();
    assert!(
        b.claim_runs(10).await.unwrap().is_empty(),
        "runs leased to a live worker are not claimed"
    );
    let mine = a.claim_runs(10).await.unwrap();
    assert_eq!(
        mine.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1"],
        "only unfinished top-level runs"
    );
    tokio::time::sleep(Duration::from_millis(harness::LEASE_MS as u64 + 100)).await;
    let stolen = b.claim_runs(10).await.unwrap();
    assert_eq!(
        stolen.len(),
        1,
        "an expired lease is claimed by another worker"
    );
    assert!(
        a.claim_runs(10).await.unwrap().is_empty(),
        "and is then no longer the first worker's"
    );
    assert_eq!(b.renew_leases().await.unwrap(), 1);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(Backend::Sqlite.open().await.0).await; })*
            #[tokio::test] async fn claims_respect_live_leases() {
                let (a, b, _dir) = Backend::Sqlite.open_pair().await;
                super::claims_respect_live_leases(a, b).await;
            }
        }
        mod postgres {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(Backend::Postgres.open().await.0).await; })*
            #[tokio::test] async fn claims_respect_live_leases() {
                let (a, b, _dir) = Backend::Postgres.open_pair().await;
                super::claims_respect_live_leases(a, b).await;
            }
        }
    };
}

conformance!(
    accepting_stores_event_and_runs_once,
    runs_are_listed_filtered_and_finished,
    steps_are_replaced_and_ordered,
    a_change_key_is_journaled_once,
);

#[tokio::test]
async fn sqlite_runs_of_a_dead_worker_are_claimed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        lease_ms: 60_000,
        ..Default::default()
    };
    let a = SqliteStore::open(dir.path(), opts.clone()).unwrap();
    a.accept_event(&event("e1"), &[run("r1", "e1")], None)
        .await
        .unwrap();
    let b = SqliteStore::open(dir.path(), opts).unwrap();
    assert!(b.claim_runs(10).await.unwrap().is_empty());
    drop(a);
    assert_eq!(
        b.claim_runs(10).await.unwrap().len(),
        1,
        "a gone worker's lease does not have to expire"
    );
}
