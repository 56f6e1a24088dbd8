//! `POST /hooks/{source}`: an event from a configured webhook source, authenticated by the
//! source's signature or token (see [`crate::hooks`]), answered 202 after the commit.

use super::client_of;
use super::events::{idempotency_key, parse_one, reason};
use crate::body::json_bytes;
use crate::hooks::authenticate;
use crate::problem::{ApiResult, Problem};
use crate::state::{AppState, EventAccepted};
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use std::sync::Arc;

/// Sends one event from a webhook source. Signed sources put `X-Belay-Timestamp` (Unix
/// seconds) and `X-Belay-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`;
/// bearer sources send a token with the responder role. The source's identity (or the token's
/// principal) is the trigger of the runs, never a field of the body.
#[utoipa::path(post, path = "/hooks/{source}", tag = "events",
    params(("source" = String, Path, description = "the configured source's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "makes a retried body without an `id` the same event"),
        ("X-Belay-Timestamp" = Option<String>, Header, description = "signing time, Unix seconds (signed sources)"),
        ("X-Belay-Signature" = Option<String>, Header, description = "sha256=<hex> (signed sources)")),
    request_body(content = Object, description = "an event", content_type = "application/json"),
    responses(
        (status = 202, description = "committed, with the runs started", body = EventAccepted),
        (status = 400, description = "malformed JSON (line, column) or a bad field (its path)", body = Problem),
        (status = 401, description = "bad, stale or missing signature or token; nothing stored", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such source", body = Problem),
        (status = 413, description = "body over the limit", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn post_hook(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    req: Request,
) -> ApiResult<(StatusCode, Json<EventAccepted>)> {
    let Some(hook) = state
        .config
        .hooks
        .iter()
        .find(|h| h.name == source)
        .cloned()
    else {
        return Err(Problem::not_found(format!("no webhook source `{source}`")));
    };
    let client = client_of(&req);
    let headers = req.headers().clone();
    let refused = |p: Problem| {
        state.metrics.event_rejected(&hook.name, reason(&p));
        p
    };
    let (bytes, _) = json_bytes(req, false).await.map_err(refused)?;
    let sender = authenticate(&hook, &*state.engine().store, &headers, &bytes, &client)
        .await
        .map_err(refused)?;
    // A foreign payload becomes an event through the source's template (the payload is data).
    let bytes = match &hook.template {
        Some(t) => {
            let payload: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| refused(Problem::json_syntax(&e)))?;
            let event = t.apply(&payload).map_err(refused)?;
            axum::body::Bytes::from(event.to_string())
        }
        None => bytes,
    };
    let event = parse_one(
        &bytes,
        &sender.name,
        idempotency_key(&headers).as_deref(),
        state.engine().config.dedup_window,
    )
    .map_err(refused)?;
    let mut answers = state.accept(vec![event], &sender.name, &hook.name).await?;
    let one = answers
        .pop()
        .ok_or_else(|| Problem::internal("no answer"))?;
    Ok((StatusCode::ACCEPTED, Json(one)))
}
