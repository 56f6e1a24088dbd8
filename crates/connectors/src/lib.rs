//! Connectors: the code that performs actions against real systems.
//!
//! A [`Connector`] implements the actions of one family (`blocklist.*`, `core.*`...). The engine
//! calls a change action only after its journal entry is durable, and passes the change's
//! idempotency key: a connector must treat a repeated key as already done (re-issuing a change
//! whose outcome was lost in a crash must not apply it twice). Connectors never write the
//! journal, never decide trust, and never log secrets.

mod blocklist;
mod core;
pub mod dlp;
pub mod http;
pub mod native;
pub mod notify;
pub mod secret;
pub mod standin;

pub use blocklist::Blocklist;
pub use core::Core;
pub use dlp::Dlp;
pub use http::{Http, HttpConnectorConfig, HttpSettings};
pub use notify::Notify;
pub use secret::{Secret, SecretSource};
pub use standin::Standin;

use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One action call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub action: &'a str,
    pub input: &'a Value,
    /// Present for change actions: `run/step-key`, stable across retries and resumes.
    pub idempotency_key: Option<&'a str>,
}

/// Whether retrying may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying (timeouts, 5xx, 429, a busy resource).
    Transient,
    /// Retrying will not help (bad input, refused, not found).
    Permanent,
}

/// A failed action, with a message safe to store and show (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ActionError {
    pub fn permanent(message: impl Into<String>) -> Self {
        ActionError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        ActionError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }
}

/// The implementation of one family of actions.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The action family it serves, e.g. `blocklist` for `blocklist.add`.
    fn family(&self) -> &str;

    /// Performs an action with validated inputs and returns its outputs.
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError>;

    /// Reads the current state of a change action's target (before and after applying,
    /// and to detect drift at rollback). Null when the connector cannot read it.
    async fn read_state(&self, _action: &str, _input: &Value) -> Result<Value, ActionError> {
        Ok(Value::Null)
    }
}

/// Connectors by action family.
#[derive(Clone, Default)]
pub struct Registry {
    by_family: HashMap<String, Arc<dyn Connector>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connector for its family, replacing any earlier one.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.by_family
            .insert(connector.family().to_owned(), connector);
    }

    /// The connector serving an action, by the action's family (the part before the dot).
    pub fn resolve(&self, action: &str) -> Option<Arc<dyn Connector>> {
        let family = action.split_once('.').map_or(action, |(f, _)| f);
        self.by_family.get(family).cloned()
    }

    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.by_family.keys().map(String::as_str)
    }
}

/// A required string input (inputs were validated against the schema before the call).
pub(crate) fn input_str<'a>(input: &'a Value, name: &str) -> Result<&'a str, ActionError> {
    input
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::permanent(format!("missing text input `{name}`")))
}

/// Builds the connectors `[connectors.NAME]` describes. `type` names the kind: `http` (the
/// default: a YAML spec over a REST API) or a native one (`nftables`, `unbound`...). Two
/// connectors may not serve the same action family.
pub fn build_configured(
    configs: &BTreeMap<String, toml::Table>,
    secrets: &SecretSource,
    catalog: &belay_playbook::Catalog,
) -> Result<Vec<Arc<dyn Connector>>, http::ConfigError> {
    let mut out: Vec<(String, Arc<dyn Connector>)> = Vec::new();
    for (name, table) in configs {
        let mut table = table.clone();
        let kind = match table.remove("type") {
            None => "http".to_owned(),
            Some(toml::Value::String(k)) => k,
            Some(other) => {
                return Err(http::ConfigError {
                    connector: name.clone(),
                    message: format!("`type` must be a string, found {other}"),
                });
            }
        };
        let connector: Arc<dyn Connector> = if kind == "http" {
            let config: HttpConnectorConfig = native::settings(name, table)?;
            Arc::new(Http::from_config(name, &config, secrets, catalog)?)
        } else {
            native::build(name, &kind, table)?
        };
        if let Some((other, _)) = out.iter().find(|(_, c)| c.family() == connector.family()) {
            return Err(http::ConfigError {
                connector: name.clone(),
                message: format!(
                    "serves the family `{}` already served by connector `{other}`",
                    connector.family()
                ),
            });
        }
        out.push((name.clone(), connector));
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// An HTTP client builder for connectors: rustls with the process's one crypto provider (ring),
/// no redirects followed, belay's user agent.
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    // A second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("belay/", env!("CARGO_PKG_VERSION")))
}
