//! Approvals, trust and replay through the real binary, on the `blocklist` connector: a person's
//! decision binds to one exact change, quorum and separation hold, deadlines deny, guardrail
//! holds are decided by people, a rollback demotes a step, and the trust report says why.

use serde_json::Value;
use std::path::Path;
use std::process::Output;

mod common;
use common::{assert_text_contains, block_alert_ip, json, listed, ok, refused, run_on};

/// The configuration: data and playbooks in the test directory, and these users with their roles.
fn users() -> String {
    let mut toml = String::from("data = \"data\"\nplaybooks = \"pb\"\n");
    for (name, role) in [
        ("alice", "responder"),
        ("bob", "responder"),
        ("erin", "admin"),
        ("carol", "admin"),
        ("dave", "viewer"),
    ] {
        toml += &format!("\n[[users]]\nname = \"{name}\"\nroles = [\"{role}\"]\n");
    }
    toml
}

fn setup(pb: &str, extra_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pb")).unwrap();
    std::fs::write(d.join("pb/block.yaml"), pb).unwrap();
    std::fs::write(d.join("belay.toml"), format!("{}{extra_config}", users())).unwrap();
    dir
}

/// `setup` for a guarded playbook blocking every address of an `intel.update` (its step
/// extended by `step_extra`), with the guardrail file `guardrails`.
fn feed_setup(step_extra: &str, guardrails: &str) -> tempfile::TempDir {
    let dir = setup(
        &common::block_every_ip("block-feed", "intel.update", step_extra),
        "",
    );
    std::fs::create_dir_all(dir.path().join("guardrails")).unwrap();
    std::fs::write(dir.path().join("guardrails/g.yaml"), guardrails).unwrap();
    dir
}

/// `belay ARGS` in `dir`, reading its belay.toml.
fn belay(dir: &Path, args: &[&str]) -> Output {
    common::bare(dir, args)
}

/// Runs the playbook on an alert for `ip`, as `user` when given; returns the run's JSON.
fn alert(d: &Path, ip: &str, user: Option<&str>) -> Value {
    let ev = serde_json::json!({"kind": "ids.alert", "observables": {"ips": [ip]}});
    let args = match user {
        Some(u) => vec!["--as", u],
        None => vec![],
    };
    json(&run_on(d, "pb/block.yaml", &ev, &args))
}

fn pending(d: &Path) -> Vec<Value> {
    let o = belay(d, &["approvals", "list", "--format", "json"]);
    let v = json(&o);
    v.as_array().unwrap().clone()
}

/// `runs show` of `run` (a run report), as JSON.
fn run_status(d: &Path, run: &Value) -> Value {
    let id = run["run_id"].as_str().unwrap();
    json(&belay(d, &["runs", "show", id, "--format", "json"]))
}

/// `approvals VERDICT ID --as USER` (`approve` or `deny`).
fn decide(d: &Path, verdict: &str, id: &str, user: &str) -> Output {
    belay(d, &["approvals", verdict, id, "--as", user])
}

/// `belay ARGS --format json`, which must succeed, as JSON.
fn ok_json(d: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    serde_json::from_str(ok(&belay(d, &args)).trim()).unwrap()
}

fn id_of(a: &Value) -> String {
    a["id"].as_str().unwrap().to_owned()
}

