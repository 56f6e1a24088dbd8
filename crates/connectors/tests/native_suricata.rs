//! `ips.*` against a real Suricata 7 (`suricata::Sandbox`), inline on NFQUEUE: UDP probes in
//! its namespace show when a deployed rule alerts, and TCP connections from a second namespace
//! show when a drop rule drops.

use belay_connectors::ErrorKind;
use belay_connectors::native::suricata::{LISTED_DROP_SID, Mode, Sandbox, Suricata};
use serde_json::{Value, json};
use std::time::Duration;

mod common;
use common::{call, change, inverse, invoke, refused, state};

async fn sandbox_in(mode: Mode) -> Option<(Sandbox, Suricata)> {
    if !common::usable("Suricata", Sandbox::available(mode)) {
        return None;
    }
    let started = std::time::Instant::now();
    let sb = Sandbox::start(mode).await.expect("suricata sandbox");
    eprintln!("suricata ({mode}) answered after {:?}", started.elapsed());
    let c = Suricata::new("ips", sb.config()).expect("connector");
    Some((sb, c))
}

async fn sandbox() -> Option<(Sandbox, Suricata)> {
    sandbox_in(Mode::Inline).await
}

/// Whether the client namespace can open a TCP connection to the listener behind Suricata
/// (a connection let through opens at once; the limit only bounds a slow machine's wait).
fn connects(sb: &Sandbox) -> bool {
    sb.can_connect(Duration::from_secs(5))
}

/// Whether a connection attempt fails: its SYN is dropped, and no retransmission (the first
/// after a second) gets through in the meantime.
fn dropped(sb: &Sandbox) -> bool {
    !sb.can_connect(Duration::from_millis(900))
}

/// The `alert.action` of the alerts Suricata logged for `sid` (`blocked` or `allowed`).
fn alert_actions(sb: &Sandbox, sid: u64) -> Vec<String> {
    std::fs::read_to_string(sb.eve_log())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["alert"]["signature_id"].as_u64() == Some(sid))
        .filter_map(|v| v["alert"]["action"].as_str().map(str::to_owned))
        .collect()
}

/// A rule dropping TCP to the sandbox's listener.
fn drop_rule(sb: &Sandbox, sid: u64) -> String {
    let to = sb.server();
    format!(
        r#"drop tcp any any -> {} {} (msg:"belay block"; sid:{sid}; rev:1;)"#,
        to.ip(),
        to.port()
    )
}

#[tokio::test]
async fn an_inline_drop_rule_stops_a_connection_until_rolled_back() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    assert_eq!(sb.mode(), Mode::Inline);
    let status = call(&ips, "ips.status", json!({})).await.expect("status");
    assert_eq!(status["capture_mode"], json!("NFQ"), "{status}");
    assert!(connects(&sb), "the listener answers through Suricata");

    let input = json!({"sid": 1000020, "rule": drop_rule(&sb, 1000020)});
    let before = state(&ips, "ips.deploy_rule", &input).await;
    change(&ips, "ips.deploy_rule", input.clone(), true).await;
    assert!(dropped(&sb), "the drop rule drops the connection");
    let actions = alert_actions(&sb, 1000020);
    assert!(
        !actions.is_empty() && actions.iter().all(|a| a == "blocked"),
        "Suricata dropped it by the rule: {actions:?}"
    );
    // Other traffic still passes: the sentinel probe on loopback is seen and let through.
    assert!(sb.probe(9999, "other").await.expect("probe").is_empty());

    // Rolled back with the catalog's inverse: ips.remove_rule with [sid, ruleset, rule].
    let (undo, with) = inverse("ips.deploy_rule", &input, &before);
    assert_eq!(undo, "ips.remove_rule");
    change(&ips, &undo, with, true).await;
    assert_eq!(state(&ips, "ips.deploy_rule", &input).await, before);
    assert!(connects(&sb), "the connection passes again");
}

#[tokio::test]
async fn inline_a_listed_address_is_dropped_until_removed() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    // The site's rule drops what the dataset lists; belay adds and removes the addresses.
    sb.drop_listed().await.expect("site rule");
    assert!(connects(&sb));
    let input =
        json!({"dataset": "belay-ips", "value": sb.server().ip().to_string(), "type": "ip"});
    let before = state(&ips, "ips.dataset_add", &input).await;
    change(&ips, "ips.dataset_add", input.clone(), true).await;
    assert!(dropped(&sb), "the listed address is dropped");
    assert!(
        alert_actions(&sb, LISTED_DROP_SID).contains(&"blocked".to_owned()),
        "by the site rule"
    );
    let (undo, with) = inverse("ips.dataset_add", &input, &before);
    assert_eq!(undo, "ips.dataset_remove");
    change(&ips, &undo, with, true).await;
    assert!(connects(&sb), "reachable again once removed");
}

