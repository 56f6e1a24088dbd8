//! The nftables connector against real nftables in two network namespaces joined by a veth
//! pair, checked with real TCP connections. Skipped (with the reason) when nftables or root is
//! missing, unless BELAY_REQUIRE_NATIVE=1.

use belay_connectors::Connector;
use belay_connectors::native::nftables::{Nftables, Sandbox};
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

mod common;
use common::{call, change, inverse, refused, state};

fn sandbox() -> Option<Sandbox> {
    common::usable("nftables", Sandbox::available())
        .then(|| Sandbox::start().expect("sandbox starts"))
}

fn reachable(sb: &Sandbox, to: IpAddr) -> bool {
    sb.can_connect(to, Duration::from_millis(700))
}

/// The whole ruleset of a namespace, to compare before and after a refused change.
fn ruleset(ns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn blocks_ipv4_and_ipv6_egress_and_unblocks_them() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let (v4, v6) = (sb.server_v4(), sb.server_v6());
    assert!(
        reachable(&sb, v4) && reachable(&sb, v6),
        "reachable at first"
    );

    let input = json!({ "address": v4.to_string(), "set": "egress", "reason": "intel feed X" });
    let before4 = state(&fw, "firewall.block_ip", &input).await;
    assert_eq!(before4["present"], false);
    let out = change(&fw, "firewall.block_ip", input.clone(), true).await;
    assert_eq!(out["address"], v4.to_string());
    assert!(out.get("expires").is_none(), "permanent block: {out}");
    let after = state(&fw, "firewall.block_ip", &input).await;
    assert_eq!(after["present"], true);
    assert_eq!(after["comment"], "intel feed X");
    assert!(!reachable(&sb, v4), "IPv4 blocked");
    assert!(reachable(&sb, v6), "IPv6 untouched");

    change(&fw, "firewall.block_ip", input.clone(), false).await;

    let input6 = json!({ "address": v6.to_string(), "set": "egress" });
    let before6 = state(&fw, "firewall.block_ip", &input6).await;
    change(&fw, "firewall.block_ip", input6.clone(), true).await;
    assert!(!reachable(&sb, v6), "IPv6 blocked");
    let status = call(&fw, "firewall.status", json!({ "address": v6.to_string() }))
        .await
        .expect("status");
    assert_eq!(status["blocked"], true);
    assert_eq!(status["matched"], v6.to_string());

    // Rolled back with the catalog's inverse: firewall.unblock_ip with [address, set].
    for (i, before) in [(&input, &before4), (&input6, &before6)] {
        let (undo, with) = inverse("firewall.block_ip", i, before);
        assert_eq!(undo, "firewall.unblock_ip");
        change(&fw, &undo, with.clone(), true).await;
        change(&fw, &undo, with, false).await;
    }
    assert!(reachable(&sb, v4) && reachable(&sb, v6), "reachable again");
    assert_eq!(
        state(&fw, "firewall.block_ip", &input).await["present"],
        false
    );
}

#[tokio::test]
async fn a_network_block_covers_its_addresses() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let net = json!({ "address": "10.77.0.0/24" });
    change(&fw, "firewall.block_ip", net.clone(), true).await;
    assert!(!reachable(&sb, sb.server_v4()), "the network is blocked");
    let status = call(&fw, "firewall.status", json!({ "address": "10.77.0.2" }))
        .await
        .expect("status");
    assert_eq!(status["blocked"], true);
    assert_eq!(status["matched"], "10.77.0.0/24");
    // An address inside is already blocked: nothing to do, and nothing to undo.
    let inside = json!({ "address": "10.77.0.2" });
    change(&fw, "firewall.block_ip", inside.clone(), false).await;
    let st = state(&fw, "firewall.block_ip", &inside).await;
    assert_eq!(
        (st["present"].clone(), st["covered_by"].clone()),
        (json!(false), json!("10.77.0.0/24"))
    );
    // A wider network would overlap the element: refused, nothing changed.
    let before = ruleset(sb.client_netns());
    refused(
        &fw,
        "firewall.block_ip",
        json!({ "address": "10.0.0.0/8" }),
        "10.77.0.0/24",
    )
    .await;
    assert_eq!(ruleset(sb.client_netns()), before);

    change(&fw, "firewall.unblock_ip", net, true).await;
    assert!(reachable(&sb, sb.server_v4()), "reachable again");
}

