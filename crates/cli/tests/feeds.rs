//! Feeds at real size through the real binary: several `belay ingest` processes sharing one
//! data directory and one block list lose no entry; a feed larger than every former limit
//! reaches the list and the firewall set whole (real nftables in a network namespace), or its
//! run fails without applying a part of it; rolling the run back restores both exactly.

mod common;

use belay_connectors::native::nftables::Sandbox;
use common::{belay, command, import_feed, json, ok, write_file};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

/// Entries each ingest process adds.
const PER_PROCESS: usize = 250;
/// Larger than every limit the feed path had (10,000 event values, 10,000 `for_each` items).
const FEED: usize = 25_000;

const ADD_ONE: &str = r#"name: add-one
on: { event: test.alert }
trust: log
steps:
  - id: block
    action: blocklist.add
    with: { list: egress, entry: "${{ event.observables.ips[0] }}" }
"#;

/// `processes` `belay ingest` processes at once, each adding its own entries to one list.
fn ingest_side_by_side(processes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pbs")).unwrap();
    write_file(d, "pbs/add-one.yaml", ADD_ONE);
    // The store exists before the processes race to open it.
    ok(&belay(d, &["changes", "list"]));
    let mut expected = BTreeSet::new();
    for p in 0..processes {
        let mut lines = String::new();
        for i in 0..PER_PROCESS {
            let ip = format!("10.{p}.{}.{}", i / 250, i % 250 + 1);
            lines.push_str(&format!(
                "{{\"id\":\"p{p}-{i}\",\"kind\":\"test.alert\",\"observables\":{{\"ips\":[\"{ip}\"]}}}}\n"
            ));
            expected.insert(ip);
        }
        write_file(d, &format!("events-{p}.jsonl"), &lines);
    }
    let children: Vec<_> = (0..processes)
        .map(|p| {
            command(d)
                .args(["ingest", &format!("events-{p}.jsonl"), "--playbooks", "pbs"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("belay ingest starts")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("belay ingest ends");
        ok(&out);
    }
    let listed: Vec<String> = std::fs::read_to_string(d.join("data/lists/egress.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let distinct: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), distinct.len(), "no entry is listed twice");
    assert_eq!(
        distinct, expected,
        "{processes} processes: every entry is in the list"
    );
    let changes = json(&belay(d, &["changes", "list", "--format", "json"]));
    let changes = changes.as_array().expect("a list of changes");
    assert_eq!(changes.len(), processes * PER_PROCESS);
    for c in changes {
        assert_eq!(c["status"], "applied", "{c}");
        assert_eq!(c["after"]["present"], true, "journaled after-state: {c}");
        assert_eq!(c["before"]["present"], false, "journaled before-state: {c}");
        let entry = c["with"]["entry"].as_str().unwrap();
        assert!(
            distinct.contains(entry),
            "{entry} is in the list at the end"
        );
    }
}

#[test]
fn two_ingest_processes_on_one_list_lose_no_entry() {
    ingest_side_by_side(2);
}

#[test]
fn four_ingest_processes_on_one_list_lose_no_entry() {
    ingest_side_by_side(4);
}

/// `FEED` addresses no two of which are adjacent (an interval set keeps each as it is).
fn feed_addresses() -> Vec<String> {
    (0..FEED)
        .map(|i| {
            let n = 2 * i as u32 + 1;
            format!("198.18.{}.{}", n / 256, n % 256)
        })
        .collect()
}

/// A directory whose `belay.toml` has the firewall connector on a sandbox's nftables (in its
/// client namespace), then `extra`; `None` (the test skips, unless native tests are required)
/// when this machine cannot make sandboxes.
fn firewall_setup(extra: &str) -> Option<(Sandbox, tempfile::TempDir)> {
    if let Err(why) = Sandbox::available() {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            &format!("nftables sandbox unavailable: {why}"),
        );
        return None;
    }
    let sb = Sandbox::start().expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "belay.toml",
        &format!(
            "[connectors.firewall]\ntype = \"nftables\"\nnetns = \"{}\"\ntimeout_secs = 120\n{extra}",
            sb.client_netns()
        ),
    );
    Some((sb, dir))
}

/// The block list's bytes (empty when it does not exist).
fn list_bytes(d: &Path) -> Vec<u8> {
    std::fs::read(d.join("data/lists/feed.txt")).unwrap_or_default()
}

/// The elements of the firewall's IPv4 block sets (addresses and networks) in namespace `ns`,
/// sorted (none when the table does not exist yet).
fn set_elements(ns: &str) -> Vec<String> {
    let mut elements = Vec::new();
    for set in ["egress_a4", "egress_v4"] {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "belay", set,
            ])
            .output()
            .expect("nft runs");
        if !out.status.success() {
            continue;
        }
        let doc: Value = serde_json::from_slice(&out.stdout).expect("nft -j prints JSON");
        elements.extend(
            doc["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["set"]["elem"].as_array())
                .flatten()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other["elem"]["val"]
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned),
                }),
        );
    }
    elements.sort();
    elements
}