#[tokio::test]
async fn as_an_ids_a_drop_rule_only_alerts() {
    let Some((sb, ips)) = sandbox_in(Mode::Ids).await else {
        return;
    };
    let status = call(&ips, "ips.status", json!({})).await.expect("status");
    assert_eq!(status["capture_mode"], json!("AF_PACKET_DEV"), "{status}");
    assert!(connects(&sb));
    let input = json!({"sid": 1000021, "rule": drop_rule(&sb, 1000021)});
    change(&ips, "ips.deploy_rule", input, true).await;
    assert!(connects(&sb), "an IDS drops nothing");
}

/// Deploys `rule` as `sid` (in the default ruleset), which must succeed.
async fn deploy(ips: &Suricata, sid: u32, rule: &str) {
    invoke(ips, "ips.deploy_rule", json!({ "sid": sid, "rule": rule }))
        .await
        .unwrap_or_else(|e| panic!("deploying {sid}: {e}"));
}

const RULE: &str = r#"alert udp any any -> any 9999 (msg:"belay test"; content:"belay-probe-1"; sid:1000001; rev:1;)"#;

#[tokio::test]
async fn deploy_rule_alerts_until_removed() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    assert!(
        sb.probe(9999, "belay-probe-1")
            .await
            .expect("probe")
            .is_empty()
    );

    let input = json!({"sid": 1000001, "rule": RULE, "ruleset": "belay"});
    let before = state(&ips, "ips.deploy_rule", &input).await;
    assert_eq!(before, json!({"rule": null, "loaded": false}));
    let out = change(&ips, "ips.deploy_rule", input.clone(), true).await;
    assert_eq!(
        out["rules_loaded"],
        json!(3),
        "the rule, the sandbox's sentinel and its rule declaring `belay-ips`"
    );
    assert_eq!(
        state(&ips, "ips.deploy_rule", &input).await,
        json!({"rule": RULE, "loaded": true})
    );
    let alerts = sb.probe(9999, "belay-probe-1").await.expect("probe");
    assert!(
        !alerts.is_empty() && alerts.iter().all(|s| *s == 1000001),
        "{alerts:?}"
    );
    let status = invoke(&ips, "ips.status", json!({"sid": 1000001}))
        .await
        .expect("status");
    assert_eq!(status["loaded"], json!(true));
    assert_eq!(status["rule"], json!(RULE));
    assert_eq!(status["rules_failed"], json!(0));
    let reload = status["last_reload"].as_str().expect("last_reload");
    assert!(reload.ends_with("+00:00"), "{reload}");

    // The same rule again is a no-op.
    change(&ips, "ips.deploy_rule", input.clone(), false).await;

    // Roll back with the catalog's inverse.
    let out = change(&ips, "ips.remove_rule", input.clone(), true).await;
    assert_eq!(out["rule"], json!(RULE));
    assert_eq!(state(&ips, "ips.remove_rule", &input).await, before);
    assert!(
        sb.probe(9999, "belay-probe-1")
            .await
            .expect("probe")
            .is_empty(),
        "no alert after removal"
    );
    change(&ips, "ips.remove_rule", input, false).await;
}

#[tokio::test]
async fn rejected_rule_changes_nothing() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    deploy(&ips, 1000001, RULE).await;
    let rules = sb.config().rule_dir.join("belay.rules");
    let file_before = std::fs::read_to_string(&rules).expect("rule file");

    // Suricata parses this and answers "done" to the reload, but fails the rule.
    let bad = r#"alert udp any any -> any 9999 (msg:"bad"; contentx:"x"; sid:1000002; rev:1;)"#;
    refused(
        &ips,
        "ips.deploy_rule",
        json!({"sid": 1000002, "rule": bad}),
        "rejected",
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&rules).expect("rule file"),
        file_before
    );
    let status = invoke(&ips, "ips.status", json!({})).await.expect("status");
    assert_eq!(
        status["rules_failed"],
        json!(0),
        "the previous rules were reloaded: {status}"
    );
    assert_eq!(status["rules_loaded"], json!(3));
    // The earlier rule still works.
    let alerts = sb.probe(9999, "belay-probe-1").await.expect("probe");
    assert!(
        !alerts.is_empty() && alerts.iter().all(|s| *s == 1000001),
        "{alerts:?}"
    );

    // Refused before Suricata sees them.
    for input in [
        json!({"sid": 5, "rule": RULE}),
        json!({"sid": 1000001, "rule": format!("{RULE}\nalert ip any any -> any any (sid:7;)")}),
        json!({"sid": 1000001, "rule": RULE, "ruleset": "other"}),
        json!({"sid": 1, "rule": "alert ip any any -> any any (msg:\"x\"; sid:1; sid:1;)"}),
    ] {
        refused(&ips, "ips.deploy_rule", input, "").await;
    }
    assert_eq!(
        std::fs::read_to_string(&rules).expect("rule file"),
        file_before
    );
}

