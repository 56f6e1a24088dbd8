//! A feed update into a real Suricata dataset through the real binary: one set-level change
//! (`ips.dataset_add_many`, one dataset file replace and one rule reload) carries every
//! address; a protected one is held alone; rollback refuses a dataset that drifted, and once
//! it is back, restores the dataset exactly and lets the blocked traffic through again.

mod common;

use belay_connectors::native::suricata::{Mode, Sandbox};
use common::{belay, import_feed, json, ok, write_file};
use std::time::Duration;

/// Runs a socket command behind belay's back, as an administrator would.
fn admin(sb: &Sandbox, command: &str) -> String {
    let out = std::process::Command::new("suricatasc")
        .args(["-c", command])
        .arg(&sb.config().socket)
        .output()
        .expect("suricatasc runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether Suricata's dataset `belay-ips` holds `ip`.
fn listed(sb: &Sandbox, ip: &str) -> bool {
    let reply = admin(sb, &format!("dataset-lookup belay-ips ip {ip}"));
    reply.contains("item found in set")
}

fn failed(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_feed_enters_a_suricata_dataset_as_one_change_and_rolls_back_exactly() {
    if let Err(why) = Sandbox::available(Mode::Inline) {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            &format!("Suricata sandbox unavailable: {why}"),
        );
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt
        .block_on(Sandbox::start(Mode::Inline))
        .expect("suricata starts");
    rt.block_on(sb.drop_listed()).expect("site rule");
    assert!(sb.can_connect(Duration::from_secs(5)));
    let cfg = sb.config();
    let file = cfg.datasets["belay-ips"].clone();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_file(
        d,
        "belay.toml",
        &format!(
            "[connectors.ips]\ntype = \"suricata\"\nsocket = \"{}\"\nrule_dir = \"{}\"\ntimeout_secs = 60\ndatasets = {{ belay-ips = \"{}\" }}\n\n[[users]]\nname = \"alice\"\nroles = [\"admin\"]\n",
            cfg.socket.display(),
            cfg.rule_dir.display(),
            file.display()
        ),
    );
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    std::fs::create_dir_all(d.join("pbs")).unwrap();
    write_file(
        d,
        "guardrails/protected.yaml",
        "guardrails:\n  - name: protected\n    applies_to: [\"ips.*\"]\n    never: { cidrs: [198.51.100.0/24] }\n",
    );
    write_file(
        d,
        "pbs/feed-ips.yaml",
        "name: feed-ips\non: { event: intel.update }\ntrust: guarded\nsteps:\n  - id: ids\n    action: ips.dataset_add_many\n    with: { dataset: belay-ips, values: \"${{ event.observables.ips }}\", type: ip }\n",
    );
    let server = sb.server().ip().to_string();
    let protected = "198.51.100.7";
    let mut feed: Vec<String> = (0..3000)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
        .collect();
    feed.insert(1234, protected.to_owned());
    feed.push(server.clone());
    write_file(d, "feed.txt", &format!("{}\n", feed.join("\n")));

    let (run, status, out) = import_feed(d, "big");
    assert_eq!(status, "waiting_approval", "{out}");
    // One change carries the 3,001 others; the protected address waits alone.
    let changes = json(&belay(
        d,
        &["changes", "list", "--run", &run, "--format", "json"],
    ));
    let changes = changes.as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["action"], "ips.dataset_add_many");
    assert_eq!(
        changes[0]["before"]["absent"].as_array().unwrap().len(),
        3001
    );
    assert_eq!(changes[0]["after"]["absent"], serde_json::json!([]));
    assert!(listed(&sb, "198.18.11.250") && listed(&sb, &server));
    assert!(!listed(&sb, protected), "held, not applied");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count(),
        3001
    );
    assert!(
        !sb.can_connect(Duration::from_millis(900)),
        "the listed server is dropped inline"
    );
    let held = json(&belay(d, &["approvals", "list", "--format", "json"]));
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["with"][0]["key"], format!("ids[{protected}]"));
    let id = held[0]["id"].as_str().unwrap().to_owned();
    ok(&belay(d, &["approvals", "deny", &id, "--as", "alice"]));
    assert!(!listed(&sb, protected));

    // Someone removes an address behind belay's back: rollback refuses to clobber it.
    assert!(admin(&sb, "dataset-remove belay-ips ip 198.18.0.1").contains("OK"));
    let refused = failed(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(refused.contains("drift"), "{refused}");
    assert!(listed(&sb, &server), "nothing rolled back");
    // Back as it was: the rollback restores the dataset exactly, verified.
    assert!(admin(&sb, "dataset-add belay-ips ip 198.18.0.1").contains("OK"));
    let undo = ok(&belay(d, &["rollback", "--run", &run, "--as", "alice"]));
    assert!(undo.contains("verified"), "{undo}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "",
        "the file is back, empty"
    );
    assert!(!listed(&sb, &server) && !listed(&sb, "198.18.0.1"));
    assert!(sb.can_connect(Duration::from_secs(5)), "reachable again");
}
