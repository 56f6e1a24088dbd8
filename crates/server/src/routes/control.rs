//! `POST /api/v1/pause` and `/api/v1/unpause` (admin), `GET /api/v1/pauses`: pausing all
//! automation or one playbook. While paused, change steps are recorded as shadow, in every
//! process sharing the store; both switches are audited with who and why.

use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use belay_store::PauseRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

/// Which automation to pause or resume, and why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// One playbook's name; absent: all automation.
    #[serde(default)]
    pub playbook: Option<String>,
    /// Why (required to pause; recorded in the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

fn scope(playbook: &Option<String>) -> String {
    playbook.clone().unwrap_or_else(|| "*".into())
}

/// Pauses all automation or one playbook: its change steps are then recorded, not applied.
#[utoipa::path(post, path = "/api/v1/pause", tag = "control", security(("bearer" = [])),
    request_body(content = PauseRequest, content_type = "application/json"),
    responses((status = 200, description = "the pause now in force", body = Object),
        (status = 400, description = "no reason, or a bad field", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<PauseRequest>,
) -> ApiResult<Json<Value>> {
    let record = pause_as(&state, &p, req).await?;
    Ok(Json(json!({ "paused": record })))
}

/// Pauses as `p` (an admin, checked by the caller), audited as an API request; the API and
/// the console both pause through it.
pub(crate) async fn pause_as(
    state: &AppState,
    p: &Principal,
    req: PauseRequest,
) -> Result<PauseRecord, Problem> {
    let reason = req.reason.unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(Problem::bad_request("say why automation is paused").at_field("reason"));
    }
    if req
        .playbook
        .as_deref()
        .is_some_and(|n| n.trim().is_empty() || n == "*")
    {
        return Err(
            Problem::bad_request("name a playbook, or leave `playbook` out").at_field("playbook"),
        );
    }
    let record = PauseRecord {
        playbook: req.playbook,
        paused_by: p.name.clone(),
        reason,
        paused_at: belay_model::now_ms(),
    };
    state.engine().store.pause(&record).await?;
    state
        .audit_request(p, "pause", &scope(&record.playbook), "paused")
        .await;
    Ok(record)
}

/// Lifts the pause of all automation or of one playbook.
#[utoipa::path(post, path = "/api/v1/unpause", tag = "control", security(("bearer" = [])),
    request_body(content = PauseRequest, content_type = "application/json"),
    responses((status = 200, description = "whether a pause was lifted, and the pauses still in force", body = Object),
        (status = 400, description = "a bad field", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn unpause(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<PauseRequest>,
) -> ApiResult<Json<Value>> {
    let lifted = unpause_as(&state, &p, req).await?;
    let still = state.engine().store.pauses().await?;
    Ok(Json(json!({ "lifted": lifted, "pauses": still })))
}

/// Lifts a pause as `p` (an admin, checked by the caller), audited as an API request; whether
/// there was one.
pub(crate) async fn unpause_as(
    state: &AppState,
    p: &Principal,
    req: PauseRequest,
) -> Result<bool, Problem> {
    let reason = req.reason.unwrap_or_default();
    let lifted = state
        .engine()
        .store
        .unpause(req.playbook.as_deref(), &p.name, &reason)
        .await?;
    state
        .audit_request(
            p,
            "unpause",
            &scope(&req.playbook),
            if lifted { "resumed" } else { "was not paused" },
        )
        .await;
    Ok(lifted)
}

/// The pauses in force.
#[utoipa::path(get, path = "/api/v1/pauses", tag = "control", security(("bearer" = [])),
    responses((status = 200, description = "the pauses in force, all automation's first", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn pauses(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "pauses": state.engine().store.pauses().await? }),
    ))
}

/// Reloads playbooks and guardrails from disk if all of them load clean; otherwise the running
/// set stays and the answer says why. Raising a step's trust level or changing the guardrails
/// needs an admin. Runs already started keep their playbook version.
#[utoipa::path(post, path = "/api/v1/reload", tag = "control", security(("bearer" = [])),
    responses((status = 200, description = "the playbook and guardrail versions before and after", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low, or the reload raises trust or changes guardrails and the caller is not an admin", body = Problem),
        (status = 409, description = "the server has no playbook directory to reload", body = Problem),
        (status = 422, description = "a playbook or guardrail does not load; the running set stays", body = Problem)))]
pub async fn reload(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let admin = p.roles.contains(&crate::auth::Role::Admin);
    let via = json!({ "api": true, "token_id": p.token_id, "client": p.client });
    Ok(Json(state.reload(&p.name, admin, via).await?))
}
