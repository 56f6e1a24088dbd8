//! The web console served by `belay serve`: server-rendered pages (maud) over the same engine,
//! store and policy as the API, with a small embedded script for live updates.
//!
//! One file per page or job: [`session`] (cookies, CSRF, trusted proxies), `login` (sign-in,
//! lockout, sign-out), `layout` (the page shell, the pause switch, security headers), `assets`
//! (the embedded stylesheet and script), `approvals` (the queue and decisions, new holds by
//! server-sent events), `runs` (list and timeline), `changes` (the journal and rollback with a
//! preview), `guardrails` (holds, denials and baseline charts), `chart` (inline SVG), `trust`
//! (the report and resets), `audit` (verification and export), `events`, `intel`, `cases`,
//! `control` (pausing automation) and `diff` (before and after of a planned change).
//!
//! Every write goes through the same checks as the API: the principal's role, then the engine's
//! policy (approvers, quorum, separation of duties); a page only offers what the role may do.
//! Everything that came from an event or a remote system is rendered as escaped text.

mod approvals;
mod assets;
mod audit;
mod cases;
mod changes;
mod chart;
mod control;
mod diff;
mod events;
mod guardrails;
mod intel;
mod layout;
mod login;
mod runs;
pub mod session;
mod trust;

use crate::auth::{Principal, Role};
use crate::problem::Problem;
use crate::state::AppState;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Console sign-in settings (`[serve]` in belay.toml).
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// A session ends after this long without a request (ms; `session_idle`, default 30m).
    pub session_idle_ms: i64,
    /// A session ends this long after sign-in whatever happens (ms; `session_max`, default 12h).
    pub session_max_ms: i64,
    /// Wrong passwords in a row that lock an account, and for how long (`lockout`, 15m).
    pub lockout: belay_store::Lockout,
    /// Mark the session cookie `Secure` (serve behind TLS).
    pub secure_cookies: bool,
    /// Addresses of the proxies whose user header is believed (`trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header a trusted proxy names the signed-in user in (`proxy_user_header`).
    pub proxy_user_header: Option<String>,
    /// Failed sign-ins from one address within 15 minutes after which it is refused (429).
    pub client_failures: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            session_idle_ms: 30 * 60_000,
            session_max_ms: 12 * 3_600_000,
            lockout: belay_store::Lockout::default(),
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            proxy_user_header: None,
            client_failures: 20,
        }
    }
}

/// The console's routes (HTML pages, forms, the event stream and the assets).
pub(crate) fn router(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    let home = || async { Redirect::to("/console/approvals") };
    Router::new()
        .route("/", get(home))
        .route("/console", get(home))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/console/assets/{file}", get(assets::serve))
        .route("/console/approvals", get(approvals::page))
        .route("/console/approvals/queue", get(approvals::queue))
        .route("/console/approvals/feed", get(approvals::feed))
        .route("/console/approvals/{id}/decide", post(approvals::decide))
        .route("/console/runs", get(runs::list))
        .route("/console/runs/{id}", get(runs::timeline))
        .route("/console/changes", get(changes::journal))
        .route("/console/rollback", post(changes::rollback))
        .route("/console/guardrails", get(guardrails::page))
        .route("/console/trust", get(trust::page))
        .route("/console/trust/reset", post(trust::reset))
        .route("/console/audit", get(audit::page))
        .route("/console/audit/export", get(audit::export))
        .route("/console/events", get(events::search))
        .route("/console/intel", get(intel::lookup))
        .route("/console/cases", get(cases::list))
        .route("/console/cases/{id}", get(cases::show))
        .route("/console/pause", post(control::pause))
        .route("/console/unpause", post(control::unpause))
        .layer(axum::middleware::map_response(layout::security_headers))
        .with_state(state)
}

/// What a console handler knows about its caller.
pub(crate) struct Who {
    /// The signed-in principal (with the session id and client address).
    pub p: Principal,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
    set_cookie: Option<HeaderValue>,
}

impl Who {
    /// Whether the principal holds `role`.
    pub fn may(&self, role: Role) -> bool {
        role.granted_by(&self.p.roles)
    }

    /// `page` as an HTML answer (with the session cookie when one was just made).
    pub fn html(&self, page: maud::Markup) -> Response {
        let mut r = Html(page.into_string()).into_response();
        if let Some(c) = &self.set_cookie {
            r.headers_mut().insert(header::SET_COOKIE, c.clone());
        }
        r
    }
}

/// The caller of a page (a safe request): signed in, or sent to the sign-in page.
pub(crate) async fn viewer(
    state: &AppState,
    headers: &HeaderMap,
    addr: &ConnectInfo<SocketAddr>,
) -> Result<Who, Response> {
    let client = addr.0.to_string();
    match session::authenticate(state, &Method::GET, headers, &client, None).await {
        Ok(s) => Ok(Who {
            p: s.principal,
            csrf: s.csrf,
            set_cookie: s.set_cookie,
        }),
        Err(p) if p.status == 401 => Err(Redirect::to("/login").into_response()),
        Err(p) => Err(error_page(&p)),
    }
}

/// The caller of a form post: signed in, with the session's CSRF token in the form, and
/// holding `role`; otherwise an error page (401, 403) and nothing changes.
pub(crate) async fn writer(
    state: &AppState,
    headers: &HeaderMap,
    addr: &ConnectInfo<SocketAddr>,
    form: &HashMap<String, String>,
    role: Role,
) -> Result<Who, Response> {
    let client = addr.0.to_string();
    let field = form.get(session::CSRF_FIELD).map(String::as_str);
    let s = session::authenticate(state, &Method::POST, headers, &client, field)
        .await
        .map_err(|p| error_page(&p))?;
    crate::auth::require(&s.principal, role).map_err(|p| error_page(&p))?;
    Ok(Who {
        p: s.principal,
        csrf: s.csrf,
        set_cookie: None,
    })
}

/// A problem as an HTML page with its status.
pub(crate) fn error_page(p: &Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page = layout::bare(
        p.title,
        maud::html! {
            main.narrow {
                h1 { (p.status) " " (p.title) }
                p.problem { (p.detail) }
                p { a href="/console/approvals" { "Back to the console" } }
            }
        },
    );
    let mut r = (status, Html(page.into_string())).into_response();
    if let Some(s) = p.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// A value of a form or query, trimmed; `None` when absent or blank.
pub(crate) fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// "in 3h 12m", "2m ago": a duration from now, for people.
pub(crate) fn from_now(at_ms: i64) -> String {
    let d = at_ms - belay_model::now_ms();
    let secs = (d.abs() / 1000) as u64;
    let text = if secs >= 86_400 {
        format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600)
    } else if secs >= 3600 {
        format!("{}h {}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    };
    if d >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A time for people (RFC 3339, seconds).
pub(crate) fn when(ms: i64) -> String {
    belay_model::ms_to_rfc3339(ms)
}

/// JSON for people (indented), shown as text.
pub(crate) fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A console page answered: the shell (with the pauses in force) around `body`.
pub(crate) async fn render(
    state: &AppState,
    who: &Who,
    active: &str,
    title: &str,
    body: maud::Markup,
) -> Response {
    let pauses = state.engine().store.pauses().await.unwrap_or_default();
    who.html(layout::page(who, active, title, &pauses, body))
}

/// A redirect after a form post (303, so the browser follows with GET).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// An event's observables as compact JSON text, without the empty kinds.
pub(crate) fn observables(o: &belay_model::Observables) -> String {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, x| x.as_array().is_none_or(|a| !a.is_empty()));
    }
    v.to_string()
}