#[test]
fn a_feed_larger_than_every_limit_reaches_list_and_firewall_whole_and_rolls_back_exactly() {
    let Some((sb, dir)) = firewall_setup("") else {
        return;
    };
    let ns = sb.client_netns().to_owned();
    let d = dir.path();
    std::fs::create_dir(d.join("pbs")).unwrap();
    let addresses = feed_addresses();
    // The list and the set already hold one address of the feed: the change's diff leaves it
    // out, and the rollback keeps it.
    std::fs::create_dir_all(d.join("data/lists")).unwrap();
    let original = format!("# managed by hand\n192.0.2.10\n{}\n", addresses[7]);
    std::fs::write(d.join("data/lists/feed.txt"), &original).unwrap();
    write_file(
        d,
        "pbs/seed.yaml",
        &format!(
            "name: seed\ntrust: log\nsteps:\n  - id: block\n    action: firewall.block_many\n    with: {{ addresses: [192.0.2.10, \"{}\"] }}\n",
            addresses[7]
        ),
    );
    write_file(d, "ev.json", r#"{"kind": "manual"}"#);
    let seeded = ok(&belay(d, &["run", "pbs/seed.yaml", "--event", "ev.json"]));
    assert!(seeded.contains("succeeded"), "{seeded}");
    std::fs::remove_file(d.join("pbs/seed.yaml")).unwrap();
    let set_before = set_elements(&ns);
    assert_eq!(set_before.len(), 2, "{set_before:?}");

    // A playbook fanning out per address fails whole: it cannot succeed with entries missing.
    write_file(
        d,
        "pbs/per-item.yaml",
        "name: per-item\non: { event: intel.update }\ntrust: log\nsteps:\n  - id: block\n    action: blocklist.add\n    for_each: ${{ event.observables.ips }}\n    with: { list: feed, entry: \"${{ item }}\" }\n",
    );
    let mut feed = addresses.join("\n");
    feed.push('\n');
    write_file(d, "feed.txt", &feed);
    let (run, status, out) = import_feed(d, "big");
    assert_eq!(status, "failed", "{out}");
    let runs = ok(&belay(d, &["runs", "show", &run]));
    assert!(
        runs.contains("25000 items") && runs.contains("none of them was applied"),
        "the failure says how much was not applied: {runs}"
    );
    assert_eq!(list_bytes(d), original.as_bytes(), "nothing was applied");
    std::fs::remove_file(d.join("pbs/per-item.yaml")).unwrap();

    // Set-level actions take the whole update, each as one journaled change.
    write_file(
        d,
        "pbs/feed-block.yaml",
        "name: feed-block\non: { event: intel.update }\ntrust: guarded\nsteps:\n  - id: list\n    action: blocklist.add_many\n    with: { list: feed, entries: \"${{ event.observables.ips }}\" }\n  - id: firewall\n    action: firewall.block_many\n    with: { addresses: \"${{ event.observables.ips }}\", set: egress, reason: feed big }\n",
    );
    // A second feed of the same addresses: the first import already recorded them.
    let (run, status, out) = import_feed(d, "big2");
    assert_eq!(status, "succeeded", "{out}");
    let listed: BTreeSet<String> = String::from_utf8(list_bytes(d))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for a in &addresses {
        assert!(listed.contains(a), "{a} is in the list");
    }
    let elements: BTreeSet<String> = set_elements(&ns).into_iter().collect();
    for a in &addresses {
        assert!(elements.contains(a), "{a} is in the firewall set");
    }
    assert_eq!(elements.len(), FEED + 1);
    let changes = json(&belay(
        d,
        &["changes", "list", "--run", &run, "--format", "json"],
    ));
    let changes = changes.as_array().unwrap();
    assert_eq!(changes.len(), 2, "one change per set-level step");
    for c in changes {
        let diff = c["before"]["absent"].as_array().expect("the diff");
        assert_eq!(diff.len(), FEED - 1, "every address but the one present");
        assert_eq!(c["after"]["absent"], serde_json::json!([]));
    }

    let undo = ok(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(undo.contains("verified"), "{undo}");
    assert_eq!(
        list_bytes(d),
        original.as_bytes(),
        "the list is back byte for byte"
    );
    assert_eq!(
        set_elements(&ns),
        set_before,
        "the set is back element for element"
    );
}

#[test]
fn guardrails_judge_every_item_of_a_set_level_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    write_file(
        d,
        "guardrails/policy.yaml",
        "guardrails:\n  - name: protected\n    applies_to: [\"blocklist.*\"]\n    never:\n      cidrs: [198.51.100.64/26]\n    on_violation: hold\n  - name: feed-batch\n    applies_to: [blocklist.add_many]\n    batch: { max: 100 }\n    on_violation: deny\n",
    );
    let playbook = "name: add-set\ntrust: guarded\nsteps:\n  - id: add\n    action: blocklist.add_many\n    with: { list: egress, entries: \"${{ event.observables.ips }}\" }\n";
    write_file(d, "add-set.yaml", playbook);
    let run = |ips: Vec<String>| {
        let ev = serde_json::json!({ "kind": "feed", "observables": { "ips": ips } });
        json(&common::run_on(d, "add-set.yaml", &ev, &[]))
    };
    // The last of fifty items is protected: it is held alone, the other 49 applied.
    let mut ips: Vec<String> = (1..50).map(|i| format!("203.0.113.{i}")).collect();
    ips.push("198.51.100.70".into());
    let held = run(ips);
    assert_eq!(held["status"], "waiting_approval", "{held}");
    let steps = held["steps"].as_array().unwrap();
    let item = steps
        .iter()
        .find(|s| s["step"] == "add[198.51.100.70]")
        .unwrap_or_else(|| panic!("{held}"));
    assert_eq!(item["status"], "held", "{held}");
    let listed = std::fs::read_to_string(d.join("data/lists/egress.txt")).unwrap();
    assert_eq!(listed.lines().count(), 49, "{listed}");
    assert!(!listed.contains("198.51.100.70"));
    std::fs::remove_file(d.join("data/lists/egress.txt")).unwrap();
    // A batch guardrail counts the items of the set, not the one change.
    let many: Vec<String> = (0..150)
        .map(|i| format!("192.0.2.{}", i % 250 + 1))
        .collect();
    let denied = run(many);
    assert_eq!(denied["status"], "failed", "{denied}");
    assert!(
        denied.to_string().contains("denied by guardrail"),
        "{denied}"
    );
    assert!(!d.join("data/lists/egress.txt").exists(), "nothing applied");
}

/// The pending approvals, newest last.
fn pending(d: &Path) -> Vec<Value> {
    json(&belay(d, &["approvals", "list", "--format", "json"]))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_protected_address_among_a_set_level_change_is_held_alone_and_the_rest_applied_in_one_change() {
    let Some((sb, dir)) =
        firewall_setup("\n[[users]]\nname = \"alice\"\nroles = [\"responder\"]\n")
    else {
        return;
    };
    let ns = sb.client_netns().to_owned();
    let d = dir.path();
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    std::fs::create_dir_all(d.join("pbs")).unwrap();
    write_file(
        d,
        "guardrails/protected.yaml",
        "guardrails:\n  - name: protected\n    applies_to: [\"blocklist.*\", \"firewall.*\"]\n    never: { cidrs: [198.51.100.0/24] }\n",
    );
    write_file(
        d,
        "pbs/feed-block.yaml",
        "name: feed-block\non: { event: intel.update }\ntrust: guarded\nsteps:\n  - id: list\n    action: blocklist.add_many\n    with: { list: feed, entries: \"${{ event.observables.ips }}\" }\n  - id: firewall\n    action: firewall.block_many\n    with: { addresses: \"${{ event.observables.ips }}\", set: egress, reason: feed big }\n",
    );
    std::fs::create_dir_all(d.join("data/lists")).unwrap();
    let original = "# managed by hand\n192.0.2.10\n";
    std::fs::write(d.join("data/lists/feed.txt"), original).unwrap();
    let protected = "198.51.100.7";
    let mut addresses = feed_addresses();
    addresses.truncate(FEED - 1);
    addresses.insert(12_345, protected.to_owned());
    write_file(d, "feed.txt", &format!("{}\n", addresses.join("\n")));
    let listed = |d: &Path| -> BTreeSet<String> {
        String::from_utf8(list_bytes(d))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };

    let (run, status, out) = import_feed(d, "big");
    assert_eq!(status, "waiting_approval", "{out}");
    // Every other address is in the list, applied as one change; the protected one is not.
    let list = listed(d);
    assert_eq!(
        list.len(),
        FEED - 1 + 2,
        "the 24,999 and the two hand-kept lines"
    );
    assert!(!list.contains(protected));
    let changes = json(&belay(
        d,
        &["changes", "list", "--run", &run, "--format", "json"],
    ));
    let changes = changes.as_array().unwrap();
    assert_eq!(
        changes.len(),
        1,
        "one change for the 24,999: {}",
        changes.len()
    );
    assert_eq!(
        changes[0]["before"]["absent"].as_array().unwrap().len(),
        FEED - 1
    );
    // One approval decides the held address alone.
    let held = pending(d);
    assert_eq!(held.len(), 1);
    let with = held[0]["with"].as_array().unwrap();
    assert_eq!(with.len(), 1, "the protected address alone is held");
    assert_eq!(with[0]["key"], format!("list[{protected}]"));
    assert_eq!(with[0]["with"]["entries"], serde_json::json!([protected]));
    let shown = json(&belay(d, &["runs", "show", &run, "--format", "json"]));
    let item = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == format!("list[{protected}]"))
        .unwrap_or_else(|| panic!("the held address has its record: {shown}"))
        .clone();
    assert_eq!(item["status"], "held", "{item}");
    assert_eq!(item["decision"], "guardrail_hold", "{item}");
    assert!(set_elements(&ns).is_empty(), "the firewall step waits");

    // Approval applies it; the firewall step then applies its 24,999 and holds the same one.
    let id = held[0]["id"].as_str().unwrap().to_owned();
    ok(&belay(d, &["approvals", "approve", &id, "--as", "alice"]));
    assert!(listed(d).contains(protected), "approved: now in the list");
    let elements: BTreeSet<String> = set_elements(&ns).into_iter().collect();
    assert_eq!(elements.len(), FEED - 1);
    assert!(!elements.contains(protected));
    let held = pending(d);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["with"][0]["key"], format!("firewall[{protected}]"));
    let id = held[0]["id"].as_str().unwrap().to_owned();
    ok(&belay(d, &["approvals", "approve", &id, "--as", "alice"]));
    let elements: BTreeSet<String> = set_elements(&ns).into_iter().collect();
    assert_eq!(elements.len(), FEED);
    let shown = json(&belay(d, &["runs", "show", &run, "--format", "json"]));
    assert_eq!(shown["status"], "succeeded", "{shown}");
    let changes = json(&belay(
        d,
        &["changes", "list", "--run", &run, "--format", "json"],
    ));
    assert_eq!(changes.as_array().unwrap().len(), 4, "two per step");
    let verify = ok(&belay(d, &["audit", "verify"]));
    assert!(verify.contains("audit chain intact"), "{verify}");

    let undo = ok(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(undo.contains("verified"), "{undo}");
    assert_eq!(
        list_bytes(d),
        original.as_bytes(),
        "the list is back byte for byte"
    );
    assert!(set_elements(&ns).is_empty(), "the set is back, empty");
}

#[test]
fn a_rate_limit_counts_every_item_of_earlier_set_level_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    write_file(
        d,
        "guardrails/policy.yaml",
        "guardrails:\n  - name: feed-rate\n    applies_to: [\"blocklist.*\"]\n    rate: { max: 100, per: 1h }\n    on_violation: deny\n",
    );
    let playbook = "name: add-set\ntrust: guarded\nsteps:\n  - id: add\n    action: blocklist.add_many\n    with: { list: egress, entries: \"${{ event.observables.ips }}\" }\n";
    write_file(d, "add-set.yaml", playbook);
    let run = |from: usize| {
        let ips: Vec<String> = (from..from + 60)
            .map(|i| format!("10.7.{}.{}", i / 250, i % 250 + 1))
            .collect();
        let ev = serde_json::json!({ "kind": "feed", "observables": { "ips": ips } });
        json(&common::run_on(d, "add-set.yaml", &ev, &[]))
    };
    let first = run(0);
    assert_eq!(first["status"], "succeeded", "{first}");
    // 60 earlier items and 60 new ones: above 100 within the hour, though only 2 changes.
    let second = run(60);
    assert_eq!(second["status"], "failed", "{second}");
    assert!(
        second.to_string().contains("120 change(s) within 1h"),
        "{second}"
    );
    let listed = std::fs::read_to_string(d.join("data/lists/egress.txt")).unwrap();
    assert_eq!(listed.lines().count(), 60, "the second set was not applied");
}

/// `belay bench --feed` through real nftables: it fails unless every address reached the list
/// and the set and the rollback reverted both, so a run that succeeds shows the whole path.
#[test]
fn the_feed_benchmark_blocks_every_address_and_rolls_back() {
    let Some((sb, dir)) = firewall_setup("") else {
        return;
    };
    let out = ok(&belay(
        dir.path(),
        &[
            "bench",
            "--feed",
            "3000",
            "--never",
            "1000",
            "--netns",
            sb.client_netns(),
            "--format",
            "json",
        ],
    ));
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (r["addresses"].clone(), r["firewall"].clone()),
        (3000.into(), true.into()),
        "{r}"
    );
    for stage in [
        "parse",
        "store",
        "run",
        "read_state",
        "apply",
        "end_to_end",
        "rollback",
    ] {
        assert!(r[stage].as_f64().is_some_and(|s| s > 0.0), "{stage}: {r}");
    }
    assert!(set_elements(sb.client_netns()).is_empty(), "rolled back");
}
