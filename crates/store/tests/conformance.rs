//! One conformance suite, run against every store implementation.
//!
//! PostgreSQL tests use `BELAY_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each in a schema of its own.

use belay_model::{
    ApprovalRecord, ApprovalStatus, CaseEntry, CaseEntryKind, CaseOp, CaseRecord, CaseStatus,
    ChangeRecord, ChangeStatus, Demotion, Event, PlaybookVersion, RunRecord, RunStatus, StepRecord,
    StepStatus, TrustLevel, Vote, now_ms,
};
use belay_store::{
    Accepted, ApprovalFilter, Cursor, FinishedChange, Lockout, PauseRecord, RunFilter,
    SealedSecret, SessionRecord, SqliteOptions, SqliteStore, Store, TokenRecord, UserRecord, Write,
    Written,
};
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
    harness::run_record(id, event_id, RunStatus::Pending)
}

fn step(run_id: &str, key: &str, seq: i64, status: StepStatus) -> StepRecord {
    StepRecord {
        action: "blocklist.add".into(),
        with: json!({"list": "l", "entry": key}),
        guardrails: vec!["g1".into()],
        output: json!({"k": key}),
        ..harness::applied_step(run_id, key, seq, status, now_ms())
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
        expires_at: None,
        items: 1,
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
    assert_eq!(s.get_event(None, "e1").await.unwrap(), Some(e));
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
    assert!(s.get_event(None, "nope").await.unwrap().is_none());
}

async fn an_event_id_is_unique_per_source(s: Arc<dyn Store>) {
    let from = |source: &str, kind: &str| {
        Event::from_json(json!({"id": "alert-7", "kind": kind, "source": source})).unwrap()
    };
    let (noise, ids) = (
        from("syslog:10.0.0.5", "noise"),
        from("suricata", "ids.alert"),
    );
    let mut run_of_ids = run("r-ids", "alert-7");
    run_of_ids.event_source = "suricata".into();
    assert_eq!(
        s.accept_event(&noise, &[], None).await.unwrap(),
        Accepted::New
    );
    assert_eq!(
        s.accept_event(&ids, std::slice::from_ref(&run_of_ids), None)
            .await
            .unwrap(),
        Accepted::New,
        "another source's event under the same id is another event"
    );
    assert_eq!(
        s.accept_event(&ids, &[], None).await.unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(
        s.get_event(Some("suricata"), "alert-7").await.unwrap(),
        Some(ids)
    );
    assert_eq!(
        s.get_event(None, "alert-7").await.unwrap(),
        Some(noise),
        "without a source: the first accepted"
    );
    assert!(
        s.get_event(Some("zeek"), "alert-7")
            .await
            .unwrap()
            .is_none()
    );
    let stored = s.get_run("r-ids").await.unwrap().unwrap();
    assert_eq!(stored.trigger_source(), Some("suricata"));
    // Only the noise started no run.
    let idle = s.events_since(0, true, 10).await.unwrap();
    assert_eq!(
        idle.iter().map(|e| e.source.as_str()).collect::<Vec<_>>(),
        ["syslog:10.0.0.5"]
    );
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
    // The next page starts after the last run listed.
    let next = s
        .list_runs(&RunFilter {
            limit: Some(1),
            before: Some((limited[0].created_at, limited[0].id.clone())),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].id, limited[0].id, "a page repeats no run");
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
    let done = step("r1", "s", 1, StepStatus::Succeeded);
    s.finish_change(&harness::applied(done, &first.id, json!({"present": true})))
        .await
        .unwrap();
    let got = s.change_by_key("r1/s").await.unwrap().unwrap();
    assert_eq!(got.status, ChangeStatus::Applied);
    assert_eq!(got.after, json!({"present": true}));
    assert_eq!(got.before, json!({"present": false}));
    assert_eq!(got.inverse, first.inverse);
    assert_eq!(
        s.get_change(&first.id).await.unwrap().as_ref(),
        Some(&got),
        "a change is found by its id as by its key"
    );
    assert_eq!(s.get_change("no-such-change").await.unwrap(), None);
    let head = s.change_heads().await.unwrap().remove(0);
    let mut bare = got.clone();
    for field in [
        &mut bare.with,
        &mut bare.before,
        &mut bare.after,
        &mut bare.inverse,
    ] {
        *field = serde_json::Value::Null;
    }
    assert_eq!(
        head, bare,
        "a head is the change without inputs, states and inverse"
    );
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
    // Run ids that are prefixes of each other keep their changes apart.
    s.accept_event(&event("e10"), &[run("r10", "e10")], None)
        .await
        .unwrap();
    s.begin_change(None, &change("r10", "r10/s")).await.unwrap();
    assert_eq!(s.changes(Some("r1")).await.unwrap().len(), 2);
    assert_eq!(s.changes(Some("r10")).await.unwrap().len(), 1);
    let misfiled = s.begin_change(None, &change("r1", "r10/x")).await;
    assert!(
        misfiled.is_err_and(|e| e.to_string().contains("does not start with its run id")),
        "a key outside its run's prefix is refused"
    );
    // The batched write path: a step, a new journal entry, a duplicate key, an outcome, a run end.
    let c3 = change("r1", "r1/u");
    let out = s
        .write(vec![
            Write::Step(step("r1", "v", 3, StepStatus::Succeeded)),
            Write::BeginChange(c3.clone()),
            Write::BeginChange(change("r1", "r1/s")),
            Write::FinishChange(FinishedChange {
                step: step("r1", "u", 4, StepStatus::Succeeded),
                change_id: c3.id.clone(),
                status: ChangeStatus::Failed,
                after: json!({"present": false}),
                error: Some("refused".into()),
            }),
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
    assert_eq!((c.changes, c.changes_applied), (4, 1));
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
    assert!(
        a.claim_runs(10).await.unwrap().is_empty(),
        "a worker never claims the runs it holds: it is executing them already"
    );
    tokio::time::sleep(Duration::from_millis(harness::LEASE_MS as u64 + 100)).await;
    let stolen = b.claim_runs(10).await.unwrap();
    assert_eq!(
        stolen.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1"],
        "an expired lease is claimed by another worker: only unfinished top-level runs"
    );
    assert!(
        a.claim_runs(10).await.unwrap().is_empty(),
        "and is then no longer the first worker's"
    );
    assert_eq!(b.renew_leases().await.unwrap(), 1);
}

fn approval(id: &str, run_id: &str) -> ApprovalRecord {
    ApprovalRecord {
        playbook: "pb".into(),
        action: "blocklist.add".into(),
        with: json!({"list": "l", "entry": "192.0.2.1"}),
        target: "192.0.2.1".into(),
        change_hash: "ab".repeat(32),
        current_state: json!({"present": false}),
        ..harness::pending_approval(id, run_id, now_ms())
    }
}

async fn a_decision_is_recorded_once_and_resumes_the_run(s: Arc<dyn Store>) {
    s.accept_event(&event("e1"), &[run("r1", "e1")], None)
        .await
        .unwrap();
    s.set_run_status("r1", RunStatus::WaitingApproval, None)
        .await
        .unwrap();
    let a = approval("a1", "r1");
    s.write(vec![Write::Approval(Box::new(a.clone()))])
        .await
        .unwrap();
    assert_eq!(s.get_approval("a1").await.unwrap().as_ref(), Some(&a));
    let pending = s
        .approvals(&ApprovalFilter {
            status: Some(ApprovalStatus::Pending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);

    let mut decided = a.clone();
    decided.status = ApprovalStatus::Approved;
    decided.votes.push(Vote {
        user: "bob".into(),
        approve: true,
        comment: Some("ok".into()),
        at: now_ms(),
        ..Vote::default()
    });
    decided.version = 2;
    let draft = belay_store::approval_audit("bob", &decided);
    assert!(
        s.decide_approval(&decided, 1, &["r1".to_string()], draft.clone())
            .await
            .unwrap()
    );
    // A second decision based on the old version loses: nobody decides twice.
    assert!(
        !s.decide_approval(&decided, 1, &["r1".to_string()], draft)
            .await
            .unwrap()
    );
    let stored = s.get_approval("a1").await.unwrap().unwrap();
    assert_eq!(stored.status, ApprovalStatus::Approved);
    assert_eq!(stored.votes.len(), 1);
    let r = s.get_run("r1").await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Pending, "the decided run is resumable");
    let claimed = s.claim_released(10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(s.claim_released(10).await.unwrap().is_empty());

    let entries = s.audit_entries(0, 100).await.unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"approval.requested"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "approval.granted").count(),
        1
    );
    assert!(belay_store::verify_audit(&*s).await.unwrap().is_ok());

    // An approval's own entries are found by its id, in order and intact: the trail vouches
    // for its decision, bound to its change.
    let trail = s.approval_trail("a1").await.unwrap();
    assert_eq!(
        trail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["approval.requested", "approval.granted"]
    );
    assert!(trail.iter().all(|e| e.compute_hash() == e.hash));
    assert_eq!(
        belay_store::approval_allows(&trail, "a1", &a.change_hash, None),
        Ok(())
    );
    assert!(
        belay_store::approval_allows(&trail, "a1", "another-change", None)
            .unwrap_err()
            .contains("another change")
    );
    // One only requested does not vouch, whatever its row says.
    let mut other = a.clone();
    other.id = "a2".into();
    s.put_approval(&other).await.unwrap();
    let trail = s.approval_trail("a2").await.unwrap();
    assert_eq!(trail.len(), 1);
    assert!(
        belay_store::approval_allows(&trail, "a2", &a.change_hash, None)
            .unwrap_err()
            .contains("no decision")
    );
}

async fn demotions_are_recorded_and_reset(s: Arc<dyn Store>) {
    let d = Demotion {
        playbook: "pb".into(),
        step: "block".into(),
        level: TrustLevel::Approve,
        reason: "rolled back".into(),
        change_id: Some("c1".into()),
        by: "alice".into(),
        at: now_ms(),
        definition: Some("d1".into()),
    };
    s.demote(&d).await.unwrap();
    s.demote(&d).await.unwrap();
    assert_eq!(s.demotions().await.unwrap(), vec![d]);
    assert!(s.reset_trust("pb", "block", "erin").await.unwrap());
    assert!(!s.reset_trust("pb", "block", "erin").await.unwrap());
    assert!(s.demotions().await.unwrap().is_empty());
    let kinds: Vec<String> = s
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["trust.demoted", "trust.demoted", "trust.reset"]);
}

fn version(name: &str, source: &str) -> PlaybookVersion {
    PlaybookVersion {
        hash: belay_model::sha256_hex(source.as_bytes()),
        name: name.into(),
        source: source.into(),
        calls: [("child".to_string(), "c0ffee".to_string())].into(),
        guardrails_hash: belay_model::sha256_hex(b"guardrails"),
        created_at: now_ms(),
    }
}

async fn playbook_versions_are_kept_by_hash(s: Arc<dyn Store>) {
    // The guardrail set in force, kept once under its hash.
    let set = belay_model::GuardrailSet {
        hash: belay_model::sha256_hex(b"guardrails"),
        files: vec![("g.yaml".into(), "guardrails: []\n".into())],
        created_at: now_ms(),
    };
    assert_eq!(s.guardrail_set(&set.hash).await.unwrap(), None);
    s.put_guardrail_set(&set).await.unwrap();
    let other = belay_model::GuardrailSet {
        files: Vec::new(),
        ..set.clone()
    };
    s.put_guardrail_set(&other).await.unwrap();
    assert_eq!(s.guardrail_set(&set.hash).await.unwrap(), Some(set));

    let v1 = version("pb", "name: pb\nsteps: []\n");
    let v2 = version("pb", "name: pb\nsteps: [] # edited\n");
    assert_eq!(s.playbook_version(&v1.hash).await.unwrap(), None);
    s.put_playbook_versions(&[v1.clone(), v2.clone()])
        .await
        .unwrap();
    // Stored once: a second write of the same hash changes nothing, whatever it carries.
    let again = PlaybookVersion {
        calls: Default::default(),
        created_at: v1.created_at + 1,
        ..v1.clone()
    };
    s.put_playbook_versions(&[again]).await.unwrap();
    s.put_playbook_versions(&[]).await.unwrap();
    assert_eq!(
        s.playbook_version(&v1.hash).await.unwrap(),
        Some(v1.clone())
    );
    assert_eq!(
        s.playbook_version(&v2.hash).await.unwrap(),
        Some(v2.clone())
    );
    let mut both = vec![v1.clone(), v2];
    both.sort_by(|a, b| (a.created_at, &a.hash).cmp(&(b.created_at, &b.hash)));
    assert_eq!(s.playbook_versions().await.unwrap(), both);
    // A source that does not hash to its key is refused.
    let forged = PlaybookVersion {
        hash: belay_model::sha256_hex(b"something else"),
        ..v1
    };
    let err = s
        .put_playbook_versions(std::slice::from_ref(&forged))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not hash"), "{err}");
    assert_eq!(s.playbook_version(&forged.hash).await.unwrap(), None);
}

async fn history_counts_autonomous_changes_per_run(s: Arc<dyn Store>) {
    let mut runs = Vec::new();
    for r in ["r1", "r2", "r3"] {
        runs.push(run(r, "e1"));
    }
    s.accept_event(&event("e1"), &runs, None).await.unwrap();
    // A set-level change counts each of its items.
    let mut c = change("r3", "r3/add");
    c.step_key = "add".into();
    c.status = ChangeStatus::Applied;
    c.items = 250;
    s.begin_change(None, &c).await.unwrap();
    let stored = s.change_by_key("r3/add").await.unwrap().unwrap();
    assert_eq!(stored.items, 250);
    for (r, n) in [("r1", 3), ("r2", 1)] {
        for i in 0..n {
            let mut c = change(r, &format!("{r}/block[{i}]"));
            c.step_key = format!("block[{i}]");
            c.status = ChangeStatus::Applied;
            s.begin_change(None, &c).await.unwrap();
        }
    }
    // Changes at `approve` are not what autonomy learns from.
    let mut c = change("r2", "r2/block[9]");
    c.step_key = "block[9]".into();
    c.trust = TrustLevel::Approve;
    c.status = ChangeStatus::Applied;
    s.begin_change(None, &c).await.unwrap();
    let h = s
        .change_history(&["blocklist.add".to_string()], 0)
        .await
        .unwrap();
    let mut sizes: Vec<u64> = h.batches.iter().map(|b| b.1).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 3, 250]);
    assert!(h.first_at.is_some());
    let recent = s
        .count_changes(&["blocklist.add".to_string()], 0)
        .await
        .unwrap();
    assert_eq!(recent, 3 + 1 + 1 + 250, "every item of every change");
    let stats = s.trust_stats(0).await.unwrap();
    let changes: u64 = stats
        .iter()
        .filter(|r| r.kind == "change" && r.step == "block" && r.status == "applied")
        .map(|r| r.count)
        .sum();
    assert_eq!(changes, 5, "{stats:?}");
}

async fn users_and_tokens_are_kept_audited_and_revocable(s: Arc<dyn Store>) {
    let now = now_ms();
    let mut alice = UserRecord {
        name: "alice".into(),
        roles: vec!["responder".into()],
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        created_at: now,
        updated_at: now,
    };
    s.put_user(&alice, "admin", "created").await.unwrap();
    alice.roles.push("author".into());
    s.put_user(&alice, "admin", "roles").await.unwrap();
    let stored = s.get_user("alice").await.unwrap().unwrap();
    assert_eq!(stored.roles, ["responder", "author"]);
    assert_eq!(stored.password_hash, alice.password_hash);
    assert!(s.get_user("bob").await.unwrap().is_none());
    assert_eq!(s.users().await.unwrap().len(), 1);

    // Five wrong passwords in a row lock the account; a success in between resets the count.
    let lockout = Lockout {
        max_failures: 5,
        lock_ms: 60_000,
    };
    for _ in 0..4 {
        s.record_login("alice", false, lockout, "192.0.2.7")
            .await
            .unwrap();
    }
    let u = s
        .record_login("alice", true, lockout, "192.0.2.7")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.failed_logins, u.locked_until), (0, None));
    for i in 0..5 {
        let u = s
            .record_login("alice", false, lockout, "192.0.2.7")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.locked_until.is_some(), i == 4, "attempt {i}: {u:?}");
    }
    assert!(
        s.record_login("nobody", false, lockout, "x")
            .await
            .unwrap()
            .is_none()
    );

    let token = TokenRecord {
        id: "tok1".into(),
        principal: "ci-bot".into(),
        roles: vec!["viewer".into()],
        hash: "ab".repeat(32),
        created_at: now,
        created_by: "admin".into(),
        expires_at: Some(now + 86_400_000),
        last_used_at: None,
        revoked_at: None,
    };
    s.put_token(&token, "admin").await.unwrap();
    assert!(
        s.put_token(&token, "admin").await.is_err(),
        "a token id is stored once"
    );
    let found = s.token_by_hash(&token.hash).await.unwrap().unwrap();
    assert_eq!(found, token);
    assert!(found.usable(now) && !found.usable(now + 86_400_000));
    s.touch_token("tok1", now + 5).await.unwrap();
    assert_eq!(s.tokens().await.unwrap()[0].last_used_at, Some(now + 5));
    assert!(s.revoke_token("tok1", "admin").await.unwrap());
    assert!(
        !s.revoke_token("tok1", "admin").await.unwrap(),
        "revoked once"
    );
    let revoked = s.token_by_hash(&token.hash).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some() && !revoked.usable(now));

    // Every change is in the trail, and no secret is.
    let trail = s.audit_entries(0, 1000).await.unwrap();
    let kinds: Vec<&str> = trail.iter().map(|e| e.kind.as_str()).collect();
    for k in [
        "user.saved",
        "user.login_failed",
        "user.login",
        "user.locked",
        "token.created",
        "token.revoked",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let text = serde_json::to_string(&trail.iter().map(|e| &e.detail).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains("argon2id") && !text.contains(&token.hash),
        "{text}"
    );
    assert!(belay_store::verify_audit(&*s).await.unwrap().is_ok());
}

