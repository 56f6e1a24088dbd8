//! Rollback through the real binary, against real list files.

use serde_json::Value;
use std::path::Path;

mod common;
use common::{assert_text_contains, belay, json, ok, run_on, text};

const PLAYBOOK: &str = r#"name: churn
on: { event: churn }
trust: log
steps:
  - id: add
    action: blocklist.add
    for_each: ${{ event.data.add }}
    concurrency: 1
    with: { list: egress, entry: "${{ item }}" }
  - id: remove
    action: blocklist.remove
    for_each: ${{ event.data.remove }}
    concurrency: 1
    with: { list: egress, entry: "${{ item }}" }
"#;

const HAND_KEPT: &str =
    "# egress blocklist, kept by hand\n192.0.2.1\n192.0.2.2\n# staging\n192.0.2.3\n";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/lists")).unwrap();
    std::fs::create_dir_all(dir.path().join("pbs")).unwrap();
    std::fs::write(dir.path().join("data/lists/egress.txt"), HAND_KEPT).unwrap();
    std::fs::write(dir.path().join("pbs/churn.yaml"), PLAYBOOK).unwrap();
    dir
}

fn list(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("data/lists/egress.txt")).unwrap()
}

/// Asserts that every change of run `run` has `status` (as `belay changes list` shows it).
fn assert_changes_are(dir: &Path, run: &str, status: &str) {
    let out = belay(dir, &["changes", "list", "--run", run, "--format", "json"]);
    let changes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        changes.iter().all(|c| c["status"] == status),
        "not all {status}: {changes:?}"
    );
}

