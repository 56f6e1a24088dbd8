//! `proxy.*` against a real Squid (`squid::Sandbox`): requests through the proxy show each change.

use belay_connectors::native::squid::{Sandbox, Squid};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

mod common;
use common::{change, inverse, invoke, refused, state};

/// Starts a sandbox, or says why not and returns None (fails under BELAY_REQUIRE_NATIVE=1).
async fn sandbox() -> Option<(Sandbox, Squid)> {
    if !common::usable("Squid", Sandbox::available()) {
        return None;
    }
    let sb = Sandbox::start().await.expect("squid sandbox");
    let squid = Squid::new("proxy", sb.config()).expect("connector");
    Some((sb, squid))
}

/// `proxy.status` of `address` (with the fields beyond the catalog's).
async fn status(squid: &Squid, address: &str) -> Value {
    invoke(squid, "proxy.status", json!({ "address": address }))
        .await
        .expect("status")
}

fn client(sb: &Sandbox) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(sb.proxy_url()).expect("proxy url"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// Polls a URL through the proxy until it answers `want` (Squid reconfigures asynchronously).
async fn expect_status(sb: &Sandbox, client: &reqwest::Client, url: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match client.get(url).send().await {
            Ok(r) if r.status().as_u16() == want => return,
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = format!("error {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(sb.access_log()).unwrap_or_default();
    panic!("{url} did not answer {want} through the proxy (last: {last}); access log:\n{log}");
}

#[tokio::test]
async fn block_domain_then_roll_back() {
    let Some((sb, squid)) = sandbox().await else {
        return;
    };
    let http = client(&sb);
    let url = sb.url("origin.belay.test");
    expect_status(&sb, &http, &url, 200).await;

    let input = json!({"address": "origin.belay.test", "list": "belay"});
    let before = state(&squid, "proxy.block", &input).await;
    assert_eq!(before, json!({"list": "belay", "blocked": false}));
    change(&squid, "proxy.block", input.clone(), true).await;
    assert_eq!(
        state(&squid, "proxy.block", &input).await,
        json!({"list": "belay", "blocked": true})
    );
    expect_status(&sb, &http, &url, 403).await;
    // A subdomain of a blocked domain is blocked; another domain is not.
    let status = status(&squid, "http://www.origin.belay.test/login?x=1").await;
    assert_eq!(status["blocked"], json!(true));
    assert_eq!(status["matched"], json!(".origin.belay.test"));
    expect_status(&sb, &http, &sb.url("other.belay.test"), 200).await;

    // A repeated block is a no-op.
    change(&squid, "proxy.block", input.clone(), false).await;

    // Roll back with the catalog's inverse.
    change(&squid, "proxy.unblock", input.clone(), true).await;
    assert_eq!(state(&squid, "proxy.unblock", &input).await, before);
    expect_status(&sb, &http, &url, 200).await;
    change(&squid, "proxy.unblock", input, false).await;
}

#[tokio::test]
async fn block_ip_address() {
    let Some((sb, squid)) = sandbox().await else {
        return;
    };
    let http = client(&sb);
    expect_status(&sb, &http, &sb.ip_url(), 200).await;
    let input = json!({"address": "127.0.0.2"});
    change(&squid, "proxy.block", input.clone(), true).await;
    expect_status(&sb, &http, &sb.ip_url(), 403).await;
    expect_status(&sb, &http, &sb.url("origin.belay.test"), 200).await;
    invoke(&squid, "proxy.unblock", input)
        .await
        .expect("unblock");
    expect_status(&sb, &http, &sb.ip_url(), 200).await;
}

/// How many times Squid has reconfigured (its cache.log says so each time).
fn reconfigures(sb: &Sandbox) -> usize {
    std::fs::read_to_string(sb.access_log().with_file_name("cache.log"))
        .unwrap_or_default()
        .matches("Reconfiguring Squid Cache")
        .count()
}

#[tokio::test]
async fn a_batch_is_one_reconfigure_and_rolls_back_exactly() {
    let Some((sb, squid)) = sandbox().await else {
        return;
    };
    let http = client(&sb);
    // An entry blocked earlier, one at a time: the batch's rollback must leave it.
    let kept = json!({"address": "kept.example"});
    change(&squid, "proxy.block", kept.clone(), true).await;
    let acl = sb.config().acl_dir;
    let files_before: Vec<String> = ["block-belay.domains", "block-belay.ips"]
        .iter()
        .map(|f| std::fs::read_to_string(acl.join(f)).unwrap_or_default())
        .collect();

    let mut addresses: Vec<String> = (0..1500)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
        .collect();
    addresses.extend(
        [
            "origin.belay.test",
            "127.0.0.2",
            "kept.example",
            "Origin.Belay.Test",
            "203.0.113.0/24",
        ]
        .map(String::from),
    );
    let batch = json!({"addresses": addresses, "list": "belay"});
    let before = state(&squid, "proxy.block_many", &batch).await;
    let diff = before["absent"].as_array().expect("absent").clone();
    assert_eq!(
        diff.len(),
        1503,
        "what the list lacks, once each: {}",
        diff.len()
    );
    assert!(!diff.contains(&json!("kept.example")));

    let reconf = reconfigures(&sb);
    let out = change(&squid, "proxy.block_many", batch.clone(), true).await;
    assert_eq!(out["added"], 1503);
    expect_status(&sb, &http, &sb.url("origin.belay.test"), 403).await;
    expect_status(&sb, &http, &sb.ip_url(), 403).await;
    expect_status(&sb, &http, &sb.url("other.belay.test"), 200).await;
    assert_eq!(
        reconfigures(&sb),
        reconf + 1,
        "one reconfigure for the batch"
    );
    let after = state(&squid, "proxy.block_many", &batch).await;
    assert_eq!(after, json!({"list": "belay", "absent": []}));
    change(&squid, "proxy.block_many", batch.clone(), false).await;

    // Drift: someone unblocks one entry; the batch's state shows it.
    change(
        &squid,
        "proxy.unblock",
        json!({"address": "198.18.0.1"}),
        true,
    )
    .await;
    assert_eq!(
        state(&squid, "proxy.block_many", &batch).await["absent"],
        json!(["198.18.0.1"])
    );
    change(
        &squid,
        "proxy.block",
        json!({"address": "198.18.0.1"}),
        true,
    )
    .await;

    // The catalog's inverse removes exactly the diff; the earlier entry stays.
    let (undo, with) = inverse("proxy.block_many", &batch, &before);
    assert_eq!(undo, "proxy.unblock_many");
    let reconf = reconfigures(&sb);
    let out = change(&squid, &undo, with.clone(), true).await;
    assert_eq!(out["removed"], 1503);
    assert_eq!(reconfigures(&sb), reconf + 1);
    expect_status(&sb, &http, &sb.url("origin.belay.test"), 200).await;
    expect_status(&sb, &http, &sb.ip_url(), 200).await;
    assert_eq!(state(&squid, "proxy.block_many", &batch).await, before);
    let files_after: Vec<String> = ["block-belay.domains", "block-belay.ips"]
        .iter()
        .map(|f| std::fs::read_to_string(acl.join(f)).unwrap_or_default())
        .collect();
    assert_eq!(
        files_after, files_before,
        "the ACL files are back byte for byte"
    );
    assert_eq!(
        state(&squid, "proxy.block", &kept).await["blocked"],
        json!(true)
    );
    change(&squid, &undo, with, false).await;

    // One bad entry refuses the whole batch before anything is written.
    refused(
        &squid,
        "proxy.block_many",
        json!({"addresses": ["evil.example", "http://evil.example/x"]}),
        "give the URL's domain",
    )
    .await;
    assert_eq!(
        state(&squid, "proxy.block", &json!({"address": "evil.example"})).await["blocked"],
        json!(false)
    );
}

#[tokio::test]
async fn tightened_destination_is_logged_separately() {
    let Some((sb, squid)) = sandbox().await else {
        return;
    };
    let http = client(&sb);
    let input = json!({"address": "other.belay.test", "logging": "full", "pcap": true});
    let before = state(&squid, "proxy.tighten_policy", &input).await;
    assert_eq!(
        before,
        json!({"policy": "default", "logging": "standard", "pcap": false})
    );
    change(&squid, "proxy.tighten_policy", input.clone(), true).await;
    assert_eq!(
        state(&squid, "proxy.tighten_policy", &input).await,
        json!({"policy": "tightened", "logging": "full", "pcap": true})
    );
    change(&squid, "proxy.tighten_policy", input.clone(), false).await;

    // Requests to the monitored name reach the monitor log (with headers); others do not.
    let url = sb.url("other.belay.test");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = http.get(&url).header("X-Belay-Probe", "1").send().await;
        let _ = http.get(sb.url("origin.belay.test")).send().await;
        let log = std::fs::read_to_string(sb.monitor_log()).unwrap_or_default();
        if log.contains("http://other.belay.test") {
            assert!(
                log.to_ascii_lowercase().contains("x-belay-probe"),
                "full logging has headers: {log}"
            );
            assert!(
                !log.contains("origin.belay.test"),
                "only monitored names: {log}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no monitor log entry: {log:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Roll back with the catalog's inverse (it carries logging and pcap along).
    change(&squid, "proxy.relax_policy", input.clone(), true).await;
    assert_eq!(state(&squid, "proxy.relax_policy", &input).await, before);
    let status = status(&squid, "other.belay.test").await;
    assert_eq!(status["policy"], json!("default"));
    assert_eq!(status["blocked"], json!(false));
    // After the reconfigure, new requests are no longer monitored.
    tokio::time::sleep(Duration::from_millis(500)).await;
    expect_status(&sb, &http, &url, 200).await;
    let lines = std::fs::read_to_string(sb.monitor_log())
        .unwrap_or_default()
        .lines()
        .count();
    for _ in 0..3 {
        expect_status(&sb, &http, &url, 200).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = std::fs::read_to_string(sb.monitor_log())
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(lines, after, "relaxed destination still logged");
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let Some((sb, squid)) = sandbox().await else {
        return;
    };
    let acl = sb.config().acl_dir;
    let snapshot = || {
        let mut v: Vec<(String, String)> = std::fs::read_dir(&acl)
            .expect("acl dir")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot();
    for (action, input) in [
        ("proxy.block", json!({"address": "evil..example"})),
        ("proxy.block", json!({"address": "bad_domain$.example"})),
        ("proxy.block", json!({"address": "1.2.3.999"})),
        ("proxy.block", json!({"address": "10.0.0.0/40"})),
        ("proxy.block", json!({"address": "http://evil.example/x"})),
        (
            "proxy.block",
            json!({"address": "evil.example", "list": "nope"}),
        ),
        (
            "proxy.tighten_policy",
            json!({"address": "evil.example", "duration": "1h"}),
        ),
    ] {
        refused(&squid, action, input, "").await;
    }
    assert_eq!(snapshot(), before, "a refused change touches no file");
    // Squid still serves.
    expect_status(&sb, &client(&sb), &sb.url("origin.belay.test"), 200).await;
}

#[tokio::test]
async fn squid_rejects_a_bad_file_before_it_reaches_the_proxy() {
    let Some((sb, squid)) = sandbox().await else {
        return;
    };
    let http = client(&sb);
    // Someone left a line Squid cannot parse in the list: the next change must not apply it.
    let ips = sb.config().acl_dir.join("block-belay.ips");
    std::fs::write(&ips, "not-an-address..[\n").expect("write");
    refused(
        &squid,
        "proxy.block",
        json!({"address": "127.0.0.2"}),
        "squid rejects",
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&ips).expect("read"),
        "not-an-address..[\n",
        "the list is untouched"
    );
    // The running proxy never saw it and still serves.
    expect_status(&sb, &http, &sb.ip_url(), 200).await;
}

#[test]
fn built_from_configuration() {
    let settings = r#"
        config = "/etc/squid/squid.conf"
        acl_dir = "/etc/squid/belay"
        lists = ["belay", "intel"]
    "#;
    let c = common::build("proxy", "squid", settings).expect("squid connector");
    assert_eq!(c.family(), "proxy");
    let err = common::build(
        "proxy",
        "squid",
        "config = \"/x\"\nacl_dir = \"/y\"\nport = 3",
    )
    .err()
    .expect("unknown keys are refused");
    assert!(err.message.contains("port"), "{}", err.message);
}
