//! Approvals: the list, one approval, and decisions. The decider is the authenticated
//! principal with its token's roles; quorum, approvers and separation of duties are decided by
//! `belay_engine::approvals`, as for the CLI.

use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use belay_engine::approvals::{self, DecisionError, Directory};
use belay_model::ApprovalStatus;
use belay_store::ApprovalFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Which approvals to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsQuery {
    /// Every approval, not only those waiting.
    #[serde(default)]
    all: bool,
    /// Only the approvals of this run.
    run_id: Option<String>,
}

/// A decision's body (`DecisionRequest` in the document: `Decision` is a step's decision).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = DecisionRequest)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Why, recorded with the vote.
    #[serde(default)]
    pub comment: Option<String>,
    /// Approve a held batch without these items (their keys, `block[3]`, or indices): they
    /// are denied by the decider, the rest go ahead. Only with `approve`.
    #[serde(default)]
    pub without: Vec<String>,
}

/// Approvals waiting for a decision (every one with `all=true`), oldest first. Deadlines that
/// passed are settled first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", security(("bearer" = [])),
    params(ApprovalsQuery),
    responses((status = 200, description = "approvals", body = Vec<Object>),
        (status = 400, description = "a bad filter", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ApprovalsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let store = &*state.engine().store;
    if !approvals::expire_due(store).await?.is_empty() {
        state.pick_up_decisions();
    }
    let mut list = store
        .approvals(&ApprovalFilter {
            status: (!q.all).then_some(ApprovalStatus::Pending),
            run_id: q.run_id,
        })
        .await?;
    approvals::attach_history(store, &mut list).await?;
    Ok(Json(json!(
        list.iter()
            .map(approvals::approval_view)
            .collect::<Vec<_>>()
    )))
}

/// One approval: the planned change, the target's state, the guardrail verdicts, the votes.
#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "the approval's id")),
    responses((status = 200, description = "the approval", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such approval", body = Problem)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = state.engine().store.clone();
    let a = store
        .get_approval(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no approval `{id}`")))?;
    let trigger = approvals::trigger_of(&*store, &a.run_id).await?;
    let mut one = [a];
    approvals::attach_history(&*store, &mut one).await?;
    let mut v = approvals::approval_view(&one[0]);
    v["trigger"] = trigger.unwrap_or(Value::Null);
    Ok(Json(v))
}

/// Approves a planned change as the authenticated principal; the run resumes once the quorum
/// is reached.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "the approval's id")),
    request_body(content = Decision, content_type = "application/json"),
    responses((status = 200, description = "the approval after the vote", body = Object),
        (status = 400, description = "a bad body", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low, not an approver, or separation of duties", body = Problem),
        (status = 404, description = "no such approval", body = Problem),
        (status = 409, description = "no longer pending", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn approve(
    state: State<Arc<AppState>>,
    p: Extension<Principal>,
    id: Path<String>,
    body: JsonBody<Decision>,
) -> ApiResult<Json<Value>> {
    decide(state, p, id, body, true).await
}

/// Denies a planned change as the authenticated principal; the run resumes and the step fails.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/deny", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "the approval's id")),
    request_body(content = Decision, content_type = "application/json"),
    responses((status = 200, description = "the approval after the vote", body = Object),
        (status = 400, description = "a bad body", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low, or not an approver", body = Problem),
        (status = 404, description = "no such approval", body = Problem),
        (status = 409, description = "no longer pending", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn deny(
    state: State<Arc<AppState>>,
    p: Extension<Principal>,
    id: Path<String>,
    body: JsonBody<Decision>,
) -> ApiResult<Json<Value>> {
    decide(state, p, id, body, false).await
}

async fn decide(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Decision>,
    approve: bool,
) -> ApiResult<Json<Value>> {
    let a = decide_as(&state, &p, &id, approve, body).await?;
    Ok(Json(approvals::approval_view(&a)))
}

/// Records `p`'s decision on approval `id` with the principal's roles, audited as an API
/// request (with the token or session and the client); the API and the console both decide
/// through it.
pub(crate) async fn decide_as(
    state: &Arc<AppState>,
    p: &Principal,
    id: &str,
    approve: bool,
    body: Decision,
) -> Result<belay_model::ApprovalRecord, Problem> {
    // The decider is the principal with its roles, whatever the directory says.
    let roles = p.roles.iter().map(|r| r.as_str().to_owned()).collect();
    let dir = Directory::new([(p.name.clone(), roles)]);
    let verb = if approve { "approve" } else { "deny" };
    if !approve && !body.without.is_empty() {
        return Err(Problem::bad_request(
            "`without` applies to an approval: a denial already applies to every item",
        )
        .at_field("without"));
    }
    let ballot = approvals::Ballot {
        channel: Some(if p.session_id.is_some() {
            "console"
        } else {
            "api"
        }),
        change_hash: None,
    };
    let result = approvals::cast(
        &*state.engine().store,
        &dir,
        id,
        &p.name,
        approve,
        body.comment,
        &body.without,
        ballot,
    )
    .await;
    let outcome = match &result {
        Ok(a) => a.status.to_string(),
        Err(e) => format!("refused: {e}"),
    };
    state
        .audit_request(p, &format!("approvals.{verb}"), id, &outcome)
        .await;
    let a = result.map_err(|e| match e {
        DecisionError::NotFound(_) => Problem::not_found(e.to_string()),
        DecisionError::NotPending { .. } | DecisionError::Conflict(_) => {
            Problem::new(StatusCode::CONFLICT, e.to_string())
        }
        DecisionError::UnknownUser(_) | DecisionError::Refused(_) => {
            Problem::new(StatusCode::FORBIDDEN, e.to_string())
        }
        DecisionError::Store(s) => s.into(),
    })?;
    if a.status != ApprovalStatus::Pending {
        state.pick_up_decisions();
    }
    Ok(a)
}
