//! Connectors: the code that performs actions against real systems (HTTP APIs described by
//! specs, native components such as nftables or Squid, files, notifications), and the building
//! of the configured ones from `belay.toml`.
//!
//! The interface they implement ([`Connector`], [`Call`], [`ActionError`], [`Registry`], and
//! the built-in [`Core`]) lives in `belay-connector-api` and is re-exported here. The engine
//! calls a change action only after its journal entry is durable, and passes the change's
//! idempotency key: a connector must treat a repeated key as already done. Connectors never
//! write the journal, never decide trust, and never log secrets.

mod blocklist;
pub mod dlp;
pub(crate) mod files;
pub mod http;
pub mod native;
pub mod notify;
pub mod notify_chat;
pub mod secret;
pub mod standin;

pub use belay_connector_api::{ActionError, Call, Connector, Core, ErrorKind, Registry};
pub use blocklist::Blocklist;
pub use dlp::Dlp;
pub use http::{Http, HttpConnectorConfig, HttpSettings};
pub use notify::Notify;
pub use secret::{Secret, SecretSource};
pub use standin::Standin;

pub(crate) use belay_connector_api::input_str;
use std::collections::BTreeMap;
use std::sync::Arc;

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
