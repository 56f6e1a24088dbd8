//! Guardrails on request: every governing guardrail's verdict on one planned change
//! (`belay guardrails check`), and the changes guardrails hold for a person.

use super::params::bad_query;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use belay_engine::approvals;
use belay_engine::guard::CheckError;
use belay_model::ApprovalStatus;
use belay_store::ApprovalFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// A planned change to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The change action (`blocklist.add`).
    pub action: String,
    /// Its inputs (`{"list": "egress", "entry": "203.0.113.9"}`).
    #[serde(rename = "with")]
    #[schema(value_type = Object)]
    pub with: Value,
}

/// The guardrails' verdicts on one planned change.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckAnswer {
    /// Whether every governing guardrail lets it pass.
    pub pass: bool,
    /// Each governing guardrail's verdict.
    #[schema(value_type = Vec<Object>)]
    pub verdicts: Vec<Value>,
}

/// Every guardrail governing a change's verdict on it, as the executor would decide now.
/// Nothing is planned, held or applied.
#[utoipa::path(post, path = "/api/v1/guardrails/check", tag = "guardrails", security(("bearer" = [])),
    request_body(content = CheckRequest, content_type = "application/json"),
    responses((status = 200, description = "the verdicts", body = CheckAnswer),
        (status = 400, description = "an unknown action, or inputs that do not fit it", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn check(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<CheckRequest>,
) -> ApiResult<Json<CheckAnswer>> {
    let verdicts = state
        .engine()
        .check_planned(&req.action, &req.with)
        .await
        .map_err(|e| match e {
            CheckError::UnknownAction(_) => Problem::bad_request(e.to_string()).at_field("action"),
            CheckError::Invalid { .. } => Problem::bad_request(e.to_string()).at_field("with"),
            CheckError::Store(s) => s.into(),
        })?;
    Ok(Json(CheckAnswer {
        pass: verdicts.iter().all(|v| v.pass),
        verdicts: verdicts
            .iter()
            .map(|v| serde_json::to_value(v).unwrap_or_default())
            .collect(),
    }))
}

/// Which holds to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HoldsQuery {
    /// Every hold, not only those waiting.
    #[serde(default)]
    all: bool,
}

/// Changes a guardrail held for a person (waiting ones unless `all=true`), oldest first;
/// decide them as approvals.
#[utoipa::path(get, path = "/api/v1/guardrails/holds", tag = "guardrails", security(("bearer" = [])),
    params(HoldsQuery),
    responses((status = 200, description = "the holds, as approvals", body = Vec<Object>),
        (status = 400, description = "a bad filter", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn holds(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HoldsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<Value>>> {
    let Query(q) = query.map_err(bad_query)?;
    let list = state
        .engine()
        .store
        .approvals(&ApprovalFilter {
            status: (!q.all).then_some(ApprovalStatus::Pending),
            run_id: None,
        })
        .await?;
    Ok(Json(
        list.iter()
            .filter(|a| approvals::is_guardrail_hold(a))
            .map(approvals::approval_view)
            .collect(),
    ))
}
