//! Webhook sources: `POST /hooks/{source}`, each source with its own authentication.
//!
//! `hmac`: the sender signs the timestamp and the body with a shared secret, the scheme
//! GitHub and Slack use: `X-Belay-Timestamp: <Unix seconds>` and
//! `X-Belay-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`. A timestamp more
//! than five minutes away from the server's clock is refused (replay window); signatures are
//! compared in constant time; two secrets may be active at once (rotation). `bearer`: the
//! sender presents an API token with the `responder` role.
//!
//! The run's trigger is the source's identity (`principal`, default `hook:<name>`) or the
//! token's principal, never a field of the body. `Idempotency-Key` makes a retried request
//! with a body that has no `id` the same event.

use crate::auth::{self, Principal, Role};
use crate::problem::Problem;
use crate::signature;
use axum::http::{HeaderMap, StatusCode};

/// How a source authenticates its sender.
#[derive(Clone)]
pub enum HookAuth {
    /// HMAC-SHA256 signatures with any of these secrets (two during a rotation).
    Hmac(Vec<Vec<u8>>),
    /// An API token with the `responder` role.
    Bearer,
}

impl std::fmt::Debug for HookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookAuth::Hmac(s) => write!(f, "Hmac({} secret(s))", s.len()),
            HookAuth::Bearer => f.write_str("Bearer"),
        }
    }
}

/// One configured webhook source.
#[derive(Debug, Clone)]
pub struct HookSource {
    /// Its name: the path segment of `/hooks/{name}`.
    pub name: String,
    /// Who its events are from (the trigger of their runs) when signed with its secret.
    pub principal: String,
    /// How its sender authenticates.
    pub auth: HookAuth,
    /// Maps a foreign payload to belay's event shape; `None`: the body is an event.
    pub template: Option<std::sync::Arc<crate::templates::PayloadTemplate>>,
}

/// The sender of a webhook request to `source`, or 401/403.
pub async fn authenticate(
    source: &HookSource,
    store: &dyn belay_store::Store,
    headers: &HeaderMap,
    body: &[u8],
    client: &str,
) -> Result<Principal, Problem> {
    match &source.auth {
        HookAuth::Hmac(secrets) => {
            let now = chrono::Utc::now().timestamp();
            signature::BELAY
                .verify(secrets, headers, body, now)
                .map_err(|why| {
                    Problem::new(StatusCode::UNAUTHORIZED, format!("webhook refused: {why}"))
                })?;
            Ok(Principal {
                name: source.principal.clone(),
                roles: vec![Role::Responder],
                token_id: None,
                session_id: None,
                client: client.to_owned(),
            })
        }
        HookAuth::Bearer => {
            let authz = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let p = auth::bearer(store, authz, client).await?;
            auth::require(&p, Role::Responder)?;
            Ok(p)
        }
    }
}