#[tokio::test]
async fn a_timed_block_lapses_by_itself() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let input = json!({ "address": sb.server_v6().to_string(), "timeout": "2s" });
    let out = change(&fw, "firewall.block_ip", input.clone(), true).await;
    assert!(out["expires"].is_string(), "{out}");
    let st = state(&fw, "firewall.block_ip", &input).await;
    assert_eq!(st["present"], true);
    assert_eq!(st["timeout"], 2);
    assert!(!reachable(&sb, sb.server_v6()), "blocked for now");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(reachable(&sb, sb.server_v6()), "the block lapsed");
    assert_eq!(
        state(&fw, "firewall.block_ip", &input).await["present"],
        false
    );
}

#[tokio::test]
async fn undoing_an_unblock_restores_the_remaining_timeout_and_reason() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let v4 = sb.server_v4().to_string();
    let block = json!({ "address": v4, "timeout": "1h", "reason": "C2 server" });
    call(&fw, "firewall.block_ip", block).await.expect("blocks");
    let unblock = json!({ "address": v4 });
    let before = state(&fw, "firewall.unblock_ip", &unblock).await;
    change(&fw, "firewall.unblock_ip", unblock.clone(), true).await;
    assert!(reachable(&sb, sb.server_v4()));
    // The catalog's inverse takes the remaining timeout and the comment from the before-state.
    let (undo, with) = inverse("firewall.unblock_ip", &unblock, &before);
    assert_eq!(undo, "firewall.block_ip");
    assert_eq!(with["reason"], "C2 server");
    change(&fw, &undo, with, true).await;
    let after = state(&fw, "firewall.block_ip", &unblock).await;
    let timeout = after["timeout"].as_u64().expect("timed");
    assert!((3590..=3600).contains(&timeout), "{after}");
    assert_eq!(after["comment"], "C2 server");
    assert!(!reachable(&sb, sb.server_v4()), "blocked again");
}

#[tokio::test]
async fn quarantine_by_mac_and_by_ip_cuts_the_device_off() {
    let Some(sb) = sandbox() else { return };
    let nac = Nftables::new("nac", sb.nac_config()).expect("config");
    assert_eq!(nac.family(), "nac");
    let (v4, v6) = (sb.server_v4(), sb.server_v6());
    // Upper-case and dashes: the connector normalizes the MAC address.
    let mac = sb.client_mac().to_uppercase().replace(':', "-");
    let input = json!({ "device": mac, "reason": "rogue access point" });
    assert_eq!(
        state(&nac, "nac.quarantine", &input).await["quarantined"],
        false
    );
    let out = call(&nac, "nac.quarantine", input.clone())
        .await
        .expect("quarantines");
    assert_eq!(
        (out["changed"].clone(), out["device"].clone()),
        (json!(true), json!(sb.client_mac()))
    );
    assert!(
        !reachable(&sb, v4) && !reachable(&sb, v6),
        "the device is cut off"
    );
    let status = call(&nac, "nac.status", json!({ "device": sb.client_mac() }))
        .await
        .expect("status");
    assert_eq!(status["quarantined"], true);
    assert!(status["since"].is_string(), "{status}");
    assert_eq!(
        state(&nac, "nac.quarantine", &input).await["reason"],
        "rogue access point"
    );
    change(&nac, "nac.quarantine", input.clone(), false).await;
    // The catalog's inverse: nac.release with [device].
    let (undo, release) = inverse("nac.quarantine", &input, &json!({ "quarantined": false }));
    assert_eq!(undo, "nac.release");
    change(&nac, "nac.release", release.clone(), true).await;
    change(&nac, "nac.release", release, false).await;
    assert!(
        reachable(&sb, v4) && reachable(&sb, v6),
        "back on the network"
    );

    let by_ip = json!({ "device": sb.client_v4().to_string() });
    change(&nac, "nac.quarantine", by_ip.clone(), true).await;
    assert!(!reachable(&sb, v4), "IPv4 cut off");
    change(&nac, "nac.release", by_ip, true).await;
    assert!(reachable(&sb, v4), "IPv4 back");

    // A device the administrator quarantined by hand is theirs to release.
    let v6_device = sb.client_v6().to_string();
    admin_nft(
        sb.server_netns(),
        &format!("add element inet belay quarantine_v6 {{ {v6_device} }}"),
    );
    let by_v6 = json!({ "device": v6_device });
    refused(&nac, "nac.release", by_v6.clone(), "not added by belay").await;
    assert_eq!(
        state(&nac, "nac.release", &by_v6).await["quarantined"],
        true
    );
}

