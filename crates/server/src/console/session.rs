//! Console sessions: the cookie, idle and absolute expiry, the CSRF token bound to the session,
//! and trusted-proxy sign-in.
//!
//! The cookie holds 256 random bits (`belay_session`, HttpOnly, SameSite=Strict, Secure when
//! configured or when a trusted proxy says the request came over HTTPS); the store keeps their
//! SHA-256. The CSRF token is derived from the cookie's secret (SHA-256 of a label and the
//! secret): a page carries it in a hidden field, scripts in `X-CSRF-Token`; another site can
//! neither read the cookie nor the token.

use super::ConsoleSettings;
use crate::auth::{self, Principal, Role};
use crate::problem::Problem;
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use base64::Engine as _;
use belay_store::SessionRecord;
use std::net::IpAddr;

/// The session cookie's name.
pub const COOKIE: &str = "belay_session";
/// The cookie of the sign-in form: its CSRF token is derived from it as a session's is, so a
/// sign-in can only come from the form this console served (no login CSRF).
pub const LOGIN_COOKIE: &str = "belay_login";
/// The header a script sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field a page sends the CSRF token in.
pub const CSRF_FIELD: &str = "csrf";
/// How often a session's last use is written back (at most).
const TOUCH_EVERY_MS: i64 = 30_000;

/// A signed-in console user: who, with which session, and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The principal, with the session id.
    pub principal: Principal,
    /// The token state-changing requests must carry.
    pub csrf: String,
    /// A new cookie to set (a session just made from a trusted proxy's header).
    pub set_cookie: Option<HeaderValue>,
}

/// The CSRF token of a session secret.
pub fn csrf_of(secret: &str) -> String {
    belay_model::sha256_hex(format!("belay-csrf\n{secret}").as_bytes())
}

/// Whether `given` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(secret: &str, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    let want = csrf_of(secret);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The session secret in the request's cookies.
pub fn cookie_secret(headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, COOKIE)
}

/// The value of cookie `name` in the request's cookies, when not empty.
pub fn named_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// 256 random bits, URL-safe base64.
pub fn random_secret() -> Result<String, Problem> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Problem::internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The IP address of a client string (`ip:port`).
pub fn client_ip(client: &str) -> Option<IpAddr> {
    client
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .ok()
        .or_else(|| client.parse().ok())
}

fn from_trusted_proxy(settings: &ConsoleSettings, client: &str) -> bool {
    client_ip(client).is_some_and(|ip| settings.trusted_proxies.iter().any(|n| n.contains(&ip)))
}

