//! End-to-end tests of `belay intel`: import, the `intel.update` event and the playbooks it
//! starts, lookups, stats, and errors.

use serde_json::Value;

mod common;
use common::{assert_contains_all, belay, json, text};

const PLAYBOOK: &str = r#"name: intel-watch
description: Looks the first added IP up again when a feed changes.
on:
  event: intel.update
trust: log
steps:
  - id: check
    action: intel.lookup
    with:
      value: ${{ event.observables.ips[0] }}
  - id: summary
    action: core.set
    with:
      values:
        feed: ${{ event.data.feed }}
        added: ${{ event.data.added_count }}
        score: ${{ steps.check.output.score }}
"#;

#[test]
fn import_emits_one_update_event_that_playbooks_react_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pb")).unwrap();
    std::fs::write(d.join("pb/intel-watch.yaml"), PLAYBOOK).unwrap();
    std::fs::write(d.join("a.txt"), "# feed a\n198.51.100.7\n203.0.113.0/24\n").unwrap();
    std::fs::write(d.join("b.txt"), "198.51.100.7\nEVIL.example\n").unwrap();

    let o = belay(
        d,
        &[
            "intel",
            "import",
            "a.txt",
            "--feed",
            "a",
            "--playbooks",
            "pb",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_contains_all(
        &out,
        &[
            "intel import a: 2 added, 0 removed, 0 unchanged",
            "(intel-watch) succeeded",
        ],
    );
    // Piped: no progress bar drawn.
    assert!(!out.contains('\r') && !out.contains('\u{1b}'), "{out:?}");
    let run_id = out
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let show = json(&belay(d, &["runs", "show", &run_id, "--format", "json"]));
    let text_show = show.to_string();
    assert_contains_all(&text_show, &["\"score\":1.0", "\"added\":2"]);

    // A second feed; without playbooks the event is still recorded.
    let o = belay(d, &["intel", "import", "b.txt", "--feed", "b"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("event "), "{}", text(&o));

    let l = json(&belay(
        d,
        &["intel", "lookup", "198.51.100.7", "--format", "json"],
    ));
    assert_eq!(l["found"], true);
    assert_eq!(l["score"], 2.0);
    assert_eq!(l["sources"], serde_json::json!(["a", "b"]));
    let l = json(&belay(
        d,
        &["intel", "lookup", "203.0.113.77", "--format", "json"],
    ));
    assert_eq!(
        l["score"], 1.0,
        "an IP matches the network containing it: {l}"
    );
    assert_eq!(l["matches"][0]["value"], "203.0.113.0/24");
    let l = json(&belay(
        d,
        &["intel", "lookup", "evil.EXAMPLE.", "--format", "json"],
    ));
    assert_eq!(
        (l["found"].clone(), l["value"].clone()),
        (Value::Bool(true), "evil.example".into())
    );
    let t = text(&belay(d, &["intel", "lookup", "192.0.2.1"]));
    assert!(t.contains("not listed by any feed"), "{t}");

    // Re-import without an entry: that source is gone.
    std::fs::write(d.join("a.txt"), "203.0.113.0/24\n").unwrap();
    let o = belay(d, &["intel", "import", "a.txt", "--feed", "a"]);
    assert!(
        text(&o).contains("0 added, 1 removed, 1 unchanged"),
        "{}",
        text(&o)
    );
    let l = json(&belay(
        d,
        &["intel", "lookup", "198.51.100.7", "--format", "json"],
    ));
    assert_eq!(l["sources"], serde_json::json!(["b"]));

    let s = json(&belay(d, &["intel", "stats", "--format", "json"]));
    assert_eq!(s["feeds"].as_array().map(Vec::len), Some(2), "{s}");
    assert_eq!(s["by_type"]["cidr"]["values"], 1, "{s}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = belay(d, &["intel", "import", "missing.txt", "--feed", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("cannot read feed missing.txt"),
        "{}",
        text(&o)
    );
    std::fs::write(d.join("f.txt"), "192.0.2.1\n").unwrap();
    let o = belay(d, &["intel", "import", "f.txt", "--feed", "a b"]);
    assert!(text(&o).contains("a feed name is 1 to 64"), "{}", text(&o));
    let o = belay(
        d,
        &[
            "intel",
            "import",
            "f.txt",
            "--feed",
            "a",
            "--expires",
            "soon",
        ],
    );
    assert!(
        text(&o).contains("--expires `soon` is not a duration"),
        "{}",
        text(&o)
    );
    std::fs::write(d.join("bad.json"), "{\"objects\": 5}").unwrap();
    let o = belay(
        d,
        &[
            "intel", "import", "bad.json", "--feed", "s", "--format", "stix",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("bad.json as stix"), "{}", text(&o));
    // A playbook folder that does not load stops the import before anything is stored, and
    // says so.
    let o = belay(
        d,
        &[
            "intel",
            "import",
            "f.txt",
            "--feed",
            "a",
            "--playbooks",
            "nope",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("nothing was imported") && text(&o).contains("nope"),
        "{}",
        text(&o)
    );
    let stats = belay(d, &["intel", "stats", "--format", "json"]);
    assert!(
        !text(&stats).contains("\"a\""),
        "no feed `a` was imported: {}",
        text(&stats)
    );
    let o = belay(d, &["intel", "lookup", "not a value"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("is not an IP address, network, domain"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_benchmark_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let o = belay(
        dir.path(),
        &[
            "intel",
            "bench",
            "--indicators",
            "5000",
            "--lookups",
            "2000",
            "--format",
            "json",
        ],
    );
    let r = json(&o);
    assert_eq!(r["indicators"], 5000);
    assert!(
        r["ns_per_cidr_hit"].as_f64().is_some_and(|n| n > 0.0),
        "{r}"
    );
}

/// A feed listing the whole Internet imports without it, and says so; `--allow-wide` takes it.
#[test]
fn import_refuses_networks_wider_than_the_limit_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("all.txt");
    std::fs::write(&feed, "0.0.0.0/0\n::/0\n192.0.2.1\n").unwrap();
    let f = feed.to_str().unwrap();
    let o = belay(dir.path(), &["intel", "import", f, "--feed", "all"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("too wide: `0.0.0.0/0` is wider than the /8"),
        "{err}"
    );
    assert_contains_all(&text(&o), &["1 added", "2 too wide"]);
    let o = belay(
        dir.path(),
        &["intel", "lookup", "198.51.100.7", "--format", "json"],
    );
    let hit: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hit["found"], false, "{}", text(&o));

    let o = belay(
        dir.path(),
        &["intel", "import", f, "--feed", "all", "--allow-wide"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_contains_all(&text(&o), &["2 added", "0 too wide"]);
    let o = belay(
        dir.path(),
        &["intel", "import", f, "--feed", "all", "--weight", "1e308"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--weight must be a number from 0 to 1000"),
        "{}",
        text(&o)
    );
}
