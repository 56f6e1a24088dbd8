//! `GET /api/v1/secrets`, `POST` and `DELETE /api/v1/secrets/{name}` (admin): connector
//! credentials sealed in the store. Write-only: no route answers a value, only names, key ids
//! and times. Sets and deletions are audited by name.

use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use belay_store::valid_secret_name;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

/// A secret's value (never answered back).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value, up to 64 KiB.
    pub value: String,
}

fn check_name(name: &str) -> ApiResult<()> {
    if valid_secret_name(name) {
        return Ok(());
    }
    Err(Problem::bad_request(
        "a secret's name is 1 to 128 letters, digits and `_`",
    ))
}

/// The stored secrets: names, key ids and times, never values.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", security(("bearer" = [])),
    responses((status = 200, description = "the secrets' names, key ids and times", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem)))]
pub async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let infos = state.engine().store.secret_infos().await?;
    Ok(Json(json!({ "secrets": infos })))
}

/// Sets (or replaces) a secret, sealed under the server's secrets key.
#[utoipa::path(post, path = "/api/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "the secret's name, as `${{ secrets.NAME }}` references it")),
    request_body(content = SecretValue, content_type = "application/json"),
    responses((status = 200, description = "the secret's name, key id and times (never its value)", body = Object),
        (status = 400, description = "a bad name or value", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 409, description = "the server has no secrets key", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn set(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SecretValue>,
) -> ApiResult<Json<Value>> {
    check_name(&name)?;
    if req.value.is_empty() || req.value.len() > 64 * 1024 {
        return Err(Problem::bad_request("a value has 1 byte to 64 KiB").at_field("value"));
    }
    let ring = state.config.secrets_key.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "the server has no secrets key ([secrets] key_file or BELAY_SECRETS_KEY)",
        )
    })?;
    let store = state.engine().store.clone();
    let mut sealed = ring
        .seal(&name, req.value.as_bytes(), belay_model::now_ms())
        .map_err(Problem::internal)?;
    if let Some(old) = store.sealed_secret(&name).await? {
        sealed.created_at = old.created_at;
    }
    store.put_secret(&sealed, &p.name).await?;
    state.audit_request(&p, "secret.set", &name, "set").await;
    Ok(Json(json!(belay_store::SecretInfo::from(&sealed))))
}

/// Deletes a secret.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "the secret's name")),
    responses((status = 200, description = "deleted", body = Object),
        (status = 400, description = "a bad name", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 404, description = "no such secret", body = Problem)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    check_name(&name)?;
    if !state.engine().store.delete_secret(&name, &p.name).await? {
        return Err(Problem::not_found(format!("no secret `{name}`")));
    }
    state
        .audit_request(&p, "secret.delete", &name, "deleted")
        .await;
    Ok(Json(json!({ "deleted": name })))
}
