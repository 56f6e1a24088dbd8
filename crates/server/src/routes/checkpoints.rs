//! Checkpoints: named points in the change journal that `rollback` with `to` returns to.
//! Listing reads; creating one is for admins.

use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

/// A new checkpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    /// Its name: 1 to 128 printable characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
}

/// Every checkpoint, oldest first.
#[utoipa::path(get, path = "/api/v1/checkpoints", tag = "changes", security(("bearer" = [])),
    responses((status = 200, description = "checkpoints", body = Vec<Object>),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.engine().store.checkpoints().await?)))
}

/// Names the journal's current point; `rollback` with `to` undoes every change after it.
#[utoipa::path(post, path = "/api/v1/checkpoints", tag = "changes", security(("bearer" = [])),
    request_body(content = CheckpointRequest, content_type = "application/json"),
    responses((status = 201, description = "the checkpoint", body = Object),
        (status = 400, description = "a bad name", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 409, description = "a checkpoint of this name exists", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<CheckpointRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = req.name;
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(
            Problem::bad_request("a checkpoint name is 1 to 128 printable characters")
                .at_field("name"),
        );
    }
    let store = state.engine().store.clone();
    if store.checkpoints().await?.iter().any(|c| c.name == name) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("a checkpoint `{name}` exists already"),
        )
        .at_field("name"));
    }
    let cp = store.create_checkpoint(&name, &p.name).await?;
    state
        .audit_request(&p, "checkpoint.create", &name, "created")
        .await;
    Ok((StatusCode::CREATED, Json(json!(cp))))
}