#[test]
fn approve_applies_the_change_and_deny_does_not() {
    let dir = setup(&block_alert_ip("approve", ""), "");
    let d = dir.path();
    let run = alert(d, "198.51.100.7", None);
    assert_eq!(run["status"], "waiting_approval");
    assert_eq!(run["steps"][0]["decision"], "await_approval");
    assert!(listed(d).is_empty(), "nothing is applied before approval");

    let list = pending(d);
    assert_eq!(list.len(), 1);
    let a = &list[0];
    for key in [
        "id",
        "run_id",
        "step",
        "action",
        "with",
        "change_hash",
        "guardrails",
        "expires_at",
    ] {
        assert!(a.get(key).is_some(), "approvals list lacks `{key}`: {a}");
    }
    assert_eq!(a["action"], "blocklist.add");
    assert_eq!(a["with"]["entry"], "198.51.100.7");
    assert_eq!(a["change_hash"].as_str().unwrap().len(), 64);
    assert_eq!(a["current_state"]["present"], false, "{a}");

    let out = ok(&belay(
        d,
        &[
            "approvals",
            "approve",
            &id_of(a),
            "--as",
            "bob",
            "--comment",
            "confirmed C2",
        ],
    ));
    assert!(out.contains("approved by bob"), "{out}");
    assert!(out.contains("succeeded"), "the run resumes at once: {out}");
    assert_eq!(listed(d), ["198.51.100.7"]);
    assert_eq!(run_status(d, &run)["status"], "succeeded");
    let changes = ok_json(d, &["changes", "list"]);
    assert_text_contains(
        &changes[0]["allowed_by"],
        &format!("approval:{} by bob", id_of(a)),
    );

    // A second alert, denied: nothing changes, the run fails and says who denied it.
    let run = alert(d, "198.51.100.8", None);
    let a = &pending(d)[0];
    ok(&belay(
        d,
        &[
            "approvals",
            "deny",
            &id_of(a),
            "--as",
            "alice",
            "--comment",
            "that is our partner",
        ],
    ));
    assert_eq!(listed(d), ["198.51.100.7"]);
    let r = run_status(d, &run);
    // A run ended by a denial is `denied`, not `failed`.
    assert_eq!(r["status"], "denied");
    let err = r["steps"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("denied by alice: that is our partner"),
        "{err}"
    );
    // A decided approval takes no further decisions.
    let o = refused(&decide(d, "approve", &id_of(a), "bob"));
    assert!(o.contains("is denied, not pending"), "{o}");

    let audit = ok(&belay(d, &["audit", "export"]));
    for kind in ["approval.requested", "approval.granted", "approval.denied"] {
        assert!(audit.contains(kind), "audit lacks {kind}");
    }
    assert!(
        audit.contains("that is our partner"),
        "comments are audited"
    );
    assert!(ok(&belay(d, &["audit", "verify"])).contains("audit chain intact"));
}

#[test]
fn an_approval_resumes_the_version_the_run_was_planned_with_not_the_edited_file() {
    let dir = setup(&block_alert_ip("approve", ""), "");
    let d = dir.path();
    let run = alert(d, "198.51.100.7", None);
    assert_eq!(run["status"], "waiting_approval");
    let shown = run_status(d, &run);
    let hash = shown["playbook_version"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(shown["playbook_version"]["stored"], true, "{shown}");
    assert_eq!(hash.len(), 64);

    // The playbook is edited on disk while the run waits: its step would now block another
    // address, on another list.
    let edited = block_alert_ip("approve", "").replace(
        r#"{ list: egress, entry: "${{ event.observables.ips[0] }}" }"#,
        r#"{ list: other, entry: "203.0.113.99" }"#,
    );
    assert_ne!(edited, block_alert_ip("approve", ""));
    std::fs::write(d.join("pb/block.yaml"), edited).unwrap();

    let a = &pending(d)[0];
    let out = ok(&decide(d, "approve", &id_of(a), "bob"));
    assert!(out.contains("succeeded"), "the run resumes at once: {out}");
    assert!(out.contains(&hash[..12]) && out.contains("stored"), "{out}");
    // The original change is applied, not the edited one.
    assert_eq!(listed(d), ["198.51.100.7"]);
    assert!(!d.join("data/lists/other.txt").exists());
    let r = run_status(d, &run);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["steps"][0]["with"]["entry"], "198.51.100.7");
    assert_eq!(r["playbook_version"]["hash"], hash.as_str());
    let text = ok(&belay(
        d,
        &["runs", "show", run["run_id"].as_str().unwrap()],
    ));
    assert!(
        text.contains(&format!("playbook version {hash} (stored")),
        "{text}"
    );
    assert!(ok(&belay(d, &["audit", "verify"])).contains("audit chain intact"));
}