/// Runs an nft script in a namespace, as an administrator would.
fn admin_nft(ns: &str, script: &str) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", script])
        .output()
        .expect("nft runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_administrators_rules_survive_changes_and_rollbacks() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let ns = sb.client_netns();
    let (v4, v6) = (sb.server_v4(), sb.server_v6());
    call(&fw, "firewall.block_ip", json!({ "address": "192.0.2.1" }))
        .await
        .expect("creates the table");
    // The administrator's own chain in belay's table, a rule and an element of their own in
    // belay's chain and set, and a table of their own.
    admin_nft(
        ns,
        &format!(
            "add chain inet belay admin_out {{ type filter hook output priority -10; }}; \
             add rule inet belay admin_out ip6 daddr {v6} drop comment \"admin\"; \
             add rule inet belay firewall_output tcp dport 2222 drop comment \"admin in belay chain\"; \
             add element inet belay egress_v4 {{ 203.0.113.9 comment \"admin\" }}; \
             add table inet admin; \
             add chain inet admin out {{ type filter hook output priority 10; }}; \
             add rule inet admin out tcp dport 2223 drop comment \"admin table\""
        ),
    );
    let admin_lines = |ruleset: &str| -> Vec<String> {
        ruleset
            .lines()
            .filter(|l| l.contains("admin") && !l.contains("203.0.113.9"))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    let before = admin_lines(&ruleset(ns));
    assert_eq!(before.len(), 5, "{before:?}");
    let admins_element = json!({ "address": "203.0.113.9" });
    assert!(!reachable(&sb, v6), "the administrator's rule drops IPv6");

    // Blocks, unblocks and their rollbacks change only belay's own elements.
    let input = json!({ "address": v4.to_string(), "reason": "C2" });
    let pre = state(&fw, "firewall.block_ip", &input).await;
    change(&fw, "firewall.block_ip", input.clone(), true).await;
    assert!(!reachable(&sb, v4), "belay's block drops IPv4");
    let (undo, with) = inverse("firewall.block_ip", &input, &pre);
    change(&fw, &undo, with, true).await;
    assert!(reachable(&sb, v4), "rolled back");
    let unblock = json!({ "address": "192.0.2.1" });
    let pre = state(&fw, "firewall.unblock_ip", &unblock).await;
    change(&fw, "firewall.unblock_ip", unblock.clone(), true).await;
    let (undo, with) = inverse("firewall.unblock_ip", &unblock, &pre);
    change(&fw, &undo, with, true).await;

    let after = ruleset(ns);
    assert_eq!(admin_lines(&after), before, "{after}");
    assert!(
        !reachable(&sb, v6),
        "the administrator's rule still drops IPv6"
    );
    let element = state(&fw, "firewall.block_ip", &admins_element).await;
    assert_eq!(
        (element["present"].clone(), element["comment"].clone()),
        (json!(true), json!("admin")),
        "the administrator's element is kept"
    );
    // Nor does belay remove it when asked to: it did not add it.
    refused(
        &fw,
        "firewall.unblock_ip",
        admins_element.clone(),
        "not added by belay",
    )
    .await;
    assert_eq!(
        state(&fw, "firewall.block_ip", &admins_element).await["present"],
        true
    );
    assert_eq!(
        after.matches("belay: ip daddr @egress_v4 drop").count(),
        2,
        "belay's rules are declared once, in its two chains: {after}"
    );

    // A drop rule of belay's that someone deleted is declared again by the next change,
    // next to the administrator's rule.
    admin_nft(ns, "flush chain inet belay firewall_forward");
    change(
        &fw,
        "firewall.block_ip",
        json!({ "address": "192.0.2.2" }),
        true,
    )
    .await;
    let repaired = ruleset(ns);
    assert_eq!(
        repaired.matches("belay: ip daddr @egress_v4 drop").count(),
        2,
        "{repaired}"
    );
    assert_eq!(admin_lines(&repaired), before);
}

#[tokio::test]
async fn bad_input_fails_cleanly_and_changes_nothing() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let ok = json!({ "address": "192.0.2.1" });
    call(&fw, "firewall.block_ip", ok.clone())
        .await
        .expect("blocks");
    let before = ruleset(sb.client_netns());
    for (input, needle) in [
        (
            json!({ "address": "192.0.2.9", "set": "nosuch" }),
            "unknown block set `nosuch`",
        ),
        (json!({ "address": "192.0.2.300" }), "invalid address"),
        (json!({ "address": "2001:db8:::1" }), "invalid address"),
        (
            json!({ "address": "192.0.2.9", "timeout": "999999d" }),
            "invalid timeout",
        ),
    ] {
        refused(&fw, "firewall.block_ip", input, needle).await;
    }
    refused(
        &fw,
        "firewall.unblock_ip",
        json!({ "address": "192.0.2.1", "set": "nosuch" }),
        "nosuch",
    )
    .await;
    assert_eq!(ruleset(sb.client_netns()), before, "nothing changed");
    assert_eq!(state(&fw, "firewall.block_ip", &ok).await["present"], true);

    let nac = Nftables::new("nac", sb.nac_config()).expect("config");
    refused(
        &nac,
        "nac.quarantine",
        json!({ "device": "02:be:1a:00:00" }),
        "invalid device",
    )
    .await;
}

