//! Health checks, metrics, the OpenAPI document, and who the caller is.

use crate::auth::Principal;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, extract::Request};
use serde_json::{Value, json};
use std::sync::Arc;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "alive", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers (its migrations ran when it opened) and every configured source runs:
/// the server can take work.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "ready", body = Object),
        (status = 503, description = "the store does not answer, or a source stopped", body = Problem)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    // Sources start before the listener; one that stopped makes the server not ready.
    let stopped: Vec<String> = state
        .sources
        .snapshot()
        .into_iter()
        .filter(|s| !s.running)
        .map(|s| s.name)
        .collect();
    if !stopped.is_empty() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("source(s) not running: {}", stopped.join(", ")),
        ));
    }
    match state.engine().store.audit_head().await {
        Ok(_) => Ok(Json(
            json!({ "status": "ready", "store": state.engine().store.kind(),
                "sources": state.sources.snapshot().len() }),
        )),
        Err(e) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {e}"),
        )),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "metrics", body = String, content_type = "text/plain"),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let mut text = state.metrics.render(&*state.engine().store).await?;
    text.push_str(&crate::telemetry::render(&state).await);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// This document; each operation names the role it needs (`x-required-role`).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn openapi(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(
        state
            .openapi
            .get()
            .cloned()
            .unwrap_or_else(crate::openapi::document),
    )
}

/// The authenticated principal: name, roles, token.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "the caller", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn whoami(Extension(p): Extension<Principal>) -> Json<Value> {
    Json(json!({ "name": p.name, "roles": p.roles, "token_id": p.token_id, "client": p.client }))
}

/// Any other path.
pub async fn not_found(req: Request) -> Problem {
    Problem::not_found(format!("no route {} {}", req.method(), req.uri().path()))
}

/// A known path with another method.
pub async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
