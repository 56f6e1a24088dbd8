//! The loaded playbooks and the action catalog.

use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

/// The playbooks the server runs: name, trigger, trust, version, steps.
#[utoipa::path(get, path = "/api/v1/playbooks", tag = "playbooks", security(("bearer" = [])),
    responses((status = 200, description = "the loaded playbooks", body = Vec<Object>),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn playbooks(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let list: Vec<Value> = state
        .engine()
        .playbooks
        .iter()
        .map(|pb| {
            json!({
                "name": pb.name, "description": pb.description, "author": pb.author,
                "path": pb.path, "hash": pb.hash, "trigger": pb.trigger.event,
                "trust": pb.trust,
                "steps": pb.steps.iter().map(|s| json!({ "id": s.id, "trust": s.trust })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!(list)))
}

/// The action catalog: every action with its kind, inputs, outputs and inverse.
#[utoipa::path(get, path = "/api/v1/actions", tag = "playbooks", security(("bearer" = [])),
    responses((status = 200, description = "the actions", body = Vec<Object>),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn actions(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let all: Vec<_> = state.catalog.iter().collect();
    Ok(Json(json!(all)))
}
