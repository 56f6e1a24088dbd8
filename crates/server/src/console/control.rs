//! The pause switch (admins, on every page): pauses or resumes all automation or one
//! playbook through the same `pause_as`/`unpause_as` as the API.

use super::{field, writer};
use crate::auth::Role;
use crate::routes::control::{PauseRequest, pause_as, unpause_as};
use crate::state::AppState;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

fn back(headers: &HeaderMap) -> String {
    headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/console/").map(|i| r[i..].to_owned()))
        .unwrap_or_else(|| "/console/approvals".into())
}

fn request(form: &HashMap<String, String>) -> PauseRequest {
    PauseRequest {
        playbook: field(form, "playbook").map(str::to_owned),
        reason: field(form, "reason").map(str::to_owned),
    }
}

/// `POST /console/pause` (admin).
pub async fn pause(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match writer(&state, &headers, &addr, &form, Role::Admin).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match pause_as(&state, &who.p, request(&form)).await {
        Ok(_) => super::see_other(&back(&headers)),
        Err(p) => super::error_page(&p),
    }
}

/// `POST /console/unpause` (admin).
pub async fn unpause(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match writer(&state, &headers, &addr, &form, Role::Admin).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match unpause_as(&state, &who.p, request(&form)).await {
        Ok(_) => super::see_other(&back(&headers)),
        Err(p) => super::error_page(&p),
    }
}
