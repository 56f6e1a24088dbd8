//! Item-level decisions through the real binary: a never-list hit holds only the items that
//! touch a protected target while the rest of the batch is applied; `hold: batch` keeps the
//! whole batch waiting; an approver may approve a held batch without some items, which are
//! then denied by that approver and never applied. The audit trail vouches for every item.

use serde_json::Value;
use std::path::Path;

mod common;
use common::{belay, json, listed, ok, refused, run_on};

/// A guarded feed playbook blocking every address of an `intel.update`, guardrails `g`, and
/// the users alice (responder) and dave (viewer).
fn setup(guardrails: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pb")).unwrap();
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    std::fs::write(
        d.join("pb/block.yaml"),
        common::block_every_ip("block-feed", "intel.update", ""),
    )
    .unwrap();
    std::fs::write(d.join("guardrails/g.yaml"), guardrails).unwrap();
    std::fs::write(
        d.join("belay.toml"),
        "data = \"data\"\nplaybooks = \"pb\"\n\n[[users]]\nname = \"alice\"\nroles = [\"responder\"]\n\n[[users]]\nname = \"dave\"\nroles = [\"viewer\"]\n",
    )
    .unwrap();
    dir
}

fn feed(d: &Path, ips: &[String]) -> Value {
    let ev = serde_json::json!({"kind": "intel.update", "observables": {"ips": ips}});
    json(&run_on(d, "pb/block.yaml", &ev, &[]))
}

