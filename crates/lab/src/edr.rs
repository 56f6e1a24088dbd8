//! The EDR simulator (`/edr/v1`): device records with a compromise verdict, monitoring-level
//! overrides on top of the policy, network isolation, on-demand scans (running until first
//! polled), memory and disk captures, and an indicator search across every endpoint.

use crate::Shared;
use crate::api::{
    ApiError, ApiResult, PageQuery, Req, World, check_enum, check_len, check_name, created,
    cursor_page, now, ok, parse_duration, respond, rfc3339,
};
use crate::fleet::Device;
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Default)]
pub struct State {
    isolated: BTreeSet<String>,
    overrides: BTreeMap<String, String>,
    scans: BTreeMap<String, Scan>,
    captures: Vec<Capture>,
}

struct Scan {
    device_id: String,
    scope: String,
    polled: bool,
}

#[derive(Clone)]
struct Capture {
    evidence_id: String,
    device_id: String,
    kind: String,
    volume: Option<String>,
    case: Option<String>,
    sha256: String,
    size_bytes: u64,
    captured_at: String,
}

impl Capture {
    fn json(&self, base: &str) -> Value {
        json!({
            "evidence_id": self.evidence_id,
            "device_id": self.device_id,
            "kind": self.kind,
            "volume": self.volume,
            "case": self.case,
            "location": format!("{base}/edr/v1/evidence/{}", self.evidence_id),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "captured_at": self.captured_at,
        })
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/devices", get(list_devices))
        .route("/devices/{id}", get(get_device))
        .route(
            "/devices/{id}/monitoring",
            put(set_monitoring).delete(clear_monitoring),
        )
        .route("/devices/{id}/isolate", post(isolate))
        .route("/devices/{id}/release", post(release))
        .route("/devices/{id}/captures", post(capture).get(list_captures))
        .route("/scans", post(start_scan))
        .route("/scans/{id}", get(scan_result))
        .route("/ioc/search", post(search_ioc))
}

fn agent(w: &World, id: &str) -> Result<usize, ApiError> {
    w.device(id)
        .filter(|&i| w.fleet[i].edr_agent)
        .ok_or_else(|| ApiError::not_found(format!("no EDR agent on device `{id}`")))
}

fn effective(w: &World, d: &Device) -> String {
    w.edr
        .overrides
        .get(&d.device_id)
        .cloned()
        .unwrap_or_else(|| d.policy_level.clone())
}

fn device_json(w: &World, d: &Device) -> Value {
    let last_seen = if d.online {
        now()
    } else {
        now() - chrono::Duration::hours(52)
    };
    json!({
        "device_id": d.device_id,
        "hostname": d.hostname,
        "ip": d.ip,
        "os": d.os,
        "online": d.online,
        "isolated": w.edr.isolated.contains(&d.device_id),
        "verdict": d.verdict,
        "compromised": d.verdict == "compromised",
        "indicators": d.observed.iter().map(|(i, _)| i).collect::<Vec<_>>(),
        "policy_level": d.policy_level,
        "monitoring": effective(w, d),
        "monitoring_override": w.edr.overrides.get(&d.device_id),
        "last_seen": rfc3339(last_seen),
    })
}

pub fn snapshot(w: &World) -> Value {
    json!({
        "isolated": w.edr.isolated,
        "monitoring_overrides": w.edr.overrides,
        "scans": w.edr.scans.len(),
        "captures": w.edr.captures.iter().map(|c| json!({
            "evidence_id": c.evidence_id, "device_id": c.device_id, "kind": c.kind, "case": c.case,
        })).collect::<Vec<_>>(),
    })
}

async fn list_devices(AxState(s): AxState<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    let w = s.world();
    let all: Vec<Value> = w
        .fleet
        .iter()
        .filter(|d| d.edr_agent)
        .map(|d| device_json(&w, d))
        .collect();
    respond(cursor_page(&all, &q, json!({})))
}

async fn get_device(AxState(s): AxState<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let w = s.world();
    respond(agent(&w, &id).map(|i| (axum::http::StatusCode::OK, device_json(&w, &w.fleet[i]))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitoringBody {
    level: String,
    reason: Option<String>,
}

async fn set_monitoring(Path(id): Path<String>, req: Req) -> Result<Response, ApiError> {
    let body: MonitoringBody = req.json()?;
    Ok(req.mutate(|w| {
        check_enum("level", &body.level, &["low", "normal", "high"])?;
        check_len("reason", body.reason.as_deref().unwrap_or(""), 0, 256)?;
        let i = agent(w, &id)?;
        let d = w.fleet[i].clone();
        let previous = effective(w, &d);
        let old = w
            .edr
            .overrides
            .insert(d.device_id.clone(), body.level.clone());
        ok(json!({
            "device_id": d.device_id,
            "hostname": d.hostname,
            "level": body.level,
            "previous": previous,
            "changed": old.as_deref() != Some(body.level.as_str()),
        }))
    }))
}

async fn clear_monitoring(Path(id): Path<String>, req: Req) -> Response {
    req.mutate(|w| {
        let i = agent(w, &id)?;
        let d = w.fleet[i].clone();
        let old = w.edr.overrides.remove(&d.device_id);
        ok(json!({
            "device_id": d.device_id,
            "hostname": d.hostname,
            "level": d.policy_level,
            "removed": old,
            "changed": old.is_some(),
        }))
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

async fn isolate(Path(id): Path<String>, req: Req) -> Result<Response, ApiError> {
    set_isolation(&id, req, true)
}

async fn release(Path(id): Path<String>, req: Req) -> Result<Response, ApiError> {
    set_isolation(&id, req, false)
}

fn set_isolation(id: &str, req: Req, isolate: bool) -> Result<Response, ApiError> {
    let body: ReasonBody = req.json()?;
    Ok(req.mutate(|w| {
        check_len("reason", body.reason.as_deref().unwrap_or(""), 0, 256)?;
        let i = agent(w, id)?;
        let d = w.fleet[i].clone();
        let changed = if isolate {
            w.edr.isolated.insert(d.device_id.clone())
        } else {
            w.edr.isolated.remove(&d.device_id)
        };
        ok(json!({
            "device_id": d.device_id,
            "hostname": d.hostname,
            "isolated": isolate,
            "changed": changed,
        }))
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    kind: String,
    volume: Option<String>,
    case: Option<String>,
    reason: Option<String>,
}

async fn capture(Path(id): Path<String>, req: Req) -> Result<Response, ApiError> {
    let body: CaptureBody = req.json()?;
    let base = req.lab.base_url.clone();
    Ok(req.mutate(|w| {
        check_enum("kind", &body.kind, &["memory", "disk"])?;
        if let Some(c) = &body.case {
            check_name("case", c, 128, "_.:-")?;
        }
        if let Some(v) = &body.volume {
            check_len("volume", v, 1, 256)?;
            if body.kind == "memory" {
                return Err(ApiError::invalid("volume applies only to disk captures"));
            }
        }
        check_len("reason", body.reason.as_deref().unwrap_or(""), 0, 256)?;
        let i = agent(w, &id)?;
        if !w.fleet[i].online {
            return Err(ApiError::conflict(format!(
                "device `{}` is offline; a capture needs the agent to answer",
                w.fleet[i].hostname
            )));
        }
        let evidence_id = w.next_id("ev");
        let device_id = w.fleet[i].device_id.clone();
        let sha256 = hex::encode(Sha256::digest(format!("{evidence_id}/{device_id}")));
        let c = Capture {
            evidence_id,
            device_id,
            size_bytes: if body.kind == "memory" {
                17_179_869_184
            } else {
                256_060_514_304
            },
            kind: body.kind.clone(),
            volume: body.volume.clone(),
            case: body.case.clone(),
            sha256,
            captured_at: rfc3339(now()),
        };
        let out = c.json(&base);
        w.edr.captures.push(c);
        created(out)
    }))
}

async fn list_captures(
    AxState(s): AxState<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let w = s.world();
    let r = agent(&w, &id).and_then(|i| {
        let dev = &w.fleet[i].device_id;
        let items: Vec<Value> = w
            .edr
            .captures
            .iter()
            .filter(|c| &c.device_id == dev)
            .map(|c| c.json(&s.base_url))
            .collect();
        cursor_page(&items, &q, json!({}))
    });
    respond(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    device: String,
    #[serde(default = "quick")]
    scope: String,
}

fn quick() -> String {
    "quick".into()
}

async fn start_scan(req: Req) -> Result<Response, ApiError> {
    let body: ScanBody = req.json()?;
    Ok(req.mutate(|w| {
        check_enum("scope", &body.scope, &["quick", "full"])?;
        let i = agent(w, &body.device)?;
        let scan_id = w.next_id("scan");
        let device_id = w.fleet[i].device_id.clone();
        w.edr.scans.insert(
            scan_id.clone(),
            Scan {
                device_id: device_id.clone(),
                scope: body.scope.clone(),
                polled: false,
            },
        );
        created(json!({ "scan_id": scan_id, "device_id": device_id, "status": "running" }))
    }))
}

/// A scan runs until it is first polled, then reports the device's verdict.
async fn scan_result(AxState(s): AxState<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut w = s.world();
    let Some(scan) = w.edr.scans.get_mut(&id) else {
        return respond(Err(ApiError::not_found(format!("no scan `{id}`"))));
    };
    let first = !scan.polled;
    scan.polled = true;
    let (device_id, scope) = (scan.device_id.clone(), scan.scope.clone());
    if first {
        return respond(ok(
            json!({ "scan_id": id, "device_id": device_id, "scope": scope, "status": "running" }),
        ));
    }
    let Some(i) = w.device(&device_id) else {
        return respond(Err(ApiError::not_found("scanned device vanished")));
    };
    let d = &w.fleet[i];
    let detections: Vec<Value> = d
        .observed
        .iter()
        .filter(|(ind, _)| ind.len() == 64)
        .map(|(h, _)| {
            json!({ "name": "Trojan.GenericKD", "path": "/tmp/.cache/updater", "sha256": h, "severity": "high" })
        })
        .collect();
    respond(ok(json!({
        "scan_id": id,
        "device_id": device_id,
        "scope": scope,
        "status": "completed",
        "verdict": d.verdict,
        "compromised": d.verdict == "compromised",
        "detections": detections,
        "indicators": d.observed.iter().map(|(i, _)| i).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    indicators: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    since: Option<String>,
}

async fn search_ioc(Query(q): Query<PageQuery>, req: Req) -> Result<Response, ApiError> {
    let body: SearchBody = req.json()?;
    let r = (|| -> ApiResult {
        if body.indicators.is_empty() || body.indicators.len() > 1000 {
            return Err(ApiError::invalid("indicators must hold 1 to 1000 values"));
        }
        for i in &body.indicators {
            check_len("indicator", i, 1, 2048)?;
        }
        let window = match &body.since {
            Some(s) => parse_duration("since", s)?,
            None => std::time::Duration::from_secs(30 * 86_400),
        };
        let window_hours = window.as_secs() / 3600;
        let wanted: BTreeSet<String> = body
            .indicators
            .iter()
            .map(|i| i.to_ascii_lowercase())
            .collect();
        let w = req.lab.world();
        let excluded = |d: &Device| {
            body.exclude
                .iter()
                .any(|x| x.eq_ignore_ascii_case(&d.hostname) || x == &d.device_id || x == &d.ip)
        };
        let agents: Vec<&Device> = w.fleet.iter().filter(|d| d.edr_agent).collect();
        let mut hits = Vec::new();
        for d in &agents {
            if excluded(d) {
                continue;
            }
            let matched: Vec<&(String, u64)> = d
                .observed
                .iter()
                .filter(|(ind, hours)| {
                    *hours <= window_hours && wanted.contains(&ind.to_ascii_lowercase())
                })
                .collect();
            if let Some(oldest) = matched.iter().map(|(_, h)| *h).max() {
                hits.push(json!({
                    "host": d.hostname,
                    "device_id": d.device_id,
                    "indicators": matched.iter().map(|(i, _)| i).collect::<Vec<_>>(),
                    "first_seen": rfc3339(now() - chrono::Duration::hours(oldest as i64)),
                }));
            }
        }
        cursor_page(
            &hits,
            &q,
            json!({ "searched": agents.len(), "total": hits.len() }),
        )
    })();
    Ok(respond(r))
}
