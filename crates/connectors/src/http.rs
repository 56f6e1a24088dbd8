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

pub mod spec;

use crate::secret::{Redactor, Secret, SecretSource};
use crate::{ActionError, Call, Connector, ErrorKind};
use async_trait::async_trait;
use belay_playbook::expr::Part;
use belay_playbook::{Catalog, Template, context_value};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use spec::{ActionMap, Exchange, Next, RequestSpec, Spec};
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How a connector is configured in `belay.toml` (`[connectors.<name>]`). Text values of
/// `auth` may be `${{ secrets.NAME }}` references.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectorConfig {
    /// A builtin spec (`edr-lab`, `siem-lab`...) or the path of a YAML spec file.
    pub spec: String,
    /// Scheme, host, port and optional path prefix, e.g. `https://api.edr.example/v2`.
    pub base_url: String,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Timeout of one HTTP request (default 10s).
    pub timeout: Option<String>,
    /// Retries of a request after a transient failure (default 3).
    pub retries: Option<u32>,
    /// First retry delay, doubled each time (default 200ms).
    pub backoff: Option<String>,
    /// Longest retry delay, and longest `Retry-After` honoured (default 30s).
    pub max_backoff: Option<String>,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Hosts (`name` or `name:port`) requests may go to; default the base URL's host and the
    /// OAuth2 token URL's host.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Values the spec's expressions read as `vars.NAME`.
    #[serde(default)]
    pub vars: Map<String, Value>,
}

/// Credentials, by type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
    ApiKey {
        /// Header name (default `X-Api-Key`).
        header: Option<String>,
        key: String,
    },
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the circuit (default 5; 0 disables it).
    pub failures: Option<u32>,
    /// How long it stays open before one trial call (default 30s).
    pub cooldown: Option<String>,
}

/// Resolved credentials.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    ApiKey {
        header: String,
        key: Secret,
    },
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
    },
}

/// Resolved settings of one HTTP connector.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub base_url: String,
    pub auth: Auth,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive failed calls that open the circuit; 0 disables the breaker.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Empty: the base URL's and token URL's hosts.
    pub allow_hosts: Vec<String>,
    pub vars: Map<String, Value>,
}

impl HttpSettings {
    /// Defaults for a base URL: no auth, 10s timeout, 3 retries from 200ms up to 30s, a breaker
    /// opening after 5 failed calls for 30s.
    pub fn new(base_url: impl Into<String>) -> Self {
        HttpSettings {
            base_url: base_url.into(),
            auth: Auth::None,
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            allow_hosts: Vec::new(),
            vars: Map::new(),
        }
    }
}

/// Why a connector could not be configured. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connector `{connector}`: {message}")]
pub struct ConfigError {
    pub connector: String,
    pub message: String,
}

/// Largest response body read.
const MAX_RESPONSE: usize = 16 << 20;

/// Path-segment encoding: everything but RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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

fn parse_duration(
    connector: &str,
    what: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => belay_model::parse_duration(t).map_err(|e| ConfigError {
            connector: connector.into(),
            message: format!("`{what}` must be a duration like 10s or 500ms, found `{t}`: {e}"),
        }),
    }
}

fn host_rule(h: &str) -> (String, Option<u16>) {
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host.to_ascii_lowercase(), Some(p)),
            Err(_) => (h.to_ascii_lowercase(), None),
        },
        _ => (
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            None,
        ),
    }
}

