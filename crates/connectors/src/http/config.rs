//! What `[connectors.NAME]` of an HTTP connector says (`HttpConnectorConfig`), and its resolved
//! form (`HttpSettings`): durations parsed, defaults applied, `${{ secrets.NAME }}` references
//! resolved into [`Secret`]s, the spec loaded. It never sends a request, and its errors never hold
//! a secret value.

use super::spec::{self, Spec};
use crate::secret::{Secret, SecretSource};
use belay_playbook::Catalog;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Duration;

/// How a connector is configured in `belay.toml` (`[connectors.<name>]`). Text values of
/// `auth` may be `${{ secrets.NAME }}` references.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectorConfig {
    /// A builtin spec (`edr-lab`, `siem-lab`...) or the path of a YAML spec file.
    pub spec: String,
    /// Scheme, host, port and optional path prefix, e.g. `https://api.edr.example/v2`.
    pub base_url: String,
    /// Credentials sent with each request (default none).
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
    /// Circuit breaker (`[connectors.NAME.breaker]`; defaults apply when absent).
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
    /// No credentials (`type = "none"`, the default).
    #[default]
    None,
    /// `Authorization: Bearer TOKEN` (`type = "bearer"`).
    Bearer {
        /// The token, or a secret reference.
        token: String,
    },
    /// HTTP Basic authentication (`type = "basic"`).
    Basic {
        /// The user name, sent as is (never a secret reference).
        username: String,
        /// The password, or a secret reference.
        password: String,
    },
    /// A key in a request header (`type = "api_key"`).
    ApiKey {
        /// Header name (default `X-Api-Key`).
        header: Option<String>,
        /// The key, or a secret reference.
        key: String,
    },
    /// An OAuth2 client-credentials grant (`type = "oauth2"`); the access token is sent as a
    /// bearer token.
    Oauth2 {
        /// Where the token is requested; its host is on the default allow-list.
        token_url: String,
        /// The client id, sent as is.
        client_id: String,
        /// The client secret, or a secret reference.
        client_secret: String,
        /// The `scope` parameter of the token request; not sent when absent.
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
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer` with this token.
    Bearer(Secret),
    /// HTTP Basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// The key sent as the value of a header.
    ApiKey {
        /// The header's name (`X-Api-Key` unless configured).
        header: String,
        /// The key.
        key: Secret,
    },
    /// OAuth2 client credentials: a token fetched from `token_url`, cached until shortly
    /// before it expires, and sent as a bearer token.
    OAuth2 {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// The `scope` parameter of the token request, if any.
        scope: Option<String>,
    },
}

/// Resolved settings of one HTTP connector.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Scheme, host, port and optional path prefix that request paths are appended to.
    pub base_url: String,
    /// Credentials, secrets resolved.
    pub auth: Auth,
    /// Timeout of one HTTP request (and of connecting).
    pub timeout: Duration,
    /// Retries after a transient failure, so a call makes at most `retries + 1` attempts.
    pub retries: u32,
    /// First retry delay, doubled after each attempt up to `max_backoff`.
    pub backoff: Duration,
    /// Longest retry delay; a longer `Retry-After` fails the call instead of waiting.
    pub max_backoff: Duration,
    /// Consecutive failed calls that open the circuit; 0 disables the breaker.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before letting one trial call through.
    pub breaker_cooldown: Duration,
    /// Empty: the base URL's and token URL's hosts.
    pub allow_hosts: Vec<String>,
    /// Values the spec's expressions read as `vars.NAME`.
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
    /// The connector's configured name (`[connectors.NAME]`).
    pub connector: String,
    /// What is wrong, e.g. a bad duration or an unreadable spec.
    pub message: String,
}

impl ConfigError {
    /// The errors of the connector named `connector`, from their message.
    pub(super) fn of(connector: &str) -> impl Fn(String) -> ConfigError + Copy + '_ {
        move |message| ConfigError {
            connector: connector.into(),
            message,
        }
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
        Some(t) => belay_model::parse_duration(t).map_err(|e| {
            ConfigError::of(connector)(format!(
                "`{what}` must be a duration like 10s or 500ms, found `{t}`: {e}"
            ))
        }),
    }
}

/// The spec a connector names: a builtin spec (`edr-lab`, `siem-lab`...) or the path of a YAML
/// spec file, checked against the catalog.
pub(super) fn load_spec(
    name: &str,
    config: &HttpConnectorConfig,
    catalog: &Catalog,
) -> Result<Spec, ConfigError> {
    let err = ConfigError::of(name);
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
    Ok(spec)
}

/// A connector's resolved settings: secrets resolved, durations parsed, defaults applied.
pub(super) fn resolve(
    name: &str,
    config: &HttpConnectorConfig,
    secrets: &SecretSource,
) -> Result<HttpSettings, ConfigError> {
    let err = ConfigError::of(name);
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
    Ok(settings)
}
