//! Requests to a running lab (in-process or `belay lab serve`) by its base URL and token, and
//! its `/_state`, the simulators' own record of what was applied.
//!
//! This module never starts a lab: the tests that link `belay-lab` do (`Lab::start`), so this
//! crate does not depend on it and `belay-lab`'s own tests can use this module.

use serde_json::Value;

/// A client for the lab, with the process's TLS provider installed.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// One authenticated request: `method base_url+path`, with a JSON body and an idempotency key
/// when given. The status and the body as JSON (`null` when it is not JSON).
pub async fn send(
    c: &reqwest::Client,
    base_url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut rb = c
        .request(method, format!("{base_url}{path}"))
        .bearer_auth(token);
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

/// The simulators' state (`GET /_state`).
pub async fn state(base_url: &str, token: &str) -> Value {
    client()
        .get(format!("{base_url}/_state"))
        .bearer_auth(token)
        .send()
        .await
        .expect("state answers")
        .json()
        .await
        .expect("state is JSON")
}
