//! What a new SOC engineer runs into in the first hour, through the real binary: a config read
//! from another folder, events without an id delivered twice, and runs left waiting.

use std::path::Path;

mod common;
use common::{bare, json, ok, text};

const BLOCK: &str = r#"name: block
on: { event: ids.alert }
trust: log
steps:
  - id: block
    action: blocklist.add
    with: { list: egress, entry: "${{ event.observables.ips[0] }}" }
"#;

#[test]
fn relative_paths_in_a_config_resolve_against_the_config_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(ws.join("pb")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(
        ws.join("belay.toml"),
        "data = \"./belay-data\"\nplaybooks = \"pb\"\n\n[lists]\negress = \"lists/egress.txt\"\n",
    )
    .unwrap();
    std::fs::write(ws.join("pb/block.yaml"), BLOCK).unwrap();
    std::fs::write(
        elsewhere.join("events.jsonl"),
        "{\"id\": \"a1\", \"kind\": \"ids.alert\", \"observables\": {\"ips\": [\"192.0.2.77\"]}}\n",
    )
    .unwrap();
    let config = "../ws/belay.toml";
    let o = bare(
        &elsewhere,
        &["--config", config, "ingest", "events.jsonl", "--quiet"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The store, the list file and the playbooks are the workspace's, not the caller's folder.
    assert!(ws.join("belay-data").is_dir());
    assert!(!elsewhere.join("belay-data").exists(), "no stray store");
    assert_eq!(
        std::fs::read_to_string(ws.join("lists/egress.txt")).unwrap(),
        "192.0.2.77\n"
    );
    let runs = json(&bare(
        &elsewhere,
        &["--config", config, "runs", "list", "--format", "json"],
    ));
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    // The same store from the workspace itself.
    let here = json(&bare(&ws, &["runs", "list", "--format", "json"]));
    assert_eq!(here, runs);
}

/// A workspace with the `block` playbook, belay.toml (`extra` appended) and `events.jsonl`.
fn workspace(extra: &str, events: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pb")).unwrap();
    std::fs::write(d.join("pb/block.yaml"), BLOCK).unwrap();
    std::fs::write(
        d.join("belay.toml"),
        format!("data = \"data\"\nplaybooks = \"pb\"\n{extra}"),
    )
    .unwrap();
    std::fs::write(d.join("events.jsonl"), events).unwrap();
    dir
}

fn runs(d: &Path) -> usize {
    json(&bare(d, &["runs", "list", "--format", "json"]))
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn an_event_without_an_id_delivered_twice_runs_once_and_again_after_the_window() {
    let alert =
        r#"{"kind": "ids.alert", "source": "suricata", "observables": {"ips": ["192.0.2.90"]}}"#;
    let dir = workspace(
        "\n[engine]\ndedup_window = \"2s\"\n",
        &format!("{alert}\n{alert}\n"),
    );
    let d = dir.path();
    let out = ok(&bare(d, &["ingest", "events.jsonl"]));
    assert!(
        out.contains("1 duplicate"),
        "the retried delivery is a duplicate: {out}"
    );
    assert_eq!(runs(d), 1);
    std::fs::write(d.join("again.jsonl"), format!("{alert}\n")).unwrap();
    ok(&bare(d, &["ingest", "again.jsonl"]));
    assert_eq!(runs(d), 1, "still within the window");
    // Another source's identical alert is another event.
    let other = alert.replace("suricata", "zeek");
    std::fs::write(d.join("other.jsonl"), format!("{other}\n")).unwrap();
    ok(&bare(d, &["ingest", "other.jsonl"]));
    assert_eq!(runs(d), 2);
    // The same alert once the window has passed runs again.
    std::thread::sleep(std::time::Duration::from_millis(4100));
    std::fs::write(d.join("later.jsonl"), format!("{alert}\n")).unwrap();
    ok(&bare(d, &["ingest", "later.jsonl"]));
    assert_eq!(runs(d), 3, "the same alert after the window runs again");
}

#[test]
fn an_id_is_unique_per_source_so_one_source_cannot_silence_another() {
    // A noisy sender uses the id the IDS will use for its next alert.
    let forged = r#"{"id": "alert-7", "kind": "test.noise", "source": "syslog:10.0.0.5"}"#;
    let real = r#"{"id": "alert-7", "kind": "ids.alert", "source": "suricata", "observables": {"ips": ["192.0.2.97"]}}"#;
    let dir = workspace("", &format!("{forged}\n{real}\n{real}\n"));
    let d = dir.path();
    let out = ok(&bare(d, &["ingest", "events.jsonl"]));
    assert!(
        out.contains("2 accepted, 1 duplicate, 0 conflict"),
        "the IDS's alert is its own event; only its retry is a duplicate: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("data/lists/egress.txt")).unwrap(),
        "192.0.2.97\n",
        "the IDS's alert ran"
    );
    // Both are stored, each under its source.
    let ids = json(&bare(
        d,
        &["logs", "event", "alert-7", "--source", "suricata"],
    ));
    assert_eq!(ids["kind"], "ids.alert");
    let noise = json(&bare(
        d,
        &["logs", "event", "alert-7", "--source", "syslog:10.0.0.5"],
    ));
    assert_eq!(noise["kind"], "test.noise");
    let missing = bare(d, &["logs", "event", "alert-7", "--source", "zeek"]);
    assert!(!missing.status.success());
}

#[test]
fn replaying_events_never_makes_the_live_ones_duplicates() {
    let alert = r#"{"id": "alert-1", "kind": "ids.alert", "observables": {"ips": ["192.0.2.91"]}}"#;
    let dir = workspace("", &format!("{alert}\n"));
    let d = dir.path();
    let out = ok(&bare(
        d,
        &["replay", "pb/block.yaml", "--events", "events.jsonl"],
    ));
    assert!(out.contains("1"), "{out}");
    let listed = ok(&bare(d, &["runs", "list"]));
    assert!(listed.contains("(replay)"), "replays are marked: {listed}");
    assert!(
        !d.join("data/lists/egress.txt").exists(),
        "a replay applies nothing"
    );
    let out = ok(&bare(d, &["ingest", "events.jsonl"]));
    assert!(out.contains("1 succeeded"), "the live event runs: {out}");
    assert_eq!(
        std::fs::read_to_string(d.join("data/lists/egress.txt")).unwrap(),
        "192.0.2.91\n"
    );
}

#[test]
fn runs_resume_finishes_a_run_whose_approval_expired_and_names_those_still_waiting() {
    let pb = BLOCK.replace("trust: log", "trust: approve").replace(
        "    with: { list: egress",
        "    approval: { timeout: 1s, on_timeout: skip }\n    with: { list: egress",
    );
    let dir = workspace("", "");
    let d = dir.path();
    std::fs::write(d.join("pb/block.yaml"), pb).unwrap();
    std::fs::write(
        d.join("pb/wait.yaml"),
        BLOCK
            .replace("name: block", "name: wait")
            .replace("trust: log", "trust: approve"),
    )
    .unwrap();
    std::fs::write(
        d.join("ev.json"),
        r#"{"kind": "ids.alert", "observables": {"ips": ["192.0.2.95"]}}"#,
    )
    .unwrap();
    for p in ["pb/block.yaml", "pb/wait.yaml"] {
        let o = bare(d, &["run", p, "--event", "ev.json", "--format", "json"]);
        assert_eq!(json(&o)["status"], "waiting_approval", "{}", text(&o));
    }
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let out = ok(&bare(d, &["runs", "resume"]));
    assert!(
        out.contains("(block) succeeded"),
        "the expired approval's run ends: {out}"
    );
    assert!(out.contains("(wait) still waits for approval"), "{out}");
    assert!(out.contains("1 still waiting for a person"), "{out}");
    let runs = json(&bare(d, &["runs", "list", "--format", "json"]));
    let block = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["playbook"] == "block")
        .unwrap()
        .clone();
    assert_eq!(block["status"], "succeeded", "{block}");
}

#[test]
fn an_ingest_with_nothing_new_finishes_a_run_whose_approval_expired_and_counts_it_right() {
    let pb = BLOCK.replace("trust: log", "trust: approve").replace(
        "    with: { list: egress",
        "    approval: { timeout: 1s, on_timeout: skip }\n    with: { list: egress",
    );
    let dir = workspace("", "");
    let d = dir.path();
    std::fs::write(d.join("pb/block.yaml"), pb).unwrap();
    std::fs::write(
        d.join("ev.json"),
        r#"{"kind": "ids.alert", "observables": {"ips": ["192.0.2.96"]}}"#,
    )
    .unwrap();
    let o = bare(d, &["run", "pb/block.yaml", "--event", "ev.json"]);
    assert!(text(&o).contains("waiting for approval"), "{}", text(&o));
    let listed = bare(d, &["runs", "list"]);
    assert!(
        text(&listed).contains("1 run(s) wait for a decision"),
        "{}",
        text(&listed)
    );
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let out = ok(&bare(d, &["ingest", "/dev/null"]));
    assert!(
        out.contains("runs: 0 started (0 succeeded, 0 failed, 0 waiting); 0 unfinished and 1 decided run(s) resumed"),
        "{out}"
    );
    let runs = json(&bare(d, &["runs", "list", "--format", "json"]));
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
}

#[test]
fn events_that_started_no_run_are_reported_and_can_be_rerun() {
    let alert = r#"{"id": "a-1", "kind": "ids.alert", "observables": {"ips": ["192.0.2.97"]}}"#;
    let dir = workspace("", &format!("{alert}\n"));
    let d = dir.path();
    // An empty folder is refused before any event is used up.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let o = bare(d, &["ingest", "events.jsonl", "--playbooks", "empty"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no playbooks in empty"), "{}", text(&o));
    // The wrong folder: the event is accepted, starts nothing, and the ingest says so.
    std::fs::create_dir_all(d.join("other")).unwrap();
    std::fs::write(
        d.join("other/dns.yaml"),
        BLOCK
            .replace("name: block", "name: dns")
            .replace("ids.alert", "dns.query"),
    )
    .unwrap();
    let o = bare(d, &["ingest", "events.jsonl", "--playbooks", "other"]);
    assert!(
        text(&o).contains("1 accepted event(s) started no run"),
        "{}",
        text(&o)
    );
    assert_eq!(runs(d), 0);
    // Re-sending is a duplicate; rerunning with the right folder runs it, once.
    let out = ok(&bare(d, &["events", "rerun", "--since", "1h"]));
    assert!(
        out.contains("run") && out.contains("`block` succeeded"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("data/lists/egress.txt")).unwrap(),
        "192.0.2.97\n"
    );
    let out = ok(&bare(d, &["events", "rerun", "a-1"]));
    assert!(
        out.contains("no new run"),
        "a playbook runs on an event once: {out}"
    );
    assert_eq!(runs(d), 1);
}

#[test]
fn ids_may_be_given_by_their_first_characters_and_guides_come_with_the_binary() {
    let alert = r#"{"id": "p-1", "kind": "ids.alert", "observables": {"ips": ["192.0.2.98"]}}"#;
    let dir = workspace("", &format!("{alert}\n"));
    let d = dir.path();
    ok(&bare(d, &["ingest", "events.jsonl"]));
    let runs = json(&bare(d, &["runs", "list", "--format", "json"]));
    let id = runs[0]["run_id"]
        .as_str()
        .unwrap_or_else(|| runs[0]["id"].as_str().unwrap())
        .to_owned();
    let shown = ok(&bare(d, &["runs", "show", &id[..13]]));
    assert!(shown.contains(&id), "a prefix names the run: {shown}");
    let o = bare(d, &["runs", "show", "ffffffff"]);
    assert!(
        text(&o).contains("no run id begins with `ffffffff`"),
        "{}",
        text(&o)
    );
    let o = bare(d, &["runs", "show", "01"]);
    assert!(text(&o).contains("too short"), "{}", text(&o));
    // The reference guides.
    let topics = ok(&bare(d, &["guide"]));
    assert!(
        topics.contains("expressions") && topics.contains("trust"),
        "{topics}"
    );
    let guide = ok(&bare(d, &["guide", "expressions"]));
    assert!(guide.contains("${{"), "{guide}");
    let o = bare(d, &["guide", "nope"]);
    assert!(text(&o).contains("no guide `nope`"), "{}", text(&o));
}

#[test]
fn every_option_is_described_and_global_options_stand_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        &["runs", "list", "--help"][..],
        &["run", "--help"],
        &["ingest", "--help"],
        &["replay", "--help"],
        &["approvals", "list", "--help"],
        &["changes", "list", "--help"],
        &["actions", "show", "--help"],
        &["approvals", "approve", "--help"],
    ] {
        let help = ok(&bare(d, args));
        let (own, global) = help
            .split_once("Global options:")
            .expect("a global section");
        assert!(global.contains("--config"), "{help}");
        assert!(
            !own.contains("--config"),
            "global options stand apart: {help}"
        );
        // Every option of the command says what it is for.
        for line in own.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = line.trim_start().split_once("  ").map(|(_, d)| d.trim());
            assert!(
                described.is_some_and(|d| !d.is_empty()),
                "{args:?}: `{}` has no description",
                line.trim()
            );
        }
    }
    assert!(ok(&bare(d, &["run", "--help"])).contains("Examples:"));
    assert!(ok(&bare(d, &["approvals", "approve", "--help"])).contains("--without"));
}
