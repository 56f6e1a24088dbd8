//! The change journal: `GET /api/v1/changes` (filters as `belay changes list`) and
//! `GET /api/v1/changes/{id}` (one change with its before-state, after-state and inverse).

use super::params::bad_query;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use belay_model::ChangeStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::IntoParams;

/// Which changes to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// Only the changes of this run.
    run_id: Option<String>,
    /// Only changes in this status (`applied`, `reverted`, `drifted`, `failed`…).
    status: Option<String>,
    /// Only changes by this action (`firewall.block_ip`).
    action: Option<String>,
    /// Only changes of this target.
    target: Option<String>,
    /// Only applied changes with an expiry, soonest first (`belay changes list --expiring`).
    #[serde(default)]
    expiring: bool,
    /// At most this many: the newest (default: all).
    limit: Option<usize>,
}

/// The change journal, in the order changes were made (soonest expiry first with
/// `expiring=true`).
#[utoipa::path(get, path = "/api/v1/changes", tag = "changes", security(("bearer" = [])),
    params(ChangesQuery),
    responses((status = 200, description = "journaled changes", body = Vec<belay_model::ChangeRecord>),
        (status = 400, description = "a bad filter", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn list_changes(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(bad_query)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<ChangeStatus>()
                .map_err(|e| Problem::bad_request(e.to_string()).at_field("status"))
        })
        .transpose()?;
    if q.expiring && q.run_id.is_some() {
        return Err(Problem::bad_request(
            "`expiring` lists every run's changes: leave `run_id` out",
        )
        .at_field("expiring"));
    }
    let store = &state.engine().store;
    let mut changes = if q.expiring {
        store.expiring_changes(None, usize::MAX).await?
    } else {
        store.changes(q.run_id.as_deref()).await?
    };
    changes.retain(|c| {
        status.is_none_or(|s| c.status == s)
            && q.action.as_deref().is_none_or(|a| c.action == a)
            && q.target.as_deref().is_none_or(|t| c.target == t)
    });
    if let Some(n) = q.limit {
        let skip = changes.len().saturating_sub(n);
        changes.drain(..skip);
    }
    Ok(Json(json!(changes)))
}

/// One journaled change: inputs, before-state, after-state, inverse, who allowed it.
#[utoipa::path(get, path = "/api/v1/changes/{id}", tag = "changes", security(("bearer" = [])),
    params(("id" = String, Path, description = "the change's id")),
    responses((status = 200, description = "the change", body = belay_model::ChangeRecord),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such change", body = Problem)))]
pub async fn get_change(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let change = state
        .engine()
        .store
        .get_change(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no change `{id}`")))?;
    Ok(Json(json!(change)))
}