async fn pauses_are_kept_audited_and_lifted(s: Arc<dyn Store>) {
    assert!(s.pauses().await.unwrap().is_empty());
    assert!(s.pause_of("block-ip").await.unwrap().is_none());
    let one = PauseRecord {
        playbook: Some("block-ip".into()),
        paused_by: "alice".into(),
        reason: "false positives from the new feed".into(),
        paused_at: now_ms(),
    };
    s.pause(&one).await.unwrap();
    assert_eq!(s.pause_of("block-ip").await.unwrap(), Some(one.clone()));
    assert!(s.pause_of("other").await.unwrap().is_none());

    let all = PauseRecord {
        playbook: None,
        paused_by: "bob".into(),
        reason: "incident bridge".into(),
        paused_at: now_ms(),
    };
    s.pause(&all).await.unwrap();
    assert_eq!(s.pauses().await.unwrap(), [all.clone(), one.clone()]);
    assert_eq!(s.pause_of("other").await.unwrap(), Some(all.clone()));
    assert_eq!(s.pause_of("block-ip").await.unwrap(), Some(all.clone()));

    assert!(s.unpause(None, "bob", "bridge closed").await.unwrap());
    assert!(
        !s.unpause(None, "bob", "again").await.unwrap(),
        "lifted once"
    );
    assert!(s.pause_of("other").await.unwrap().is_none());
    assert_eq!(s.pause_of("block-ip").await.unwrap(), Some(one));
    assert!(s.unpause(Some("block-ip"), "alice", "").await.unwrap());
    assert!(s.pauses().await.unwrap().is_empty());

    let trail = s.audit_entries(0, 1000).await.unwrap();
    let switches: Vec<(&str, &str, &str)> = trail
        .iter()
        .filter(|e| e.kind.starts_with("automation."))
        .map(|e| (e.kind.as_str(), e.actor.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        switches,
        [
            ("automation.paused", "alice", "block-ip"),
            ("automation.paused", "bob", "*"),
            ("automation.resumed", "bob", "*"),
            ("automation.resumed", "alice", "block-ip"),
        ]
    );
    assert!(
        trail
            .iter()
            .any(|e| e.detail["reason"] == "incident bridge")
    );
    assert!(belay_store::verify_audit(&*s).await.unwrap().is_ok());
}

async fn sessions_are_kept_hashed_ended_once_and_audited(s: Arc<dyn Store>) {
    let now = now_ms();
    let session = SessionRecord {
        hash: "ab".repeat(32),
        id: "ses_0123456789abcdef".into(),
        principal: "rita".into(),
        via: "password".into(),
        client: "192.0.2.7:5000".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + 3_600_000,
    };
    s.start_session(&session).await.unwrap();
    assert_eq!(
        s.session_by_hash(&session.hash).await.unwrap(),
        Some(session.clone())
    );
    assert!(s.session_by_hash(&"cd".repeat(32)).await.unwrap().is_none());
    s.touch_session(&session.hash, now + 60_000).await.unwrap();
    s.touch_session(&session.hash, now + 1).await.unwrap();
    let seen = s.session_by_hash(&session.hash).await.unwrap().unwrap();
    assert_eq!(
        seen.last_seen_at,
        now + 60_000,
        "a late touch never moves it back"
    );
    assert!(
        s.end_session(&session.hash, "user.logout", "192.0.2.7:5001")
            .await
            .unwrap()
    );
    assert!(
        !s.end_session(&session.hash, "user.logout", "x")
            .await
            .unwrap(),
        "ended once"
    );
    assert!(s.session_by_hash(&session.hash).await.unwrap().is_none());

    // Failed sign-ins per client: counted within the window, old ones forgotten.
    assert_eq!(s.login_failures("192.0.2.9", now - 1000).await.unwrap(), 0);
    assert_eq!(
        s.note_login_failure("192.0.2.9", "a", now - 5000, now - 10_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.note_login_failure("192.0.2.9", "b", now, now - 10_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.note_login_failure("192.0.2.8", "a", now, now - 10_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.login_failures("192.0.2.9", now - 1000).await.unwrap(), 1);
    assert_eq!(
        s.note_login_failure("192.0.2.9", "c", now, now - 1000)
            .await
            .unwrap(),
        2
    );

    let trail = s.audit_entries(0, 1000).await.unwrap();
    let kinds: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.actor.as_str(),
                e.detail["client"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("session.started", "rita", "192.0.2.7:5000"),
            ("user.logout", "rita", "192.0.2.7:5001"),
        ]
    );
    assert!(
        trail
            .iter()
            .all(|e| !e.detail.to_string().contains(&session.hash)),
        "never the hash"
    );
    assert!(belay_store::verify_audit(&*s).await.unwrap().is_ok());
}

async fn deliveries_and_used_links_are_recorded_once(s: Arc<dyn Store>) {
    let d = belay_store::Delivery {
        approval_id: "a1".into(),
        channel: "chat".into(),
        target: "soc".into(),
        recipient: "C0SOC".into(),
        reference: Some("1700000001.000001".into()),
        delivered_at: now_ms(),
    };
    assert!(s.record_delivery(&d, d.audit("engine:w")).await.unwrap());
    assert!(!s.record_delivery(&d, d.audit("engine:w")).await.unwrap());
    let mail = belay_store::Delivery {
        channel: "email".into(),
        target: "email".into(),
        recipient: "ada".into(),
        reference: None,
        ..d.clone()
    };
    assert!(
        s.record_delivery(&mail, mail.audit("engine:w"))
            .await
            .unwrap()
    );
    assert_eq!(s.deliveries("a1").await.unwrap(), [d, mail]);
    assert!(s.deliveries("a2").await.unwrap().is_empty());
    // One audit entry per recorded delivery, none for the repeat.
    let trail = s.audit_entries(0, 100).await.unwrap();
    let delivered: Vec<_> = trail
        .iter()
        .filter(|e| e.kind == "approval.delivered")
        .map(|e| e.detail["channel"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(delivered, ["chat", "email"]);

    assert!(!s.link_used("n1").await.unwrap());
    assert!(
        s.use_link("n1", "a1", "ada", "approve", now_ms())
            .await
            .unwrap()
    );
    assert!(
        !s.use_link("n1", "a1", "ada", "deny", now_ms())
            .await
            .unwrap()
    );
    assert!(s.link_used("n1").await.unwrap());
    assert!(belay_store::verify_audit(&*s).await.unwrap().is_ok());
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

fn case_entry(
    case: &str,
    kind: CaseEntryKind,
    key: &str,
    run: Option<&str>,
    body: serde_json::Value,
) -> CaseEntry {
    CaseEntry {
        id: belay_model::new_id(),
        case_id: case.into(),
        kind,
        at: now_ms(),
        run_id: run.map(Into::into),
        key: Some(key.into()),
        body,
    }
}

fn open_case(case: &str, run: &str, key: &str) -> CaseOp {
    let now = now_ms();
    CaseOp::Open {
        case: CaseRecord {
            id: case.into(),
            title: "Reported phish".into(),
            severity: "high".into(),
            status: CaseStatus::Open,
            resolution: None,
            description: None,
            observables: vec!["evil.example".into()],
            assignee: None,
            opened_at: now,
            updated_at: now,
        },
        entry: case_entry(
            case,
            CaseEntryKind::Status,
            key,
            Some(run),
            json!({"status": "open"}),
        ),
    }
}

async fn case_files_are_idempotent_and_append_only(s: Arc<dyn Store>) {
    let first = s
        .apply_case(open_case("c1", "r1", "r1/open"))
        .await
        .unwrap();
    assert!(first.changed);
    // The same change re-issued after a crash: same entry, nothing doubled.
    let again = s
        .apply_case(open_case("c1", "r1", "r1/open"))
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.entry_id, first.entry_id);
    // Another run opening the open case changes nothing but is linked to it.
    assert!(
        !s.apply_case(open_case("c1", "r2", "r2/open"))
            .await
            .unwrap()
            .changed
    );
    let note = |key: &str| {
        CaseOp::Append(case_entry(
            "c1",
            CaseEntryKind::Note,
            key,
            Some("r2"),
            json!({"note": "seen on laptop-7"}),
        ))
    };
    assert!(s.apply_case(note("r2/note")).await.unwrap().changed);
    assert!(!s.apply_case(note("r2/note")).await.unwrap().changed);
    let close = |key: &str| CaseOp::SetStatus {
        case_id: "c1".into(),
        status: CaseStatus::Closed,
        resolution: Some("resolved".into()),
        entry: case_entry(
            "c1",
            CaseEntryKind::Status,
            key,
            None,
            json!({"status": "closed"}),
        ),
    };
    assert!(s.apply_case(close("x/close")).await.unwrap().changed);
    assert!(
        !s.apply_case(close("y/close")).await.unwrap().changed,
        "already closed"
    );
    assert!(
        s.apply_case(open_case("c1", "r3", "r3/open"))
            .await
            .unwrap()
            .changed,
        "reopened"
    );

    let file = s.case_file("c1").await.unwrap().expect("case c1");
    assert_eq!(file.case.status, CaseStatus::Open);
    assert_eq!(file.case.resolution, None);
    let kinds: Vec<&str> = file.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["status", "run", "run", "note", "status", "status", "run"],
        "entries in order, each once"
    );
    let unknown = s
        .apply_case(CaseOp::Append(case_entry(
            "nope",
            CaseEntryKind::Note,
            "k",
            None,
            json!({}),
        )))
        .await;
    assert!(
        matches!(unknown, Err(belay_store::StoreError::NotFound(_))),
        "{unknown:?}"
    );
    assert!(s.case_file("nope").await.unwrap().is_none());
    s.apply_case(open_case("c2", "r4", "r4/open"))
        .await
        .unwrap();
    let open: Vec<String> = s
        .cases(Some(CaseStatus::Open))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(open.len(), 2);
    assert!(s.cases(Some(CaseStatus::Closed)).await.unwrap().is_empty());
}

async fn secrets_are_sealed_audited_by_name_and_resealed_by_compare_and_swap(s: Arc<dyn Store>) {
    use belay_store::{Keyring, SecretKey};
    let old = Keyring::parse(&SecretKey::generate().unwrap(), "old").unwrap();
    let value = b"edr-token-0123456789-conformance";
    let sealed = old.seal("EDR_TOKEN", value, 10).unwrap();
    s.put_secret(&sealed, "ada").await.unwrap();
    let stored = s.sealed_secret("EDR_TOKEN").await.unwrap().unwrap();
    assert_eq!(stored, sealed);
    assert_eq!(old.open(&stored).unwrap(), value);
    let again = SealedSecret {
        updated_at: 20,
        ..old.seal("EDR_TOKEN", b"second-value-abcdef", 20).unwrap()
    };
    s.put_secret(&again, "ada").await.unwrap();
    let stored = s.sealed_secret("EDR_TOKEN").await.unwrap().unwrap();
    assert_eq!(
        (stored.created_at, stored.updated_at),
        (10, 20),
        "created_at kept"
    );

    // A rotation reseals only what is still as it was read.
    let new_key = SecretKey::generate().unwrap();
    let both = Keyring::parse(&format!("{new_key}\n"), "new").unwrap();
    let mut moved = both
        .seal("EDR_TOKEN", &old.open(&stored).unwrap(), 30)
        .unwrap();
    moved.rotated_at = Some(30);
    assert!(
        !s.reseal_secret(&moved, &sealed).await.unwrap(),
        "stale read"
    );
    assert!(s.reseal_secret(&moved, &stored).await.unwrap());
    let infos = s.secret_infos().await.unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].key_id, both.active().id());
    assert_eq!(infos[0].rotated_at, Some(30));

    assert!(s.delete_secret("EDR_TOKEN", "ada").await.unwrap());
    assert!(!s.delete_secret("EDR_TOKEN", "ada").await.unwrap());
    assert!(s.sealed_secrets().await.unwrap().is_empty());
    let trail = s.audit_entries(0, 1000).await.unwrap();
    let kinds: Vec<&str> = trail
        .iter()
        .filter(|e| e.kind.starts_with("secret"))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["secret.set", "secret.set", "secret.deleted"]);
    let text = serde_json::to_string(&trail).unwrap();
    assert!(!text.contains("edr-token") && !text.contains("second-value"));
    assert!(belay_store::verify_audit(&*s).await.unwrap().is_ok());
}

conformance!(
    accepting_stores_event_and_runs_once,
    an_event_id_is_unique_per_source,
    runs_are_listed_filtered_and_finished,
    steps_are_replaced_and_ordered,
    a_change_key_is_journaled_once,
    a_decision_is_recorded_once_and_resumes_the_run,
    demotions_are_recorded_and_reset,
    playbook_versions_are_kept_by_hash,
    history_counts_autonomous_changes_per_run,
    case_files_are_idempotent_and_append_only,
    users_and_tokens_are_kept_audited_and_revocable,
    pauses_are_kept_audited_and_lifted,
    sessions_are_kept_hashed_ended_once_and_audited,
    secrets_are_sealed_audited_by_name_and_resealed_by_compare_and_swap,
    deliveries_and_used_links_are_recorded_once,
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