#[tokio::test]
async fn datasets_add_and_remove() {
    let Some((_sb, ips)) = sandbox().await else {
        return;
    };
    for (dataset, kind, value) in [
        ("belay-ips", "ip", "198.51.100.7"),
        ("belay-ips", "ip", "2001:db8::7"),
        ("belay-strings", "string", "evil.example"),
        (
            "belay-sha256",
            "sha256",
            "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
        ),
    ] {
        let input = json!({"dataset": dataset, "value": value, "type": kind});
        let before = state(&ips, "ips.dataset_add", &input).await;
        assert_eq!(before, json!({"present": false}), "{input}");
        // {input}.
        change(&ips, "ips.dataset_add", input.clone(), true).await;
        assert_eq!(
            invoke(&ips, "ips.dataset_contains", input.clone())
                .await
                .expect("contains"),
            json!({"present": true})
        );
        change(&ips, "ips.dataset_add", input.clone(), false).await;
        change(&ips, "ips.dataset_remove", input.clone(), true).await;
        assert_eq!(state(&ips, "ips.dataset_remove", &input).await, before);
        change(&ips, "ips.dataset_remove", input, false).await;
    }
    for input in [
        json!({"dataset": "nope", "value": "198.51.100.7", "type": "ip"}),
        json!({"dataset": "belay-ips", "value": "198.51.100.300", "type": "ip"}),
        json!({"dataset": "belay-ips", "value": "evil.example", "type": "string"}),
        json!({"dataset": "belay-sha256", "value": "abc", "type": "sha256"}),
    ] {
        refused(&ips, "ips.dataset_add", input, "").await;
    }
    assert_eq!(
        invoke(
            &ips,
            "ips.dataset_contains",
            json!({"dataset": "belay-ips", "value": "198.51.100.300", "type": "ip"})
        )
        .await
        .map_err(|e| e.kind),
        Err(ErrorKind::Permanent)
    );
}

#[tokio::test]
async fn dataset_drives_a_deployed_rule() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    // Every rule naming a dataset kept in a file names the file.
    let rule = format!(
        r#"alert udp any any -> any 9998 (msg:"belay dataset"; ip.dst; dataset:isset,belay-ips,type ip,load {}; sid:1000010; rev:1;)"#,
        sb.config().datasets["belay-ips"].display()
    );
    deploy(&ips, 1000010, &rule).await;
    assert!(sb.probe(9998, "x").await.expect("probe").is_empty());
    let input = json!({"dataset": "belay-ips", "value": "127.0.0.1", "type": "ip"});
    invoke(&ips, "ips.dataset_add", input.clone())
        .await
        .expect("add");
    // The datagram alerts (and so may the ICMP error quoting it: loopback has no listener).
    assert!(sb.probe(9998, "x").await.expect("probe").contains(&1000010));
    invoke(&ips, "ips.dataset_remove", input)
        .await
        .expect("remove");
    assert!(sb.probe(9998, "x").await.expect("probe").is_empty());
}

