//! `POST /api/v1/events`: one event (JSON) or a batch (NDJSON), accepted durably with the runs
//! they start; answered 202 only after the commit.

use crate::auth::Principal;
use crate::body::json_bytes;
use crate::problem::{ApiResult, Problem};
use crate::state::{AppState, EventAccepted};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use belay_model::{Event, EventError};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// The answer to a batch: one entry per event, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    /// Each event's answer.
    pub events: Vec<EventAccepted>,
}

/// Sends an event (`application/json`) or a batch of events, one per line
/// (`application/x-ndjson`). The sender (the token's principal) is recorded as the event's
/// source and the trigger of its runs, whatever the body says. A repeated event id, or a
/// repeated `Idempotency-Key` for a body without an id, gets the first answer again.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "makes a retried body without an `id` the same event")),
    request_body(content = Object, description = "an event, or NDJSON events",
        content_type = "application/json"),
    responses(
        (status = 202, description = "committed, with the runs started", body = EventAccepted),
        (status = 400, description = "malformed JSON (line, column) or a bad field (its path)", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 413, description = "body over the limit", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn post_events(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    req: Request,
) -> ApiResult<axum::response::Response> {
    let idem = idempotency_key(req.headers());
    let (bytes, ndjson) = match json_bytes(req, true).await {
        Ok(b) => b,
        Err(problem) => {
            state.metrics.event_rejected("api", reason(&problem));
            return Err(problem);
        }
    };
    let parsed = if ndjson {
        parse_lines(
            &bytes,
            &p.name,
            idem.as_deref(),
            state.engine().config.dedup_window,
        )
    } else {
        parse_one(
            &bytes,
            &p.name,
            idem.as_deref(),
            state.engine().config.dedup_window,
        )
        .map(|e| vec![e])
    };
    let events = match parsed {
        Ok(e) => e,
        Err(problem) => {
            state.metrics.event_rejected("api", reason(&problem));
            return Err(problem);
        }
    };
    let mut answers = state.accept(events, &p.name, "api").await?;
    Ok(if ndjson {
        (
            StatusCode::ACCEPTED,
            Json(EventsAccepted { events: answers }),
        )
            .into_response()
    } else {
        let one = answers
            .pop()
            .ok_or_else(|| Problem::internal("no answer"))?;
        (StatusCode::ACCEPTED, Json(one)).into_response()
    })
}

/// The `Idempotency-Key` header, when given and printable.
pub fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.len() <= 256)
}

/// The metrics label of a refusal.
pub fn reason(p: &Problem) -> &'static str {
    match p.status {
        401 => "unauthenticated",
        413 => "too_large",
        415 => "content_type",
        400 => "invalid",
        _ => "other",
    }
}

/// One event from a JSON body; `sender` and `key` name it when the body has no `id` and an
/// `Idempotency-Key` was given; without either, its id is derived from the sender and its
/// content, so a retried delivery within `window` is a duplicate.
pub fn parse_one(
    bytes: &[u8],
    sender: &str,
    key: Option<&str>,
    window: std::time::Duration,
) -> Result<Event, Problem> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Problem::json_syntax(&e))?;
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not UTF-8: {e}")))?;
    let mut event = Event::from_json_str(text).map_err(event_problem)?;
    if value.get("id").is_none() {
        event.id = match key {
            Some(key) => keyed_id(sender, key),
            None => Event {
                source: format!("user:{sender}"),
                ..event.clone()
            }
            .content_id(value.get("time").is_some(), window, belay_model::now_ms()),
        };
    }
    Ok(event)
}

/// Events of an NDJSON body, one per non-blank line; the first bad line refuses the batch,
/// naming its line.
fn parse_lines(
    bytes: &[u8],
    sender: &str,
    key: Option<&str>,
    window: std::time::Duration,
) -> Result<Vec<Event>, Problem> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let key = key.map(|k| format!("{k}#{}", i + 1));
        let e = parse_one(line, sender, key.as_deref(), window).map_err(|mut p| {
            p.detail = format!("line {}: {}", i + 1, p.detail);
            if p.line.is_some() {
                p.line = u32::try_from(i + 1).ok();
            }
            p
        })?;
        out.push(e);
    }
    if out.is_empty() {
        return Err(Problem::bad_request("the body holds no event"));
    }
    Ok(out)
}

/// The event id an `Idempotency-Key` stands for (per sender).
fn keyed_id(sender: &str, key: &str) -> String {
    let digest = belay_model::sha256_hex(format!("{sender}\0{key}").as_bytes());
    format!("idem-{}", &digest[..32])
}

/// A refused event as a problem naming its field (`observables.ips[0]`, `kind`...).
fn event_problem(e: EventError) -> Problem {
    let message = e.to_string();
    let detail = match &e {
        EventError::Json(m) | EventError::Invalid(m) => m.clone(),
    };
    let field = detail
        .strip_prefix("missing field `")
        .or_else(|| detail.strip_prefix('`'))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned)
        .or_else(|| {
            // `unknown field `x`, expected one of …` names the unknown field.
            detail
                .split("unknown field `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        });
    let p = Problem::bad_request(message);
    match field {
        Some(f) => p.at_field(f),
        None => p,
    }
}
