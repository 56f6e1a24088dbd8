//! End-to-end tests of the `belay` binary: lint, run, test.

use std::path::Path;

mod common;
use common::{assert_contains_all, belay, json, run_on, text, write_file};

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn lint_reports_every_error_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "bad.yaml",
        "name: bad\non:\n  event: ids.alert\ntrust: log\nsteps:\n  - id: a\n    action: blocklist.add\n    colour: red\n    with: { list: egress, entry: x }\n  - id: b\n    action: firewall.block_ipp\n  - id: c\n    action: core.log\n    with:\n      message: \"${{ event.kind + }}\"\n  - id: d\n    action: core.log\n    with:\n      message: ${{ steps.zz.output }}\n",
    );
    write_file(
        dir.path(),
        "broken.yaml",
        "name: broken\nsteps: [\n  - id: a\n",
    );
    let o = belay(dir.path(), &["lint", "bad.yaml", "broken.yaml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_contains_all(
        &out,
        &[
            "bad.yaml:8:5: error: unknown key `colour` in a step",
            "bad.yaml:11:13: error: unknown action `firewall.block_ipp`",
            "hint: did you mean `firewall.block_ip`?",
            "bad.yaml:15:17: error: expression `event.kind +` does not parse",
            "bad.yaml:19:16: error: step `d` refers to step `zz`, which does not run before it",
            "broken.yaml:3:3: error: YAML syntax error",
        ],
    );
}

#[test]
fn lint_checks_inputs_and_sub_playbook_cycles() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "a.yaml",
        "name: a\nsteps:\n  - id: x\n    action: blocklist.add\n    with: { list: '../etc', entry: y, extra: 1 }\n  - id: call_b\n    playbook: b\n",
    );
    write_file(
        dir.path(),
        "b.yaml",
        "name: b\nsteps:\n  - id: call_a\n    playbook: a\n",
    );
    let out = text(&belay(dir.path(), &["lint", "."]));
    assert_contains_all(
        &out,
        &[
            "./a.yaml:5:13: error: input `list` of `blocklist.add` is invalid",
            "./a.yaml:5:39: error: action `blocklist.add` has no input `extra`",
            "./a.yaml:7:15: error: sub-playbook cycle: a -> b -> a",
        ],
    );
}

