//! The simulators' APIs behave like real products: authentication, validation, 404s,
//! pagination, idempotency keys and injected faults.

use belay_lab::{Lab, LabConfig, LabHandle};
use serde_json::{Value, json};
use std::time::Duration;

async fn lab(config: LabConfig) -> (LabHandle, reqwest::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let h = Lab::start(config).await.expect("the lab starts");
    (h, reqwest::Client::new())
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
    let mut rb = c
        .request(method, format!("{}{path}", h.base_url))
        .bearer_auth(&h.token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    if let Some(k) = key {
        rb = rb.header("Idempotency-Key", k);
    }
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

async fn get(c: &reqwest::Client, h: &LabHandle, path: &str) -> (u16, Value) {
    send(c, h, reqwest::Method::GET, path, None, None).await
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
    let r = c
        .get(&url)
        .header("X-Api-Key", &h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .get(&url)
        .basic_auth("belay", Some(&h.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let tok: Value = c
        .post(format!("{}/oauth/token", h.base_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "belay"),
            ("client_secret", h.token.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tok["access_token"].as_str().expect("an access token");
    let r = c.get(&url).bearer_auth(access).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .post(format!("{}/oauth/token", h.base_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "belay"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
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
    let (s, _) = get(&c, &h, "/cmdb/v1/devices?limit=0").await;
    assert_eq!(s, 400);
    let (s, _) = get(&c, &h, "/cmdb/v1/devices?cursor=bogus").await;
    assert_eq!(s, 400);
    let (s, _) = get(&c, &h, "/cmdb/v1/devices/dev-9999").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn edr_isolation_is_idempotent_by_key_and_by_state() {
    let (h, c) = default_lab().await;
    let post = reqwest::Method::POST;
    let path = "/edr/v1/devices/eng-ws-101/isolate";
    let body = json!({ "reason": "test" });
    let (s, first) = send(&c, &h, post.clone(), path, Some(body.clone()), Some("k-1")).await;
    assert_eq!(s, 200);
    assert_eq!(first["changed"], json!(true));
    // The same key again: the first answer, not a second application.
    let (_, again) = send(&c, &h, post.clone(), path, Some(body.clone()), Some("k-1")).await;
    assert_eq!(again, first);
    // The same key for another request is refused.
    let (s, e) = send(
        &c,
        &h,
        post.clone(),
        "/edr/v1/devices/eng-ws-102/isolate",
        Some(body.clone()),
        Some("k-1"),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    // A new key on an isolated host: applied, but nothing changes.
    let (_, third) = send(&c, &h, post, path, Some(body), Some("k-2")).await;
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
    let put = reqwest::Method::PUT;
    let (s, b) = send(
        &c,
        &h,
        put.clone(),
        "/edr/v1/devices/fin-cfo-lt01/monitoring",
        Some(json!({ "level": "extreme" })),
        None,
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("level must be one of"),
        "{b}"
    );
    let (s, _) = send(
        &c,
        &h,
        put.clone(),
        "/edr/v1/devices/fin-cfo-lt01/monitoring",
        Some(json!({ "lvl": "high" })),
        None,
    )
    .await;
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
    let (s, b) = send(
        &c,
        &h,
        put,
        "/edr/v1/devices/fin-cfo-lt01/monitoring",
        Some(json!({ "level": "high" })),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["previous"], json!("normal"));
    let (_, d) = get(&c, &h, "/edr/v1/devices/fin-cfo-lt01").await;
    assert_eq!(d["monitoring"], json!("high"));
    assert_eq!(d["monitoring_override"], json!("high"));
}

#[tokio::test]
async fn edr_scans_run_until_polled_and_ioc_search_spans_the_fleet() {
    let (h, c) = default_lab().await;
    let (s, scan) = send(
        &c,
        &h,
        reqwest::Method::POST,
        "/edr/v1/scans",
        Some(json!({ "device": "eng-ws-101" })),
        None,
    )
    .await;
    assert_eq!(s, 201);
    let id = scan["scan_id"].as_str().unwrap();
    let (_, first) = get(&c, &h, &format!("/edr/v1/scans/{id}")).await;
    assert_eq!(first["status"], json!("running"));
    let (_, done) = get(&c, &h, &format!("/edr/v1/scans/{id}")).await;
    assert_eq!(done["status"], json!("completed"));
    assert_eq!(done["verdict"], json!("compromised"));
    let ioc = belay_lab_sha();
    let (s, hits) = send(
        &c,
        &h,
        reqwest::Method::POST,
        "/edr/v1/ioc/search",
        Some(json!({ "indicators": [ioc], "exclude": ["eng-ws-101"] })),
        None,
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
    let (s, _) = send(
        &c,
        &h,
        reqwest::Method::POST,
        "/edr/v1/ioc/search",
        Some(json!({ "indicators": [] })),
        None,
    )
    .await;
    assert_eq!(s, 422);
}

fn belay_lab_sha() -> &'static str {
    "5f2b7c1d9e0a4b3c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
}

#[tokio::test]
async fn siem_training_takedown_proxy_and_pcap_round_trip() {
    let (h, c) = default_lab().await;
    use reqwest::Method as M;
    // SIEM watch list.
    let (s, b) = send(
        &c,
        &h,
        M::PUT,
        "/siem/v1/watchlists/belay/entries/jsmith",
        Some(json!({ "duration": "7d" })),
        None,
    )
    .await;
    assert_eq!((s, b["changed"].clone()), (200, json!(true)));
    let (_, w) = get(&c, &h, "/siem/v1/users/jsmith/watchlists").await;
    assert_eq!(w["lists"], json!(["belay"]));
    let (_, b) = send(
        &c,
        &h,
        M::DELETE,
        "/siem/v1/watchlists/belay/entries/jsmith",
        None,
        None,
    )
    .await;
    assert_eq!(b["changed"], json!(true));
    let (s, _) = send(
        &c,
        &h,
        M::PUT,
        "/siem/v1/watchlists/belay/entries/bad%20user",
        None,
        None,
    )
    .await;
    assert_eq!(s, 422);
    // Training.
    let (s, e) = send(
        &c,
        &h,
        M::POST,
        "/training/v1/enrollments",
        Some(json!({ "user": "jsmith", "module": "data-handling-101" })),
        None,
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let (s, _) = send(
        &c,
        &h,
        M::POST,
        "/training/v1/enrollments",
        Some(json!({ "user": "jsmith", "module": "no-such-module" })),
        None,
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = get(
        &c,
        &h,
        "/training/v1/users/jsmith/enrollments/phishing-awareness-201",
    )
    .await;
    assert_eq!(s, 404);
    // Takedown: status advances as it is read.
    let (s, t) = send(
        &c,
        &h,
        M::POST,
        "/takedown/v1/requests",
        Some(json!({ "url": "https://login-microsoftonline.example/x", "evidence": "From: a@b" })),
        None,
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
    let (s, _) = send(
        &c,
        &h,
        M::POST,
        "/takedown/v1/requests",
        Some(json!({ "url": "javascript:alert(1)", "evidence": "x" })),
        None,
    )
    .await;
    assert_eq!(s, 422);
    // Proxy: a domain entry covers its subdomains and URLs under them.
    let (_, b) = send(
        &c,
        &h,
        M::POST,
        "/proxy/v1/lists/belay/entries",
        Some(json!({ "address": "badcdn.example" })),
        None,
    )
    .await;
    assert_eq!(b["changed"], json!(true));
    let (_, st) = get(
        &c,
        &h,
        "/proxy/v1/status?address=https://update-check.badcdn.example/a.exe",
    )
    .await;
    assert_eq!(st["blocked"], json!(true));
    assert_eq!(st["matched"], json!("badcdn.example"));
    let (_, b) = send(
        &c,
        &h,
        M::POST,
        "/proxy/v1/lists/belay/entries",
        Some(json!({ "address": "198.51.100.0/24" })),
        None,
    )
    .await;
    assert_eq!(b["changed"], json!(true));
    let (_, st) = get(&c, &h, "/proxy/v1/status?address=198.51.100.23").await;
    assert_eq!(st["blocked"], json!(true));
    let (_, p) = send(
        &c,
        &h,
        M::POST,
        "/proxy/v1/policies",
        Some(json!({ "address": "10.20.1.15", "logging": "full" })),
        None,
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
    let (s, cap) = send(
        &c,
        &h,
        M::POST,
        "/pcap/v1/captures",
        Some(json!({ "host": "fin-cfo-lt01", "duration": "15m" })),
        None,
    )
    .await;
    assert_eq!((s, cap["changed"].clone()), (201, json!(true)));
    let (s, again) = send(
        &c,
        &h,
        M::POST,
        "/pcap/v1/captures",
        Some(json!({ "host": "fin-cfo-lt01" })),
        None,
    )
    .await;
    assert_eq!((s, again["changed"].clone()), (200, json!(false)));
    let (_, st) = get(&c, &h, "/pcap/v1/captures?host=fin-cfo-lt01").await;
    assert_eq!(st["capturing"], json!(true));
    let (_, stop) = send(
        &c,
        &h,
        M::POST,
        "/pcap/v1/hosts/fin-cfo-lt01/stop",
        None,
        None,
    )
    .await;
    assert_eq!(stop["stopped"], json!([cap["capture_id"].clone()]));
    let (s, _) = send(
        &c,
        &h,
        M::POST,
        "/pcap/v1/captures",
        Some(json!({ "host": "unknown-host" })),
        None,
    )
    .await;
    assert_eq!(s, 404);
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