#[test]
fn approve_and_deny_need_no_playbook_folder() {
    let dir = setup(&block_alert_ip("approve", ""), "");
    let d = dir.path();
    let first = alert(d, "198.51.100.7", None);
    let second = alert(d, "198.51.100.8", None);
    // No playbook folder configured or at hand any more.
    let toml = std::fs::read_to_string(d.join("belay.toml")).unwrap();
    std::fs::write(
        d.join("belay.toml"),
        toml.replace("playbooks = \"pb\"\n", ""),
    )
    .unwrap();
    std::fs::remove_dir_all(d.join("pb")).unwrap();

    let list = pending(d);
    assert_eq!(list.len(), 2);
    let of = |run: &Value| {
        list.iter()
            .find(|a| a["run_id"] == run["run_id"])
            .map(id_of)
            .unwrap()
    };
    let out = ok(&decide(d, "approve", &of(&first), "bob"));
    assert!(
        out.contains("succeeded"),
        "resumed without --playbooks: {out}"
    );
    assert_eq!(listed(d), ["198.51.100.7"]);
    assert_eq!(run_status(d, &first)["status"], "succeeded");

    ok(&decide(d, "deny", &of(&second), "alice"));
    let r = run_status(d, &second);
    assert_eq!(r["status"], "denied", "{r}");
    assert!(
        r["steps"][0]["error"]
            .as_str()
            .unwrap()
            .contains("denied by alice"),
        "{r}"
    );
    assert_eq!(listed(d), ["198.51.100.7"]);

    // The trust report reads the stored version; a rollback needs no playbook either.
    let report: Value = ok_json(d, &["trust", "report"]);
    assert_eq!(report[0]["playbook"], "block-ip", "{report}");
    assert_eq!(report[0]["step"], "block");
    assert_eq!(report[0]["approvals_granted"], 1, "{report}");
    ok(&belay(
        d,
        &[
            "rollback",
            "--run",
            first["run_id"].as_str().unwrap(),
            "--as",
            "alice",
        ],
    ));
    assert!(listed(d).is_empty());
}

#[test]
fn an_unanswered_approval_is_denied_at_its_deadline_by_default() {
    let dir = setup(
        &block_alert_ip("approve", "    approval: { timeout: 1s }\n"),
        "",
    );
    let d = dir.path();
    let run = alert(d, "198.51.100.9", None);
    let a = pending(d)[0].clone();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Too late to approve.
    let o = refused(&decide(d, "approve", &id_of(&a), "bob"));
    assert!(o.contains("expired"), "{o}");
    // The next engine start resumes the run, which applies `on_timeout: deny`.
    std::fs::write(d.join("empty.jsonl"), "").unwrap();
    ok(&belay(d, &["ingest", "empty.jsonl", "--quiet"]));
    let r = run_status(d, &run);
    assert_eq!(r["status"], "denied", "{r}");
    assert_text_contains(&r["steps"][0]["error"], "on_timeout: deny");
    assert!(listed(d).is_empty());
    assert!(ok(&belay(d, &["audit", "export"])).contains("approval.expired"));
}

#[test]
fn on_timeout_approve_applies_after_the_deadline() {
    let dir = setup(
        &block_alert_ip(
            "approve",
            "    approval: { timeout: 1s, on_timeout: approve }\n",
        ),
        "",
    );
    let d = dir.path();
    let run = alert(d, "198.51.100.10", None);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::write(d.join("empty.jsonl"), "").unwrap();
    ok(&belay(d, &["approvals", "list"]));
    ok(&belay(d, &["ingest", "empty.jsonl", "--quiet"]));
    assert_eq!(run_status(d, &run)["status"], "succeeded");
    assert_eq!(listed(d), ["198.51.100.10"]);
}

#[test]
fn quorum_two_needs_two_different_people_and_separation_refuses_self_approval() {
    let dir = setup(
        &block_alert_ip("approve", "    approval: { quorum: 2, separation: true }\n"),
        "",
    );
    let d = dir.path();
    alert(d, "203.0.113.50", Some("alice"));
    let id = id_of(&pending(d)[0]);

    // alice triggered the run, carol wrote the playbook, dave is no responder.
    for (user, why) in [
        ("alice", "separation of duties: alice triggered"),
        ("carol", "separation of duties: carol wrote"),
        ("dave", "needs responder or admin"),
        ("mallory", "unknown user `mallory`"),
    ] {
        let o = refused(&decide(d, "approve", &id, user));
        assert!(o.contains(why), "{user}: {o}");
    }

    let o = ok(&decide(d, "approve", &id, "bob"));
    assert!(o.contains("1 of 2"), "{o}");
    assert!(listed(d).is_empty(), "one approval of two applies nothing");
    let o = refused(&decide(d, "approve", &id, "bob"));
    assert!(o.contains("already decided"), "{o}");
    assert!(listed(d).is_empty());

    ok(&decide(d, "approve", &id, "erin"));
    assert_eq!(listed(d), ["203.0.113.50"]);
    // Both votes are in the trail before the grant that applied the change.
    let out = ok(&belay(d, &["audit", "verify"]));
    assert!(out.contains("audit chain intact"), "{out}");
}

