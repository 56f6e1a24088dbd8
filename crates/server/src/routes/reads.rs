//! Reads: runs (filtered, paged by cursor), one run with its steps, the trust report, the
//! audit chain's verification.

use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use base64::Engine as _;
use belay_engine::RunReport;
use belay_model::RunStatus;
use belay_store::RunFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Filters and page of `GET /api/v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only runs in this status (`pending`, `running`, `waiting_approval`, `succeeded`,
    /// `failed`...).
    status: Option<String>,
    /// Only runs of this playbook.
    playbook: Option<String>,
    /// Only runs of this event.
    event_id: Option<String>,
    /// At most this many (default 50, at most 500).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunsPage {
    /// The runs.
    #[schema(value_type = Vec<belay_model::RunRecord>)]
    pub runs: Vec<Value>,
    /// Give it as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

fn decode_cursor(c: &str) -> Result<(i64, String), Problem> {
    let bad =
        || Problem::bad_request("`cursor` is not a cursor this server gave").at_field("cursor");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

/// Runs, newest first, filtered, a page at a time.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", security(("bearer" = [])),
    params(RunsQuery),
    responses((status = 200, description = "a page of runs", body = RunsPage),
        (status = 400, description = "a bad filter", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn list_runs(
    State(state): State<Arc<AppState>>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunsPage>> {
    let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let status = q
        .status
        .map(|s| {
            s.parse::<RunStatus>()
                .map_err(|e| Problem::bad_request(e.to_string()).at_field("status"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut runs = state
        .engine()
        .store
        .list_runs(&RunFilter {
            status,
            playbook: q.playbook,
            event_id: q.event_id,
            limit: Some(limit + 1),
            before,
        })
        .await?;
    let more = runs.len() > limit;
    runs.truncate(limit);
    let next_cursor = more
        .then(|| runs.last().map(|r| encode_cursor(r.created_at, &r.id)))
        .flatten();
    Ok(Json(RunsPage {
        runs: runs.iter().map(|r| json!(r)).collect(),
        next_cursor,
    }))
}

/// One run as `GET /api/v1/runs/{id}` answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// The run.
    pub run: belay_model::RunRecord,
    /// Its step records, in order.
    pub steps: Vec<belay_model::StepRecord>,
    /// The run's report (status, each step's decision and outcome).
    #[schema(value_type = Object)]
    pub report: Value,
    /// The playbook version it runs with: `hash`, `stored`, the guardrail set stored with it.
    #[schema(value_type = Object)]
    pub playbook_version: Value,
}

/// One run with its steps (and those of the sub-playbook runs it called).
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "the run's id")),
    responses((status = 200, description = "the run, its steps, its report and the playbook version it runs with", body = RunView),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such run", body = Problem)))]
pub async fn get_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = &state.engine().store;
    let run = store
        .get_run(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no run `{id}`")))?;
    let steps = store.steps(&id).await?;
    let report = RunReport::from_records(&run, &steps);
    let version = belay_engine::version_info(&**store, &run).await?;
    Ok(Json(
        json!({ "run": run, "steps": steps, "report": report, "playbook_version": version }),
    ))
}

/// Per playbook step: declared and effective trust, the record, a recommendation.
#[utoipa::path(get, path = "/api/v1/trust", tag = "trust", security(("bearer" = [])),
    responses((status = 200, description = "the trust report", body = Vec<Object>),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn trust_report(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let engine = &state.engine();
    let playbooks: Vec<_> = if !engine.playbooks.is_empty() {
        engine.playbooks.iter().cloned().collect()
    } else {
        engine.stored_playbooks().await?
    };
    let report = belay_engine::trust::report_on(engine, &playbooks, &state.config.trust).await?;
    Ok(Json(json!(report)))
}

/// Verifies the audit trail's hash chain and that every applied change has its authority.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "`intact` with the entry count, or where it is broken", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn audit_verify(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(
        match belay_store::verify_audit(&*state.engine().store).await? {
            Ok(n) => json!({ "intact": true, "entries": n }),
            Err(problem) => {
                json!({ "intact": false, "seq": problem.seq(), "problem": problem.to_string() })
            }
        },
    ))
}
