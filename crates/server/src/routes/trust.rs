//! `POST /api/v1/trust/reset` (admin): lifts a step's demotion, as `belay trust reset`.

use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Which step's demotion to lift.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The playbook's name.
    pub playbook: String,
    /// The step's id.
    pub step: String,
}

/// A lifted demotion.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetAnswer {
    /// The playbook.
    pub playbook: String,
    /// The step, which runs at its declared level again.
    pub step: String,
    /// Who lifted it.
    pub reset_by: String,
}

/// Lifts a step's demotion: it runs at its declared trust level again.
#[utoipa::path(post, path = "/api/v1/trust/reset", tag = "trust", security(("bearer" = [])),
    request_body(content = ResetRequest, content_type = "application/json"),
    responses((status = 200, description = "the demotion is lifted", body = ResetAnswer),
        (status = 400, description = "a bad body", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 409, description = "the step is not demoted", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn reset(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<ResetRequest>,
) -> ApiResult<Json<ResetAnswer>> {
    let lifted = state
        .engine()
        .reset_trust(&req.playbook, &req.step, &p.name)
        .await?;
    let subject = format!("{}/{}", req.playbook, req.step);
    state
        .audit_request(
            &p,
            "trust.reset",
            &subject,
            if lifted { "lifted" } else { "not demoted" },
        )
        .await;
    if !lifted {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("{subject} is not demoted"),
        ));
    }
    Ok(Json(ResetAnswer {
        playbook: req.playbook,
        step: req.step,
        reset_by: p.name,
    }))
}