fn run_event(dir: &Path, add: &[&str], remove: &[&str]) -> String {
    let ev = serde_json::json!({"kind": "churn", "data": {"add": add, "remove": remove}});
    let report = json(&run_on(dir, "pbs/churn.yaml", &ev, &[]));
    assert_eq!(report["status"], "succeeded", "{report}");
    report["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn rollback_of_a_run_restores_every_byte_of_the_list() {
    let dir = setup();
    let d = dir.path();
    let run = run_event(d, &["203.0.113.9", "198.51.100.4"], &["192.0.2.2"]);
    assert_eq!(
        list(d),
        "# egress blocklist, kept by hand\n192.0.2.1\n# staging\n192.0.2.3\n203.0.113.9\n198.51.100.4\n"
    );
    let out = ok(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(
        out.contains("3 reverted, 0 unchanged, 0 kept (irreversible), 0 drifted, 0 failed"),
        "{out}"
    );
    assert_eq!(
        list(d),
        HAND_KEPT,
        "byte for byte, the removed line back in its place"
    );
    let again = ok(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(
        again.contains("nothing to roll back: the 3 selected change(s) were already reverted"),
        "a second rollback says so: {again}"
    );
    assert_eq!(list(d), HAND_KEPT, "and changes nothing");
    assert_changes_are(d, &run, "reverted");
    assert!(ok(&belay(d, &["audit", "verify"])).starts_with("audit chain intact"));
}

#[test]
fn undoing_the_removal_of_a_repeated_entry_restores_every_copy() {
    let dir = setup();
    let d = dir.path();
    let with_copies = "# egress\n192.0.2.9\n192.0.2.1\n# again, kept by another team\n192.0.2.9\n";
    std::fs::write(d.join("data/lists/egress.txt"), with_copies).unwrap();
    let run = run_event(d, &[], &["192.0.2.9"]);
    assert_eq!(
        list(d),
        "# egress\n192.0.2.1\n# again, kept by another team\n"
    );
    let preview = ok(&belay(
        d,
        &["rollback", "--run", &run, "--dry-run", "--as", "alice"],
    ));
    assert!(preview.contains("1 would be reverted"), "{preview}");
    let out = ok(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(out.contains("1 reverted, 0 unchanged"), "{out}");
    assert_eq!(list(d), with_copies, "both copies back where they stood");
    // Verification counts the copies: an undo that restored one would not be "reverted".
    let changes: Vec<Value> = serde_json::from_slice(
        &belay(d, &["changes", "list", "--run", &run, "--format", "json"]).stdout,
    )
    .unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["status"], "reverted", "{changes:?}");
    assert_eq!(changes[0]["before"]["count"], 2, "{changes:?}");
}

#[test]
fn rollback_to_a_checkpoint_after_many_runs_restores_the_list() {
    let dir = setup();
    let d = dir.path();
    run_event(d, &["10.9.9.9"], &[]);
    let before = list(d);
    ok(&belay(
        d,
        &["checkpoint", "create", "known-good", "--as", "alice"],
    ));
    let mut lines = String::new();
    for i in 0..15 {
        let remove: Vec<String> = if i % 5 == 0 {
            vec!["192.0.2.1".into()]
        } else {
            vec![]
        };
        lines.push_str(&serde_json::json!({"id": format!("c{i}"), "kind": "churn", "data": {"add": [format!("203.0.113.{i}")], "remove": remove}}).to_string());
        lines.push('\n');
    }
    std::fs::write(d.join("events.jsonl"), lines).unwrap();
    ok(&belay(
        d,
        &["ingest", "events.jsonl", "--playbooks", "pbs", "--quiet"],
    ));
    assert_ne!(list(d), before);
    let dry = ok(&belay(
        d,
        &[
            "rollback",
            "--to",
            "known-good",
            "--as",
            "alice",
            "--dry-run",
        ],
    ));
    assert!(dry.contains("16 would be reverted"), "{dry}");
    assert_ne!(list(d), before, "a dry run changes nothing");
    let out = ok(&belay(
        d,
        &["rollback", "--to", "known-good", "--as", "alice"],
    ));
    assert!(out.contains("16 reverted"), "{out}");
    assert_eq!(list(d), before);
    // Rolling back to the same checkpoint again finds nothing left to undo.
    let again = ok(&belay(
        d,
        &["rollback", "--to", "known-good", "--as", "alice"],
    ));
    assert!(
        again.contains("nothing to roll back") && again.contains("already reverted"),
        "{again}"
    );
    assert_eq!(list(d), before);
}

#[test]
fn a_drifted_target_is_refused_unless_forced() {
    let dir = setup();
    let d = dir.path();
    let run = run_event(d, &["203.0.113.77"], &[]);
    // Someone removes the entry by hand: the target is no longer as the change left it.
    let edited = list(d).replace("203.0.113.77\n", "");
    std::fs::write(d.join("data/lists/egress.txt"), &edited).unwrap();
    let o = belay(d, &["rollback", "--run", &run, "--as", "alice"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("drifted") && out.contains("use --force"),
        "{out}"
    );
    assert_eq!(list(d), edited, "a refused rollback changes nothing");
    let out = ok(&belay(
        d,
        &["rollback", "--run", &run, "--as", "alice", "--force"],
    ));
    assert!(out.contains("1 reverted"), "{out}");
    assert_eq!(list(d), HAND_KEPT);
}

#[test]
fn a_rollback_can_itself_be_rolled_back() {
    let dir = setup();
    let d = dir.path();
    let run = run_event(d, &["203.0.113.5"], &["192.0.2.3"]);
    let applied = list(d);
    let out = ok(&belay(
        d,
        &[
            "rollback", "--run", &run, "--as", "alice", "--format", "json",
        ],
    ));
    let report: Value = serde_json::from_str(&out).unwrap();
    let undo_run = report["rollback_run"].as_str().unwrap().to_owned();
    assert_eq!(list(d), HAND_KEPT);
    ok(&belay(d, &["rollback", "--run", &undo_run, "--as", "bob"]));
    assert_eq!(
        list(d),
        applied,
        "undoing the rollback re-applies the run's changes"
    );
    // The run's changes are in effect again.
    assert_changes_are(d, &run, "applied");
    let export = ok(&belay(d, &["audit", "export"]));
    assert!(
        export.contains("\"actor\":\"bob\""),
        "the redo is audited under its author"
    );
}

#[test]
fn on_error_rollback_undoes_the_runs_earlier_changes() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(
        d.join("pbs/undo.yaml"),
        "name: undo\ntrust: log\nsteps:\n  - id: add\n    action: blocklist.add\n    with: { list: egress, entry: 203.0.113.8 }\n  - id: remove\n    action: blocklist.remove\n    with: { list: egress, entry: 192.0.2.2 }\n  - id: boom\n    action: core.fail\n    with: { message: downstream refused }\n    on_error: rollback\n",
    )
    .unwrap();
    let report = json(&run_on(
        d,
        "pbs/undo.yaml",
        &serde_json::json!({"kind": "x"}),
        &[],
    ));
    assert_eq!(report["status"], "failed");
    assert_text_contains(&report["error"], "rolled back 2 earlier change(s)");
    assert_eq!(
        list(d),
        HAND_KEPT,
        "the list is back to its bytes before the run"
    );
}

/// With users configured, changing state needs a role that may decide on approvals: a viewer
/// may preview a rollback but not perform it, nor reset trust, create a checkpoint or run.
#[test]
fn a_viewer_may_look_but_not_change_anything() {
    let dir = setup();
    let d = dir.path();
    let run = run_event(d, &["203.0.113.9"], &[]);
    std::fs::write(
        d.join("belay.toml"),
        "data = \"data\"\n[[users]]\nname = \"dave\"\nroles = [\"viewer\"]\n\
         [[users]]\nname = \"alice\"\nroles = [\"responder\"]\n",
    )
    .unwrap();
    let after_run = list(d);
    let preview = ok(&belay(
        d,
        &["rollback", "--run", &run, "--dry-run", "--as", "dave"],
    ));
    assert!(preview.contains("1 would be reverted"), "{preview}");
    for args in [
        vec!["rollback", "--run", &run, "--as", "dave"],
        vec!["trust", "reset", "churn", "add", "--as", "dave"],
        vec!["checkpoint", "create", "cp", "--as", "dave"],
    ] {
        let o = belay(d, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("dave may not")
                && text(&o).contains("needs the responder or admin role (their roles: viewer)"),
            "{args:?}: {}",
            text(&o)
        );
    }
    assert_eq!(list(d), after_run, "nothing was rolled back");
    let out = ok(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(out.contains("1 reverted"), "{out}");
    assert_eq!(list(d), HAND_KEPT);
}