/// Whether the session cookie gets the `Secure` attribute for this request.
fn secure(settings: &ConsoleSettings, headers: &HeaderMap, client: &str) -> bool {
    settings.secure_cookies
        || (from_trusted_proxy(settings, client)
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https")))
}

/// The `Set-Cookie` value of a new session secret.
pub fn cookie(
    settings: &ConsoleSettings,
    headers: &HeaderMap,
    client: &str,
    secret: &str,
) -> HeaderValue {
    let max_age = settings.session_max_ms / 1000;
    let secure = if secure(settings, headers, client) {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("belay_session=; Path=/"))
}

/// The `Set-Cookie` value of a sign-in form's secret: sent back to `/login` only, for an hour.
pub fn login_cookie(
    settings: &ConsoleSettings,
    headers: &HeaderMap,
    client: &str,
    secret: &str,
) -> HeaderValue {
    let secure = if secure(settings, headers, client) {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={secret}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("belay_login=; Path=/login"))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("belay_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Starts a session for `name` (signed in `via` `password` or `proxy`); its secret.
pub async fn start(
    state: &AppState,
    name: &str,
    via: &str,
    client: &str,
) -> Result<String, Problem> {
    let secret = random_secret()?;
    let mut idb = [0u8; 8];
    getrandom::fill(&mut idb).map_err(Problem::internal)?;
    let now = belay_model::now_ms();
    let record = SessionRecord {
        hash: auth::token_hash(&secret),
        id: format!("ses_{}", hex::encode(idb)),
        principal: name.to_owned(),
        via: via.to_owned(),
        client: client.to_owned(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + state.config.console.session_max_ms,
    };
    state.engine().store.start_session(&record).await?;
    Ok(secret)
}

/// The roles of `name` in the directory (`[[users]]` and stored users); `None` for an unknown
/// or disabled user.
pub async fn roles_of_user(state: &AppState, name: &str) -> Result<Option<Vec<Role>>, Problem> {
    let store = &*state.engine().store;
    if let Some(u) = store.get_user(name).await? {
        return Ok((!u.disabled).then(|| auth::roles_of(&u.roles)));
    }
    Ok(state
        .config
        .config_users
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| auth::roles_of(r)))
}

fn unauthorized(why: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        format!("authentication needed: {why}"),
    )
}

/// The console user of a request: its session cookie (ended when idle or past its absolute
/// expiry, or when the user is disabled), or else, from a trusted proxy, the configured user
/// header (a new session is made for it). A state-changing method must carry the session's
/// CSRF token in `X-CSRF-Token` (or `csrf_field`, the form's field, when given); without it the
/// answer is 403.
pub async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client: &str,
    csrf_field: Option<&str>,
) -> Result<Signed, Problem> {
    let settings = &state.config.console;
    let store = &*state.engine().store;
    let now = belay_model::now_ms();
    let safe = matches!(*method, Method::GET | Method::HEAD);
    if let Some(secret) = cookie_secret(headers) {
        let hash = auth::token_hash(&secret);
        if let Some(s) = store.session_by_hash(&hash).await? {
            if now >= s.expires_at || now - s.last_seen_at >= settings.session_idle_ms {
                store.end_session(&hash, "session.expired", client).await?;
                return Err(unauthorized("the session expired; sign in again"));
            }
            let Some(roles) = roles_of_user(state, &s.principal).await? else {
                store.end_session(&hash, "session.ended", client).await?;
                return Err(unauthorized("the user is disabled or gone"));
            };
            if !safe {
                let given = headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .or(csrf_field);
                if !csrf_ok(&secret, given) {
                    return Err(Problem::new(
                        StatusCode::FORBIDDEN,
                        "this request needs the session's CSRF token (the `csrf` field or the X-CSRF-Token header); nothing was changed",
                    ));
                }
            }
            if now - s.last_seen_at >= TOUCH_EVERY_MS
                && let Err(e) = store.touch_session(&hash, now).await
            {
                tracing::warn!("noting the use of session {}: {e}", s.id);
            }
            return Ok(Signed {
                principal: Principal {
                    name: s.principal,
                    roles,
                    token_id: None,
                    session_id: Some(s.id),
                    client: client.to_owned(),
                },
                csrf: csrf_of(&secret),
                set_cookie: None,
            });
        }
    }
    // Single sign-on: the proxy in front says who it is; only from the configured addresses,
    // only for users of the directory, and only to start a session (a write needs its token).
    if let Some(h) = &settings.proxy_user_header
        && from_trusted_proxy(settings, client)
        && let Some(name) = headers.get(h.as_str()).and_then(|v| v.to_str().ok())
    {
        let name = name.trim();
        let Some(roles) = roles_of_user(state, name).await? else {
            return Err(unauthorized(&format!(
                "the proxy's user `{name}` is not in belay's directory"
            )));
        };
        if !safe {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "a state-changing request needs a console session and its CSRF token; nothing was changed",
            ));
        }
        let secret = start(state, name, "proxy", client).await?;
        let session = store.session_by_hash(&auth::token_hash(&secret)).await?;
        return Ok(Signed {
            principal: Principal {
                name: name.to_owned(),
                roles,
                token_id: None,
                session_id: session.map(|s| s.id),
                client: client.to_owned(),
            },
            csrf: csrf_of(&secret),
            set_cookie: Some(cookie(settings, headers, client, &secret)),
        });
    }
    Err(unauthorized(
        "send `Authorization: Bearer TOKEN`, or sign in at /login",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_is_bound_to_the_session_secret() {
        let t = csrf_of("secret-a");
        assert!(csrf_ok("secret-a", Some(&t)));
        assert!(!csrf_ok("secret-b", Some(&t)));
        assert!(!csrf_ok("secret-a", None));
        assert!(!csrf_ok("secret-a", Some("")));
    }

    #[test]
    fn the_cookie_is_read_among_others_and_the_client_ip_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; belay_session=xyz ; b=2"),
        );
        assert_eq!(cookie_secret(&h).as_deref(), Some("xyz"));
        assert_eq!(
            client_ip("127.0.0.1:4000"),
            Some("127.0.0.1".parse().unwrap())
        );
        let s = ConsoleSettings {
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            ..Default::default()
        };
        assert!(from_trusted_proxy(&s, "127.0.0.1:999"));
        assert!(!from_trusted_proxy(&s, "127.0.0.2:999"));
    }
}
