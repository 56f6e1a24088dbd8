//! The generic HTTP connector against the in-process lab: every action family round-trips
//! (apply, read the state, undo), transient faults are retried without applying a change twice,
//! the circuit breaker opens and closes, the allow-list holds, and no secret leaks.

use belay_connectors::http::spec::Spec;
use belay_connectors::http::{Auth, HttpSettings};
use belay_connectors::{ActionError, Call, Connector, ErrorKind, Http, Secret};
use belay_lab::{Lab, LabConfig, LabHandle};
use belay_playbook::Catalog;
use serde_json::{Value, json};
use std::time::Duration;

async fn lab(config: LabConfig) -> LabHandle {
    Lab::start(config).await.expect("the lab starts")
}

fn settings(lab: &LabHandle) -> HttpSettings {
    HttpSettings {
        auth: Auth::Bearer(Secret::new(lab.token.clone())),
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(50),
        ..HttpSettings::new(lab.base_url.clone())
    }
}

/// A lab failing `fault_rate` of its requests (5xx, 429 with no wait, stalls of `stall`), its
/// faults drawn from `seed`; and client settings for it with `retries` retries of attempts that
/// time out after `timeout`.
async fn faulty_lab(
    fault_rate: f64,
    seed: u64,
    stall: Duration,
    retries: u32,
    timeout: Duration,
) -> (LabHandle, HttpSettings) {
    let lab = lab(LabConfig {
        fault_rate,
        seed,
        retry_after: 0,
        stall,
        ..LabConfig::default()
    })
    .await;
    let s = HttpSettings {
        retries,
        timeout,
        ..settings(&lab)
    };
    (lab, s)
}

fn connector(spec: &str, settings: HttpSettings) -> Http {
    let spec = Spec::builtin(spec)
        .expect("a builtin spec")
        .expect("it loads");
    Http::new(spec.name.clone().as_str(), spec, settings).expect("the connector builds")
}

async fn call(
    c: &Http,
    action: &str,
    input: Value,
    key: Option<&str>,
) -> Result<Value, ActionError> {
    c.call(Call {
        action,
        input: &input,
        idempotency_key: key,
        before: None,
    })
    .await
}

