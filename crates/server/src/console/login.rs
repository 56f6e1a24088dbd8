//! `GET/POST /login` and `POST /logout`. A password sign-in goes through `auth::login` (argon2id,
//! five wrong passwords in a row lock the account for `[serve] lockout`, audited); failures are
//! also counted per client address, which is refused for a while after too many. The form
//! carries a CSRF token derived from a cookie of its own (`belay_login`), so another site cannot
//! sign a browser in to an account of its choosing. Sign-in and sign-out are audited with the
//! session id and the client's address.

use super::{ConsoleSettings, field, layout, session};
use crate::problem::Problem;
use crate::state::AppState;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use belay_model::AuditDraft;
use maud::html;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// How far back failed sign-ins from one address are counted.
const CLIENT_WINDOW_MS: i64 = 15 * 60_000;

/// The sign-in page, its form carrying the CSRF token of the form's secret `form_secret`.
fn login_page(
    status: StatusCode,
    message: Option<&str>,
    name: &str,
    form_secret: &str,
) -> Response {
    let page = layout::bare(
        "Sign in",
        html! {
            main.narrow.login {
                h1 { "belay" }
                p.sub { "Sign in to the console" }
                @if let Some(m) = message { p.problem id="login-error" { (m) } }
                form method="post" action="/login" {
                    input type="hidden" name=(session::CSRF_FIELD) value=(session::csrf_of(form_secret));
                    label { "User" input type="text" name="user" value=(name) autocomplete="username" autofocus required; }
                    label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                    button.primary type="submit" id="sign-in" { "Sign in" }
                }
            }
        },
    );
    (status, Html(page.into_string())).into_response()
}

/// The sign-in form (or, from a trusted proxy naming a user, straight into the console).
pub async fn form(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Ok(who) = super::viewer(&state, &headers, &addr).await {
        let mut r = Redirect::to("/console/approvals").into_response();
        if let Some(c) = who.set_cookie {
            r.headers_mut().insert(header::SET_COOKIE, c);
        }
        return r;
    }
    let (secret, cookie) = match form_secret(&state, &headers, &addr.0.to_string()) {
        Ok(s) => s,
        Err(p) => return super::error_page(&p),
    };
    with_cookie(login_page(StatusCode::OK, None, "", &secret), cookie)
}

/// The sign-in form's secret: the request's, or a new one with the cookie that sets it.
fn form_secret(
    state: &AppState,
    headers: &HeaderMap,
    client: &str,
) -> Result<(String, Option<HeaderValue>), Problem> {
    if let Some(s) = session::named_cookie(headers, session::LOGIN_COOKIE) {
        return Ok((s, None));
    }
    let (secret, cookie) = new_form_secret(state, headers, client)?;
    Ok((secret, Some(cookie)))
}

/// A new sign-in form secret and the cookie that sets it.
fn new_form_secret(
    state: &AppState,
    headers: &HeaderMap,
    client: &str,
) -> Result<(String, HeaderValue), Problem> {
    let secret = session::random_secret()?;
    let cookie = session::login_cookie(&state.config.console, headers, client, &secret);
    Ok((secret, cookie))
}

fn with_cookie(mut r: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn client_key(client: &str) -> String {
    session::client_ip(client).map_or_else(|| client.to_owned(), |ip| ip.to_string())
}

/// Checks the password and starts a session.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let client = addr.0.to_string();
    let name = field(&form, "user").unwrap_or_default().to_owned();
    let password = form.get("password").cloned().unwrap_or_default();
    let settings: &ConsoleSettings = &state.config.console;
    // Only the form this console served may sign in; nothing is counted or audited otherwise.
    let given = form.get(session::CSRF_FIELD).map(String::as_str);
    let form_secret = match session::named_cookie(&headers, session::LOGIN_COOKIE) {
        Some(s) if session::csrf_ok(&s, given) => s,
        _ => {
            let (secret, cookie) = match new_form_secret(&state, &headers, &client) {
                Ok(s) => s,
                Err(p) => return super::error_page(&p),
            };
            let message = "this sign-in did not come from this console's form (or the form expired): sign in again";
            return with_cookie(
                login_page(StatusCode::FORBIDDEN, Some(message), &name, &secret),
                Some(cookie),
            );
        }
    };
    let store = state.engine().store.clone();
    let now = belay_model::now_ms();
    let key = client_key(&client);
    match store.login_failures(&key, now - CLIENT_WINDOW_MS).await {
        Ok(n) if n >= settings.client_failures => {
            let mut r = login_page(
                StatusCode::TOO_MANY_REQUESTS,
                Some("too many failed sign-ins from this address: try again later"),
                &name,
                &form_secret,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(900u32));
            return r;
        }
        Ok(_) => {}
        Err(e) => return super::error_page(&Problem::from(e)),
    }
    let result = crate::auth::login(&*store, &name, &password, settings.lockout, &client).await;
    let principal = match result {
        Ok(p) => p,
        Err(p) => {
            if p.status == 401 {
                if let Err(e) = store
                    .note_login_failure(&key, &name, now, now - CLIENT_WINDOW_MS)
                    .await
                {
                    tracing::error!("recording a failed sign-in: {e}");
                }
                if store.get_user(&name).await.ok().flatten().is_none() {
                    let draft = AuditDraft {
                        kind: "user.login_failed".into(),
                        actor: name.clone(),
                        subject: name.clone(),
                        detail: serde_json::json!({ "client": client, "unknown_user": true }),
                    };
                    if let Err(e) = store.append_audit(vec![draft]).await {
                        tracing::error!("auditing a failed sign-in: {e}");
                    }
                }
            }
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut r = login_page(status, Some(&p.detail), &name, &form_secret);
            if let Some(s) = p.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(s));
            }
            return r;
        }
    };
    let secret = match session::start(&state, &principal.name, "password", &client).await {
        Ok(s) => s,
        Err(p) => return super::error_page(&p),
    };
    let mut r = Redirect::to("/console/approvals").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session::cookie(settings, &headers, &client, &secret),
    );
    r
}

/// Ends the session (with its CSRF token) and clears the cookie.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let client = addr.0.to_string();
    let Some(secret) = session::cookie_secret(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if !session::csrf_ok(&secret, form.get(session::CSRF_FIELD).map(String::as_str)) {
        return super::error_page(&Problem::new(
            StatusCode::FORBIDDEN,
            "signing out needs the session's CSRF token",
        ));
    }
    let hash = crate::auth::token_hash(&secret);
    if let Err(e) = state
        .engine()
        .store
        .end_session(&hash, "user.logout", &client)
        .await
    {
        return super::error_page(&Problem::from(e));
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie());
    r
}