#[test]
fn an_approval_authorizes_only_the_change_it_was_bound_to() {
    let dir = setup(&block_alert_ip("approve", ""), "");
    let d = dir.path();
    let first = alert(d, "192.0.2.1", None);
    let second = alert(d, "192.0.2.2", None);
    let list = pending(d);
    assert_eq!(list.len(), 2);
    let (a, b) = (&list[0], &list[1]);
    assert_ne!(a["change_hash"], b["change_hash"]);

    // Approving the first change applies it and nothing else.
    ok(&decide(d, "approve", &id_of(a), "bob"));
    assert_eq!(listed(d), ["192.0.2.1"]);
    assert_eq!(run_status(d, &second)["status"], "waiting_approval");
    assert_eq!(run_status(d, &first)["status"], "succeeded");

    // Bind the second approval to a different change (as if its inputs were re-planned), then
    // approve it: the run does not apply the change; it asks again for the change it has.
    let db = rusqlite::Connection::open(d.join("data/belay.db")).unwrap();
    let n = db
        .execute(
            "UPDATE approvals SET body = json_set(body, '$.change_hash', ?1) WHERE id = ?2",
            rusqlite::params![a["change_hash"].as_str().unwrap(), id_of(b)],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    ok(&decide(d, "approve", &id_of(b), "bob"));
    assert_eq!(
        listed(d),
        ["192.0.2.1"],
        "a mismatched approval applies nothing"
    );
    let r = run_status(d, &second);
    assert_eq!(r["status"], "waiting_approval", "{r}");
    let all: Value = ok_json(d, &["approvals", "list", "--all"]);
    let statuses: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["approved", "superseded", "pending"], "{all}");
    let fresh = &pending(d)[0];
    assert_eq!(fresh["with"]["entry"], "192.0.2.2");
    assert_eq!(fresh["change_hash"], b["change_hash"]);
    ok(&decide(d, "approve", &id_of(fresh), "bob"));
    assert_eq!(listed(d), ["192.0.2.1", "192.0.2.2"]);
}

#[test]
fn a_guardrail_hold_is_decided_by_a_person_for_the_whole_batch() {
    let dir = feed_setup(
        "    guardrails: [feed-batch]\n",
        "guardrails:\n  - name: feed-batch\n    applies_to: [blocklist.add]\n    batch: { max: 2 }\n    alert: soc-admins\n",
    );
    let d = dir.path();
    let ev = serde_json::json!({"kind": "intel.update", "observables": {"ips": ["192.0.2.10", "192.0.2.11", "192.0.2.12"]}});
    let run = json(&run_on(d, "pb/block.yaml", &ev, &[]));
    assert_eq!(run["status"], "waiting_approval");
    assert!(listed(d).is_empty(), "a held batch is held whole");
    let list = pending(d);
    assert_eq!(list.len(), 1, "one approval decides the batch: {list:?}");
    assert_text_contains(
        &list[0]["reason"],
        "batch of 3 changes is above the limit of 2",
    );
    ok(&decide(d, "approve", &id_of(&list[0]), "erin"));
    // Items run concurrently: the order of lines is not fixed, the set is.
    let mut all = listed(d);
    all.sort();
    assert_eq!(all, ["192.0.2.10", "192.0.2.11", "192.0.2.12"]);
    let changes: Value = ok_json(d, &["changes", "list"]);
    for c in changes.as_array().unwrap() {
        assert!(
            c["allowed_by"].as_str().unwrap().starts_with("approval:"),
            "{c}"
        );
    }
    // The trail vouches for each item: the hold, and the batch's decision listing it.
    let out = ok(&belay(d, &["audit", "verify"]));
    assert!(out.contains("audit chain intact"), "{out}");
}