/// A call without an idempotency key that must succeed: its output.
async fn read(c: &Http, action: &str, input: Value) -> Value {
    call(c, action, input, None)
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

/// A call without an idempotency key that must fail: its error.
async fn fails(c: &Http, action: &str, input: Value) -> ActionError {
    match call(c, action, input, None).await {
        Ok(out) => panic!("{action} succeeded: {out}"),
        Err(e) => e,
    }
}

async fn lab_state(lab: &LabHandle) -> Value {
    belay_testkit::lab::state(&lab.base_url, &lab.token).await
}

/// Applies a change, checks the state moved, applies the catalog's inverse, checks it is back.
async fn round_trip(c: &Http, action: &str, input: Value) -> Value {
    let catalog = Catalog::builtin();
    let spec = catalog.get(action).expect("a catalog action");
    let before = c.read_state(action, &input).await.expect("state before");
    assert!(!before.is_null(), "{action} has a state");
    let out = call(c, action, input.clone(), Some(&format!("rt/{action}")))
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    let after = c.read_state(action, &input).await.expect("state after");
    assert_ne!(before, after, "{action} changed its target");
    let inverse = spec
        .inverse
        .as_ref()
        .expect("an inverse")
        .resolve(&input, &before);
    let inv_action = inverse["action"].as_str().unwrap();
    call(
        c,
        inv_action,
        inverse["with"].clone(),
        Some(&format!("rt/{inv_action}")),
    )
    .await
    .unwrap_or_else(|e| panic!("{inv_action}: {e}"));
    let restored = c.read_state(action, &input).await.expect("state restored");
    assert_eq!(restored, before, "{inv_action} undid {action}");
    out
}

#[test]
fn every_builtin_spec_loads_and_maps_every_action_of_its_family() {
    let catalog = Catalog::builtin();
    for (name, text) in belay_connectors::http::spec::BUILTIN {
        let spec = Spec::parse(name, text, &catalog).unwrap_or_else(|e| panic!("{e}"));
        let mapped: Vec<&str> = spec.actions().collect();
        for a in catalog.iter() {
            if a.name.starts_with(&format!("{}.", spec.family)) {
                assert!(mapped.contains(&a.name.as_str()), "{name} maps {}", a.name);
            }
        }
    }
}

#[test]
fn spec_errors_name_the_line_and_the_problem() {
    let catalog = Catalog::builtin();
    let bad_input = "name: t\nfamily: edr\nactions:\n  edr.status:\n    request:\n      method: GET\n      path: /d/${{ input.hots }}\n";
    let e = Spec::parse("t.yaml", bad_input, &catalog)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.yaml:7:"), "{e}");
    assert!(e.contains("`input.hots` is not an input"), "{e}");
    let unknown =
        "name: t\nfamily: edr\nactions:\n  edr.isolate:\n    request: { method: GET, path: /x }\n";
    let e = Spec::parse("t.yaml", unknown, &catalog)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown action `edr.isolate`"), "{e}");
    let no_state = "name: t\nfamily: edr\nactions:\n  edr.isolate_host:\n    request: { method: POST, path: /x }\n";
    let e = Spec::parse("t.yaml", no_state, &catalog)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs `state:`"), "{e}");
    let auth_header = "name: t\nfamily: edr\nactions:\n  edr.status:\n    request:\n      method: GET\n      path: /x\n      headers: { Authorization: x }\n";
    let e = Spec::parse("t.yaml", auth_header, &catalog)
        .unwrap_err()
        .to_string();
    assert!(e.contains("set by the connector"), "{e}");
}

#[tokio::test]
async fn edr_actions_round_trip_through_the_lab() {
    let lab = lab(LabConfig::default()).await;
    let edr = connector("edr-lab", settings(&lab));
    let st = read(&edr, "edr.status", json!({ "host": "fin-cfo-lt01" })).await;
    assert_eq!(st["known"], json!(true));
    assert_eq!(st["monitoring"], json!("normal"));
    assert_eq!(st["monitoring_override"], json!(false));
    let unknown = read(&edr, "edr.status", json!({ "host": "no-such-host" })).await;
    assert_eq!(unknown, json!({ "host": "no-such-host", "known": false }));

    let out = round_trip(
        &edr,
        "edr.set_monitoring",
        json!({ "host": "fin-cfo-lt01", "level": "high", "reason": "incident" }),
    )
    .await;
    assert_eq!(out["previous"], json!("normal"));
    round_trip(&edr, "edr.isolate_host", json!({ "host": "eng-ws-101" })).await;

    let scan = read(&edr, "edr.scan", json!({ "host": "eng-ws-101" })).await;
    assert_eq!(scan["status"], json!("completed"));
    assert_eq!(scan["compromised"], json!(true));
    assert!(scan["detections"].as_array().is_some_and(|d| !d.is_empty()));
    let queued = read(
        &edr,
        "edr.scan",
        json!({ "host": "eng-ws-101", "wait": false }),
    )
    .await;
    assert_eq!(queued["status"], json!("running"));
    assert!(queued.get("verdict").is_none(), "no verdict yet: {queued}");
    let result = read(
        &edr,
        "edr.scan_result",
        json!({ "scan_id": queued["scan_id"] }),
    )
    .await;
    assert_eq!(result["scan_id"], queued["scan_id"]);

    let ind = scan["indicators"].clone();
    let hits = read(
        &edr,
        "edr.search_ioc",
        json!({ "indicators": ind, "exclude": ["eng-ws-101"], "since": "7d" }),
    )
    .await;
    assert_eq!(hits["count"], json!(1), "{hits}");
    assert_eq!(hits["hosts"][0]["host"], json!("eng-ws-102"));
    assert_eq!(hits["searched"], json!(28));

    let before = edr
        .read_state("edr.capture_memory", &json!({ "host": "fin-cfo-lt01" }))
        .await
        .unwrap();
    let mem = call(
        &edr,
        "edr.capture_memory",
        json!({ "host": "fin-cfo-lt01", "case": "IR-1" }),
        Some("cap-1"),
    )
    .await
    .unwrap();
    assert!(mem["sha256"].as_str().is_some_and(|s| s.len() == 64));
    let after = edr
        .read_state("edr.capture_memory", &json!({ "host": "fin-cfo-lt01" }))
        .await
        .unwrap();
    assert_eq!(before["captures"], json!([]));
    assert_eq!(after["captures"], json!([mem["evidence_id"]]));

    let e = fails(&edr, "edr.isolate_host", json!({ "host": "prn-floor2" })).await;
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert!(e.message.contains("no EDR agent"), "{e}");
}

#[tokio::test]
async fn siem_training_proxy_and_pcap_actions_round_trip() {
    let lab = lab(LabConfig::default()).await;
    let siem = connector("siem-lab", settings(&lab));
    round_trip(
        &siem,
        "siem.watch_user",
        json!({ "user": "jsmith", "reason": "phish click", "duration": "30d" }),
    )
    .await;
    let st = read(&siem, "siem.watch_status", json!({ "user": "jsmith" })).await;
    assert_eq!(st["watched"], json!(false));
    let alert = call(
        &siem,
        "siem.alert",
        json!({ "entity": "jsmith", "title": "Phish clicked", "observables": ["198.51.100.23"] }),
        Some("a-1"),
    )
    .await
    .unwrap();
    assert!(alert["alert_id"].as_str().is_some());

    let training = connector("training-lab", settings(&lab));
    let out = round_trip(
        &training,
        "training.enroll_user",
        json!({ "user": "jsmith", "module": "data-handling-101", "due": "2026-12-31" }),
    )
    .await;
    assert_eq!(out["changed"], json!(true));
    let st = read(
        &training,
        "training.status",
        json!({ "user": "jsmith", "module": "data-handling-101" }),
    )
    .await;
    assert_eq!(st["enrolled"], json!(false));
    let e = fails(
        &training,
        "training.enroll_user",
        json!({ "user": "jsmith", "module": "nope" }),
    )
    .await;
    assert!(
        e.message.contains("422") && e.message.contains("unknown module"),
        "{e}"
    );

    let proxy = connector("proxy-lab", settings(&lab));
    for (action, input) in [
        (
            "proxy.block",
            json!({ "address": "badcdn.example", "reason": "C2" }),
        ),
        (
            "proxy.tighten_policy",
            json!({ "address": "10.20.1.15", "logging": "full", "pcap": true }),
        ),
    ] {
        round_trip(&proxy, action, input).await;
    }
    let st = read(
        &proxy,
        "proxy.status",
        json!({ "address": "https://login-microsoftonline.example/x" }),
    )
    .await;
    assert_eq!(st["category"], json!("phishing"));
    assert_eq!(st["blocked"], json!(false));

    let pcap = connector("pcap-lab", settings(&lab));
    let out = round_trip(
        &pcap,
        "pcap.start",
        json!({ "host": "fin-cfo-lt01", "duration": "15m", "case": "IR-1" }),
    )
    .await;
    let st = read(&pcap, "pcap.status", json!({ "host": "fin-cfo-lt01" })).await;
    assert_eq!(st["capturing"], json!(false));
    assert_eq!(st["captures"][0]["capture_id"], out["capture_id"]);
}

#[tokio::test]
async fn cmdb_lookup_and_takedown_submission() {
    let lab = lab(LabConfig::default()).await;
    let cmdb = connector("cmdb-lab", settings(&lab));
    let cfo = read(&cmdb, "cmdb.lookup_device", json!({ "ip": "10.20.1.15" })).await;
    assert_eq!(cfo["high_profile"], json!(true));
    assert_eq!(cfo["owner"], json!("mdubois"));
    assert_eq!(cfo["class"], json!("laptop"));
    let none = read(
        &cmdb,
        "cmdb.lookup_device",
        json!({ "mac": "00:00:5e:00:53:01" }),
    )
    .await;
    assert_eq!(none, json!({ "known": false }));

    let td = connector("takedown-lab", settings(&lab));
    let input = json!({ "url": "https://login-microsoftonline.example/owa", "evidence": "Received: ...", "case": "phish-1" });
    let before = td.read_state("takedown.submit", &input).await.unwrap();
    let t = call(&td, "takedown.submit", input.clone(), Some("td-1"))
        .await
        .unwrap();
    // The engine retrying with the same key gets the same ticket, not a second one.
    let t2 = call(&td, "takedown.submit", input.clone(), Some("td-1"))
        .await
        .unwrap();
    assert_eq!(t["ticket_id"], t2["ticket_id"]);
    let after = td.read_state("takedown.submit", &input).await.unwrap();
    assert_eq!(before["tickets"], json!([]));
    assert_eq!(after["tickets"], json!([t["ticket_id"]]));
    let st = read(
        &td,
        "takedown.status",
        json!({ "ticket_id": t["ticket_id"] }),
    )
    .await;
    assert_eq!(st["status"], json!("submitted"));
}

#[tokio::test]
async fn list_reads_follow_every_page() {
    let lab = lab(LabConfig::default()).await;
    let text = r#"
name: cmdb-all
family: cmdb
actions:
  cmdb.lookup_device:
    request:
      method: GET
      path: /cmdb/v1/devices
      query: { limit: 7 }
    paginate: { items: /data, next_url: /links/next }
    outputs:
      known: true
      hostname: ${{ response.data | map(attribute='hostname') | join(',') }}
"#;
    let spec = Spec::parse("cmdb-all.yaml", text, &Catalog::builtin()).unwrap();
    let c = Http::new("cmdb-all", spec, settings(&lab)).unwrap();
    let out = read(&c, "cmdb.lookup_device", json!({})).await;
    let hosts: Vec<&str> = out["hostname"].as_str().unwrap().split(',').collect();
    assert_eq!(hosts.len(), 30, "all 5 pages of 7");
    assert!(
        hosts.contains(&"fin-cfo-lt01") && hosts.contains(&"eng-lt-030"),
        "{hosts:?}"
    );
}

#[tokio::test]
async fn a_next_page_link_to_another_host_is_refused() {
    let lab = lab(LabConfig::default()).await;
    // The connector knows the lab as `localhost`; its next links say 127.0.0.1.
    let text = r#"
name: cmdb-all
family: cmdb
actions:
  cmdb.lookup_device:
    request: { method: GET, path: /cmdb/v1/devices, query: { limit: 7 } }
    paginate: { items: /data, next_url: /links/next }
"#;
    let spec = Spec::parse("cmdb-all.yaml", text, &Catalog::builtin()).unwrap();
    let mut s = settings(&lab);
    s.base_url = format!("http://localhost:{}", lab.addr.port());
    let c = Http::new("cmdb-all", spec, s).unwrap();
    let e = fails(&c, "cmdb.lookup_device", json!({})).await;
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert!(
        e.message.contains("refused to call `http://127.0.0.1`"),
        "{e}"
    );

    // And a base URL outside an explicit allow-list is a configuration error.
    let mut s = settings(&lab);
    s.allow_hosts = vec!["api.edr.example".into()];
    let spec = Spec::builtin("edr-lab").unwrap().unwrap();
    let e = Http::new("edr", spec, s).unwrap_err();
    assert!(e.to_string().contains("not in allow_hosts"), "{e}");
}

#[tokio::test]
async fn transient_faults_are_retried_and_permanent_ones_are_not() {
    let (lab, s) = faulty_lab(
        0.6,
        7,
        Duration::from_secs(3),
        25,
        Duration::from_millis(400),
    )
    .await;
    let siem = connector("siem-lab", s);
    for i in 0..10 {
        let out = call(
            &siem,
            "siem.alert",
            json!({ "entity": format!("user{i}"), "title": "t" }),
            Some(&format!("alert-{i}")),
        )
        .await
        .unwrap_or_else(|e| panic!("alert {i}: {e}"));
        assert!(out["alert_id"].is_string());
    }
    let state = lab_state(&lab).await;
    assert_eq!(
        state["siem"]["alerts"].as_array().unwrap().len(),
        10,
        "each alert raised once: {state}"
    );
    lab.set_fault_rate(0.0);
    let e = fails(
        &siem,
        "siem.alert",
        json!({ "entity": "x", "title": "t", "severity": "apocalyptic" }),
    )
    .await;
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert!(!e.message.contains("attempts"), "a 422 is not retried: {e}");
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_closes_after_a_good_trial() {
    let (lab, mut s) = faulty_lab(
        1.0,
        LabConfig::default().seed,
        Duration::from_secs(2),
        0,
        Duration::from_millis(300),
    )
    .await;
    s.breaker_failures = 3;
    s.breaker_cooldown = Duration::from_secs(2);
    let edr = connector("edr-lab", s);
    let host = json!({ "host": "fin-cfo-lt01" });
    for _ in 0..3 {
        let e = fails(&edr, "edr.status", host.clone()).await;
        assert_eq!(e.kind, ErrorKind::Transient);
        assert!(!e.message.contains("circuit open"), "{e}");
    }
    // Healthy again, but the circuit is open: no request goes out until the cool-down ends.
    lab.set_fault_rate(0.0);
    let e = fails(&edr, "edr.status", host.clone()).await;
    assert_eq!(e.kind, ErrorKind::Transient);
    assert!(e.message.contains("circuit open"), "{e}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ok = read(&edr, "edr.status", host.clone()).await;
    assert_eq!(ok["known"], json!(true));
    call(&edr, "edr.status", host, None)
        .await
        .expect("closed again");
}

#[tokio::test]
async fn oauth2_basic_and_api_key_auth_work_and_a_wrong_secret_is_a_permanent_error() {
    let lab = lab(LabConfig::default()).await;
    let cases = [
        Auth::OAuth2 {
            token_url: format!("{}/oauth/token", lab.base_url),
            client_id: "belay".into(),
            client_secret: Secret::new(lab.token.clone()),
            scope: None,
        },
        Auth::Basic {
            username: "belay".into(),
            password: Secret::new(lab.token.clone()),
        },
        Auth::ApiKey {
            header: "X-Api-Key".into(),
            key: Secret::new(lab.token.clone()),
        },
    ];
    for auth in cases {
        let mut s = settings(&lab);
        s.auth = auth;
        let c = connector("cmdb-lab", s);
        for _ in 0..2 {
            let out = read(&c, "cmdb.lookup_device", json!({ "hostname": "srv-db-01" })).await;
            assert_eq!(out["criticality"], json!("high"));
        }
    }
    let mut s = settings(&lab);
    s.auth = Auth::Bearer(Secret::new("wrong"));
    let c = connector("cmdb-lab", s);
    let e = fails(&c, "cmdb.lookup_device", json!({ "hostname": "srv-db-01" })).await;
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert!(e.message.contains("401"), "{e}");
}

/// The "Done when" fault check: with 20% injected 5xx, 429 and stalls, every change lands,
/// exactly once (checked against the simulators' own state), and so does every undo.
#[tokio::test]
async fn with_20_percent_faults_every_change_is_applied_exactly_once() {
    let (lab, mut s) = faulty_lab(
        0.2,
        2026,
        Duration::from_secs(2),
        10,
        Duration::from_millis(500),
    )
    .await;
    s.breaker_failures = 0;
    let edr = connector("edr-lab", s.clone());
    let siem = connector("siem-lab", s.clone());
    let training = connector("training-lab", s.clone());
    let takedown = connector("takedown-lab", s.clone());
    let proxy = connector("proxy-lab", s.clone());
    let pcap = connector("pcap-lab", s);
    let hosts: Vec<String> = (11..21)
        .map(|n| {
            let dept = ["sal", "mar", "sup", "eng"][(n - 11) % 4];
            format!("{dept}-lt-{n:03}")
        })
        .collect();
    let mut keys = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let k = |a: &str| format!("run-1/{a}-{i}");
        let calls: Vec<(&Http, &str, Value, String)> = vec![
            (&edr, "edr.isolate_host", json!({ "host": host }), k("iso")),
            (
                &siem,
                "siem.alert",
                json!({ "entity": host, "title": "isolated" }),
                k("alert"),
            ),
            (
                &siem,
                "siem.watch_user",
                json!({ "user": format!("user{}", 11 + i) }),
                k("watch"),
            ),
            (
                &training,
                "training.enroll_user",
                json!({ "user": format!("user{}", 11 + i), "module": "phishing-awareness-201" }),
                k("enroll"),
            ),
            (
                &takedown,
                "takedown.submit",
                json!({ "url": format!("https://phish{i}.example/login"), "evidence": "msg" }),
                k("td"),
            ),
            (
                &proxy,
                "proxy.block",
                json!({ "address": format!("phish{i}.example") }),
                k("block"),
            ),
            (
                &pcap,
                "pcap.start",
                json!({ "host": host, "duration": "1h" }),
                k("pcap"),
            ),
        ];
        for (c, action, input, key) in calls {
            call(c, action, input, Some(&key))
                .await
                .unwrap_or_else(|e| panic!("{action} {key}: {e}"));
            keys.push(key);
        }
    }
    let state = lab_state(&lab).await;
    for k in &keys {
        assert_eq!(
            state["idempotency"][k]["applied"],
            json!(1),
            "{k} applied once"
        );
    }
    assert_eq!(
        state["unkeyed"],
        json!({}),
        "no change went without its key"
    );
    for applied in [
        "/edr/isolated",
        "/siem/alerts",
        "/siem/watchlists/belay",
        "/training/enrollments",
        "/takedown/tickets",
        "/proxy/lists/belay",
        "/pcap/captures",
    ] {
        let n = state
            .pointer(applied)
            .and_then(Value::as_array)
            .map(Vec::len);
        assert_eq!(n, Some(10), "{applied}");
    }
    let replays: u64 = keys
        .iter()
        .map(|k| state["idempotency"][k]["replayed"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        replays > 0,
        "some answers were lost and replayed by key (the test exercised the hard case)"
    );

    // Undo the isolations under the same faults: every host released once.
    for (i, host) in hosts.iter().enumerate() {
        call(
            &edr,
            "edr.release_host",
            json!({ "host": host }),
            Some(&format!("rollback-1/{i}")),
        )
        .await
        .unwrap_or_else(|e| panic!("release {host}: {e}"));
    }
    let state = lab_state(&lab).await;
    assert_eq!(state["edr"]["isolated"], json!([]));
}