/// Runs a socket command as an administrator would, behind belay's back.
fn admin(sb: &Sandbox, command: &str) -> String {
    let out = std::process::Command::new("suricatasc")
        .args(["-c", command])
        .arg(&sb.config().socket)
        .output()
        .expect("suricatasc runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many rule reloads Suricata has completed.
fn reloads(sb: &Sandbox) -> usize {
    std::fs::read_to_string(sb.eve_log().with_file_name("suricata.log"))
        .unwrap_or_default()
        .matches("rule reload complete")
        .count()
}

#[tokio::test]
async fn a_batch_enters_a_file_backed_dataset_in_one_reload_and_rolls_back_exactly() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    sb.drop_listed().await.expect("site rule");
    let file = sb.config().datasets["belay-ips"].clone();
    // An address belay listed earlier, one at a time: the single action keeps the file too.
    let kept = json!({"dataset": "belay-ips", "value": "192.0.2.9"});
    change(&ips, "ips.dataset_add", kept.clone(), true).await;
    let file_before = std::fs::read_to_string(&file).expect("dataset file");
    assert_eq!(file_before, "192.0.2.9\n");
    assert!(connects(&sb));

    let server = sb.server().ip().to_string();
    let mut values: Vec<String> = (0..2000)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
        .collect();
    values.extend([
        server.clone(),
        "192.0.2.9".into(),
        "2001:db8::5".into(),
        server.clone(),
    ]);
    let batch = json!({"dataset": "belay-ips", "type": "ip", "values": values});
    let before = state(&ips, "ips.dataset_add_many", &batch).await;
    let diff = before["absent"].as_array().expect("absent").clone();
    assert_eq!(
        diff.len(),
        2002,
        "the diff: what the dataset lacks, once each"
    );
    assert!(!diff.contains(&json!("192.0.2.9")) && diff.contains(&json!(server)));

    let reloads_before = reloads(&sb);
    let out = change(&ips, "ips.dataset_add_many", batch.clone(), true).await;
    assert_eq!(out["added"], 2002);
    assert_eq!(
        reloads(&sb),
        reloads_before + 1,
        "one rule reload for the batch"
    );
    assert!(
        dropped(&sb),
        "the listed server is dropped by the site rule"
    );
    let after = state(&ips, "ips.dataset_add_many", &batch).await;
    assert_eq!(after, json!({"absent": []}));
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("file")
            .lines()
            .count(),
        2003,
        "the file holds what belay put in the dataset"
    );
    change(&ips, "ips.dataset_add_many", batch.clone(), false).await;

    // Drift: an administrator removes one address behind belay's back; the state says so.
    assert!(admin(&sb, "dataset-remove belay-ips ip 198.18.0.1").contains("OK"));
    assert_eq!(
        state(&ips, "ips.dataset_add_many", &batch).await,
        json!({"absent": ["198.18.0.1"]}),
        "drift is seen"
    );
    assert!(admin(&sb, "dataset-add belay-ips ip 198.18.0.1").contains("OK"));

    // An address someone else put in the dataset is not belay's to remove: refused whole.
    assert!(admin(&sb, "dataset-add belay-ips ip 203.0.113.50").contains("OK"));
    refused(
        &ips,
        "ips.dataset_remove_many",
        json!({"dataset": "belay-ips", "values": ["198.18.0.2", "203.0.113.50"]}),
        "belay removes only what it added",
    )
    .await;
    assert_eq!(
        state(&ips, "ips.dataset_add_many", &batch).await,
        after,
        "nothing removed"
    );

    // The catalog's inverse removes exactly the diff; what was there before stays.
    let (undo, with) = inverse("ips.dataset_add_many", &batch, &before);
    assert_eq!(undo, "ips.dataset_remove_many");
    assert_eq!(with["values"].as_array().map(Vec::len), Some(2002));
    let reloads_before = reloads(&sb);
    let out = change(&ips, &undo, with.clone(), true).await;
    assert_eq!(out["removed"], 2002);
    assert_eq!(reloads(&sb), reloads_before + 1);
    assert!(connects(&sb), "reachable again");
    assert_eq!(state(&ips, "ips.dataset_add_many", &batch).await, before);
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        file_before,
        "the file is back byte for byte"
    );
    assert_eq!(
        state(&ips, "ips.dataset_add", &kept).await,
        json!({"present": true}),
        "the address listed before the batch is still listed"
    );
    change(&ips, &undo, with, false).await;
}

#[tokio::test]
async fn a_batch_the_dataset_does_not_show_after_the_reload_is_undone() {
    let Some((sb, _)) = sandbox().await else {
        return;
    };
    // Settings naming a file that no rule loads the dataset from.
    let mut config = sb.config();
    let stray = config.rule_dir.join("stray.lst");
    config.datasets.insert("belay-ips".into(), stray.clone());
    let ips = Suricata::new("ips", config).expect("connector");
    let batch = json!({"dataset": "belay-ips", "values": ["198.51.100.1", "198.51.100.2"]});
    refused(
        &ips,
        "ips.dataset_add_many",
        batch.clone(),
        "no rule loads it",
    )
    .await;
    assert_eq!(std::fs::read_to_string(&stray).unwrap_or_default(), "");
    assert_eq!(
        state(&ips, "ips.dataset_add_many", &batch).await["absent"],
        json!(["198.51.100.1", "198.51.100.2"])
    );
    // A dataset not kept in a file takes single values only.
    refused(
        &ips,
        "ips.dataset_add_many",
        json!({"dataset": "belay-strings", "type": "string", "values": ["evil.example"]}),
        "not kept in a file",
    )
    .await;
    refused(
        &ips,
        "ips.dataset_add_many",
        json!({"dataset": "belay-ips", "values": ["198.51.100.1", "not-an-ip"]}),
        "not an IP address",
    )
    .await;
}

#[test]
fn built_from_configuration() {
    let settings = r#"
        socket = "/run/suricata/suricata-command.socket"
        rule_dir = "/var/lib/suricata/rules"
        rulesets = ["belay", "intel"]
    "#;
    let c = common::build("ips", "suricata", settings).expect("suricata connector");
    assert_eq!(c.family(), "ips");
    let bad = "socket = \"/s\"\nrule_dir = \"/r\"\nrulesets = [\"../x\"]";
    assert!(common::build("ips", "suricata", bad).is_err());
}
