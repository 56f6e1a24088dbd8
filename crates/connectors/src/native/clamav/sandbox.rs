//! A real clamd for tests, `belay lab up` and `belay demo`: a private socket and signature
//! database in a temporary directory. It only starts and stops the daemon; the connector never
//! uses it.

use super::{Clamav, ClamavConfig};
use crate::files;
use crate::native::host::{self, Daemon};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A real clamd on a unix socket in a temporary directory, with a hash signature database
/// built from sample contents (no signature package needed) and an empty scan root
/// (`root()`). Starts in well under a second; stopped on drop.
pub struct Sandbox {
    config: ClamavConfig,
    _daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Whether clamd is installed here.
    pub fn available() -> Result<(), String> {
        host::require_programs(&["clamd"])
    }

    /// Starts clamd with one SHA-256 signature per `(name, sample content)`; a file with that
    /// exact content is reported as `<name>.UNOFFICIAL`.
    pub async fn start(signatures: &[(&str, &[u8])]) -> Result<Sandbox, String> {
        Self::available()?;
        if signatures.is_empty() {
            return Err("clamd needs at least one signature".into());
        }
        let dir = host::temp_dir("belay-clamav-")?;
        let root = dir.path().to_path_buf();
        let (db, scan_root, tmp) = (root.join("db"), root.join("endpoints"), root.join("tmp"));
        for d in [&db, &scan_root, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create {d:?}: {e}"))?;
        }
        let mut hsb = String::new();
        for (name, sample) in signatures {
            if name.is_empty() || name.contains([':', '\n', ' ']) {
                return Err(format!("invalid signature name `{name}`"));
            }
            hsb += &format!(
                "{}:{}:{name}\n",
                hex::encode(Sha256::digest(sample)),
                sample.len()
            );
        }
        let socket = root.join("clamd.sock");
        let conf = format!(
            "Foreground yes\nLocalSocket {socket}\nDatabaseDirectory {db}\nTemporaryDirectory {tmp}\n\
             LogFile {log}\nLogTime yes\nSelfCheck 0\n",
            socket = socket.display(),
            db = db.display(),
            tmp = tmp.display(),
            log = root.join("clamd.log").display(),
        );
        let write = |p: PathBuf, text: &str| {
            files::write_atomically(&p, text.as_bytes()).map_err(|e| e.message)
        };
        write(db.join("belay.hsb"), &hsb)?;
        write(root.join("clamd.conf"), &conf)?;
        let child = host::spawn_logged(
            std::process::Command::new(host::which("clamd").unwrap_or_else(|| "clamd".into()))
                .arg("-c")
                .arg(root.join("clamd.conf")),
            "clamd",
            &root.join("clamd.out"),
        )?;
        let mut daemon = Daemon {
            child,
            name: "clamd",
        };
        let config = ClamavConfig {
            socket,
            root: Some(scan_root),
            hosts: BTreeMap::new(),
            timeout_secs: 30,
        };
        let probe = Clamav {
            config: config.clone(),
        };
        let ready = host::wait_for(Duration::from_secs(30), "clamd did not answer PING", || {
            let exited = daemon.exited();
            let p = &probe;
            async move {
                if exited.is_some() {
                    return Some(false);
                }
                match p.clamd("PING").await {
                    Ok(r) if r.first().map(String::as_str) == Some("PONG") => Some(true),
                    _ => None,
                }
            }
        })
        .await;
        if ready != Ok(true) {
            return Err(host::did_not_start("clamd", ready, &root.join("clamd.out")));
        }
        Ok(Sandbox {
            config,
            _daemon: daemon,
            dir,
        })
    }

    /// The configuration of a connector that drives this clamd (root: [`Sandbox::root`]).
    pub fn config(&self) -> ClamavConfig {
        self.config.clone()
    }

    /// The default scan root, empty at start.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("endpoints")
    }
}
