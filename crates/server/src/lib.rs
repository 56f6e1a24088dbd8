//! `belay serve`: the engine as a service.
//!
//! One axum router over one engine: the HTTP API under `/api/v1` (bearer tokens, every route
//! declaring the role it needs), signed webhooks under `/hooks/{source}`, health checks, the
//! OpenAPI document generated from the handlers, and Prometheus metrics. Errors are RFC 9457
//! problem details. Handlers are glue: what they do is done by the engine and the store.
//!
//! Where each part lives: [`auth`] (roles, tokens, passwords), [`console`] (the web console,
//! its sign-in and sessions), [`problem`] (errors), `body`
//! Where each part lives: [`auth`] (roles, tokens, passwords), [`channels`] (approvals in
//! chat and by e-mail), [`problem`] (errors), `body`
//! (content type, size limit, JSON with the path of a bad field), `routes/` (one file per
//! resource, and the route table), [`hooks`] (webhook sources and signatures), `openapi`
//! (the document), [`metrics`] (counters), `state` (what handlers share, running accepted
//! work) and `serve` (listening and shutting down). Operations: [`queue`] (the bounded ingest
//! queue, 429 when full), `ingest` (the commit path and the runs it starts), [`sources`]
//! (syslog, IMAP, tailed files and feeds in the same process, with their status), [`tls`]
//! (HTTPS) and `telemetry` (latency histograms and gauges for `/metrics`).

pub mod auth;
mod body;
pub mod channels;
pub mod console;
pub mod hooks;
mod ingest;
pub mod metrics;
mod openapi;
pub mod principals;
pub mod problem;
pub mod queue;
pub mod reload;
mod routes;
mod serve;
pub mod signature;
pub mod sources;
mod state;
mod telemetry;
pub mod templates;
pub mod tls;

pub use routes::{RouteSpec, router};
pub use serve::serve;
pub use state::{AppState, ServerConfig};

/// The OpenAPI 3.1 document of the API, without the routes' roles.
pub fn openapi_json() -> serde_json::Value {
    openapi::document()
}
