//! `scan.endpoint` through clamd: the connector speaks clamd's protocol on its local socket
//! (`zCONTSCAN path`: clamd reads the files itself) and computes the SHA-256 of each infected
//! file as an indicator. Only paths under the configured roots may be scanned.

mod sandbox;

pub use sandbox::Sandbox;

use crate::ActionError;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `[connectors.NAME] type = "clamav"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClamavConfig {
    /// clamd's `LocalSocket`.
    pub socket: PathBuf,
    /// What a scan without `host` covers, and where its `path` must lie.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Each endpoint's scan root (e.g. its mounted share), by host name.
    #[serde(default)]
    pub hosts: BTreeMap<String, PathBuf>,
    /// Seconds a scan may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    600
}

/// The `scan` connector for ClamAV.
pub struct Clamav {
    config: ClamavConfig,
}

impl Clamav {
    /// Checks the configuration (a scan `root` or `hosts`, all absolute paths); scans nothing
    /// yet. `name` is the connector's configured name, for errors.
    pub fn new(name: &str, config: ClamavConfig) -> Result<Clamav, crate::http::ConfigError> {
        let err = |message: String| crate::http::ConfigError {
            connector: name.into(),
            message,
        };
        if config.root.is_none() && config.hosts.is_empty() {
            return Err(err("give a scan `root`, `hosts`, or both".into()));
        }
        for p in config.root.iter().chain(config.hosts.values()) {
            if !p.is_absolute() {
                return Err(err(format!("scan root {} is not absolute", p.display())));
            }
        }
        Ok(Clamav { config })
    }

    /// The path to scan, resolved (symbolic links followed) and checked to lie under the
    /// host's root, or under any configured root when no host is given.
    fn target(&self, input: &Value) -> Result<PathBuf, ActionError> {
        let host = input.get("host").and_then(Value::as_str);
        let path = input.get("path").and_then(Value::as_str);
        let roots: Vec<&PathBuf> = match host {
            Some(h) => vec![self.config.hosts.get(h).ok_or_else(|| {
                ActionError::permanent(format!("no scan root is configured for host `{h}`"))
            })?],
            None => self
                .config
                .root
                .iter()
                .chain(
                    path.is_some()
                        .then(|| self.config.hosts.values())
                        .into_iter()
                        .flatten(),
                )
                .collect(),
        };
        let wanted = match (path, roots.first()) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(root)) => (*root).clone(),
            (None, None) => {
                return Err(ActionError::permanent(
                    "give a `path` or a `host`: no default scan root is configured",
                ));
            }
        };
        if !wanted.is_absolute() {
            return Err(ActionError::permanent("`path` must be absolute"));
        }
        let text = wanted.to_str().unwrap_or_default();
        if text.is_empty() || text.chars().any(char::is_control) {
            return Err(ActionError::permanent(
                "`path` must be UTF-8 without control characters",
            ));
        }
        let real = wanted.canonicalize().map_err(|e| {
            ActionError::permanent(format!("cannot scan {}: {e}", wanted.display()))
        })?;
        let allowed = roots
            .iter()
            .any(|r| r.canonicalize().is_ok_and(|root| real.starts_with(&root)));
        if !allowed {
            return Err(ActionError::permanent(format!(
                "{} is outside the allowed scan roots",
                wanted.display()
            )));
        }
        Ok(real)
    }

    /// Sends one clamd command and returns its replies.
    async fn clamd(&self, command: &str) -> Result<Vec<String>, ActionError> {
        let socket = &self.config.socket;
        let exchange = async {
            let mut s = tokio::net::UnixStream::connect(socket).await?;
            s.write_all(format!("z{command}\0").as_bytes()).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let limit = Duration::from_secs(self.config.timeout_secs.max(1));
        let buf = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| ActionError::transient(format!("clamd did not answer within {limit:?}")))?
            .map_err(|e| {
                ActionError::transient(format!("cannot talk to clamd at {}: {e}", socket.display()))
            })?;
        Ok(String::from_utf8_lossy(&buf)
            .split('\0')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    async fn scan(&self, input: &Value) -> Result<Value, ActionError> {
        let target = self.target(input)?;
        let scanned = count_files(&target);
        let replies = self
            .clamd(&format!("CONTSCAN {}", target.display()))
            .await?;
        let mut detections = Vec::new();
        let mut indicators: Vec<String> = Vec::new();
        let mut errors = Vec::new();
        for reply in &replies {
            let Some((path, result)) = reply.rsplit_once(": ") else {
                errors.push(reply.clone());
                continue;
            };
            if let Some(signature) = result.strip_suffix(" FOUND") {
                let sha256 = sha256_of(Path::new(path));
                if let Some(h) = &sha256
                    && !indicators.contains(h)
                {
                    indicators.push(h.clone());
                }
                detections.push(json!({"path": path, "signature": signature, "sha256": sha256}));
            } else if result != "OK" {
                errors.push(reply.clone());
            }
        }
        let infected = !detections.is_empty();
        let verdict = if infected {
            "infected"
        } else if errors.is_empty() {
            "clean"
        } else {
            "error"
        };
        let mut out = json!({
            "verdict": verdict,
            "infected": infected,
            "scanned": scanned,
            "detections": detections,
            "indicators": indicators,
            "path": target.display().to_string(),
        });
        if !errors.is_empty() {
            out["errors"] = json!(errors);
        }
        Ok(out)
    }
}

/// Regular files under `path` (clamd follows no symbolic links by default; neither do we).
fn count_files(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return 1;
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| count_files(&e.path())).sum())
        .unwrap_or(0)
}

fn sha256_of(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hex::encode(hasher.finalize()))
}

belay_connector_api::connector! {
    impl Clamav {
        family: "scan",
        named: "`scan` (clamav)",
        call(clamav, call) {
            "scan.endpoint" => clamav.scan(call.input).await,
        }
    }
}
