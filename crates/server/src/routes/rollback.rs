//! `POST /api/v1/rollback`: undoes changes as the authenticated principal, newest first, each
//! target read again and verified; `dry_run` previews. The engine's rollback does the work.

use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use belay_engine::rollback::{RollbackOptions, Selection};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

/// What to roll back: exactly one of `change`, `run`, `to`, `since`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// One change.
    #[serde(default)]
    pub change: Option<String>,
    /// Every change of a run (and its sub-playbook runs).
    #[serde(default)]
    pub run: Option<String>,
    /// Every change after this checkpoint.
    #[serde(default)]
    pub to: Option<String>,
    /// Every change at or after this RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
    /// Report what would be undone; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Undo targets that drifted since the change too.
    #[serde(default)]
    pub force: bool,
}

/// Rolls changes back (or previews it with `dry_run`).
#[utoipa::path(post, path = "/api/v1/rollback", tag = "changes", security(("bearer" = [])),
    request_body(content = RollbackRequest, content_type = "application/json"),
    responses((status = 200, description = "each selected change and what happened to it", body = Object),
        (status = 400, description = "no or several selections, an unknown change, run or checkpoint", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low (`force` needs an admin)", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(rollback_as(&state, &p, req).await?)))
}

/// Rolls back (or previews) as `p`, audited as an API request unless a dry run; `force` needs
/// an admin. The API and the console both roll back through it.
pub(crate) async fn rollback_as(
    state: &Arc<AppState>,
    p: &Principal,
    req: RollbackRequest,
) -> Result<belay_engine::rollback::Report, Problem> {
    if req.force {
        crate::auth::require(p, crate::auth::Role::Admin).map_err(|mut e| {
            e.detail = format!(
                "`force` (undoing drifted targets) needs an admin: {}",
                e.detail
            );
            e.at_field("force")
        })?;
    }
    let selection = match (req.change, req.run, req.to, req.since) {
        (Some(c), None, None, None) => Selection::Change(c),
        (None, Some(r), None, None) => Selection::Run(r),
        (None, None, Some(t), None) => Selection::Checkpoint(t),
        (None, None, None, Some(t)) => Selection::Since(
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| {
                    Problem::bad_request(format!("`since` is not an RFC 3339 time: {e}"))
                        .at_field("since")
                })?
                .timestamp_millis(),
        ),
        _ => {
            return Err(Problem::bad_request(
                "choose exactly one of `change`, `run`, `to` and `since`",
            ));
        }
    };
    if req.force && !p.roles.contains(&crate::auth::Role::Admin) {
        return Err(Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            format!(
                "{} may not force a rollback over drift: it needs the admin role",
                p.name
            ),
        )
        .at_field("force"));
    }
    let subject = format!("{selection:?}");
    let result = belay_engine::rollback::rollback(
        &state.engine(),
        selection,
        RollbackOptions {
            dry_run: req.dry_run,
            force: req.force,
            actor: p.name.clone(),
        },
    )
    .await;
    if !req.dry_run {
        let outcome = match &result {
            Ok(r) => format!("{} item(s)", r.items.len()),
            Err(e) => format!("refused: {e}"),
        };
        state.audit_request(p, "rollback", &subject, &outcome).await;
    }
    Ok(result?)
}
