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
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a signed timestamp may be from the server's clock, in seconds.
pub const REPLAY_WINDOW_SECS: i64 = 300;
/// The header carrying the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-belay-timestamp";
/// The header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-belay-signature";

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

/// `sha256=<hex>` of `<timestamp>.<body>` with `secret`: what a sender puts in
/// [`SIGNATURE_HEADER`].
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// Checks a signed request: the timestamp within the window of `now` (Unix seconds), the
/// signature made with one of `secrets`.
pub fn verify(
    secrets: &[Vec<u8>],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ts: i64 = header(TIMESTAMP_HEADER)
        .ok_or("the X-Belay-Timestamp header is missing")?
        .trim()
        .parse()
        .map_err(|_| "X-Belay-Timestamp is not Unix seconds")?;
    if (now - ts).abs() > REPLAY_WINDOW_SECS {
        return Err("the signature's timestamp is outside the 5-minute window");
    }
    let sig = header(SIGNATURE_HEADER).ok_or("the X-Belay-Signature header is missing")?;
    let given = sig
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or("X-Belay-Signature is not sha256=<hex>")?;
    let ok = secrets.iter().fold(false, |ok, secret| {
        let mut m = mac(secret);
        m.update(ts.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        // Constant-time comparison; every secret is tried.
        m.verify_slice(&given).is_ok() | ok
    });
    if ok {
        Ok(())
    } else {
        Err("the signature does not match")
    }
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
            verify(secrets, headers, body, now).map_err(|why| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, ts.to_string().parse().unwrap());
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    #[test]
    fn a_signature_holds_for_its_body_and_time_with_either_active_secret() {
        let (old, new) = (b"old-secret".to_vec(), b"new-secret".to_vec());
        let secrets = [old.clone(), new.clone()];
        let body = br#"{"kind":"ids.alert"}"#;
        let now = 1_700_000_000;
        assert!(verify(&secrets, &headers(now, &sign(&new, now, body)), body, now).is_ok());
        assert!(verify(&secrets, &headers(now, &sign(&old, now, body)), body, now).is_ok());
        // Another body, another time, another secret, a stale time: refused.
        assert!(verify(&secrets, &headers(now, &sign(&new, now, body)), b"{}", now).is_err());
        assert!(
            verify(
                &secrets,
                &headers(now - 1, &sign(&new, now, body)),
                body,
                now
            )
            .is_err()
        );
        assert!(
            verify(
                &secrets,
                &headers(now, &sign(b"other", now, body)),
                body,
                now
            )
            .is_err()
        );
        let stale = now - REPLAY_WINDOW_SECS - 1;
        assert!(
            verify(
                &secrets,
                &headers(stale, &sign(&new, stale, body)),
                body,
                now
            )
            .is_err()
        );
        assert!(verify(&secrets, &HeaderMap::new(), body, now).is_err());
    }
}