fn url_host(u: &Url) -> String {
    u.host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl Http {
    /// A connector named `name` using `spec` with resolved settings.
    pub fn new(name: &str, spec: Spec, settings: HttpSettings) -> Result<Http, ConfigError> {
        let err = |message: String| ConfigError {
            connector: name.into(),
            message,
        };
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
        let mut allow: Vec<(String, Option<u16>)> =
            settings.allow_hosts.iter().map(|h| host_rule(h)).collect();
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
        if allow.is_empty() {
            allow = implied
                .iter()
                .map(|u| (url_host(u), u.port_or_known_default()))
                .collect();
        } else {
            for u in &implied {
                let host = url_host(u);
                let port = u.port_or_known_default();
                if !allow
                    .iter()
                    .any(|(h, p)| *h == host && (p.is_none() || *p == port))
                {
                    return Err(err(format!(
                        "`{u}` is on host `{host}`, which is not in allow_hosts"
                    )));
                }
            }
        }
        let client = crate::http_client()
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
        let err = |message: String| ConfigError {
            connector: name.into(),
            message,
        };
        let spec = match Spec::builtin(&config.spec) {
            Some(s) => s.map_err(|e| err(e.to_string()))?,
            None => {
                let path = Path::new(&config.spec);
                let text = std::fs::read_to_string(path).map_err(|e| {
                    err(format!(
                        "spec `{}` is neither a builtin spec ({}) nor a readable file: {e}",
                        config.spec,
                        spec::BUILTIN
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                Spec::parse(&path.display().to_string(), &text, catalog)
                    .map_err(|e| err(e.to_string()))?
            }
        };
        let secret = |what: &str, text: &str| {
            secrets
                .resolve(text)
                .map_err(|e| err(format!("auth.{what}: {e}")))
        };
        let auth = match &config.auth {
            AuthConfig::None => Auth::None,
            AuthConfig::Bearer { token } => Auth::Bearer(secret("token", token)?),
            AuthConfig::Basic { username, password } => Auth::Basic {
                username: username.clone(),
                password: secret("password", password)?,
            },
            AuthConfig::ApiKey { header, key } => Auth::ApiKey {
                header: header.clone().unwrap_or_else(|| "X-Api-Key".into()),
                key: secret("key", key)?,
            },
            AuthConfig::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Auth::OAuth2 {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: secret("client_secret", client_secret)?,
                scope: scope.clone(),
            },
        };
        let d = HttpSettings::new(config.base_url.clone());
        let settings = HttpSettings {
            auth,
            timeout: parse_duration(name, "timeout", config.timeout.as_deref(), d.timeout)?,
            retries: config.retries.unwrap_or(d.retries).min(20),
            backoff: parse_duration(name, "backoff", config.backoff.as_deref(), d.backoff)?,
            max_backoff: parse_duration(
                name,
                "max_backoff",
                config.max_backoff.as_deref(),
                d.max_backoff,
            )?,
            breaker_failures: config.breaker.failures.unwrap_or(d.breaker_failures),
            breaker_cooldown: parse_duration(
                name,
                "breaker.cooldown",
                config.breaker.cooldown.as_deref(),
                d.breaker_cooldown,
            )?,
            allow_hosts: config.allow_hosts.clone(),
            vars: config.vars.clone(),
            base_url: config.base_url.clone(),
        };
        Http::new(name, spec, settings)
    }

    /// The configured name (`[connectors.NAME]`).
    pub fn name(&self) -> &str {
        &self.name
    }

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

    fn check_host(&self, url: &Url) -> Result<(), ActionError> {
        let host = url_host(url);
        let port = url.port_or_known_default();
        let allowed = matches!(url.scheme(), "http" | "https")
            && self
                .allow
                .iter()
                .any(|(h, p)| *h == host && (p.is_none() || *p == port));
        if allowed {
            Ok(())
        } else {
            Err(self.fail(
                ErrorKind::Permanent,
                format!(
                    "refused to call `{}://{host}`: the host is not in this connector's allow_hosts",
                    url.scheme()
                ),
            ))
        }
    }

    /// Builds the request URL from a path template.
    fn url(&self, req: &RequestSpec, ctx: &minijinja::Value) -> Result<Url, ActionError> {
        let mut path = String::new();
        for part in &req.path {
            match part {
                Part::Text(t) => path.push_str(t),
                Part::Expr(e) => {
                    let v = e
                        .eval_json(ctx)
                        .map_err(|e| self.fail(ErrorKind::Permanent, format!("path: {e}")))?;
                    let text = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(self.fail(
                                ErrorKind::Permanent,
                                format!(
                                    "path: `{}` must be text or a number, found {}",
                                    e.source,
                                    kind_of(&other)
                                ),
                            ));
                        }
                    };
                    if text.is_empty() {
                        return Err(self.fail(
                            ErrorKind::Permanent,
                            format!("path: `{}` is empty", e.source),
                        ));
                    }
                    let enc = utf8_percent_encode(&text, SEGMENT).to_string();
                    // `.` and `..` would be resolved away by URL parsing.
                    if enc.chars().all(|c| c == '.') {
                        path.push_str(&enc.replace('.', "%2E"));
                    } else {
                        path.push_str(&enc);
                    }
                }
            }
        }
        let full = format!("{}{}", self.base.as_str().trim_end_matches('/'), path);
        Url::parse(&full).map_err(|e| {
            self.fail(
                ErrorKind::Permanent,
                format!("cannot build a URL from path `{path}`: {e}"),
            )
        })
    }

    async fn auth_header(&self) -> Result<Option<(String, String)>, ActionError> {
        Ok(match &self.settings.auth {
            Auth::None => None,
            Auth::Bearer(t) => Some(("authorization".into(), format!("Bearer {}", t.expose()))),
            Auth::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", password.expose());
                Some((
                    "authorization".into(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ))
            }
            Auth::ApiKey { header, key } => Some((header.clone(), key.expose().to_owned())),
            Auth::OAuth2 { .. } => {
                let t = self.oauth_token().await?;
                Some(("authorization".into(), format!("Bearer {}", t.expose())))
            }
        })
    }

    /// A cached OAuth2 access token, fetched with the client credentials grant when missing
    /// or about to expire.
    async fn oauth_token(&self) -> Result<Secret, ActionError> {
        let Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
        } = &self.settings.auth
        else {
            return Err(self.fail(ErrorKind::Permanent, "not an OAuth2 connector".into()));
        };
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let url = Url::parse(token_url)
            .map_err(|e| self.fail(ErrorKind::Permanent, format!("token_url is not a URL: {e}")))?;
        self.check_host(&url)?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.as_str()));
        }
        let resp = self
            .client
            .post(url)
            .timeout(self.settings.timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_error("POST", "the OAuth2 token URL", &e))?;
        let status = resp.status();
        let body = self.read_body(resp).await?;
        if !status.is_success() {
            let kind = if retryable(status.as_u16()) {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            };
            return Err(self.fail(
                kind,
                format!(
                    "the OAuth2 token URL answered {status}: {}",
                    message_of(&body)
                ),
            ));
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.fail(
                    ErrorKind::Permanent,
                    "the OAuth2 token answer has no access_token".into(),
                )
            })?;
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        // Renew a little early, so a token does not expire in flight.
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(1));
        self.redactor
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(token);
        let secret = Secret::new(token);
        *cached = Some((secret.clone(), until));
        Ok(secret)
    }

    fn transport_error(&self, method: &str, what: &str, e: &reqwest::Error) -> ActionError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        let message = if e.is_timeout() {
            format!(
                "{method} {what} timed out after {}",
                humantime::format_duration(self.settings.timeout)
            )
        } else {
            format!("{method} {what} failed: {detail}")
        };
        let kind = if e.is_builder() {
            ErrorKind::Permanent
        } else {
            ErrorKind::Transient
        };
        self.fail(kind, message)
    }

    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Value, ActionError> {
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_RESPONSE {
                        return Err(self.fail(
                            ErrorKind::Permanent,
                            format!("the answer is larger than {MAX_RESPONSE} bytes"),
                        ));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error("reading", "the answer", &e)),
            }
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&buf)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&buf).into_owned())))
    }

    /// Sends one request, retrying transient failures. Answers 2xx and 404 with the status and
    /// body; other statuses are errors.
    async fn send(
        &self,
        method: &Method,
        url: Url,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), ActionError> {
        self.check_host(&url)?;
        let what = url.path().to_owned();
        let mut attempt: u32 = 0;
        let mut reauthorized = false;
        loop {
            attempt += 1;
            let mut rb = self
                .client
                .request(method.clone(), url.clone())
                .timeout(self.settings.timeout)
                .header("accept", "application/json");
            if !query.is_empty() {
                rb = rb.query(query);
            }
            for (k, v) in headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            if let Some(k) = idempotency_key {
                rb = rb.header("idempotency-key", k);
            }
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let outcome: Result<std::convert::Infallible, (ActionError, Option<Duration>)> =
                match self.auth_header().await {
                    Err(e) => Err((e, None)),
                    Ok(auth) => {
                        if let Some((k, v)) = auth {
                            rb = rb.header(k.as_str(), v.as_str());
                        }
                        match rb.send().await {
                            Err(e) => Err((self.transport_error(method.as_str(), &what, &e), None)),
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                let retry_after = resp
                                    .headers()
                                    .get(reqwest::header::RETRY_AFTER)
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.trim().parse::<u64>().ok())
                                    .map(Duration::from_secs);
                                let body = self.read_body(resp).await;
                                match body {
                                    Err(e) => Err((e, None)),
                                    Ok(b) if (200..300).contains(&status) || status == 404 => {
                                        return Ok((status, b));
                                    }
                                    Ok(b) => {
                                        if status == 401
                                            && !reauthorized
                                            && matches!(self.settings.auth, Auth::OAuth2 { .. })
                                        {
                                            // The cached token may have been revoked: fetch a new one once.
                                            reauthorized = true;
                                            *self.token.lock().await = None;
                                            attempt -= 1;
                                            continue;
                                        }
                                        let kind = if retryable(status) {
                                            ErrorKind::Transient
                                        } else {
                                            ErrorKind::Permanent
                                        };
                                        let reason = reqwest::StatusCode::from_u16(status)
                                            .ok()
                                            .and_then(|s| s.canonical_reason())
                                            .unwrap_or("");
                                        Err((
                                        self.fail(
                                            kind,
                                            format!(
                                                "{method} {what} answered {status} {reason}: {}",
                                                message_of(&b)
                                            ),
                                        ),
                                        retry_after,
                                    ))
                                    }
                                }
                            }
                        }
                    }
                };
            let Err((e, retry_after)) = outcome;
            if e.kind == ErrorKind::Permanent || attempt > self.settings.retries {
                let mut e = e;
                if attempt > 1 {
                    e.message = format!("{} (after {attempt} attempts)", e.message);
                }
                return Err(e);
            }
            let backoff = self
                .settings
                .backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(self.settings.max_backoff);
            let wait = match retry_after {
                Some(ra) if ra > self.settings.max_backoff => {
                    return Err(self.fail(
                        ErrorKind::Transient,
                        format!(
                            "{} (the service asks to retry after {}s, longer than max_backoff)",
                            e.message.trim_start_matches(&format!("{}: ", self.name)),
                            ra.as_secs()
                        ),
                    ));
                }
                Some(ra) => ra.max(backoff / 2),
                // Full jitter on the upper half, so retrying clients spread out.
                None => backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0),
            };
            tracing::warn!(
                target: "belay::connector",
                "{}",
                format!(
                    "{} (attempt {attempt} of {}); retrying in {}ms",
                    e.message,
                    self.settings.retries + 1,
                    wait.as_millis()
                )
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Renders and sends an exchange's request, following pages; answers the status and the
    /// merged body.
    async fn request(
        &self,
        req: &RequestSpec,
        paginate: Option<&spec::Paginate>,
        ctx: &minijinja::Value,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), ActionError> {
        let url = self.url(req, ctx)?;
        let mut query = match &req.query {
            Some(t) => pairs(&self.render(t, ctx, "query")?),
            None => Vec::new(),
        };
        let mut headers = Vec::new();
        for (k, t) in &req.headers {
            match self.render(t, ctx, &format!("header {k}"))? {
                Value::Null => {}
                Value::String(s) => headers.push((k.clone(), s)),
                other => headers.push((k.clone(), other.to_string())),
            }
        }
        let body = match &req.body {
            Some(t) => Some(drop_nulls(self.render(t, ctx, "body")?)),
            None => None,
        };
        let key = idempotency_key.filter(|_| req.method != Method::GET);
        let (status, first) = self
            .send(
                &req.method,
                url.clone(),
                &query,
                &headers,
                body.as_ref(),
                key,
            )
            .await?;
        let Some(p) = paginate.filter(|_| status != 404) else {
            return Ok((status, first));
        };
        let mut merged = first.clone();
        let mut items = self.items_at(&first, &p.items)?;
        let mut page = first;
        let mut pages = 1;
        loop {
            let next = match &p.next {
                Next::Cursor { pointer, .. } | Next::Url { pointer } => {
                    match page.pointer(pointer) {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) if s.is_empty() => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => Some(other.to_string()),
                    }
                }
            };
            let Some(next) = next else { break };
            if pages >= p.max_pages {
                return Err(self.fail(
                    ErrorKind::Permanent,
                    format!(
                        "{} has more than {} pages (raise paginate.max_pages in the spec)",
                        url.path(),
                        p.max_pages
                    ),
                ));
            }
            let (next_url, next_query) = match &p.next {
                Next::Cursor { param, .. } => {
                    query.retain(|(k, _)| k != param);
                    query.push((param.clone(), next));
                    (url.clone(), query.clone())
                }
                Next::Url { .. } => {
                    let u = self.base.join(&next).map_err(|e| {
                        self.fail(
                            ErrorKind::Permanent,
                            format!("the next-page link is not a URL: {e}"),
                        )
                    })?;
                    (u, Vec::new())
                }
            };
            let (_, body) = self
                .send(
                    &req.method,
                    next_url,
                    &next_query,
                    &headers,
                    body.as_ref(),
                    None,
                )
                .await?;
            items.extend(self.items_at(&body, &p.items)?);
            page = body;
            pages += 1;
        }
        if let Some(slot) = merged.pointer_mut(&p.items) {
            *slot = Value::Array(items);
        }
        Ok((status, merged))
    }

    fn items_at(&self, page: &Value, pointer: &str) -> Result<Vec<Value>, ActionError> {
        match page.pointer(pointer) {
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(other) => Err(self.fail(
                ErrorKind::Permanent,
                format!(
                    "a page's `{pointer}` should be a list, found {}",
                    kind_of(other)
                ),
            )),
        }
    }

    fn render(
        &self,
        t: &Template,
        ctx: &minijinja::Value,
        what: &str,
    ) -> Result<Value, ActionError> {
        t.render(ctx).map_err(|e| {
            self.fail(
                ErrorKind::Permanent,
                format!("spec `{}`, {what}: {e}", self.spec.name),
            )
        })
    }

    fn context(
        &self,
        map: &ActionMap,
        input: &Value,
        response: Option<(u16, &Value)>,
    ) -> minijinja::Value {
        let mut filled = match input {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        for name in &map.inputs {
            filled.entry(name.clone()).or_insert(Value::Null);
        }
        let mut ctx = json!({ "input": filled, "vars": self.settings.vars });
        if let Some((status, body)) = response {
            ctx["response"] = body.clone();
            ctx["status"] = json!(status);
        }
        context_value(&ctx)
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
            let wanted = match &p.when {
                Some(w) => w
                    .eval_bool(&ctx)
                    .map_err(|e| self.fail(ErrorKind::Permanent, format!("poll.when: {e}")))?,
                None => true,
            };
            if wanted {
                let mut done = false;
                for n in 0..p.max_attempts {
                    if n > 0 {
                        tokio::time::sleep(p.interval).await;
                    }
                    let pctx = self.context(map, input, Some((status, &body)));
                    let (s, b) = self.request(&p.request, None, &pctx, None).await?;
                    if s == 404 {
                        return Err(self.fail(
                            ErrorKind::Permanent,
                            format!(
                                "{action}: the job vanished while polling: {}",
                                message_of(&b)
                            ),
                        ));
                    }
                    (status, body) = (s, b);
                    let dctx = self.context(map, input, Some((status, &body)));
                    if p.until
                        .eval_bool(&dctx)
                        .map_err(|e| self.fail(ErrorKind::Permanent, format!("poll.until: {e}")))?
                    {
                        done = true;
                        break;
                    }
                }
                if !done {
                    return Err(self.fail(
                        ErrorKind::Transient,
                        format!("{action}: still not done after {} polls", p.max_attempts),
                    ));
                }
            }
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

    async fn guarded<F>(&self, f: F) -> Result<Value, ActionError>
    where
        F: std::future::Future<Output = Result<Value, ActionError>>,
    {
        let permit = self
            .breaker
            .admit()
            .map_err(|m| self.fail(ErrorKind::Transient, m))?;
        let r = f.await;
        permit.record(!matches!(&r, Err(e) if e.kind == ErrorKind::Transient));
        r
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

/// Statuses worth retrying.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// The service's own message in an error body.
fn message_of(body: &Value) -> String {
    let text = match body {
        Value::Object(m) => ["message", "error_description", "detail", "error", "title"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| body.to_string()),
        Value::String(s) => s.clone(),
        Value::Null => "(empty answer)".into(),
        other => other.to_string(),
    };
    let mut t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    t
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Leaves null members out of objects (recursively), so optional inputs that were not given
/// are not sent, and outputs the answer did not have are absent rather than null.
fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

/// Query pairs from a rendered mapping: nulls left out, lists repeated.
fn pairs(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    if let Value::Object(m) = v {
        for (k, v) in m {
            match v {
                Value::Array(items) => {
                    out.extend(items.iter().filter_map(scalar).map(|s| (k.clone(), s)))
                }
                other => out.extend(scalar(other).map(|s| (k.clone(), s))),
            }
        }
    }
    out
}

/// A circuit breaker: opens after `threshold` consecutive failed calls, then lets one trial
/// call through after `cooldown`; its success closes the circuit, its failure reopens it.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

struct Permit<'a> {
    breaker: &'a Breaker,
    recorded: bool,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(BreakerState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self) -> Result<Permit<'_>, String> {
        if self.threshold > 0 {
            let mut s = self.lock();
            if let Some(at) = s.opened_at {
                let elapsed = at.elapsed();
                if elapsed < self.cooldown {
                    return Err(format!(
                        "circuit open after {} consecutive failed calls; the next trial call is allowed in {}s",
                        s.failures,
                        (self.cooldown - elapsed).as_secs().max(1)
                    ));
                }
                if s.probing {
                    return Err(
                        "circuit open: a trial call is in progress, other calls wait for its outcome"
                            .into(),
                    );
                }
                s.probing = true;
            }
        }
        Ok(Permit {
            breaker: self,
            recorded: false,
        })
    }

    fn record(&self, ok: bool) {
        if self.threshold == 0 {
            return;
        }
        let mut s = self.lock();
        if ok {
            *s = BreakerState::default();
        } else {
            s.failures = s.failures.saturating_add(1);
            if s.probing || s.failures >= self.threshold {
                if s.opened_at.is_none() || s.probing {
                    tracing::warn!(
                        target: "belay::connector",
                        "circuit opened after {} consecutive failed calls",
                        s.failures
                    );
                }
                s.opened_at = Some(Instant::now());
                s.probing = false;
            }
        }
    }
}

impl Permit<'_> {
    fn record(mut self, ok: bool) {
        self.recorded = true;
        self.breaker.record(ok);
    }
}

impl Drop for Permit<'_> {
    /// A call abandoned midway (its caller timed out) counts as failed.
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(false);
        }
    }
}
