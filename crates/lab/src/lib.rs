//! The lab: simulators of the SaaS security products belay drives when there is no local
//! open-source equivalent — an EDR, a SIEM watch list, a CMDB, a training platform, a takedown
//! service, a SaaS web proxy and a packet-capture appliance.
//!
//! One HTTP server serves them all under path prefixes (`/edr/v1`, `/siem/v1`, `/cmdb/v1`,
//! `/training/v1`, `/takedown/v1`, `/proxy/v1`, `/pcap/v1`, and the chat API simulator at
//! `/chat/api`). Each behaves like a real product's
//! API: bearer-token, API-key, basic or OAuth2 client-credentials authentication (401 otherwise),
//! state kept in memory and seeded with a small fleet, paginated lists, validation errors
//! (400/422 with a message), 404 for unknown ids, and `Idempotency-Key` support (a repeated
//! POST/PUT/DELETE with the same key returns the first result and is not applied twice).
//! Latency and faults (503 or 429 with `Retry-After` before the request is handled, a 500 or a
//! stall after it was applied) are injected at a configured rate, deterministically from a seed.
//! `GET /_state` shows every simulator's state and how many times each idempotency key was
//! applied, so tests can check that no change was lost or doubled.
//!
//! The lab reaches out only when a test asks it to, as the chat simulator's button presses do
//! (a signed callback to the request URL the test names); otherwise it only answers. It is
//! reached by belay through the generic HTTP connector and its YAML specs, and through the chat
//! notification target, exactly as a real product would be.

mod api;
mod chat;
mod cmdb;
mod edr;
mod fleet;
mod pcap;
mod proxy;
mod siem;
mod takedown;
mod training;

use api::{ApiError, World};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The simulators and their path prefixes.
pub const SIMULATORS: &[(&str, &str)] = &[
    ("EDR simulator", "/edr/v1"),
    ("SIEM simulator", "/siem/v1"),
    ("CMDB simulator", "/cmdb/v1"),
    ("training platform simulator", "/training/v1"),
    ("takedown service simulator", "/takedown/v1"),
    ("SaaS web proxy simulator", "/proxy/v1"),
    ("packet capture simulator", "/pcap/v1"),
    ("chat API simulator", "/chat/api"),
];

/// How a lab behaves.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// The API token (bearer, `X-Api-Key`, basic password, or OAuth2 client secret).
    pub token: String,
    /// Added to every API request.
    pub latency: Duration,
    /// Share of API requests that get an injected fault, 0.0 to 1.0.
    pub fault_rate: f64,
    /// Seed of the fault sequence.
    pub seed: u64,
    /// The `Retry-After` seconds sent with 429 and 503.
    pub retry_after: u64,
    /// How long a stalled response is held back (longer than the client's timeout).
    pub stall: Duration,
    /// The first this many changing requests (any method but GET) are applied and then
    /// stalled, whatever the fault rate: a deterministic "the call was in flight" for tests
    /// that stop belay at that moment.
    pub stall_changes: u64,
    /// The chat simulator's signing secret, which its interactivity callbacks are signed with.
    pub chat_signing_secret: String,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "lab-token".into(),
            latency: Duration::ZERO,
            fault_rate: 0.0,
            seed: 1,
            retry_after: 1,
            stall: Duration::from_secs(30),
            stall_changes: 0,
            chat_signing_secret: "lab-chat-signing-secret".into(),
        }
    }
}

/// A running lab.
pub struct LabHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    /// The address actually bound (the chosen port when the config asked for port 0).
    pub addr: SocketAddr,
    /// The API token the lab accepts, as configured.
    pub token: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LabHandle {
    /// Changes the injected fault rate of the running lab.
    pub fn set_fault_rate(&self, rate: f64) {
        self.shared.set_fault_rate(rate);
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Resolves when the server stops (after [`LabHandle::shutdown`] or a failure).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LabHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Why the lab could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The listening socket could not be bound (or its address read).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A setting is out of range: a fault rate outside 0.0 to 1.0, or an empty token.
    #[error("invalid lab setting: {0}")]
    Config(String),
}

/// Entry point: `Lab::start(config)`.
pub struct Lab;

impl Lab {
    /// Starts the simulators on a Tokio task and returns once the socket is listening.
    pub async fn start(config: LabConfig) -> Result<LabHandle, LabError> {
        if !(0.0..=1.0).contains(&config.fault_rate) {
            return Err(LabError::Config(format!(
                "fault rate must be between 0 and 1, found {}",
                config.fault_rate
            )));
        }
        if config.token.is_empty() {
            return Err(LabError::Config("the token must not be empty".into()));
        }
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| LabError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| LabError::Bind {
            addr: config.addr,
            source,
        })?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(&config, base_url.clone()));
        let app = router(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(target: "belay::lab", "lab server stopped: {e}");
            }
        });
        tracing::info!(target: "belay::lab", "lab simulators listening on {base_url}");
        Ok(LabHandle {
            base_url,
            addr,
            token: config.token,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// State shared by the request handlers.
pub(crate) struct Shared {
    pub(crate) world: Mutex<World>,
    token: String,
    latency: Duration,
    fault_rate_bits: AtomicU64,
    rng: Mutex<fastrand::Rng>,
    retry_after: u64,
    stall: Duration,
    /// Changing requests still to stall (see [`LabConfig::stall_changes`]).
    stall_changes: AtomicU64,
    pub(crate) base_url: String,
    /// Access tokens issued by `/oauth/token`.
    issued: Mutex<Vec<String>>,
    /// The chat simulator's messages.
    pub(crate) chat: Mutex<chat::State>,
    /// The chat simulator's signing secret.
    pub(crate) chat_signing_secret: String,
}

impl Shared {
    fn new(config: &LabConfig, base_url: String) -> Self {
        Shared {
            world: Mutex::new(World::seeded()),
            token: config.token.clone(),
            latency: config.latency,
            fault_rate_bits: AtomicU64::new(config.fault_rate.to_bits()),
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed)),
            retry_after: config.retry_after,
            stall: config.stall,
            stall_changes: AtomicU64::new(config.stall_changes),
            base_url,
            issued: Mutex::new(Vec::new()),
            chat: Mutex::new(chat::State::default()),
            chat_signing_secret: config.chat_signing_secret.clone(),
        }
    }

    fn set_fault_rate(&self, rate: f64) {
        self.fault_rate_bits
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // A handler never panics while holding the lock; recover the data if one ever did.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return key == self.token;
        }
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return token == self.token
                || self
                    .issued
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .any(|t| t == token);
        }
        if let Some(b64) = auth.strip_prefix("Basic ") {
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
                return false;
            };
            let text = String::from_utf8_lossy(&bytes);
            return text
                .split_once(':')
                .is_some_and(|(user, pass)| !user.is_empty() && pass == self.token);
        }
        false
    }

    fn draw_fault(&self) -> Option<Fault> {
        let rate = f64::from_bits(self.fault_rate_bits.load(Ordering::Relaxed));
        if rate <= 0.0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if rng.f64() >= rate {
            return None;
        }
        Some(match rng.u8(0..4) {
            0 => Fault::Unavailable,
            1 => Fault::TooManyRequests,
            2 => Fault::LostResponse,
            _ => Fault::Stall,
        })
    }
}

