//! The packet-capture simulator (`/pcap/v1`): bounded captures of a device's traffic, one
//! running capture per device, stopped early on request; finished files are kept.

use crate::Shared;
use crate::api::{
    ApiError, PageQuery, Req, World, check_len, check_name, created, cursor_page, now, ok,
    parse_duration, respond, rfc3339,
};
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Default)]
pub struct State {
    captures: Vec<Capture>,
}

struct Capture {
    id: String,
    host: String,
    filter: Option<String>,
    case: Option<String>,
    started_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
}

impl Capture {
    fn running(&self) -> bool {
        self.stopped_at.is_none() && self.ends_at > now()
    }

    fn json(&self, base: &str) -> Value {
        let end = self.stopped_at.unwrap_or_else(|| self.ends_at.min(now()));
        let secs = (end - self.started_at).num_seconds().max(0) as u64;
        json!({
            "capture_id": self.id,
            "host": self.host,
            "filter": self.filter,
            "case": self.case,
            "running": self.running(),
            "started_at": rfc3339(self.started_at),
            "ends_at": rfc3339(self.ends_at),
            "stopped_at": self.stopped_at.map(rfc3339),
            "bytes": secs * 250_000,
            "location": format!("{base}/pcap/v1/files/{}.pcapng", self.id),
        })
    }
}

impl State {
    pub fn snapshot(&self) -> Value {
        json!({ "captures": self.captures.iter().map(|c| json!({
            "capture_id": c.id, "host": c.host, "running": c.running(),
        })).collect::<Vec<_>>() })
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/captures", post(start).get(list))
        .route("/hosts/{host}/stop", post(stop))
}

/// The canonical name of a capture target: a fleet device's hostname, or an IP address.
fn target(w: &World, host: &str) -> Result<String, ApiError> {
    check_name("host", host, 253, "_.:-")?;
    if let Some(i) = w.device(host) {
        return Ok(w.fleet[i].hostname.clone());
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(host.to_owned());
    }
    Err(ApiError::not_found(format!(
        "no device `{host}` on the monitored network"
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    host: String,
    #[serde(default = "fifteen_minutes")]
    duration: String,
    filter: Option<String>,
    case: Option<String>,
}

fn fifteen_minutes() -> String {
    "15m".into()
}

async fn start(req: Req) -> Result<Response, ApiError> {
    let body: StartBody = req.json()?;
    let base = req.lab.base_url.clone();
    Ok(req.mutate(|w| {
        let d = parse_duration("duration", &body.duration)?;
        if d.as_secs() > 24 * 3600 {
            return Err(ApiError::invalid("duration must be at most 24h"));
        }
        check_len("filter", body.filter.as_deref().unwrap_or(""), 0, 1024)?;
        if let Some(c) = &body.case {
            check_name("case", c, 128, "_.:-")?;
        }
        let host = target(w, &body.host)?;
        if let Some(c) = w
            .pcap
            .captures
            .iter()
            .find(|c| c.host == host && c.running())
        {
            let mut out = c.json(&base);
            out["changed"] = json!(false);
            return ok(out);
        }
        let id = w.next_id("cap");
        let started = now();
        let c = Capture {
            id,
            host,
            filter: body.filter.clone(),
            case: body.case.clone(),
            started_at: started,
            ends_at: started + chrono::Duration::seconds(d.as_secs() as i64),
            stopped_at: None,
        };
        let mut out = c.json(&base);
        out["changed"] = json!(true);
        w.pcap.captures.push(c);
        created(out)
    }))
}

async fn stop(Path(host): Path<String>, req: Req) -> Response {
    req.mutate(|w| {
        let host = target(w, &host)?;
        let t = now();
        let mut stopped = Vec::new();
        for c in w.pcap.captures.iter_mut() {
            if c.host == host && c.running() {
                c.stopped_at = Some(t);
                stopped.push(c.id.clone());
            }
        }
        ok(json!({ "host": host, "stopped": stopped, "changed": !stopped.is_empty() }))
    })
}

#[derive(Deserialize)]
struct ListQuery {
    host: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list(AxState(s): AxState<Arc<Shared>>, Query(q): Query<ListQuery>) -> Response {
    let w = s.world();
    let host = match q.host.as_deref().map(|h| target(&w, h)).transpose() {
        Ok(h) => h,
        Err(e) => return respond(Err(e)),
    };
    let items: Vec<Value> = w
        .pcap
        .captures
        .iter()
        .filter(|c| host.as_ref().is_none_or(|h| &c.host == h))
        .map(|c| c.json(&s.base_url))
        .collect();
    let capturing = items.iter().any(|c| c["running"] == json!(true));
    respond(cursor_page(
        &items,
        &q.page,
        json!({ "capturing": capturing }),
    ))
}