#[test]
fn rolling_back_an_autonomous_change_demotes_the_step_until_reset() {
    let dir = setup(
        &block_alert_ip("log", ""),
        "\n[trust]\npromote_to_log_after = 2\n",
    );
    let d = dir.path();
    let run = alert(d, "192.0.2.20", None);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(listed(d), ["192.0.2.20"]);
    let report = ok(&belay(d, &["trust", "report"]));
    assert!(report.contains("declared log, effective log"), "{report}");

    // A person undoes what the step did on its own: the step goes back to approval.
    let out = ok(&belay(
        d,
        &[
            "rollback",
            "--run",
            run["run_id"].as_str().unwrap(),
            "--as",
            "alice",
        ],
    ));
    assert!(
        out.contains("step `block` of playbook `block-ip` is demoted to `approve`")
            && out.contains("belay trust reset block-ip block --as USER"),
        "the rollback says it demoted the step: {out}"
    );
    assert!(listed(d).is_empty());
    let report: Value = ok_json(d, &["trust", "report"]);
    let step = &report[0];
    assert_eq!(step["effective"], "approve", "{step}");
    assert_eq!(step["declared"], "log");
    assert_eq!(step["recommendation"], "demote");
    assert_text_contains(&step["reason"], "alice rolled back");
    assert_text_contains(
        &step["reason"],
        "`belay trust reset block-ip block --as USER` lifts it",
    );

    let run = alert(d, "192.0.2.21", None);
    assert_eq!(run["status"], "waiting_approval", "demoted: {run}");
    assert!(listed(d).is_empty());
    // Approvals earn it back: the report suggests promotion after the configured number.
    ok(&decide(d, "approve", &id_of(&pending(d)[0]), "bob"));
    alert(d, "192.0.2.22", None);
    ok(&decide(d, "approve", &id_of(&pending(d)[0]), "bob"));

    let o = refused(&belay(
        d,
        &["trust", "reset", "block-ip", "block", "--as", "nobody"],
    ));
    assert!(o.contains("unknown user"), "{o}");
    ok(&belay(
        d,
        &["trust", "reset", "block-ip", "block", "--as", "erin"],
    ));
    let report: Value = ok_json(d, &["trust", "report"]);
    assert_eq!(report[0]["effective"], "log");
    let run = alert(d, "192.0.2.23", None);
    assert_eq!(run["status"], "succeeded", "reset: runs alone again");
    let audit = ok(&belay(d, &["audit", "export"]));
    assert!(audit.contains("trust.demoted") && audit.contains("trust.reset"));
}

#[test]
fn the_trust_report_recommends_promotion_after_enough_clean_approvals() {
    let dir = setup(
        &block_alert_ip("approve", ""),
        "\n[trust]\npromote_to_log_after = 3\n",
    );
    let d = dir.path();
    for i in 0..3 {
        alert(d, &format!("192.0.2.{}", 30 + i), None);
        ok(&decide(d, "approve", &id_of(&pending(d)[0]), "bob"));
    }
    let report: Value = ok_json(d, &["trust", "report"]);
    let step = &report[0];
    assert_eq!(step["recommendation"], "promote to log", "{step}");
    assert_eq!(
        step["reason"],
        "3 approvals, 0 denials, 0 rollbacks in 30 days"
    );
    assert_eq!(step["approvals_granted"], 3);
    assert_eq!(step["changes"], 3);

    // One denial keeps it at approve, with the reason.
    alert(d, "192.0.2.40", None);
    ok(&decide(d, "deny", &id_of(&pending(d)[0]), "bob"));
    let report: Value = ok_json(d, &["trust", "report"]);
    assert_eq!(report[0]["recommendation"], "keep");
    assert_text_contains(&report[0]["reason"], "3 approvals, 1 denials");
}

