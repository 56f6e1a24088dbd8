//! The generic HTTP connector: performs a family's actions against any REST API described by a
//! YAML spec (see [`spec`]), so an integration needs no Rust.
//!
//! It owns the transport: authentication (bearer, basic, API key header, OAuth2 client
//! credentials with a cached token), timeouts, retries with exponential backoff that honour
//! `Retry-After`, a circuit breaker, and an allow-list of hosts. It passes the engine's
//! idempotency key as the `Idempotency-Key` header, so a change retried after a lost answer is
//! not applied twice by a service that honours the header.
//!
//! It never sends a request to a host outside its allow-list, never puts a credential in an
//! error, a log line or an output (credentials are [`Secret`]s, and whatever the remote side
//! echoes is scrubbed), and never retries a request the service refused for a reason retrying
//! cannot fix (4xx other than 408 and 429).
//!
//! This file holds the connector itself: construction, one exchange (request, not-found,
//! polling, outputs) and the [`Connector`] impl. Each part of the transport has a file:
//! [`config`] (settings), `allowlist`, `auth` (headers and the OAuth2 token cache), `transport`
//! (sending and retrying), `paging` (pages and polling), `breaker` (the circuit breaker) and
//! `render` (templates to request parts).

mod allowlist;
mod auth;
mod breaker;
pub mod config;
mod paging;
mod render;
pub mod spec;
mod transport;

pub use config::{Auth, AuthConfig, BreakerConfig, ConfigError, HttpConnectorConfig, HttpSettings};
pub(crate) use transport::client_builder;

use crate::secret::{Redactor, Secret, SecretSource};
use crate::{ActionError, Call, Connector, ErrorKind};
use async_trait::async_trait;
use belay_playbook::Catalog;
use breaker::Breaker;
use render::drop_nulls;
use reqwest::Url;
use serde_json::Value;
use spec::{ActionMap, Exchange, Spec};
use std::sync::RwLock;
use std::time::Instant;
use transport::message_of;

/// The generic HTTP connector, serving one family with one spec.
pub struct Http {
    name: String,
    spec: Spec,
    base: Url,
    settings: HttpSettings,
    client: reqwest::Client,
    allow: Vec<(String, Option<u16>)>,
    breaker: Breaker,
    redactor: RwLock<Redactor>,
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("name", &self.name)
            .field("spec", &self.spec.name)
            .field("family", &self.spec.family)
            .field("base_url", &self.settings.base_url)
            .finish_non_exhaustive()
    }
}

impl Http {
    /// A connector named `name` using `spec` with resolved settings.
    pub fn new(name: &str, spec: Spec, settings: HttpSettings) -> Result<Http, ConfigError> {
        let err = ConfigError::of(name);
        let base = Url::parse(&settings.base_url).map_err(|e| {
            err(format!(
                "base_url `{}` is not a URL: {e}",
                settings.base_url
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(err(format!(
                "base_url `{}` must be an http or https URL with a host",
                settings.base_url
            )));
        }
        if base.query().is_some() || !base.username().is_empty() || base.password().is_some() {
            return Err(err(
                "base_url must not hold a query or credentials (put credentials in `auth`)".into(),
            ));
        }
        let mut redactor = Redactor::default();
        let mut implied = vec![base.clone()];
        match &settings.auth {
            Auth::None => {}
            Auth::Bearer(s) => redactor.add(s.expose()),
            Auth::Basic { password, .. } => redactor.add(password.expose()),
            Auth::ApiKey { header, key } => {
                reqwest::header::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| err(format!("`{header}` is not a header name")))?;
                redactor.add(key.expose());
            }
            Auth::OAuth2 {
                token_url,
                client_secret,
                ..
            } => {
                redactor.add(client_secret.expose());
                let u = Url::parse(token_url)
                    .map_err(|e| err(format!("token_url `{token_url}` is not a URL: {e}")))?;
                implied.push(u);
            }
        }
        let allow = allowlist::allowed_hosts(&settings.allow_hosts, &implied).map_err(err)?;
        let client = client_builder()
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http {
            name: name.into(),
            breaker: Breaker::new(settings.breaker_failures, settings.breaker_cooldown),
            spec,
            base,
            settings,
            client,
            allow,
            redactor: RwLock::new(redactor),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// A connector from its `belay.toml` table: the spec is a builtin name or a file path.
    pub fn from_config(
        name: &str,
        config: &HttpConnectorConfig,
        secrets: &SecretSource,
        catalog: &Catalog,
    ) -> Result<Http, ConfigError> {
        let spec = config::load_spec(name, config, catalog)?;
        let settings = config::resolve(name, config, secrets)?;
        Http::new(name, spec, settings)
    }

    /// The configured name (`[connectors.NAME]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    fn scrub(&self, text: &str) -> String {
        self.redactor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .scrub(text)
    }

    fn fail(&self, kind: ErrorKind, message: String) -> ActionError {
        ActionError {
            kind,
            message: self.scrub(&format!("{}: {message}", self.name)),
        }
    }

    /// Runs an exchange (request, pages, then the mapping of outputs).
    async fn exchange(
        &self,
        action: &str,
        map: &ActionMap,
        ex: &Exchange,
        input: &Value,
        idempotency_key: Option<&str>,
        poll: bool,
    ) -> Result<Value, ActionError> {
        let ctx = self.context(map, input, None);
        let (mut status, mut body) = self
            .request(&ex.request, ex.paginate.as_ref(), &ctx, idempotency_key)
            .await?;
        if status != 404
            && let Some(pointer) = &ex.select
        {
            match body.pointer(pointer) {
                Some(v) if !v.is_null() => body = v.clone(),
                _ => status = 404,
            }
        }
        if status == 404 {
            return match &ex.not_found {
                Some(t) => {
                    let ctx = self.context(map, input, Some((status, &body)));
                    Ok(drop_nulls(self.render(t, &ctx, "not_found")?))
                }
                None => Err(self.fail(
                    ErrorKind::Permanent,
                    format!("{action}: not found: {}", message_of(&body)),
                )),
            };
        }
        if poll && let Some(p) = &map.poll {
            (status, body) = self.poll(action, map, p, input, &ctx, status, body).await?;
        }
        let ctx = self.context(map, input, Some((status, &body)));
        let out = match &ex.outputs {
            Some(t) => drop_nulls(self.render(t, &ctx, "outputs")?),
            None => body,
        };
        Ok(self
            .redactor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .scrub_json(out))
    }

    fn action(&self, action: &str) -> Result<&ActionMap, ActionError> {
        self.spec.actions.get(action).ok_or_else(|| {
            self.fail(
                ErrorKind::Permanent,
                format!("spec `{}` does not map action `{action}`", self.spec.name),
            )
        })
    }
}

#[async_trait]
impl Connector for Http {
    fn family(&self) -> &str {
        &self.spec.family
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let map = self.action(call.action)?;
        self.guarded(self.exchange(
            call.action,
            map,
            &map.exchange,
            call.input,
            call.idempotency_key,
            true,
        ))
        .await
    }

    async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        let map = self.action(action)?;
        let Some(state) = &map.state else {
            return Ok(Value::Null);
        };
        self.guarded(self.exchange(action, map, state, input, None, false))
            .await
    }
}
