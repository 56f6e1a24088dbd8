//! The route table: every route with the role it needs, registered in one place so the
//! router, the role checks and the OpenAPI test all see the same list.

pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod cases;
pub(crate) mod catalog;
pub(crate) mod checkpoints;
pub(crate) mod control;
pub(crate) mod directory;
pub(crate) mod events;
pub(crate) mod events_read;
pub(crate) mod guardrails;
pub(crate) mod health;
pub(crate) mod hooks;
pub(crate) mod intel;
pub(crate) mod journal;
mod params;
pub(crate) mod playbooks;
pub(crate) mod reads;
pub(crate) mod replay;
pub(crate) mod rollback;
pub(crate) mod secrets;
pub(crate) mod sources;
pub(crate) mod trust;

use crate::auth::{self, Role};
use crate::channels::{chat, email};
use crate::state::AppState;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{Method, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use std::net::SocketAddr;
use std::sync::Arc;

/// One route: its method, its path (OpenAPI syntax) and the role it needs (`None`: public, or
/// authenticated by the route itself, as webhooks are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The HTTP method.
    pub method: Method,
    /// The path, with `{param}` segments.
    pub path: &'static str,
    /// The role a bearer token needs; `None` for health checks and webhooks.
    pub role: Option<Role>,
}

struct Api {
    state: Arc<AppState>,
    router: Router<Arc<AppState>>,
    specs: Vec<RouteSpec>,
}

impl Api {
    fn add<H, T>(mut self, method: Method, path: &'static str, role: Option<Role>, h: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        let mut route = on(filter, h);
        if let Some(role) = role {
            route = route.route_layer(from_fn_with_state((self.state.clone(), role), authorize));
        }
        self.router = self.router.route(path, route);
        self.specs.push(RouteSpec { method, path, role });
        self
    }
}

