//! Enforcement through the binary against the real components: a drop rule belay deploys on
//! Suricata running inline (NFQUEUE) stops a real TCP connection and its rollback lets it
//! through; a block belay adds on nftables, and its rollback, leave an administrator's chain
//! and rules alone. Need root, Suricata and iptables-nft, nftables (skipped with the reason
//! otherwise, unless BELAY_REQUIRE_NATIVE=1).

use belay_connectors::native::{nftables, suricata};
use std::path::Path;
use std::time::Duration;

mod common;
use common::{belay, json, run_on, text};

/// Whether the component is there; fails instead of skipping under BELAY_REQUIRE_NATIVE.
fn usable(what: &str, available: Result<(), String>) -> bool {
    match available {
        Ok(()) => true,
        Err(why) => {
            belay_testkit::skip::unless_required(
                "BELAY_REQUIRE_NATIVE",
                &format!("{what} is unavailable: {why}"),
            );
            false
        }
    }
}

/// Writes `dir/belay.toml` with one connector `family` of type `kind` and an admin.
fn configure<C: serde::Serialize>(dir: &Path, family: &str, kind: &str, config: &C) {
    let mut table = toml::Table::try_from(config).unwrap();
    table.insert("type".into(), kind.into());
    let mut connectors = toml::Table::new();
    connectors.insert(family.into(), table.into());
    let mut root = toml::Table::new();
    root.insert("connectors".into(), connectors.into());
    let mut text = toml::to_string(&root).unwrap();
    text.push_str("\n[[users]]\nname = \"soc-lead\"\nroles = [\"admin\"]\n");
    std::fs::write(dir.join("belay.toml"), text).unwrap();
}

/// `belay run` on `event` with the playbook `pb.yaml`; returns the run id.
fn run(dir: &Path, event: serde_json::Value) -> String {
    let o = run_on(dir, "pb.yaml", &event, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&o);
    assert_eq!(r["status"], "succeeded", "{r}");
    r["run_id"].as_str().unwrap().to_owned()
}

fn rollback(dir: &Path, run_id: &str) {
    let o = belay(dir, &["rollback", "--run", run_id, "--as", "soc-lead"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("verified"), "{}", text(&o));
}

const DROP_PLAYBOOK: &str = r#"name: ips-drop
on: { event: ips.drop }
trust: log
steps:
  - id: drop
    action: ips.deploy_rule
    with: { sid: 1000040, rule: "${{ event.data.rule }}" }
"#;

#[tokio::test]
async fn an_inline_drop_rule_stops_a_connection_and_its_rollback_restores_it() {
    use suricata::{Mode, Sandbox};
    if !usable("Suricata inline", Sandbox::available(Mode::Inline)) {
        return;
    }
    let sb = Sandbox::start(Mode::Inline).await.expect("suricata starts");
    // A connection let through opens at once; a dropped SYN is retransmitted after a second.
    let connects = || sb.can_connect(Duration::from_secs(5));
    let dropped = || !sb.can_connect(Duration::from_millis(900));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configure(d, "ips", "suricata", &sb.config());
    std::fs::write(d.join("pb.yaml"), DROP_PLAYBOOK).unwrap();
    assert!(connects(), "the listener answers through Suricata");

    let to = sb.server();
    let rule = format!(
        r#"drop tcp any any -> {} {} (msg:"belay block"; sid:1000040; rev:1;)"#,
        to.ip(),
        to.port()
    );
    let id = run(
        d,
        serde_json::json!({"kind": "ips.drop", "data": {"rule": rule}}),
    );
    assert!(dropped(), "the deployed drop rule drops the connection");
    rollback(d, &id);
    assert!(connects(), "the rollback lets it through");
}

const BLOCK_PLAYBOOK: &str = r#"name: block
on: { event: block }
trust: log
steps:
  - id: block
    action: firewall.block_ip
    for_each: ${{ event.observables.ips }}
    with: { address: "${{ item }}", set: egress, reason: "e2e" }
"#;

#[test]
fn an_administrators_nftables_rules_survive_a_block_and_its_rollback() {
    use nftables::Sandbox;
    if !usable("nftables", Sandbox::available()) {
        return;
    }
    let sb = Sandbox::start().expect("namespaces start");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    configure(d, "firewall", "nftables", &sb.firewall_config());
    std::fs::write(d.join("pb.yaml"), BLOCK_PLAYBOOK).unwrap();
    let nft = |script: &str| {
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", sb.client_netns(), "nft"])
            .args(script.split(' '))
            .output()
            .expect("nft runs");
        assert!(o.status.success(), "nft {script}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let reachable = |to| sb.can_connect(to, Duration::from_millis(700));
    let block = |ip: std::net::IpAddr| {
        run(
            d,
            serde_json::json!({"kind": "block", "observables": {"ips": [ip.to_string()]}}),
        )
    };
    // The first block creates belay's table; the administrator then adds a chain of their own
    // to it that drops IPv6 to the server.
    let first = block("192.0.2.1".parse().unwrap());
    let v6 = sb.server_v6().to_string();
    nft("add chain inet belay admin_out { type filter hook output priority -10 ; }");
    nft(&format!(
        "add rule inet belay admin_out ip6 daddr {v6} drop comment \"admin\""
    ));
    let admins = nft("list chain inet belay admin_out");
    assert!(!reachable(sb.server_v6()));

    let id = block(sb.server_v4());
    assert!(!reachable(sb.server_v4()), "belay's block");
    rollback(d, &id);
    rollback(d, &first);
    assert!(reachable(sb.server_v4()), "rolled back");
    assert_eq!(
        nft("list chain inet belay admin_out"),
        admins,
        "the administrator's chain is untouched"
    );
    assert!(
        !reachable(sb.server_v6()),
        "the administrator's rule still drops"
    );
}