/// An injected fault.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 503 with Retry-After; the request is not handled.
    Unavailable,
    /// 429 with Retry-After; the request is not handled.
    TooManyRequests,
    /// The request is handled (and applied), then answered with a 500.
    LostResponse,
    /// The request is handled, then the answer is held back past any sensible client timeout.
    Stall,
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .nest("/edr/v1", edr::routes())
        .nest("/siem/v1", siem::routes())
        .nest("/cmdb/v1", cmdb::routes())
        .nest("/training/v1", training::routes())
        .nest("/takedown/v1", takedown::routes())
        .nest("/proxy/v1", proxy::routes())
        .nest("/pcap/v1", pcap::routes())
        .nest("/chat/api", chat::routes())
        .route("/oauth/token", axum::routing::post(oauth_token))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            inject_faults,
        ));
    let control = Router::new()
        .route("/_state", axum::routing::get(state))
        .route("/_chat/messages", axum::routing::get(chat::messages))
        .route("/_chat/click", axum::routing::post(chat::click))
        .route("/_health", axum::routing::get(|| async { "ok" }));
    // Authentication comes first, as with a real API: an unknown path answers 401 before 404.
    api.merge(control)
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .with_state(shared)
}

/// Paths served without credentials.
const PUBLIC: &[&str] = &["/oauth/token", "/_health"];

async fn authenticate(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if PUBLIC.contains(&req.uri().path()) || s.authorized(req.headers()) {
        return next.run(req).await;
    }
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid credentials (send `Authorization: Bearer TOKEN` or `X-Api-Key: TOKEN`)",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"belay-lab\""),
    );
    r
}

/// `error`'s response with `Retry-After: {seconds}`.
fn retry_later(error: ApiError, seconds: u64) -> Response {
    let mut r = error.into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    r
}

async fn inject_faults(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !s.latency.is_zero() {
        tokio::time::sleep(s.latency).await;
    }
    let stall_this = req.method() != axum::http::Method::GET
        && s.stall_changes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
    let fault = if stall_this {
        Some(Fault::Stall)
    } else {
        s.draw_fault()
    };
    let route = format!("{} {}", req.method(), req.uri().path());
    match fault {
        None => next.run(req).await,
        Some(refusal @ (Fault::Unavailable | Fault::TooManyRequests)) => {
            let (status, code, message) = match refusal {
                Fault::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "service temporarily unavailable (injected fault)",
                ),
                _ => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests (injected fault)",
                ),
            };
            tracing::debug!(target: "belay::lab", "injected {} before {route}", status.as_u16());
            retry_later(ApiError::new(status, code, message), s.retry_after)
        }
        Some(Fault::LostResponse) => {
            let _applied = next.run(req).await;
            tracing::debug!(target: "belay::lab", "injected 500 after {route}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error (injected fault)",
            )
            .into_response()
        }
        Some(Fault::Stall) => {
            let r = next.run(req).await;
            tracing::debug!(target: "belay::lab", "injected stall after {route}");
            tokio::time::sleep(s.stall).await;
            r
        }
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// OAuth2 client credentials (RFC 6749 §4.4): the client secret is the lab token, any client id.
async fn oauth_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<TokenRequest>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            axum::Json(json!({ "error": error, "error_description": description })),
        )
            .into_response()
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    let basic_ok = s.authorized(&headers) && headers.contains_key(header::AUTHORIZATION);
    let form_ok = form.client_id.as_deref().is_some_and(|c| !c.is_empty())
        && form.client_secret.as_deref() == Some(s.token.as_str());
    if !basic_ok && !form_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let token = {
        let mut rng = s.rng.lock().unwrap_or_else(|e| e.into_inner());
        format!("lab-at-{:016x}{:016x}", rng.u64(..), rng.u64(..))
    };
    s.issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(token.clone());
    axum::Json(json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600 }))
        .into_response()
}

async fn state(State(s): State<Arc<Shared>>) -> axum::Json<Value> {
    axum::Json(s.world().snapshot())
}