#[test]
fn a_feed_update_ten_times_the_learned_baseline_is_held_whole() {
    let dir = feed_setup(
        "",
        "guardrails:\n  - name: feed-baseline\n    applies_to: [blocklist.add]\n    baseline: { per: 1h, factor: 3, min_history: 0s }\n",
    );
    let d = dir.path();
    // History: twelve feed updates of three addresses each.
    let mut lines = String::new();
    for u in 0..12 {
        let ips: Vec<String> = (0..3).map(|i| format!("10.{u}.0.{i}")).collect();
        lines.push_str(
            &serde_json::json!({"id": format!("u{u}"), "kind": "intel.update", "observables": {"ips": ips}})
                .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(d.join("history.jsonl"), lines).unwrap();
    ok(&belay(d, &["ingest", "history.jsonl", "--quiet"]));
    assert_eq!(listed(d).len(), 36);

    // An update ten times the usual size is held, and nothing of it is applied.
    let ips: Vec<String> = (0..30).map(|i| format!("10.99.0.{i}")).collect();
    let ev = serde_json::json!({"kind": "intel.update", "observables": {"ips": ips}});
    let run = json(&run_on(d, "pb/block.yaml", &ev, &[]));
    assert_eq!(run["status"], "waiting_approval", "{run}");
    assert_eq!(listed(d).len(), 36, "held whole");
    let reason = pending(d)[0]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("batch of 30 changes is above 3 × the learned p99 of 3 per run"),
        "{reason}"
    );
}

#[test]
fn replay_reports_what_a_playbook_would_have_done_and_changes_nothing() {
    let dir = setup(&block_alert_ip("approve", ""), "");
    let d = dir.path();
    let events = [
        r#"{"id": "p1", "kind": "ids.alert", "observables": {"ips": ["192.0.2.50"]}}"#,
        r#"{"id": "p2", "kind": "ids.alert", "observables": {"ips": ["192.0.2.51"]}}"#,
        r#"{"id": "p3", "kind": "dns.query", "observables": {"domains": ["example.org"]}}"#,
    ];
    std::fs::write(d.join("past.jsonl"), events.join("\n")).unwrap();
    let o = ok(&belay(
        d,
        &[
            "replay",
            "pb/block.yaml",
            "--events",
            "past.jsonl",
            "--format",
            "json",
        ],
    ));
    let v: Value = serde_json::from_str(o.trim()).unwrap();
    assert_eq!(v["total"]["events"], 3);
    assert_eq!(v["total"]["approvals"], 2);
    assert_eq!(v["total"]["not_triggered"], 1);
    assert_eq!(v["events"][0]["changes"][0]["would"], "needs approval");
    let text = ok(&belay(
        d,
        &["replay", "pb/block.yaml", "--events", "past.jsonl"],
    ));
    assert!(text.contains("— would need approval"), "{text}");
    assert!(!text.contains("would needs"), "{text}");
    assert!(listed(d).is_empty(), "a replay applies nothing");
    assert!(pending(d).is_empty(), "a replay requests no approval");
}

#[test]
fn the_trust_report_recommends_guarded_once_a_baseline_has_enough_history() {
    let dir = setup(
        &block_alert_ip("log", ""),
        "\n[trust]\npromote_to_guarded_after = 3\n",
    );
    let d = dir.path();
    for i in 0..3 {
        let run = alert(d, &format!("192.0.2.{}", 50 + i), None);
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let recommend = |d: &Path| -> Value {
        let report: Value = ok_json(d, &["trust", "report"]);
        report[0].clone()
    };
    // Enough clean changes, but nothing would catch an unusual run at `guarded` yet.
    let step = recommend(d);
    assert_eq!(step["recommendation"], "keep", "{step}");
    assert_text_contains(&step["reason"], "add a baseline guardrail");
    // A baseline guardrail over the action, whose history is long enough: promote.
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    std::fs::write(
        d.join("guardrails/baseline.yaml"),
        "guardrails:\n  - name: block-baseline\n    applies_to: [blocklist.add]\n    baseline: { per: 1h, factor: 3, min_history: 1s }\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let step = recommend(d);
    assert_eq!(step["recommendation"], "promote to guarded", "{step}");
    assert_text_contains(&step["reason"], "3 changes, 0 rollbacks, 0 failures");
}

#[test]
fn a_steps_record_follows_its_definition_not_its_playbooks_other_steps() {
    // Two steps at `approve`: `block` (egress list) and `watch` (watch list).
    let pb = |watch_list: &str, block_list: &str| {
        format!(
            r#"name: block-ip
author: carol
on: {{ event: ids.alert }}
trust: approve
steps:
  - id: block
    action: blocklist.add
    with: {{ list: {block_list}, entry: "${{{{ event.observables.ips[0] }}}}" }}
  - id: watch
    action: blocklist.add
    with: {{ list: {watch_list}, entry: "${{{{ event.observables.ips[0] }}}}" }}
"#
        )
    };
    let dir = setup(&pb("watch", "egress"), "");
    let d = dir.path();
    for ip in ["192.0.2.61", "192.0.2.62"] {
        alert(d, ip, None);
        for _ in 0..2 {
            let a = pending(d);
            ok(&decide(d, "approve", &id_of(&a[0]), "alice"));
        }
    }
    let granted = |d: &Path, step: &str| -> u64 {
        let report: Value = ok_json(d, &["trust", "report"]);
        report
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .unwrap()["approvals_granted"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(granted(d, "block"), 2);
    assert_eq!(granted(d, "watch"), 2);

    // Editing `watch` keeps `block`'s record; `watch` starts a new one.
    std::fs::write(d.join("pb/block.yaml"), pb("watch-2", "egress")).unwrap();
    assert_eq!(
        granted(d, "block"),
        2,
        "another step's edit kept the record"
    );
    assert_eq!(
        granted(d, "watch"),
        0,
        "an edited step earns its record anew"
    );

    // Editing `block` itself starts its record anew.
    std::fs::write(d.join("pb/block.yaml"), pb("watch-2", "egress-2")).unwrap();
    assert_eq!(granted(d, "block"), 0);
}
