//! Connectors that drive system components through their own tools: nftables, Unbound, Squid,
//! Suricata, ClamAV and local group membership. Each serves one action family, reads the target's
//! state before and after a change, and is idempotent by construction (adding what is present, or
//! removing what is absent, reports `changed: false`).

pub(crate) mod batch;
pub mod clamav;
pub(crate) mod cmd;
pub mod directory;
pub(crate) mod host;
pub mod nftables;
pub mod squid;
pub mod suricata;
pub mod unbound;

use crate::Connector;
use crate::http::ConfigError;
use std::sync::Arc;

/// Builds the native connector `kind` (`[connectors.NAME] type = "KIND"`) from its settings.
pub fn build(
    name: &str,
    kind: &str,
    settings: toml::Table,
) -> Result<Arc<dyn Connector>, ConfigError> {
    let err = |message: String| ConfigError {
        connector: name.into(),
        message,
    };
    Ok(match kind {
        "squid" => Arc::new(squid::Squid::new(name, self::settings(name, settings)?)?),
        "suricata" => Arc::new(suricata::Suricata::new(
            name,
            self::settings(name, settings)?,
        )?),
        "clamav" => Arc::new(clamav::Clamav::new(name, self::settings(name, settings)?)?),
        "nftables" => {
            Arc::new(nftables::Nftables::new(name, self::settings(name, settings)?).map_err(err)?)
        }
        "unbound" => {
            Arc::new(unbound::Unbound::new(name, self::settings(name, settings)?).map_err(err)?)
        }
        "gpasswd" => {
            Arc::new(directory::Gpasswd::new(name, self::settings(name, settings)?).map_err(err)?)
        }
        "standin" => {
            let c: StandinConfig = self::settings(name, settings)?;
            if !crate::Standin::families().any(|f| f == c.family) {
                return Err(err(format!("a stand-in cannot serve `{}`", c.family)));
            }
            Arc::new(crate::Standin::new(&c.family, c.state_dir))
        }
        _ => {
            return Err(err(format!(
                "unknown connector type `{kind}` (known: http, nftables, unbound, gpasswd, \
                 squid, suricata, clamav, standin)"
            )));
        }
    })
}

/// `type = "standin"`: a simulated firewall, DNS sinkhole, NAC, IPS or directory keeping its
/// state in a file, for machines where the real component cannot run.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StandinConfig {
    family: String,
    state_dir: std::path::PathBuf,
}

/// Deserializes a connector's settings table into its typed configuration.
pub(crate) fn settings<T: serde::de::DeserializeOwned>(
    name: &str,
    settings: toml::Table,
) -> Result<T, ConfigError> {
    T::deserialize(settings).map_err(|e| ConfigError {
        connector: name.into(),
        message: e.to_string(),
    })
}
