//! Pausing automation through the real binary: while paused (all automation or one playbook),
//! change steps are recorded as shadow, also in a run that was already waiting when the pause
//! came; after `belay unpause` changes apply again; both switches are in the audit trail.

use serde_json::{Value, json};
use std::path::Path;

mod common;
use common::{belay, block_alert_ip, json, listed, ok, refused, run_on, write_file};

fn setup(trust: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pb")).unwrap();
    write_file(d, "pb/block.yaml", &block_alert_ip(trust, ""));
    let mut toml = String::new();
    for (name, role) in [("ada", "admin"), ("bob", "responder")] {
        toml += &format!("[[users]]\nname = \"{name}\"\nroles = [\"{role}\"]\n");
    }
    write_file(d, "belay.toml", &toml);
    dir
}

/// Runs `pb/block.yaml` on an alert for `ip`; the run's JSON.
fn alert(d: &Path, ip: &str) -> Value {
    let ev = json!({"kind": "ids.alert", "observables": {"ips": [ip]}});
    json(&run_on(d, "pb/block.yaml", &ev, &[]))
}

fn audit(d: &Path) -> Vec<Value> {
    ok(&belay(d, &["audit", "export"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn paused_automation_records_shadow_changes_until_resumed() {
    let dir = setup("log");
    let d = dir.path();

    // Only an admin may switch automation, and a pause says why.
    let o = refused(&belay(d, &["pause", "--as", "bob", "--reason", "x"]));
    assert!(o.contains("needs the admin role"), "{o}");
    refused(&belay(d, &["pause", "--as", "ada", "--reason", " "]));

    ok(&belay(
        d,
        &[
            "pause",
            "--as",
            "ada",
            "--reason",
            "feed sends false positives",
        ],
    ));
    let list = ok(&belay(d, &["pause", "--list"]));
    assert!(list.contains("all automation paused by ada"), "{list}");
    let run = alert(d, "198.51.100.1");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"][0]["decision"], "shadow", "{run}");
    assert_eq!(run["steps"][0]["output"]["paused"]["paused_by"], "ada");
    assert!(listed(d).is_empty(), "nothing applied while paused");

    ok(&belay(
        d,
        &["unpause", "--as", "ada", "--reason", "feed fixed"],
    ));
    let run = alert(d, "198.51.100.2");
    assert_eq!(run["steps"][0]["decision"], "apply", "{run}");
    assert_eq!(listed(d), ["198.51.100.2"]);

    // One playbook paused: it records shadow changes; pausing another leaves it alone.
    ok(&belay(
        d,
        &["pause", "other", "--as", "ada", "--reason", "r"],
    ));
    assert_eq!(alert(d, "198.51.100.3")["steps"][0]["decision"], "apply");
    ok(&belay(
        d,
        &["pause", "block-ip", "--as", "ada", "--reason", "r"],
    ));
    assert_eq!(alert(d, "198.51.100.4")["steps"][0]["decision"], "shadow");
    ok(&belay(d, &["resume-automation", "block-ip", "--as", "ada"]));
    assert_eq!(alert(d, "198.51.100.5")["steps"][0]["decision"], "apply");
    assert_eq!(listed(d), ["198.51.100.2", "198.51.100.3", "198.51.100.5"]);

    // Both switches are in the trail, with who and why.
    let trail = audit(d);
    let switches: Vec<(String, String, String)> = trail
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("automation."))
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["detail"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        switches[0],
        (
            "automation.paused".into(),
            "ada".into(),
            "feed sends false positives".into()
        )
    );
    assert_eq!(
        switches[1],
        (
            "automation.resumed".into(),
            "ada".into(),
            "feed fixed".into()
        )
    );
    assert_eq!(switches.len(), 5, "{switches:?}");
    ok(&belay(d, &["audit", "verify"]));
}

#[test]
fn a_pause_governs_a_run_already_waiting_when_its_change_runs() {
    let dir = setup("approve");
    let d = dir.path();
    let run = alert(d, "198.51.100.9");
    assert_eq!(run["status"], "waiting_approval", "{run}");
    let pending = json(&belay(d, &["approvals", "list", "--format", "json"]));
    let id = pending[0]["id"].as_str().unwrap().to_owned();

    // Paused after the run started: the approved change is recorded, not applied.
    ok(&belay(
        d,
        &["pause", "--as", "ada", "--reason", "change freeze"],
    ));
    ok(&belay(d, &["approvals", "approve", &id, "--as", "bob"]));
    assert!(listed(d).is_empty(), "applied while paused");
    let id = run["run_id"].as_str().unwrap();
    let shown = json(&belay(d, &["runs", "show", id, "--format", "json"]));
    let last = shown["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["decision"], "shadow", "{shown}");
}
