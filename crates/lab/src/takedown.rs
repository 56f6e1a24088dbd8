//! The takedown service simulator (`/takedown/v1`): takedown requests for malicious URLs,
//! whose status advances each time it is read (submitted, in progress, taken down).

use crate::Shared;
use crate::api::{
    ApiError, PageQuery, Req, check_enum, check_len, check_name, created, cursor_page, now, ok,
    respond, rfc3339,
};
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Default)]
pub struct State {
    tickets: Vec<Ticket>,
}

struct Ticket {
    id: String,
    url: String,
    category: String,
    case: Option<String>,
    evidence_sha256: String,
    status: &'static str,
    submitted_at: String,
    updated_at: String,
}

impl Ticket {
    fn json(&self) -> Value {
        json!({
            "ticket_id": self.id, "url": self.url, "category": self.category, "case": self.case,
            "evidence_sha256": self.evidence_sha256, "status": self.status,
            "submitted_at": self.submitted_at, "updated_at": self.updated_at,
        })
    }
}

impl State {
    pub fn snapshot(&self) -> Value {
        json!({ "tickets": self.tickets.iter().map(|t| json!({
            "ticket_id": t.id, "url": t.url, "status": t.status,
        })).collect::<Vec<_>>() })
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/requests", post(submit).get(list))
        .route("/requests/{id}", get(status))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    url: String,
    evidence: String,
    #[serde(default = "phishing")]
    category: String,
    case: Option<String>,
}

fn phishing() -> String {
    "phishing".into()
}

async fn submit(req: Req) -> Result<Response, ApiError> {
    let body: SubmitBody = req.json()?;
    Ok(req.mutate(|w| {
        check_len("url", &body.url, 1, 2048)?;
        let scheme_ok = ["http://", "https://", "ftp://"]
            .iter()
            .any(|p| body.url.len() > p.len() && body.url.starts_with(p));
        if !scheme_ok || body.url.chars().any(char::is_whitespace) {
            return Err(ApiError::invalid(format!(
                "url must be an http, https or ftp URL without spaces, found {:?}",
                body.url
            )));
        }
        check_len("evidence", &body.evidence, 1, 10 << 20)?;
        check_enum(
            "category",
            &body.category,
            &["phishing", "malware", "scam", "brand_abuse"],
        )?;
        if let Some(c) = &body.case {
            check_name("case", c, 128, "_.:-")?;
        }
        let id = w.next_id("td");
        let t = Ticket {
            id,
            url: body.url.clone(),
            category: body.category.clone(),
            case: body.case.clone(),
            evidence_sha256: hex::encode(Sha256::digest(body.evidence.as_bytes())),
            status: "submitted",
            submitted_at: rfc3339(now()),
            updated_at: rfc3339(now()),
        };
        let out = t.json();
        w.takedown.tickets.push(t);
        created(out)
    }))
}

async fn status(AxState(s): AxState<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut w = s.world();
    let Some(t) = w.takedown.tickets.iter_mut().find(|t| t.id == id) else {
        return respond(Err(ApiError::not_found(format!(
            "no takedown request `{id}`"
        ))));
    };
    let out = t.json();
    let next = match t.status {
        "submitted" => "in_progress",
        _ => "taken_down",
    };
    if next != t.status {
        t.status = next;
        t.updated_at = rfc3339(now());
    }
    respond(ok(out))
}

#[derive(Deserialize)]
struct ListQuery {
    url: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list(AxState(s): AxState<Arc<Shared>>, Query(q): Query<ListQuery>) -> Response {
    let w = s.world();
    let items: Vec<Value> = w
        .takedown
        .tickets
        .iter()
        .filter(|t| q.url.as_deref().is_none_or(|u| t.url == u))
        .map(Ticket::json)
        .collect();
    respond(cursor_page(&items, &q.page, json!({})))
}