fn pending(d: &Path) -> Vec<Value> {
    json(&belay(d, &["approvals", "list", "--format", "json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn run_show(d: &Path, run: &Value) -> Value {
    let id = run["run_id"].as_str().unwrap();
    json(&belay(d, &["runs", "show", id, "--format", "json"]))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const PROTECTED: &str = "guardrails:\n  - name: protected\n    applies_to: [blocklist.add]\n    never: { cidrs: [198.51.100.0/24] }\n";

#[test]
fn one_protected_address_among_500_holds_that_item_alone_and_its_denial_touches_nothing_else() {
    let dir = setup(PROTECTED);
    let d = dir.path();
    let mut ips: Vec<String> = (0..499)
        .map(|i| format!("10.20.{}.{}", i / 250, i % 250))
        .collect();
    ips.insert(250, "198.51.100.7".into());
    let run = feed(d, &ips);
    assert_eq!(run["status"], "waiting_approval", "{run}");
    let blocked = sorted(listed(d));
    assert_eq!(blocked.len(), 499, "the other 499 are applied at once");
    assert!(!blocked.contains(&"198.51.100.7".to_owned()));

    let steps = run["steps"].as_array().unwrap();
    let held: Vec<&Value> = steps.iter().filter(|s| s["status"] == "held").collect();
    assert_eq!(held.len(), 1, "one item held: {held:?}");
    assert_eq!(held[0]["step"], "block[250]");
    assert_eq!(held[0]["decision"], "guardrail_hold");

    let list = pending(d);
    assert_eq!(list.len(), 1);
    let with = list[0]["with"].as_array().unwrap();
    assert_eq!(with.len(), 1, "the approval decides the held item only");
    assert_eq!(with[0]["with"]["entry"], "198.51.100.7");

    let id = list[0]["id"].as_str().unwrap();
    // The approver sees what triggered the run, and may name the approval by its start.
    let show = ok(&belay(d, &["approvals", "show", &id[..12]]));
    assert!(show.contains("alert     intel.update from"), "{show}");
    let out = ok(&belay(
        d,
        &["approvals", "deny", id, "--as", "alice", "--comment", "CRM"],
    ));
    assert!(out.contains("denied by alice"), "{out}");
    let after = run_show(d, &run);
    assert_eq!(
        after["status"], "succeeded",
        "the run moves past the step: {after}"
    );
    assert_eq!(
        sorted(listed(d)),
        blocked,
        "the denial touched nothing else"
    );
    let item = after["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "block[250]")
        .unwrap()
        .clone();
    assert_eq!(item["decision"], "denied", "{item}");
    assert_eq!(item["output"]["status"], "denied", "{item}");
    let verify = ok(&belay(d, &["audit", "verify"]));
    assert!(verify.contains("audit chain intact"), "{verify}");
    // The guardrail set in force is stored with the playbook version.
    let files = &after["playbook_version"]["guardrail_files"];
    assert_eq!(files[0][0], "g.yaml", "{files}");
    assert!(
        files[0][1].as_str().unwrap().contains("198.51.100.0/24"),
        "{files}"
    );
}

#[test]
fn hold_batch_keeps_the_whole_batch_waiting() {
    let dir = setup(&format!("{PROTECTED}    hold: batch\n"));
    let d = dir.path();
    let ips: Vec<String> = vec!["10.1.0.1".into(), "198.51.100.7".into(), "10.1.0.2".into()];
    let run = feed(d, &ips);
    assert_eq!(run["status"], "waiting_approval", "{run}");
    assert!(listed(d).is_empty(), "held whole: nothing applied");
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s["status"] == "held"), "{run}");
    assert_eq!(pending(d)[0]["with"].as_array().unwrap().len(), 3);
}

#[test]
fn a_never_list_that_denies_refuses_the_item_and_applies_the_rest() {
    let dir = setup(&format!("{PROTECTED}    on_violation: deny\n"));
    let d = dir.path();
    let ips: Vec<String> = vec!["10.1.0.1".into(), "198.51.100.7".into()];
    let run = feed(d, &ips);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(listed(d), ["10.1.0.1"]);
    let denied = &run["steps"][1];
    assert_eq!(denied["decision"], "guardrail_deny", "{run}");
    assert_eq!(denied["output"]["status"], "denied");
    assert!(pending(d).is_empty(), "nothing waits for a person");
    assert!(ok(&belay(d, &["audit", "verify"])).contains("audit chain intact"));
}

#[test]
fn a_batch_approved_without_two_items_applies_the_rest_and_not_those_two() {
    let dir = setup(
        "guardrails:\n  - name: feed-batch\n    applies_to: [blocklist.add]\n    batch: { max: 3 }\n",
    );
    let d = dir.path();
    let ips: Vec<String> = (1..=5).map(|i| format!("192.0.2.{i}")).collect();
    let run = feed(d, &ips);
    assert_eq!(run["status"], "waiting_approval", "{run}");
    assert!(listed(d).is_empty(), "a batch limit holds the whole batch");
    let id = pending(d)[0]["id"].as_str().unwrap().to_owned();

    // The items are listed for the approver; unknown items and a viewer are refused.
    let show = ok(&belay(d, &["approvals", "show", &id]));
    assert!(
        show.contains("block[3]") && show.contains("192.0.2.4"),
        "{show}"
    );
    let o = refused(&belay(
        d,
        &[
            "approvals",
            "approve",
            &id,
            "--as",
            "alice",
            "--without",
            "block[9]",
        ],
    ));
    assert!(o.contains("`block[9]` is not an item of the batch"), "{o}");
    refused(&belay(
        d,
        &[
            "approvals",
            "approve",
            &id,
            "--as",
            "dave",
            "--without",
            "1",
        ],
    ));
    let o = refused(&belay(
        d,
        &[
            "approvals",
            "approve",
            &id,
            "--as",
            "alice",
            "--without",
            "0,1,2,3,4",
        ],
    ));
    assert!(o.contains("deny it instead"), "{o}");
    assert!(listed(d).is_empty(), "refusals changed nothing");

    let out = ok(&belay(
        d,
        &[
            "approvals",
            "approve",
            &id,
            "--as",
            "alice",
            "--without",
            "block[1],3",
        ],
    ));
    assert!(out.contains("without block[1], block[3]"), "{out}");
    assert_eq!(
        sorted(listed(d)),
        ["192.0.2.1", "192.0.2.3", "192.0.2.5"],
        "the rest applied, not those two"
    );
    let after = run_show(d, &run);
    assert_eq!(after["status"], "succeeded", "{after}");
    let steps = after["steps"].as_array().unwrap();
    for key in ["block[1]", "block[3]"] {
        let s = steps.iter().find(|s| s["step"] == key).unwrap();
        assert_eq!(s["decision"], "denied", "{s}");
        assert_eq!(s["status"], "skipped", "{s}");
        assert!(
            s["error"].as_str().unwrap().contains("denied by alice"),
            "{s}"
        );
    }
    // The vote binds to the subset: the trail vouches for the three applied items only.
    let verify = ok(&belay(d, &["audit", "verify"]));
    assert!(verify.contains("audit chain intact"), "{verify}");
    let trail = ok(&belay(d, &["audit", "export"]));
    assert!(
        trail.contains("\"without\":[\"block[1]\",\"block[3]\"]")
            && trail.contains("approved_hash"),
        "the exclusions are in the trail"
    );
    // Counted as denials in the step's record.
    let report = json(&belay(d, &["trust", "report", "--format", "json"]));
    let step = report
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "block")
        .unwrap()
        .clone();
    assert_eq!(step["approvals_denied"], 2, "{step}");
}

/// A guarded playbook adding every address of an `intel.update` to a list in one set-level
/// change.
const ADD_MANY: &str = "name: add-feed\non: { event: intel.update }\ntrust: guarded\nsteps:\n  - id: add\n    action: blocklist.add_many\n    with: { list: egress, entries: \"${{ event.observables.ips }}\" }\n";

const PROTECTED_SETS: &str = "guardrails:\n  - name: protected\n    applies_to: [blocklist.add_many]\n    never: { cidrs: [198.51.100.0/24] }\n";

#[test]
fn protected_targets_of_a_set_level_change_are_held_apart_and_approved_without_one() {
    let dir = setup(PROTECTED_SETS);
    let d = dir.path();
    std::fs::write(d.join("pb/block.yaml"), ADD_MANY).unwrap();
    let mut ips: Vec<String> = (1..=40).map(|i| format!("10.9.0.{i}")).collect();
    for (at, ip) in [
        (3, "198.51.100.9"),
        (20, "198.51.100.7"),
        (30, "198.51.100.8"),
    ] {
        ips.insert(at, ip.into());
    }
    let run = feed(d, &ips);
    assert_eq!(run["status"], "waiting_approval", "{run}");
    let applied = sorted(listed(d));
    assert_eq!(applied.len(), 40, "the 40 others at once");
    assert!(applied.iter().all(|a| a.starts_with("10.9.0.")));
    let id = run["run_id"].as_str().unwrap();
    let changes = json(&belay(
        d,
        &["changes", "list", "--run", id, "--format", "json"],
    ));
    assert_eq!(changes.as_array().unwrap().len(), 1, "in one change");

    let list = pending(d);
    assert_eq!(list.len(), 1, "one approval for the three");
    let keys: Vec<&str> = list[0]["with"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "add[198.51.100.7]",
            "add[198.51.100.8]",
            "add[198.51.100.9]"
        ]
    );
    let approval = list[0]["id"].as_str().unwrap().to_owned();
    // A viewer may not decide; an unknown target is refused; nothing changes.
    refused(&belay(
        d,
        &["approvals", "approve", &approval, "--as", "dave"],
    ));
    let o = refused(&belay(
        d,
        &[
            "approvals",
            "approve",
            &approval,
            "--as",
            "alice",
            "--without",
            "203.0.113.1",
        ],
    ));
    assert!(o.contains("is not an item of the batch"), "{o}");
    assert_eq!(sorted(listed(d)), applied);

    let out = ok(&belay(
        d,
        &[
            "approvals",
            "approve",
            &approval,
            "--as",
            "alice",
            "--without",
            "198.51.100.8",
        ],
    ));
    assert!(out.contains("without add[198.51.100.8]"), "{out}");
    let now = sorted(listed(d));
    assert_eq!(now.len(), 42, "{now:?}");
    assert!(now.contains(&"198.51.100.7".to_owned()) && now.contains(&"198.51.100.9".to_owned()));
    assert!(
        !now.contains(&"198.51.100.8".to_owned()),
        "left out: never applied"
    );
    let after = run_show(d, &run);
    assert_eq!(after["status"], "succeeded", "{after}");
    let step = |key: &str| {
        after["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == key)
            .unwrap_or_else(|| panic!("{key}: {after}"))
            .clone()
    };
    assert_eq!(step("add[198.51.100.8]")["decision"], "denied");
    assert_eq!(step("add[198.51.100.7]")["status"], "succeeded");
    let verify = ok(&belay(d, &["audit", "verify"]));
    assert!(verify.contains("audit chain intact"), "{verify}");

    // Rolling the run back removes every address it added, and only those.
    let undo = ok(&belay(d, &["rollback", "--run", id, "--as", "alice"]));
    assert!(undo.contains("verified"), "{undo}");
    assert!(listed(d).is_empty(), "{:?}", listed(d));
}

#[test]
fn hold_batch_keeps_a_set_level_change_whole() {
    let dir = setup(&format!("{PROTECTED_SETS}    hold: batch\n"));
    let d = dir.path();
    std::fs::write(d.join("pb/block.yaml"), ADD_MANY).unwrap();
    let ips: Vec<String> = vec!["10.1.0.1".into(), "198.51.100.7".into(), "10.1.0.2".into()];
    let run = feed(d, &ips);
    assert_eq!(run["status"], "waiting_approval", "{run}");
    assert!(listed(d).is_empty(), "held whole: nothing applied");
    let list = pending(d);
    assert_eq!(
        list[0]["with"].as_array().unwrap().len(),
        1,
        "the whole change"
    );
    assert_eq!(list[0]["with"][0]["key"], "add");
    let approval = list[0]["id"].as_str().unwrap().to_owned();
    ok(&belay(
        d,
        &["approvals", "deny", &approval, "--as", "alice"],
    ));
    assert!(listed(d).is_empty(), "denied: nothing applied");
}
