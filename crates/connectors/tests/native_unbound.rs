//! The Unbound connector against a real Unbound on loopback, checked with real DNS queries.
//! Skipped (with the reason) when Unbound is missing, unless BELAY_REQUIRE_NATIVE=1.

use belay_connectors::native::unbound::{Sandbox, Unbound};
use serde_json::json;
use std::net::IpAddr;

mod common;
use common::{call, change, inverse, refused, state};

fn sandbox() -> Option<Sandbox> {
    common::usable("unbound", Sandbox::available())
        .then(|| Sandbox::start().expect("unbound starts"))
}

fn a(sb: &Sandbox, name: &str) -> Vec<IpAddr> {
    let reply = sb.query(name, false).expect("query");
    assert_eq!(reply.rcode, 0, "{name}: {reply:?}");
    reply.addrs
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[tokio::test]
async fn sinkholes_a_domain_and_its_subdomains_then_restores_them() {
    let Some(sb) = sandbox() else { return };
    let dns = Unbound::new("dns", sb.config()).expect("config");
    assert_eq!(
        a(&sb, "phish.example.com"),
        [ip("192.0.2.66")],
        "resolves normally first"
    );

    let input = json!({ "domain": "Phish.Example.com.", "answer": "10.1.2.3", "ttl": 60 });
    let before = state(&dns, "dns.sinkhole_domain", &input).await;
    assert_eq!(before["sinkholed"], false);
    let out = change(&dns, "dns.sinkhole_domain", input.clone(), true).await;
    assert_eq!(out["domain"], "phish.example.com");
    assert_eq!(out["answer"], "10.1.2.3");
    let after = state(&dns, "dns.sinkhole_domain", &input).await;
    assert_eq!(
        (after["mode"].clone(), after["answer"].clone()),
        (json!("redirect"), json!("10.1.2.3"))
    );
    for name in [
        "phish.example.com",
        "www.phish.example.com",
        "a.b.c.phish.example.com",
    ] {
        assert_eq!(a(&sb, name), [ip("10.1.2.3")], "{name} is sinkholed");
    }
    assert_eq!(
        a(&sb, "www.example.com"),
        [ip("192.0.2.10")],
        "siblings untouched"
    );
    let status = call(
        &dns,
        "dns.status",
        json!({ "domain": "x.www.phish.example.com" }),
    )
    .await
    .expect("status");
    assert_eq!(
        status,
        json!({ "sinkholed": true, "zone": "phish.example.com", "mode": "redirect", "answer": "10.1.2.3" })
    );
    change(&dns, "dns.sinkhole_domain", input.clone(), false).await;

    // The catalog's inverse: dns.unsinkhole_domain with [domain, mode, answer].
    let (action, undo) = inverse("dns.sinkhole_domain", &input, &before);
    assert_eq!(action, "dns.unsinkhole_domain");
    change(&dns, "dns.unsinkhole_domain", undo.clone(), true).await;
    assert_eq!(
        a(&sb, "phish.example.com"),
        [ip("192.0.2.66")],
        "resolves normally again"
    );
    assert_eq!(a(&sb, "www.phish.example.com"), [ip("192.0.2.67")]);
    change(&dns, "dns.unsinkhole_domain", undo, false).await;
    assert_eq!(
        state(&dns, "dns.sinkhole_domain", &input).await["sinkholed"],
        false
    );
    assert_eq!(
        call(&dns, "dns.status", json!({ "domain": "phish.example.com" }))
            .await
            .expect("status"),
        json!({ "sinkholed": false })
    );
}

#[tokio::test]
async fn nxdomain_mode_ipv6_answers_and_the_default_answer() {
    let Some(sb) = sandbox() else { return };
    let dns = Unbound::new("dns", sb.config()).expect("config");
    let nx = json!({ "domain": "www.example.com", "mode": "nxdomain" });
    change(&dns, "dns.sinkhole_domain", nx.clone(), true).await;
    for name in ["www.example.com", "a.www.example.com"] {
        assert_eq!(
            sb.query(name, false).expect("query").rcode,
            3,
            "{name} NXDOMAIN"
        );
    }
    assert_eq!(
        a(&sb, "example.com"),
        [ip("192.0.2.10")],
        "the parent is untouched"
    );
    // Unsinkholed by hand (domain only), then that undone: the mode comes from the state.
    let by_hand = json!({ "domain": nx["domain"] });
    let before = state(&dns, "dns.sinkhole_domain", &by_hand).await;
    change(&dns, "dns.unsinkhole_domain", by_hand.clone(), true).await;
    assert_eq!(a(&sb, "www.example.com"), [ip("192.0.2.10")]);
    let (action, redo) = inverse("dns.unsinkhole_domain", &by_hand, &before);
    assert_eq!(
        (action.as_str(), redo["mode"].as_str()),
        ("dns.sinkhole_domain", Some("nxdomain"))
    );
    change(&dns, &action, redo, true).await;
    assert_eq!(sb.query("www.example.com", false).expect("query").rcode, 3);
    change(&dns, "dns.unsinkhole_domain", nx, true).await;
    assert_eq!(a(&sb, "www.example.com"), [ip("192.0.2.10")]);

    // example.com has a zone in Unbound's configuration: replacing it is refused.
    refused(
        &dns,
        "dns.sinkhole_domain",
        json!({ "domain": "example.com" }),
        "transparent",
    )
    .await;
    assert_eq!(a(&sb, "www.example.com"), [ip("192.0.2.10")]);

    // An IPv6 answer is an AAAA record; no answer at all means the configured default.
    let v6 = json!({ "domain": "phish.example.com", "answer": "2001:db8::80" });
    call(&dns, "dns.sinkhole_domain", v6).await.expect("v6");
    let reply = sb.query("www.phish.example.com", true).expect("AAAA query");
    assert_eq!(reply.addrs, [ip("2001:db8::80")]);
    // Changing the answer is a change, applied in place.
    let def = json!({ "domain": "phish.example.com" });
    let out = call(&dns, "dns.sinkhole_domain", def)
        .await
        .expect("default");
    assert_eq!(
        (out["changed"].clone(), out["answer"].clone()),
        (json!(true), json!(Sandbox::DEFAULT_ANSWER))
    );
    assert_eq!(
        a(&sb, "www.phish.example.com"),
        [ip(Sandbox::DEFAULT_ANSWER)]
    );
    assert!(
        sb.query("www.phish.example.com", true)
            .expect("AAAA")
            .addrs
            .is_empty()
    );
}

#[tokio::test]
async fn re_applying_after_a_restart_restores_the_sinkhole() {
    let Some(mut sb) = sandbox() else { return };
    let dns = Unbound::new("dns", sb.config()).expect("config");
    let input = json!({ "domain": "phish.example.com", "answer": "10.9.9.9" });
    call(&dns, "dns.sinkhole_domain", input.clone())
        .await
        .expect("sinkholes");
    assert_eq!(a(&sb, "phish.example.com"), [ip("10.9.9.9")]);

    sb.restart().expect("restarts");
    assert_eq!(
        a(&sb, "phish.example.com"),
        [ip("192.0.2.66")],
        "runtime zones are gone"
    );
    assert_eq!(
        state(&dns, "dns.sinkhole_domain", &input).await["sinkholed"],
        false
    );
    // What the engine does when it re-applies the journal: the same change, again.
    change(&dns, "dns.sinkhole_domain", input, true).await;
    assert_eq!(a(&sb, "www.phish.example.com"), [ip("10.9.9.9")]);
}

#[tokio::test]
async fn bad_input_fails_cleanly_and_changes_nothing() {
    let Some(sb) = sandbox() else { return };
    let dns = Unbound::new("dns", sb.config()).expect("config");
    let zones = || async {
        let out = std::process::Command::new("unbound-control")
            .arg("-c")
            .arg(sb.config().config_file.expect("config file"))
            .args(["list_local_zones"])
            .output()
            .expect("unbound-control runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = zones().await;
    let long = format!("{}.example.com", "a".repeat(64));
    for (input, needle) in [
        (json!({ "domain": "exa mple..com" }), "invalid domain"),
        (json!({ "domain": long }), "1 to 63"),
        (
            json!({ "domain": "example.com;local_zone_remove ." }),
            "invalid domain",
        ),
        (
            json!({ "domain": "phish.example.com", "answer": "10.0.0.256" }),
            "invalid answer",
        ),
        (
            json!({ "domain": "phish.example.com", "mode": "refuse" }),
            "unknown sinkhole mode",
        ),
    ] {
        refused(&dns, "dns.sinkhole_domain", input, needle).await;
    }
    refused(
        &dns,
        "dns.unsinkhole_domain",
        json!({ "domain": "exa mple..com" }),
        "invalid domain",
    )
    .await;
    // No default answer configured and none given.
    let bare = Unbound::new(
        "dns",
        belay_connectors::native::unbound::UnboundConfig {
            default_answer: None,
            ..sb.config()
        },
    )
    .expect("config");
    refused(
        &bare,
        "dns.sinkhole_domain",
        json!({ "domain": "phish.example.com" }),
        "default_answer",
    )
    .await;
    assert_eq!(zones().await, before, "nothing changed");
    assert_eq!(a(&sb, "phish.example.com"), [ip("192.0.2.66")]);
}

#[tokio::test]
async fn a_batch_of_sinkholes_is_applied_and_rolled_back_exactly() {
    let Some(sb) = sandbox() else { return };
    let dns = Unbound::new("dns", sb.config()).expect("config");
    // A sinkhole made earlier, one domain at a time: the batch's rollback must leave it.
    let kept = json!({ "domain": "kept.example.com", "answer": "10.0.0.9" });
    change(&dns, "dns.sinkhole_domain", kept.clone(), true).await;

    let mut domains: Vec<String> = (0..500).map(|i| format!("d{i}.example.com")).collect();
    domains.extend(
        [
            "phish.example.com",
            "www.example.com",
            "kept.example.com",
            "PHISH.example.com.",
        ]
        .map(String::from),
    );
    let batch = json!({ "domains": domains, "answer": "10.1.2.3", "ttl": 60 });
    let before = state(&dns, "dns.sinkhole_many", &batch).await;
    let diff = before["absent"].as_array().expect("absent").clone();
    assert_eq!(diff.len(), 502, "what is not sinkholed yet, once each");
    assert!(!diff.contains(&json!("kept.example.com")));

    let out = change(&dns, "dns.sinkhole_many", batch.clone(), true).await;
    assert_eq!(out["added"], 502);
    for name in [
        "phish.example.com",
        "www.phish.example.com",
        "d499.example.com",
    ] {
        assert_eq!(a(&sb, name), [ip("10.1.2.3")], "{name} is sinkholed");
    }
    assert_eq!(
        a(&sb, "kept.example.com"),
        [ip("10.0.0.9")],
        "left as it was"
    );
    let after = state(&dns, "dns.sinkhole_many", &batch).await;
    assert_eq!(after, json!({ "absent": [] }));
    change(&dns, "dns.sinkhole_many", batch.clone(), false).await;

    // Drift: someone releases one domain; the batch's state shows it.
    change(
        &dns,
        "dns.unsinkhole_domain",
        json!({ "domain": "d3.example.com" }),
        true,
    )
    .await;
    assert_eq!(
        state(&dns, "dns.sinkhole_many", &batch).await,
        json!({ "absent": ["d3.example.com"] })
    );
    change(
        &dns,
        "dns.sinkhole_domain",
        json!({ "domain": "d3.example.com", "answer": "10.1.2.3" }),
        true,
    )
    .await;

    // The catalog's inverse releases exactly the diff.
    let (undo, with) = inverse("dns.sinkhole_many", &batch, &before);
    assert_eq!(undo, "dns.unsinkhole_many");
    let out = change(&dns, &undo, with.clone(), true).await;
    assert_eq!(out["removed"], 502);
    assert_eq!(a(&sb, "phish.example.com"), [ip("192.0.2.66")]);
    assert_eq!(a(&sb, "www.example.com"), [ip("192.0.2.10")]);
    assert_eq!(
        a(&sb, "kept.example.com"),
        [ip("10.0.0.9")],
        "still sinkholed"
    );
    assert_eq!(state(&dns, "dns.sinkhole_many", &batch).await, before);
    change(&dns, &undo, with, false).await;

    // A release undone puts back each sinkhole as it was (its own mode and answer).
    change(
        &dns,
        "dns.sinkhole_domain",
        json!({ "domain": "nx.example.com", "mode": "nxdomain" }),
        true,
    )
    .await;
    let release = json!({ "domains": ["kept.example.com", "nx.example.com", "phish.example.com"] });
    let held = state(&dns, "dns.unsinkhole_many", &release).await;
    assert_eq!(
        held,
        json!({
            "present": ["kept.example.com", "nx.example.com"],
            "modes": ["redirect", "nxdomain"],
            "answers": ["10.0.0.9", null],
        })
    );
    change(&dns, "dns.unsinkhole_many", release.clone(), true).await;
    let released = sb.query("kept.example.com", false).expect("query");
    assert!(released.addrs.is_empty(), "released: {released:?}");
    let (undo, with) = inverse("dns.unsinkhole_many", &release, &held);
    assert_eq!(undo, "dns.sinkhole_many");
    change(&dns, &undo, with, true).await;
    assert_eq!(state(&dns, "dns.unsinkhole_many", &release).await, held);
    assert_eq!(a(&sb, "kept.example.com"), [ip("10.0.0.9")]);
    assert_eq!(sb.query("nx.example.com", false).expect("query").rcode, 3);

    // A domain with a zone of Unbound's own configuration refuses the whole batch.
    refused(
        &dns,
        "dns.sinkhole_many",
        json!({ "domains": ["d1.example.com", "example.com"], "answer": "10.1.2.3" }),
        "another type",
    )
    .await;
    assert_eq!(
        state(
            &dns,
            "dns.sinkhole_many",
            &json!({ "domains": ["d1.example.com"] })
        )
        .await,
        json!({ "absent": ["d1.example.com"] })
    );
}
