//! Users and API tokens (admin only), as `belay users` and `belay tokens`: a token is shown
//! once, in the answer that creates it; the store audits every change with the admin as actor.

use crate::auth::{Principal, parse_roles};
use crate::body::Json as JsonBody;
use crate::principals::{self, DirectoryError};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

fn refused(e: DirectoryError) -> Problem {
    match e {
        DirectoryError::Invalid(field, why) => Problem::bad_request(why).at_field(field),
        DirectoryError::NotFound(why) => Problem::not_found(why),
        DirectoryError::Store(s) => s.into(),
    }
}

fn roles_of(text: &[String]) -> Result<Vec<crate::auth::Role>, Problem> {
    parse_roles(&text.join(",")).map_err(|e| Problem::bad_request(e).at_field("roles"))
}

/// Every user: stored ones and those of `[[users]]` in belay.toml.
#[utoipa::path(get, path = "/api/v1/users", tag = "directory", security(("bearer" = [])),
    responses((status = 200, description = "the users (never a password hash)", body = Vec<Object>),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem)))]
pub async fn list_users(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<Value>>> {
    let stored = state.engine().store.users().await?;
    let mut all: Vec<Value> = stored
        .iter()
        .map(|u| {
            json!({ "name": u.name, "roles": u.roles, "disabled": u.disabled,
                "password": u.password_hash.is_some(), "from": "store",
                "locked_until": u.locked_until.map(belay_model::ms_to_rfc3339) })
        })
        .collect();
    for (name, roles) in &state.config.config_users {
        if !stored
            .iter()
            .any(|s| belay_engine::approvals::same_user(&s.name, name))
        {
            all.push(json!({ "name": name, "roles": roles, "disabled": false,
                "password": false, "from": "config" }));
        }
    }
    Ok(Json(all))
}

/// A user to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    /// Their name (1 to 128 printable characters).
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// Their roles: `viewer`, `responder`, `author`, `admin`.
    #[schema(min_items = 1)]
    pub roles: Vec<String>,
    /// A password for console sign-in (at least 8 characters), stored as argon2id.
    #[serde(default)]
    #[schema(min_length = 8)]
    pub password: Option<String>,
}

/// A user as saved.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSaved {
    /// Their name.
    pub name: String,
    /// Their roles.
    pub roles: Vec<String>,
    /// `created` or `replaced`.
    pub saved: String,
    /// Whether they have a password.
    pub password: bool,
}

/// Adds a user (or replaces one of the same name).
#[utoipa::path(post, path = "/api/v1/users", tag = "directory", security(("bearer" = [])),
    request_body(content = UserRequest, content_type = "application/json"),
    responses((status = 201, description = "the user is saved", body = UserSaved),
        (status = 400, description = "a bad field", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn add_user(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<UserRequest>,
) -> ApiResult<(StatusCode, Json<UserSaved>)> {
    let roles = roles_of(&req.roles)?;
    let (user, note) = principals::save_user(
        &*state.engine().store,
        &req.name,
        &roles,
        req.password.as_deref(),
        &p.name,
    )
    .await
    .map_err(refused)?;
    state.audit_request(&p, "users.add", &user.name, note).await;
    Ok((
        StatusCode::CREATED,
        Json(UserSaved {
            password: user.password_hash.is_some(),
            name: user.name,
            roles: user.roles,
            saved: note.into(),
        }),
    ))
}

/// Disables a stored user: their tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "directory", security(("bearer" = [])),
    params(("name" = String, Path, description = "the user's name")),
    responses((status = 200, description = "the user is disabled", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 404, description = "no such stored user", body = Problem)))]
pub async fn disable_user(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = principals::disable_user(&*state.engine().store, &name, &p.name)
        .await
        .map_err(refused)?;
    state
        .audit_request(&p, "users.disable", &name, "disabled")
        .await;
    Ok(Json(json!({ "name": user.name, "disabled": true })))
}

/// Every token (never its text or hash).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "directory", security(("bearer" = [])),
    responses((status = 200, description = "the tokens", body = Vec<Object>),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem)))]
pub async fn list_tokens(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.engine().store.tokens().await?)))
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The principal it acts as.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// Its roles.
    #[schema(min_items = 1)]
    pub roles: Vec<String>,
    /// How long it works (`30d`); forever when absent.
    #[serde(default)]
    pub expires: Option<String>,
}

/// A new token: its text is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    /// The token (`belay_…`): send it as `Authorization: Bearer …`. Shown once.
    pub token: String,
    /// Its public id (to revoke it).
    pub id: String,
    /// The principal it acts as.
    pub principal: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// When it stops working (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Creates a token; the answer is the only place its text appears.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "directory", security(("bearer" = [])),
    request_body(content = TokenRequest, content_type = "application/json"),
    responses((status = 201, description = "the token", body = TokenCreated),
        (status = 400, description = "a bad field", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let roles = roles_of(&req.roles)?;
    let expires_at = req
        .expires
        .as_deref()
        .map(|e| {
            belay_model::parse_duration(e)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .filter(|ms| *ms > 0 && *ms < i64::MAX / 4)
                .map(|ms| belay_model::now_ms() + ms)
                .ok_or_else(|| {
                    Problem::bad_request(format!("`expires` `{e}` is not a duration like 30d"))
                        .at_field("expires")
                })
        })
        .transpose()?;
    let (text, token) = principals::create_token(
        &*state.engine().store,
        &req.name,
        &roles,
        expires_at,
        &p.name,
    )
    .await
    .map_err(refused)?;
    state
        .audit_request(&p, "tokens.create", &token.id, "created")
        .await;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: text,
            id: token.id,
            principal: token.principal,
            roles: token.roles,
            expires_at: token.expires_at.map(belay_model::ms_to_rfc3339),
        }),
    ))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "directory", security(("bearer" = [])),
    params(("id" = String, Path, description = "the token's id")),
    responses((status = 200, description = "the token is revoked", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "not an admin", body = Problem),
        (status = 404, description = "no such token, or revoked already", body = Problem)))]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    principals::revoke_token(&*state.engine().store, &id, &p.name)
        .await
        .map_err(refused)?;
    state
        .audit_request(&p, "tokens.revoke", &id, "revoked")
        .await;
    Ok(Json(json!({ "id": id, "revoked": true })))
}
