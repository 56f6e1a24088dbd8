//! Incident cases: list, one case file, and a person's case, notes and evidence
//! (`/api/v1/cases…`). Playbooks keep cases through `case.*`; a person adds through here, the
//! entry naming them (`by`) and the request audited.

use super::params::bad_query;
use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use belay_engine::case_file::{self, NewCase};
use belay_model::CaseStatus;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Which cases to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CasesQuery {
    /// Closed cases too.
    #[serde(default)]
    all: bool,
}

/// Cases, the most recently updated first (open ones unless `all=true`).
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases", security(("bearer" = [])),
    params(CasesQuery),
    responses((status = 200, description = "cases", body = Vec<belay_model::CaseRecord>),
        (status = 400, description = "a bad filter", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<CasesQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(bad_query)?;
    let cases = state
        .engine()
        .store
        .cases((!q.all).then_some(CaseStatus::Open))
        .await?;
    Ok(Json(json!(cases)))
}

/// One case file: the case, its runs with their events and changes, notes, evidence and
/// status history.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "the case's id")),
    responses((status = 200, description = "the case file", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such case", body = Problem)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = state.engine().store.clone();
    let file = store
        .case_file(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no case `{id}`")))?;
    Ok(Json(case_file::case_view(&*store, &file).await?))
}

/// A new case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    /// Its id: 1 to 128 letters, digits, `.`, `_`, `-` or `:`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub id: String,
    /// One line, for lists.
    #[schema(min_length = 1)]
    pub title: String,
    /// Severity (default `medium`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Longer free text.
    #[serde(default)]
    pub description: Option<String>,
    /// What the case is about (addresses, domains, users…).
    #[serde(default)]
    pub observables: Vec<String>,
    /// Who works on it.
    #[serde(default)]
    pub assignee: Option<String>,
}

/// What a case write did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseWritten {
    /// The case.
    pub case: String,
    /// False when the case was open already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// The id of the note or evidence written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
}

/// Opens a case (a closed one of the same id is reopened).
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", security(("bearer" = [])),
    request_body(content = CaseRequest, content_type = "application/json"),
    responses((status = 201, description = "the case is open", body = CaseWritten),
        (status = 400, description = "a bad field", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<CaseRequest>,
) -> ApiResult<(StatusCode, Json<CaseWritten>)> {
    let id_ok = !req.id.is_empty()
        && req.id.len() <= 128
        && req
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if !id_ok {
        return Err(Problem::bad_request(
            "a case id is 1 to 128 letters, digits, `.`, `_`, `-` or `:`",
        )
        .at_field("id"));
    }
    if req.title.trim().is_empty() {
        return Err(Problem::bad_request("a case needs a title").at_field("title"));
    }
    let id = req.id.clone();
    let changed = case_file::open_case(
        &*state.engine().store,
        NewCase {
            id: req.id,
            title: req.title,
            severity: req.severity,
            description: req.description,
            observables: req.observables,
            assignee: req.assignee,
        },
        &p.name,
    )
    .await?;
    state
        .audit_request(
            &p,
            "case.open",
            &id,
            if changed { "opened" } else { "open already" },
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CaseWritten {
            case: id,
            changed: Some(changed),
            entry_id: None,
        }),
    ))
}

/// A note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// The note's text.
    #[schema(min_length = 1)]
    pub note: String,
}

/// Appends a note to a case.
#[utoipa::path(post, path = "/api/v1/cases/{id}/notes", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "the case's id")),
    request_body(content = NoteRequest, content_type = "application/json"),
    responses((status = 201, description = "the note is written", body = CaseWritten),
        (status = 400, description = "a bad field", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such case", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn note(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<NoteRequest>,
) -> ApiResult<(StatusCode, Json<CaseWritten>)> {
    if req.note.trim().is_empty() {
        return Err(Problem::bad_request("the note is empty").at_field("note"));
    }
    let entry = case_file::add_note(&*state.engine().store, &id, &req.note, &p.name).await?;
    state.audit_request(&p, "case.add_note", &id, &entry).await;
    Ok((
        StatusCode::CREATED,
        Json(CaseWritten {
            case: id,
            changed: None,
            entry_id: Some(entry),
        }),
    ))
}

/// Evidence for a case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// What it is called.
    #[schema(min_length = 1)]
    pub name: String,
    /// Its kind (`pcap`, `email`, `file`, `other`…; default `other`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Where it is kept.
    #[serde(default)]
    pub location: Option<String>,
    /// Its content, as text (its SHA-256 is computed).
    #[serde(default)]
    pub content: Option<String>,
    /// Its SHA-256 (hex); must agree with `content` when both are given.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// Appends evidence to a case.
#[utoipa::path(post, path = "/api/v1/cases/{id}/evidence", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "the case's id")),
    request_body(content = EvidenceRequest, content_type = "application/json"),
    responses((status = 201, description = "the evidence is written", body = CaseWritten),
        (status = 400, description = "a bad field (a SHA-256 that does not match the content)", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such case", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn evidence(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<EvidenceRequest>,
) -> ApiResult<(StatusCode, Json<CaseWritten>)> {
    let input = json!({ "name": req.name, "kind": req.kind, "location": req.location,
        "content": req.content, "sha256": req.sha256, "description": req.description });
    let body = case_file::evidence_body(&input)
        .map_err(|(field, why)| Problem::bad_request(why).at_field(field))?;
    let entry = case_file::add_evidence(&*state.engine().store, &id, body, &p.name).await?;
    state
        .audit_request(&p, "case.add_evidence", &id, &entry)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CaseWritten {
            case: id,
            changed: None,
            entry_id: Some(entry),
        }),
    ))
}
