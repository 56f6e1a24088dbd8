//! `POST /api/v1/replay` (author): one loaded playbook run in shadow over past events, as
//! `belay replay`: the changes, approvals and guardrail holds it would have produced. Every
//! run it starts is a dry run; nothing is applied.

use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use belay_engine::replay::ReplayReport;
use belay_model::Event;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

/// Most events one replay takes.
const MAX_EVENTS: usize = 1000;

/// What to replay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The name of a loaded playbook.
    pub playbook: String,
    /// Past events (at most 1000).
    #[schema(value_type = Vec<Object>, max_items = 1000)]
    pub events: Vec<Value>,
}

/// Runs a loaded playbook as a dry run over the given events and reports what it would have
/// done.
#[utoipa::path(post, path = "/api/v1/replay", tag = "playbooks", security(("bearer" = [])),
    request_body(content = ReplayRequest, content_type = "application/json"),
    responses((status = 200, description = "what the playbook would have done, per event and in total", body = Object),
        (status = 400, description = "a bad event (its path) or too many", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such playbook loaded", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<ReplayRequest>,
) -> ApiResult<Json<Value>> {
    if req.events.len() > MAX_EVENTS {
        return Err(
            Problem::bad_request(format!("at most {MAX_EVENTS} events per replay"))
                .at_field("events"),
        );
    }
    let engine = state.engine();
    let pb = engine
        .playbooks
        .get(&req.playbook)
        .ok_or_else(|| Problem::not_found(format!("no loaded playbook `{}`", req.playbook)))?;
    let mut events = Vec::with_capacity(req.events.len());
    for (i, v) in req.events.into_iter().enumerate() {
        let e = Event::from_json(v).map_err(|e| {
            Problem::bad_request(format!("`events[{i}]`: {e}")).at_field(format!("events[{i}]"))
        })?;
        events.push(e);
    }
    let mut report = ReplayReport::new(&pb.name);
    for e in events {
        report.push(engine.replay(&pb, e).await?);
    }
    Ok(Json(json!(report)))
}