#[test]
fn the_examples_lint_clean_and_their_tests_pass() {
    let dir = tempfile::tempdir().unwrap();
    let pbs = examples().join("playbooks");
    let o = belay(dir.path(), &["lint", pbs.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = belay(dir.path(), &["test", pbs.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.lines().any(|l| l == "4 passed, 0 failed"), "{out}");
}

#[test]
fn a_test_with_a_wrong_expectation_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("playbooks/block-malicious-ip.yaml"),
        dir.path().join("pb.yaml"),
    )
    .unwrap();
    write_file(
        dir.path(),
        "wrong.test.yaml",
        "name: wrong\nplaybook: block-malicious-ip\nevent: { kind: ids.alert, severity: high, observables: { ips: [192.0.2.1] } }\nexpect:\n  actions:\n    - action: blocklist.add\n      with: { entry: 192.0.2.99 }\n  not:\n    - action: core.log\n",
    );
    let o = belay(dir.path(), &["test", "."]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.lines().any(|l| l == "0 passed, 1 failed"), "{out}");
    assert_contains_all(
        &out,
        &[
            "expected `blocklist.add` with {\"entry\":\"192.0.2.99\"}",
            "`core.log` must not happen, it happened 1 time(s)",
        ],
    );
}

#[test]
fn run_applies_changes_and_dry_run_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pb = examples().join("playbooks/block-malicious-ip.yaml");
    let ev = examples().join("events/ids-alert.json");
    let o = belay(
        dir.path(),
        &[
            "run",
            pb.to_str().unwrap(),
            "--event",
            ev.to_str().unwrap(),
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = json(&o);
    assert_eq!(report["status"], "succeeded");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{report}");
    assert_eq!(steps[1]["step"], "block[0]");
    assert_eq!(steps[1]["decision"], "dry_run");
    assert_eq!(steps[1]["with"]["entry"], "203.0.113.66");
    assert!(
        !dir.path().join("data/lists/egress.txt").exists(),
        "a dry run changes nothing"
    );
    let listed = text(&belay(dir.path(), &["runs", "list"]));
    assert!(
        listed.contains("succeeded (dry run)"),
        "runs list marks it: {listed}"
    );

    let o = belay(
        dir.path(),
        &[
            "run",
            pb.to_str().unwrap(),
            "--event",
            ev.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let report = json(&o);
    assert_eq!(report["steps"][1]["decision"], "apply");
    assert_eq!(report["steps"][3]["output"]["values"]["blocked"], 2);
    let list = std::fs::read_to_string(dir.path().join("data/lists/egress.txt")).unwrap();
    // The block step's items run concurrently: both entries, in whichever order they landed.
    let mut entries: Vec<&str> = list.lines().collect();
    entries.sort_unstable();
    assert_eq!(entries, ["198.51.100.23", "203.0.113.66"], "{list:?}");
    assert!(list.ends_with('\n'), "{list:?}");

    let run_id = report["run_id"].as_str().unwrap();
    let o = belay(dir.path(), &["runs", "show", run_id, "--format", "json"]);
    let shown = json(&o);
    assert_eq!(
        shown["steps"], report["steps"],
        "the stored run matches what was reported"
    );
}

#[test]
fn config_durations_take_hours_and_days_like_every_other_duration() {
    let dir = tempfile::tempdir().unwrap();
    let pb = examples().join("playbooks/block-malicious-ip.yaml");
    let ev = examples().join("events/ids-alert.json");
    let run = |dir: &Path| {
        belay(
            dir,
            &[
                "run",
                pb.to_str().unwrap(),
                "--event",
                ev.to_str().unwrap(),
                "--dry-run",
            ],
        )
    };
    write_file(
        dir.path(),
        "belay.toml",
        "[engine]\naction_timeout = \"1h\"\n\n[trust]\nwindow = \"30d\"\n",
    );
    let o = run(dir.path());
    assert!(o.status.success(), "{}", text(&o));

    write_file(
        dir.path(),
        "belay.toml",
        "[engine]\naction_timeout = \"soon\"\n",
    );
    let o = run(dir.path());
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("[engine] action_timeout `soon` is not a duration"),
        "{out}"
    );
}

#[test]
fn a_missing_field_fails_the_step_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "pb.yaml",
        "name: strict\ntrust: log\nsteps:\n  - id: parse\n    action: core.log\n    with: { message: \"${{ event.data.message }}\" }\n",
    );
    let ev = serde_json::json!({"kind": "x", "data": {"subject": "hi"}});
    let o = run_on(dir.path(), "pb.yaml", &ev, &[]);
    assert_eq!(o.status.code(), Some(1));
    let report = json(&o);
    assert_eq!(report["status"], "failed");
    let err = report["error"].as_str().unwrap();
    assert_contains_all(
        err,
        &[
            "step `parse` failed",
            "`event.data.message` is not defined (`event.data` has no field `message`; it has: subject)",
        ],
    );
}

#[test]
fn bad_events_are_rejected_with_a_reason_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pbs")).unwrap();
    std::fs::copy(
        examples().join("playbooks/block-malicious-ip.yaml"),
        dir.path().join("pbs/pb.yaml"),
    )
    .unwrap();
    write_file(
        dir.path(),
        "events.jsonl",
        "{\"kind\":\"ids.alert\",\"severity\":\"urgent\"}\nnot json\n{\"id\":\"ok-1\",\"kind\":\"ids.alert\",\"severity\":\"high\",\"observables\":{\"ips\":[\"192.0.2.7\"]}}\n",
    );
    let o = belay(
        dir.path(),
        &["ingest", "events.jsonl", "--playbooks", "pbs"],
    );
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "rejected lines fail the ingest: {out}"
    );
    assert_contains_all(
        &out,
        &[
            "events.jsonl:1: rejected: invalid event: `severity`: unknown variant `urgent`",
            "events.jsonl:2: rejected: event is not valid JSON",
            "1 accepted, 0 duplicate, 0 conflict, 2 rejected",
            "2 line(s) rejected, kept with the reason in",
        ],
    );
    // The rejected lines are kept, each with where it came from and why.
    let kept = std::fs::read_to_string(dir.path().join("data/rejected.jsonl")).unwrap();
    let kept: Vec<serde_json::Value> = kept
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0]["line"], 1);
    assert_eq!(
        kept[0]["text"],
        "{\"kind\":\"ids.alert\",\"severity\":\"urgent\"}"
    );
    assert!(
        kept[0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown variant `urgent`")
    );
    assert_eq!(kept[1]["text"], "not json");
    assert!(
        kept[1]["source"]
            .as_str()
            .unwrap()
            .ends_with("events.jsonl")
    );
    let o = belay(
        dir.path(),
        &["ingest", "events.jsonl", "--playbooks", "pbs"],
    );
    assert!(
        text(&o).contains("0 accepted, 0 duplicate, 0 conflict, 0 rejected"),
        "a second pass starts at the cursor: {}",
        text(&o)
    );
}