#[test]
fn configuration_is_checked() {
    let settings = "family = \"nac\"\ntable = \"edge\"\nnetns = \"ns1\"";
    let ok = common::build("nac", "nftables", settings).expect("builds");
    assert_eq!(ok.family(), "nac");
    for bad in [
        "colour = \"red\"",
        "table = \"no spaces\"",
        "sets = { egress = \"bad-name\" }",
        "family = \"dns\"",
    ] {
        assert!(common::build("fw", "nftables", bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_set_is_blocked_in_one_batch_and_its_undo_removes_exactly_the_diff() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let v4 = sb.server_v4().to_string();
    // Already there: an address with a timeout and a reason, and a network.
    let kept = json!({ "address": "198.51.100.7", "timeout": "1h", "reason": "by hand" });
    change(&fw, "firewall.block_ip", kept.clone(), true).await;
    change(
        &fw,
        "firewall.block_ip",
        json!({ "address": "10.88.0.0/16" }),
        true,
    )
    .await;
    let kept_before = state(&fw, "firewall.block_ip", &kept).await;

    let batch = json!({ "addresses": [
        v4, sb.server_v6().to_string(), "198.51.100.7", "10.88.1.1", "203.0.113.0/24", v4
    ] });
    let before = state(&fw, "firewall.block_many", &batch).await;
    assert_eq!(
        before["absent"],
        json!([v4, sb.server_v6().to_string(), "203.0.113.0/24"]),
        "the diff: what the set does not block yet, once each"
    );
    let out = change(&fw, "firewall.block_many", batch.clone(), true).await;
    assert_eq!(out["added"], 3);
    assert!(!reachable(&sb, sb.server_v4()) && !reachable(&sb, sb.server_v6()));
    assert_eq!(
        state(&fw, "firewall.block_many", &batch).await["absent"],
        json!([])
    );
    change(&fw, "firewall.block_many", batch.clone(), false).await;

    // The catalog's inverse unblocks exactly the diff; what was there stays as it was.
    let (undo, with) = inverse("firewall.block_many", &batch, &before);
    assert_eq!(undo, "firewall.unblock_many");
    let out = change(&fw, &undo, with.clone(), true).await;
    assert_eq!(out["removed"], 3);
    assert!(reachable(&sb, sb.server_v4()) && reachable(&sb, sb.server_v6()));
    assert_eq!(state(&fw, "firewall.block_many", &batch).await, before);
    let kept_after = state(&fw, "firewall.block_ip", &kept).await;
    assert_eq!(kept_after["comment"], kept_before["comment"]);
    assert_eq!(kept_after["timeout"], kept_before["timeout"]);
    assert!(kept_after["remaining"].is_string(), "{kept_after}");
    let net = call(&fw, "firewall.status", json!({ "address": "10.88.1.1" }))
        .await
        .expect("status");
    assert_eq!(net["matched"], "10.88.0.0/16");

    // A network of a batch that would contain an element is refused: nothing applied.
    refused(
        &fw,
        "firewall.block_many",
        json!({ "addresses": ["192.0.2.1", "198.51.100.0/24"] }),
        "198.51.100.7",
    )
    .await;
    let other = json!({ "address": "192.0.2.1" });
    assert_eq!(
        state(&fw, "firewall.block_ip", &other).await["present"],
        false
    );
}

/// The elements of one nft set of belay's table in `ns`, as `nft` lists them.
fn listed(ns: &str, set: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "belay", set,
        ])
        .output()
        .expect("nft runs");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut values: Vec<String> = doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["set"]["elem"].as_array())
        .flatten()
        .map(|e| {
            let v = if e["elem"].is_object() {
                &e["elem"]["val"]
            } else {
                e
            };
            match v {
                serde_json::Value::String(s) => s.clone(),
                other => format!("{}/{}", other["prefix"]["addr"], other["prefix"]["len"])
                    .replace('"', ""),
            }
        })
        .collect();
    values.sort();
    values
}