/// The client's address as the connection shows it.
pub(crate) fn client_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Authenticates the bearer token and checks the route's role; the principal goes into the
/// request's extensions for the handler.
async fn authorize(
    State((state, role)): State<(Arc<AppState>, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = client_of(&req);
    let authz = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // A bearer token, or else a console session (its CSRF token needed for writes).
    let authenticated = match authz {
        Some(_) => auth::bearer(&*state.engine().store, authz, &client).await,
        None => crate::console::session::authenticate(
            &state,
            req.method(),
            req.headers(),
            &client,
            None,
        )
        .await
        .map(|s| s.principal),
    };
    let principal = match authenticated {
        Ok(p) => p,
        Err(problem) => return problem.into_response(),
    };
    if let Err(problem) = auth::require(&principal, role) {
        return problem.into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The router over `state`, and its route table.
pub fn router(state: Arc<AppState>) -> (Router, Vec<RouteSpec>) {
    use Method as M;
    use Role::{Admin, Author, Responder, Viewer};
    let v = Some(Viewer);
    let r = Some(Responder);
    let a = Some(Admin);
    let api = Api {
        state: state.clone(),
        router: Router::new(),
        specs: Vec::new(),
    }
    .add(M::GET, "/healthz", None, health::healthz)
    .add(M::GET, "/readyz", None, health::readyz)
    .add(M::GET, "/metrics", v, health::metrics)
    .add(M::GET, "/api/v1/openapi.json", v, health::openapi)
    .add(M::GET, "/api/v1/whoami", v, health::whoami)
    .add(M::POST, "/api/v1/events", r, events::post_events)
    .add(M::GET, "/api/v1/runs", v, reads::list_runs)
    .add(M::GET, "/api/v1/runs/{id}", v, reads::get_run)
    .add(M::GET, "/api/v1/events", v, events_read::search)
    .add(M::GET, "/api/v1/events/{id}", v, events_read::get_event)
    .add(M::GET, "/api/v1/changes", v, journal::list_changes)
    .add(M::GET, "/api/v1/changes/{id}", v, journal::get_change)
    .add(M::GET, "/api/v1/checkpoints", v, checkpoints::list)
    .add(M::POST, "/api/v1/checkpoints", a, checkpoints::create)
    .add(M::GET, "/api/v1/approvals", v, approvals::list)
    .add(M::GET, "/api/v1/approvals/{id}", v, approvals::show)
    .add(
        M::POST,
        "/api/v1/approvals/{id}/approve",
        r,
        approvals::approve,
    )
    .add(M::POST, "/api/v1/approvals/{id}/deny", r, approvals::deny)
    .add(M::POST, "/api/v1/rollback", r, rollback::rollback)
    .add(M::POST, "/api/v1/guardrails/check", v, guardrails::check)
    .add(M::GET, "/api/v1/guardrails/holds", v, guardrails::holds)
    .add(M::GET, "/api/v1/trust", v, reads::trust_report)
    .add(M::POST, "/api/v1/trust/reset", a, trust::reset)
    .add(M::POST, "/api/v1/replay", Some(Author), replay::replay)
    .add(M::GET, "/api/v1/audit/verify", v, reads::audit_verify)
    .add(M::GET, "/api/v1/audit/export", v, audit::export)
    .add(M::GET, "/api/v1/intel/lookup", v, intel::lookup)
    .add(M::GET, "/api/v1/intel/stats", v, intel::stats)
    .add(M::POST, "/api/v1/intel/import", r, intel::import)
    .add(M::GET, "/api/v1/cases", v, cases::list)
    .add(M::POST, "/api/v1/cases", r, cases::create)
    .add(M::GET, "/api/v1/cases/{id}", v, cases::show)
    .add(M::POST, "/api/v1/cases/{id}/notes", r, cases::note)
    .add(M::POST, "/api/v1/cases/{id}/evidence", r, cases::evidence)
    .add(M::GET, "/api/v1/playbooks", v, catalog::playbooks)
    .add(M::GET, "/api/v1/playbooks/{name}", v, playbooks::show)
    .add(
        M::POST,
        "/api/v1/playbooks/lint",
        Some(Author),
        playbooks::lint,
    )
    .add(M::GET, "/api/v1/actions", v, catalog::actions)
    .add(M::GET, "/api/v1/users", a, directory::list_users)
    .add(M::POST, "/api/v1/users", a, directory::add_user)
    .add(
        M::POST,
        "/api/v1/users/{name}/disable",
        a,
        directory::disable_user,
    )
    .add(M::GET, "/api/v1/tokens", a, directory::list_tokens)
    .add(M::POST, "/api/v1/tokens", a, directory::create_token)
    .add(
        M::POST,
        "/api/v1/tokens/{id}/revoke",
        a,
        directory::revoke_token,
    )
    .add(M::GET, "/api/v1/pauses", v, control::pauses)
    .add(M::POST, "/api/v1/pause", a, control::pause)
    .add(M::POST, "/api/v1/unpause", a, control::unpause)
    .add(M::POST, "/api/v1/reload", Some(Author), control::reload)
    .add(M::GET, "/api/v1/sources", v, sources::list)
    .add(M::GET, "/api/v1/secrets", a, secrets::list)
    .add(M::POST, "/api/v1/secrets/{name}", a, secrets::set)
    .add(M::DELETE, "/api/v1/secrets/{name}", a, secrets::delete)
    .add(M::POST, "/hooks/{source}", None, hooks::post_hook)
    // Approvals in chat and by e-mail: each authenticates itself (signature, signed link).
    .add(M::POST, "/hooks/chat/{target}", None, chat::callback)
    .add(
        M::GET,
        "/approvals/email/{token}",
        None,
        email::confirm_page,
    )
    .add(M::POST, "/approvals/email/{token}", None, email::decide);
    let _ = state
        .openapi
        .set(crate::openapi::document_with_roles(&api.specs));
    let limit = state.config.body_limit;
    let router = api
        .router
        .merge(crate::console::router(state.clone()))
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state);
    (router, api.specs)
}