/// `belay bench` on a store of its own: every run succeeds and every figure is measured (no
/// speed is asserted: that is for the benchmark, not a test).
#[test]
fn bench_reports_its_figures_on_a_durable_store() {
    let dir = tempfile::tempdir().unwrap();
    for (args, mode) in [
        (&[][..], "synchronous=FULL"),
        (&["--synchronous", "normal"][..], "synchronous=NORMAL"),
    ] {
        let mut argv = vec!["bench", "--runs", "3000", "--format", "json"];
        argv.extend_from_slice(args);
        let o = belay(dir.path(), &argv);
        assert!(o.status.success(), "{}", text(&o));
        let r = json(&o);
        assert_eq!(r["runs"], 3000, "{r}");
        assert!(r["store"].as_str().unwrap().contains(mode), "{r}");
        let figure = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("no {k}: {r}"));
        for k in ["runs_per_sec", "p99_ms", "peak_rss_mb", "cpu_us_per_run"] {
            assert!(figure(k) > 0.0, "{k}: {r}");
        }
        assert!(figure("p50_ms") <= figure("p99_ms"), "{r}");
        // The store's log and checkpoints: each run writes at least its rows.
        assert!(figure("written_kb_per_run") > 1.0, "{r}");
        let writer = figure("writer_cpu_us_per_run");
        assert!(writer > 0.0 && writer < figure("cpu_us_per_run"), "{r}");
    }
    // The list workload: one blocklist.add per run; the bench fails unless the list holds
    // every entry, and gives the rate over each quarter of the runs.
    let o = belay(
        dir.path(),
        &["bench", "--runs", "2000", "--list", "--format", "json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&o);
    assert_eq!(
        (r["runs"].clone(), r["workload"].clone()),
        (serde_json::json!(2000), serde_json::json!("list")),
        "{r}"
    );
    let quarters = r["runs_per_sec_by_quarter"].as_array().expect("quarters");
    assert_eq!(quarters.len(), 4, "{r}");
    assert!(
        quarters.iter().all(|q| q.as_f64().is_some_and(|q| q > 0.0)),
        "{r}"
    );
    // The benchmark's store is a temporary one unless --data is given.
    assert!(!dir.path().join("belay-data").exists());
}

/// A misspelled status names the option and lists the statuses; the help lists them too.
#[test]
fn a_misspelled_run_status_lists_the_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let o = belay(dir.path(), &["runs", "list", "--status", "fialed"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    assert!(
        err.contains("invalid value 'fialed' for '--status"),
        "{err}"
    );
    assert!(err.contains("failed"), "{err}");
    assert!(err.contains("waiting_approval"), "{err}");
    assert!(!err.contains("RunStatus"), "no internal type names: {err}");
    let help = text(&belay(dir.path(), &["runs", "list", "--help"]));
    assert!(help.contains("waiting_approval"), "{help}");
    let listed = belay(dir.path(), &["runs", "list", "--status", "failed"]);
    assert!(listed.status.success(), "{}", text(&listed));
}

/// A run that ends waiting for a person says which approval and the command that decides it.
#[test]
fn a_run_waiting_for_approval_prints_the_command_that_decides_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_file(d, "pb.yaml", &common::block_alert_ip("approve", ""));
    write_file(
        d,
        "ev.json",
        r#"{"kind": "ids.alert", "observables": {"ips": ["192.0.2.77"]}}"#,
    );
    let o = belay(d, &["run", "pb.yaml", "--event", "ev.json"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let approvals = json(&belay(d, &["approvals", "list", "--format", "json"]));
    let id = approvals[0]["id"].as_str().unwrap();
    assert!(
        out.contains(&format!("belay approvals approve {id} --as USER")),
        "{out}"
    );
    assert!(out.contains("blocklist.add 192.0.2.77"), "{out}");
}

/// `belay run` honours the playbook's trigger as ingest would: an event of another kind, or one
/// its `on.if` rejects, runs nothing unless `--ignore-trigger` says so.
#[test]
fn run_honours_the_trigger_unless_told_to_ignore_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(
        examples().join("playbooks/block-malicious-ip.yaml"),
        d.join("pb.yaml"),
    )
    .unwrap();
    let event = |name: &str, kind: &str, severity: &str| {
        write_file(
            d,
            name,
            &format!(
                r#"{{"kind": "{kind}", "severity": "{severity}", "observables": {{"ips": ["192.0.2.88"]}}}}"#
            ),
        );
    };
    event("other.json", "dns.query", "high");
    event("medium.json", "ids.alert", "medium");
    event("high.json", "ids.alert", "high");
    for (file, why) in [
        (
            "other.json",
            "the event's kind `dns.query` does not match the playbook's `on.event: ids.alert`",
        ),
        (
            "medium.json",
            "the playbook's `on.if` is false for this event",
        ),
    ] {
        let o = belay(d, &["run", "pb.yaml", "--event", file]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("nothing ran: {why}")),
            "{}",
            text(&o)
        );
    }
    let runs = json(&belay(d, &["runs", "list", "--format", "json"]));
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");
    let o = belay(
        d,
        &[
            "run",
            "pb.yaml",
            "--event",
            "medium.json",
            "--ignore-trigger",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = belay(d, &["run", "pb.yaml", "--event", "high.json"]);
    assert!(o.status.success(), "{}", text(&o));
    let runs = json(&belay(d, &["runs", "list", "--format", "json"]));
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
}

#[test]
fn a_test_that_ends_waiting_for_approval_names_the_held_step() {
    let dir = tempfile::tempdir().unwrap();
    let pb = std::fs::read_to_string(examples().join("playbooks/block-malicious-ip.yaml"))
        .unwrap()
        .replace("trust: log", "trust: approve");
    write_file(dir.path(), "pb.yaml", &pb);
    write_file(
        dir.path(),
        "held.test.yaml",
        "name: held\nplaybook: block-malicious-ip\nevent: { kind: ids.alert, severity: high, observables: { ips: [192.0.2.1] } }\nexpect:\n  status: succeeded\n",
    );
    let o = belay(dir.path(), &["test", "."]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "run ended waiting_approval, expected succeeded (held: `block[0]` blocklist.add"
        ),
        "{out}"
    );
    assert!(out.contains("(trust level approve)"), "{out}");
}

#[test]
fn lint_checks_output_fields_against_the_action_and_notification_targets_against_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pb")).unwrap();
    write_file(
        d,
        "pb/p.yaml",
        r#"name: p
on: { event: ids.alert }
steps:
  - id: intel
    action: intel.lookup
    with: { value: "${{ event.observables.ips[0] }}" }
  - id: block
    action: blocklist.add
    if: ${{ steps.intel.output.vlaue > 50 }}
    with: { list: egress, entry: "${{ event.observables.ips[0] }}" }
  - id: tell
    action: notify.send
    with: { target: socc, subject: blocked, message: "${{ event.id }}" }
"#,
    );
    write_file(d, "belay.toml", "[notify.soc]\nfile = \"soc.jsonl\"\n");
    let o = belay(d, &["lint", "pb"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("`steps.intel.output.vlaue`: action `intel.lookup` of step `intel` has no output `vlaue`"),
        "{out}"
    );
    assert!(out.contains("its outputs are:"), "{out}");
    // Once the playbook loads, its notification target is checked against the config.
    let fixed = std::fs::read_to_string(d.join("pb/p.yaml"))
        .unwrap()
        .replace("vlaue", "score");
    write_file(d, "pb/p.yaml", &fixed);
    let o = belay(d, &["lint", "pb"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("p.yaml:13:")
            && out.contains("step `tell` notifies unknown target `socc` (configured: soc)"),
        "{out}"
    );
}

#[test]
fn lint_explains_bad_indentation_and_misspelled_filters_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_file(
        d,
        "indent.yaml",
        "name: p\non: { event: ids.alert }\nsteps:\n  - id: a\n    action: core.log\n   with:\n      message: hi\n",
    );
    let out = text(&belay(d, &["lint", "indent.yaml"]));
    assert!(
        out.contains("indent.yaml:6:4: error: YAML syntax error")
            && out.contains("line 6 is indented 3 space(s), line 5 4"),
        "{out}"
    );
    write_file(
        d,
        "filter.yaml",
        "name: q\non: { event: ids.alert }\nsteps:\n  - id: a\n    action: core.log\n    with:\n      message: \"${{ event.kind | uppr }}\"\n",
    );
    let out = text(&belay(d, &["lint", "filter.yaml"]));
    assert!(
        out.contains("unknown filter `uppr`") && out.contains("did you mean `upper`?"),
        "{out}"
    );
    assert!(
        !out.contains("is invalid"),
        "no second, misleading error: {out}"
    );
    assert!(out.contains("1 error(s)"), "{out}");
}
