//! One loaded playbook (`GET /api/v1/playbooks/{name}`) and linting a playbook sent as text
//! (`POST /api/v1/playbooks/lint`, author), with the same checks as `belay lint`.

use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use belay_playbook::Call;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

/// One loaded playbook: its header, trigger, steps and YAML source.
#[utoipa::path(get, path = "/api/v1/playbooks/{name}", tag = "playbooks", security(("bearer" = [])),
    params(("name" = String, Path, description = "the playbook's name")),
    responses((status = 200, description = "the playbook", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such playbook loaded", body = Problem)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let pb = state
        .engine()
        .playbooks
        .get(&name)
        .ok_or_else(|| Problem::not_found(format!("no loaded playbook `{name}`")))?;
    let steps: Vec<Value> = pb
        .steps
        .iter()
        .map(|s| {
            let (kind, call) = match &s.call {
                Call::Action(a) => ("action", a.as_str()),
                Call::Playbook(p) => ("playbook", p.as_str()),
            };
            json!({ "id": s.id, kind: call, "trust": s.trust,
                "guardrails": s.guardrails.iter().map(|(g, _)| g).collect::<Vec<_>>() })
        })
        .collect();
    Ok(Json(json!({
        "name": pb.name, "description": pb.description, "author": pb.author,
        "path": pb.path, "hash": pb.hash, "trigger": pb.trigger.event, "trust": pb.trust,
        "steps": steps, "source": &*pb.source,
    })))
}

/// A playbook to lint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LintRequest {
    /// The playbook's YAML text.
    pub source: String,
    /// The file name its problems are reported against (default `playbook.yaml`).
    #[serde(default)]
    pub file: Option<String>,
}

/// One problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct LintProblem {
    /// Line, from 1 (0: the file as a whole).
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The lint's verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct LintAnswer {
    /// Whether it is clean.
    pub ok: bool,
    /// Each problem as `FILE:LINE:COL: error: MESSAGE`, as `belay lint` prints it.
    pub lines: Vec<String>,
    /// Each problem.
    pub problems: Vec<LintProblem>,
}

/// Checks a playbook sent as text, with the sub-playbooks it calls resolved against the
/// loaded set. It is not loaded: a reload does that.
#[utoipa::path(post, path = "/api/v1/playbooks/lint", tag = "playbooks", security(("bearer" = [])),
    request_body(content = LintRequest, content_type = "application/json"),
    responses((status = 200, description = "`ok`, and each problem with its line and column", body = LintAnswer),
        (status = 400, description = "a bad body", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn lint(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<LintRequest>,
) -> ApiResult<Json<LintAnswer>> {
    let file = req.file.unwrap_or_else(|| "playbook.yaml".into());
    let path = std::path::PathBuf::from(&file);
    let diagnostics = state
        .engine()
        .playbooks
        .lint_text(&path, &req.source, &state.catalog);
    let lines = diagnostics
        .iter()
        .map(|d| {
            if d.pos.line == 0 {
                format!("{file}: error: {}", d.message)
            } else {
                format!("{file}:{d}")
            }
        })
        .collect();
    Ok(Json(LintAnswer {
        ok: diagnostics.is_empty(),
        lines,
        problems: diagnostics
            .into_iter()
            .map(|d| LintProblem {
                line: d.pos.line,
                column: d.pos.col,
                message: d.message,
                hint: d.hint,
            })
            .collect(),
    }))
}