/// `firewall.block_many` of `input` as the engine calls it, with the state it read before.
async fn block_many_after(
    fw: &Nftables,
    input: &serde_json::Value,
    before: &serde_json::Value,
) -> Result<serde_json::Value, belay_connectors::ActionError> {
    fw.call(belay_connectors::Call {
        action: "firewall.block_many",
        input,
        idempotency_key: Some("run/apply"),
        before: Some(before),
    })
    .await
}

#[tokio::test]
async fn addresses_go_to_the_address_set_and_a_batch_applies_the_state_read_before_it() {
    let Some(sb) = sandbox() else { return };
    let fw = Nftables::new("fw", sb.firewall_config()).expect("config");
    let ns = sb.client_netns();
    change(
        &fw,
        "firewall.block_ip",
        json!({ "address": "192.0.2.1" }),
        true,
    )
    .await;
    change(
        &fw,
        "firewall.block_ip",
        json!({ "address": "10.9.0.0/16" }),
        true,
    )
    .await;
    assert_eq!(listed(ns, "egress_a4"), ["192.0.2.1"]);
    assert_eq!(listed(ns, "egress_v4"), ["10.9.0.0/16"]);

    // An address an earlier version blocked in the interval set is read, reported blocked and
    // unblocked where it is.
    admin_nft(
        ns,
        "add element inet belay egress_v4 { 192.0.2.50 comment \"belay\" }",
    );
    let legacy = json!({ "address": "192.0.2.50" });
    assert_eq!(
        state(&fw, "firewall.block_ip", &legacy).await["nft_set"],
        "egress_v4"
    );
    change(&fw, "firewall.block_ip", legacy.clone(), false).await;
    change(&fw, "firewall.unblock_ip", legacy.clone(), true).await;
    assert_eq!(listed(ns, "egress_v4"), ["10.9.0.0/16"]);

    // Given the state the engine read under its lock, a batch of addresses adds what it names
    // absent, without listing the sets again (here the state leaves 192.0.2.3 out, so it is
    // not added); a batch with a network is checked against the sets themselves.
    let batch = json!({ "addresses": ["192.0.2.1", "192.0.2.2", "192.0.2.3"] });
    let read = json!({ "absent": ["192.0.2.2"] });
    let out = block_many_after(&fw, &batch, &read).await.expect("applies");
    assert_eq!(out["added"], 1);
    assert_eq!(listed(ns, "egress_a4"), ["192.0.2.1", "192.0.2.2"]);
    // An address another process added meanwhile is no error and no second element.
    let out = block_many_after(
        &fw,
        &batch,
        &json!({ "absent": ["192.0.2.2", "192.0.2.3"] }),
    )
    .await
    .expect("applies");
    assert_eq!(out["added"], 2);
    assert_eq!(
        listed(ns, "egress_a4"),
        ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    );
    let with_net = json!({ "addresses": ["192.0.2.4", "10.0.0.0/8"] });
    let err = block_many_after(
        &fw,
        &with_net,
        &json!({ "absent": ["192.0.2.4", "10.0.0.0/8"] }),
    )
    .await
    .expect_err("the network contains a blocked one");
    assert!(err.message.contains("10.9.0.0/16"), "{err}");

    // Unblocking deletes the addresses from the address set and the network from the
    // interval set, in one batch.
    let out = change(
        &fw,
        "firewall.unblock_many",
        json!({ "addresses": ["192.0.2.1", "192.0.2.2", "192.0.2.3", "10.9.0.0/16"] }),
        true,
    )
    .await;
    assert_eq!(out["removed"], 4);
    assert!(listed(ns, "egress_a4").is_empty() && listed(ns, "egress_v4").is_empty());
}
