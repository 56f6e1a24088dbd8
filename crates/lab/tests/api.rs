//! The simulators' APIs behave like real products: authentication, validation, 404s,
//! pagination, idempotency keys and injected faults.

use belay_lab::{Lab, LabConfig, LabHandle};
use belay_testkit::cli::assert_text_contains;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn lab(config: LabConfig) -> (LabHandle, reqwest::Client) {
    let c = belay_testkit::lab::client();
    let h = Lab::start(config).await.expect("the lab starts");
    (h, c)
}

async fn default_lab() -> (LabHandle, reqwest::Client) {
    lab(LabConfig::default()).await
}

async fn send(
    c: &reqwest::Client,
    h: &LabHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (u16, Value) {
    belay_testkit::lab::send(c, &h.base_url, &h.token, method, path, body, key).await
}

async fn get(c: &reqwest::Client, h: &LabHandle, path: &str) -> (u16, Value) {
    send(c, h, Method::GET, path, None, None).await
}

async fn post(c: &reqwest::Client, h: &LabHandle, path: &str, body: Value) -> (u16, Value) {
    send(c, h, Method::POST, path, Some(body), None).await
}

/// Sends each request (without an idempotency key) and checks the status it gets.
async fn expect_statuses(
    c: &reqwest::Client,
    h: &LabHandle,
    cases: &[(Method, &str, Option<Value>, u16)],
) {
    for (method, path, body, status) in cases {
        let (s, b) = send(c, h, method.clone(), path, body.clone(), None).await;
        assert_eq!(s, *status, "{method} {path}: {b}");
    }
}

#[tokio::test]
async fn requests_without_valid_credentials_get_401_on_every_simulator() {
    let (h, c) = default_lab().await;
    for (_, prefix) in belay_lab::SIMULATORS {
        let r = c
            .get(format!("{}{prefix}/anything", h.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{prefix}");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = c
            .get(format!("{}{prefix}/anything", h.base_url))
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{prefix}");
    }
    let r = c
        .get(format!("{}/_state", h.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn api_key_basic_and_oauth2_credentials_are_accepted() {
    let (h, c) = default_lab().await;
    let url = format!("{}/cmdb/v1/classes", h.base_url);
    let token = |secret: &str| {
        c.post(format!("{}/oauth/token", h.base_url)).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "belay"),
            ("client_secret", secret),
        ])
    };
    let tok: Value = token(&h.token).send().await.unwrap().json().await.unwrap();
    let access = tok["access_token"].as_str().expect("an access token");
    for (how, request) in [
        ("api key", c.get(&url).header("X-Api-Key", &h.token)),
        ("basic", c.get(&url).basic_auth("belay", Some(&h.token))),
        ("oauth2", c.get(&url).bearer_auth(access)),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{how}");
    }
    let r = token("nope").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn the_cmdb_knows_the_cfo_laptop_as_high_profile_and_pages_with_next_links() {
    let (h, c) = default_lab().await;
    let (s, b) = get(&c, &h, "/cmdb/v1/devices?hostname=fin-cfo-lt01").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"][0]["high_profile"], json!(true));
    assert_eq!(
        b["data"][0]["owner"]["title"],
        json!("Chief Financial Officer")
    );
    // Walk all pages by their next links.
    let mut url = format!("{}/cmdb/v1/devices?limit=7", h.base_url);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let b: Value = c
            .get(&url)
            .bearer_auth(&h.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for d in b["data"].as_array().unwrap() {
            seen.push(d["device_id"].as_str().unwrap().to_owned());
        }
        match b["links"]["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 30);
    seen.dedup();
    assert_eq!(seen.len(), 30, "no device on two pages");
    let (s, b) = get(&c, &h, "/cmdb/v1/devices?ip=not-an-ip").await;
    assert_eq!(s, 400, "{b}");
    assert!(b["message"].as_str().unwrap().contains("ip"));
    expect_statuses(
        &c,
        &h,
        &[
            (Method::GET, "/cmdb/v1/devices?limit=0", None, 400),
            (Method::GET, "/cmdb/v1/devices?cursor=bogus", None, 400),
            (Method::GET, "/cmdb/v1/devices/dev-9999", None, 404),
        ],
    )
    .await;
}

#[tokio::test]
async fn edr_isolation_is_idempotent_by_key_and_by_state() {
    let (h, c) = default_lab().await;
    let path = "/edr/v1/devices/eng-ws-101/isolate";
    let isolate = |path, key| {
        send(
            &c,
            &h,
            Method::POST,
            path,
            Some(json!({ "reason": "test" })),
            Some(key),
        )
    };
    let (s, first) = isolate(path, "k-1").await;
    assert_eq!(s, 200);
    assert_eq!(first["changed"], json!(true));
    // The same key again: the first answer, not a second application.
    let (_, again) = isolate(path, "k-1").await;
    assert_eq!(again, first);
    // The same key for another request is refused.
    let (s, e) = isolate("/edr/v1/devices/eng-ws-102/isolate", "k-1").await;
    assert_eq!(s, 422, "{e}");
    // A new key on an isolated host: applied, but nothing changes.
    let (_, third) = isolate(path, "k-2").await;
    assert_eq!(third["changed"], json!(false));
    let (_, state) = get(&c, &h, "/_state").await;
    assert_eq!(state["idempotency"]["k-1"]["applied"], json!(1));
    assert_eq!(state["idempotency"]["k-1"]["replayed"], json!(1));
    assert_eq!(state["edr"]["isolated"], json!(["dev-0003"]));
    let (_, dev) = get(&c, &h, "/edr/v1/devices/10.30.2.11").await;
    assert_eq!(dev["isolated"], json!(true));
    assert_eq!(dev["compromised"], json!(true));
}

#[tokio::test]
async fn edr_validates_bodies_and_knows_only_agents() {
    let (h, c) = default_lab().await;
    let monitoring = "/edr/v1/devices/fin-cfo-lt01/monitoring";
    let set = |body| send(&c, &h, Method::PUT, monitoring, Some(body), None);
    let (s, b) = set(json!({ "level": "extreme" })).await;
    assert_eq!(s, 422);
    assert_text_contains(&b["message"], "level must be one of");
    let (s, _) = set(json!({ "lvl": "high" })).await;
    assert_eq!(s, 422);
    let r = c
        .put(format!(
            "{}/edr/v1/devices/fin-cfo-lt01/monitoring",
            h.base_url
        ))
        .bearer_auth(&h.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The printer has no EDR agent.
    let (s, _) = get(&c, &h, "/edr/v1/devices/prn-floor2").await;
    assert_eq!(s, 404);
    let (s, b) = set(json!({ "level": "high" })).await;
    assert_eq!(s, 200);
    assert_eq!(b["previous"], json!("normal"));
    let (_, d) = get(&c, &h, "/edr/v1/devices/fin-cfo-lt01").await;
    assert_eq!(d["monitoring"], json!("high"));
    assert_eq!(d["monitoring_override"], json!("high"));
}

#[tokio::test]
async fn edr_scans_run_until_polled_and_ioc_search_spans_the_fleet() {
    let (h, c) = default_lab().await;
    let (s, scan) = post(&c, &h, "/edr/v1/scans", json!({ "device": "eng-ws-101" })).await;
    assert_eq!(s, 201);
    let id = scan["scan_id"].as_str().unwrap();
    let (_, first) = get(&c, &h, &format!("/edr/v1/scans/{id}")).await;
    assert_eq!(first["status"], json!("running"));
    let (_, done) = get(&c, &h, &format!("/edr/v1/scans/{id}")).await;
    assert_eq!(done["status"], json!("completed"));
    assert_eq!(done["verdict"], json!("compromised"));
    let ioc = belay_lab_sha();
    let (s, hits) = post(
        &c,
        &h,
        "/edr/v1/ioc/search",
        json!({ "indicators": [ioc], "exclude": ["eng-ws-101"] }),
    )
    .await;
    assert_eq!(s, 200, "{hits}");
    let hosts: Vec<&str> = hits["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["eng-ws-102"]);
    let (s, _) = post(&c, &h, "/edr/v1/ioc/search", json!({ "indicators": [] })).await;
    assert_eq!(s, 422);
}

fn belay_lab_sha() -> &'static str {
    "5f2b7c1d9e0a4b3c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
}

#[tokio::test]
async fn siem_training_takedown_proxy_and_pcap_round_trip() {
    let (h, c) = default_lab().await;
    // SIEM watch list.
    let entry = "/siem/v1/watchlists/belay/entries/jsmith";
    let (s, b) = send(
        &c,
        &h,
        Method::PUT,
        entry,
        Some(json!({ "duration": "7d" })),
        None,
    )
    .await;
    assert_eq!((s, b["changed"].clone()), (200, json!(true)));
    let (_, w) = get(&c, &h, "/siem/v1/users/jsmith/watchlists").await;
    assert_eq!(w["lists"], json!(["belay"]));
    let (_, b) = send(&c, &h, Method::DELETE, entry, None, None).await;
    assert_eq!(b["changed"], json!(true));
    // Training.
    let (s, e) = post(
        &c,
        &h,
        "/training/v1/enrollments",
        json!({ "user": "jsmith", "module": "data-handling-101" }),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    // Takedown: status advances as it is read.
    let (s, t) = post(
        &c,
        &h,
        "/takedown/v1/requests",
        json!({ "url": "https://login-microsoftonline.example/x", "evidence": "From: a@b" }),
    )
    .await;
    assert_eq!(s, 201);
    let id = t["ticket_id"].as_str().unwrap();
    let (_, t1) = get(&c, &h, &format!("/takedown/v1/requests/{id}")).await;
    let (_, t2) = get(&c, &h, &format!("/takedown/v1/requests/{id}")).await;
    let (_, t3) = get(&c, &h, &format!("/takedown/v1/requests/{id}")).await;
    assert_eq!(
        [&t1["status"], &t2["status"], &t3["status"]],
        [
            &json!("submitted"),
            &json!("in_progress"),
            &json!("taken_down")
        ]
    );
    // Proxy: a domain entry covers its subdomains and URLs under them; a network its addresses.
    for (address, status, matched) in [
        (
            "badcdn.example",
            "/proxy/v1/status?address=https://update-check.badcdn.example/a.exe",
            Some("badcdn.example"),
        ),
        (
            "198.51.100.0/24",
            "/proxy/v1/status?address=198.51.100.23",
            None,
        ),
    ] {
        let (_, b) = post(
            &c,
            &h,
            "/proxy/v1/lists/belay/entries",
            json!({ "address": address }),
        )
        .await;
        assert_eq!(b["changed"], json!(true), "{address}");
        let (_, st) = get(&c, &h, status).await;
        assert_eq!(st["blocked"], json!(true), "{address}");
        if let Some(m) = matched {
            assert_eq!(st["matched"], json!(m));
        }
    }
    let (_, p) = post(
        &c,
        &h,
        "/proxy/v1/policies",
        json!({ "address": "10.20.1.15", "logging": "full" }),
    )
    .await;
    assert_eq!(p["changed"], json!(true));
    let (_, st) = get(&c, &h, "/proxy/v1/status?address=10.20.1.15").await;
    assert_eq!(
        (
            st["policy"].clone(),
            st["logging"].clone(),
            st["pcap"].clone()
        ),
        (json!("tightened"), json!("full"), json!(true))
    );
    // Packet capture: one running capture per host.
    let captures = "/pcap/v1/captures";
    let (s, cap) = post(
        &c,
        &h,
        captures,
        json!({ "host": "fin-cfo-lt01", "duration": "15m" }),
    )
    .await;
    assert_eq!((s, cap["changed"].clone()), (201, json!(true)));
    let (s, again) = post(&c, &h, captures, json!({ "host": "fin-cfo-lt01" })).await;
    assert_eq!((s, again["changed"].clone()), (200, json!(false)));
    let (_, st) = get(&c, &h, "/pcap/v1/captures?host=fin-cfo-lt01").await;
    assert_eq!(st["capturing"], json!(true));
    let (_, stop) = send(
        &c,
        &h,
        Method::POST,
        "/pcap/v1/hosts/fin-cfo-lt01/stop",
        None,
        None,
    )
    .await;
    assert_eq!(stop["stopped"], json!([cap["capture_id"].clone()]));
    // What each simulator refuses.
    expect_statuses(
        &c,
        &h,
        &[
            (
                Method::PUT,
                "/siem/v1/watchlists/belay/entries/bad%20user",
                None,
                422,
            ),
            (
                Method::POST,
                "/training/v1/enrollments",
                Some(json!({ "user": "jsmith", "module": "no-such-module" })),
                422,
            ),
            (
                Method::GET,
                "/training/v1/users/jsmith/enrollments/phishing-awareness-201",
                None,
                404,
            ),
            (
                Method::POST,
                "/takedown/v1/requests",
                Some(json!({ "url": "javascript:alert(1)", "evidence": "x" })),
                422,
            ),
            (
                Method::POST,
                captures,
                Some(json!({ "host": "unknown-host" })),
                404,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn injected_faults_follow_the_rate_and_the_seed() {
    let config = LabConfig {
        fault_rate: 0.5,
        seed: 42,
        retry_after: 0,
        stall: Duration::from_millis(50),
        ..LabConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (h, c) = lab(config.clone()).await;
        let mut statuses = Vec::new();
        for _ in 0..40 {
            let r = c
                .get(format!("{}/cmdb/v1/classes", h.base_url))
                .bearer_auth(&h.token)
                .send()
                .await
                .unwrap();
            if matches!(r.status().as_u16(), 429 | 503) {
                assert!(r.headers().contains_key("retry-after"));
            }
            statuses.push(r.status().as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "the same seed gives the same faults");
    let faults = runs[0].iter().filter(|s| **s != 200).count();
    assert!(
        (5..=35).contains(&faults),
        "about half of 40 requests fail, got {faults}"
    );
    assert!(runs[0].contains(&500) && runs[0].contains(&503) && runs[0].contains(&429));
    // The state endpoint never faults.
    let (h, c) = lab(LabConfig {
        fault_rate: 1.0,
        ..config
    })
    .await;
    for _ in 0..5 {
        assert_eq!(get(&c, &h, "/_state").await.0, 200);
    }
}

#[tokio::test]
async fn a_lost_response_still_applied_the_change_once() {
    let (h, c) = lab(LabConfig {
        fault_rate: 0.0,
        ..LabConfig::default()
    })
    .await;
    h.set_fault_rate(1.0);
    // Whatever fault this gets, retrying with the key until it answers applies it once.
    let mut answer = None;
    for _ in 0..50 {
        let r = c
            .post(format!("{}/siem/v1/alerts", h.base_url))
            .bearer_auth(&h.token)
            .header("Idempotency-Key", "alert-1")
            .json(&json!({ "entity": "jsmith", "title": "t" }))
            .timeout(Duration::from_millis(500))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            answer = Some(r.json::<Value>().await.unwrap());
            break;
        }
        if answer.is_none() {
            h.set_fault_rate(0.5);
        }
    }
    assert!(answer.is_some(), "an answer eventually");
    let (_, state) = get(&c, &h, "/_state").await;
    assert_eq!(
        state["siem"]["alerts"].as_array().unwrap().len(),
        1,
        "{state}"
    );
}
