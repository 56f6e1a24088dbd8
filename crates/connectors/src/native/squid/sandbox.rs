//! A real Squid for tests, `belay lab up` and `belay demo`: a private configuration, ACL
//! files and origin servers on loopback. It only starts, probes and stops; the connector never
//! uses it.

use super::{MONITOR_LEVELS, SquidConfig, default_lists, default_timeout};
use crate::files;
use crate::native::host::{self, Daemon};
use std::path::PathBuf;
use std::time::Duration;

/// Why one start of the sandbox failed: only a Squid that exited (its port taken, say) is
/// worth another attempt.
enum Start {
    Exited(String),
    Failed(String),
}

impl From<String> for Start {
    fn from(e: String) -> Start {
        Start::Failed(e)
    }
}

/// A real Squid on a free loopback port, in a temporary directory, with belay's ACL files and
/// a small HTTP origin server (`origin.belay.test` and `other.belay.test` name 127.0.0.1 in
/// Squid's hosts file; a second origin listens on 127.0.0.2). Everything stops on drop.
pub struct Sandbox {
    config: SquidConfig,
    port: u16,
    origin_port: u16,
    alt_port: u16,
    origin: Vec<tokio::task::AbortHandle>,
    _daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Whether Squid is installed here.
    pub fn available() -> Result<(), String> {
        host::require_programs(&["squid"])
    }

    /// Starts Squid (about half a second) and the origin servers; needs a tokio runtime.
    pub async fn start() -> Result<Sandbox, String> {
        Self::available()?;
        // A free port can be taken by another process between our probe and Squid's bind;
        // such a start is retried on a new port.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::start_once().await {
                Ok(sb) => return Ok(sb),
                Err(Start::Exited(e)) if attempts < 3 => tracing::debug!("retrying: {e}"),
                Err(Start::Exited(e) | Start::Failed(e)) => return Err(e),
            }
        }
    }

    async fn start_once() -> Result<Sandbox, Start> {
        let dir = host::temp_dir("belay-squid-")?;
        let root = dir.path().to_path_buf();
        let acl_dir = root.join("acl");
        std::fs::create_dir_all(&acl_dir).map_err(|e| format!("cannot create {acl_dir:?}: {e}"))?;
        let (origin, origin_port, alt_port) = start_origins().await?;
        let port = host::free_port().map_err(|e| format!("no free port: {e}"))?;
        let config = SquidConfig {
            config: root.join("squid.conf"),
            acl_dir: acl_dir.clone(),
            lists: default_lists(),
            monitor_log: Some(root.join("monitor.log")),
            squid: "squid".into(),
            timeout_secs: default_timeout(),
        };
        let proxy_user = if host::is_root() { proxy_user() } else { None };
        let p = |n: &str| root.join(n).display().to_string();
        let mut conf = format!(
            "http_port 127.0.0.1:{port}\n\
             pid_filename {pid}\n\
             cache deny all\n\
             cache_mem 4 MB\n\
             memory_pools off\n\
             pinger_enable off\n\
             shutdown_lifetime 0 seconds\n\
             access_log stdio:{access}\n\
             cache_log {cache_log}\n\
             cache_store_log none\n\
             coredump_dir {root}\n\
             hosts_file {hosts}\n\
             dns_nameservers 127.0.0.1\n",
            pid = p("squid.pid"),
            access = p("access.log"),
            cache_log = p("cache.log"),
            root = root.display(),
            hosts = p("hosts"),
        );
        if let Some((name, _, _)) = &proxy_user {
            conf += &format!("cache_effective_user {name}\n");
        }
        conf += &config.acl_directives();
        conf += "http_access allow localhost\nhttp_access deny all\n";
        let write = |name: &str, text: &str| {
            files::write_atomically(&root.join(name), text.as_bytes()).map_err(|e| e.message)
        };
        write("squid.conf", &conf)?;
        write("hosts", "127.0.0.1 origin.belay.test other.belay.test\n")?;
        for list in &config.lists {
            write(&format!("acl/block-{list}.domains"), "")?;
            write(&format!("acl/block-{list}.ips"), "")?;
        }
        for level in MONITOR_LEVELS {
            write(&format!("acl/monitor-{level}.domains"), "")?;
            write(&format!("acl/monitor-{level}.ips"), "")?;
        }
        if let Some((_, uid, gid)) = proxy_user {
            for p in [root.clone(), acl_dir] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                    .map_err(|e| format!("cannot chown {p:?}: {e}"))?;
            }
        }
        let child = host::spawn_logged(
            std::process::Command::new("squid")
                .arg("-N")
                .arg("-f")
                .arg(&config.config),
            "squid",
            &root.join("squid.out"),
        )?;
        let mut daemon = Daemon {
            child,
            name: "squid",
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started = host::wait_for(Duration::from_secs(15), "squid did not listen", || {
            let exited = daemon.exited();
            async move {
                if exited.is_some() {
                    return Some(false);
                }
                tokio::net::TcpStream::connect(addr)
                    .await
                    .ok()
                    .map(|_| true)
            }
        })
        .await;
        if started != Ok(true) {
            // Fatal errors after the configuration is read go to cache.log, earlier ones to
            // standard error.
            let mut tail = Vec::new();
            for name in ["squid.out", "cache.log"] {
                let out = std::fs::read_to_string(root.join(name)).unwrap_or_default();
                let lines: Vec<&str> = out.lines().collect();
                tail.extend(
                    lines[lines.len().saturating_sub(5)..]
                        .iter()
                        .map(|l| l.to_string()),
                );
            }
            let exited = started.is_ok();
            let message = format!(
                "squid did not start: {} ({})",
                started.err().unwrap_or_else(|| "it exited".into()),
                tail.join(" | ")
            );
            return Err(if exited {
                Start::Exited(message)
            } else {
                Start::Failed(message)
            });
        }
        Ok(Sandbox {
            config,
            port,
            origin_port,
            alt_port,
            origin,
            _daemon: daemon,
            dir,
        })
    }

    /// The configuration of a connector that drives this Squid.
    pub fn config(&self) -> SquidConfig {
        self.config.clone()
    }

    /// The proxy's URL, for an HTTP client's proxy setting.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A URL on the origin server under a name Squid's hosts file maps to 127.0.0.1
    /// (`origin.belay.test` or `other.belay.test`).
    pub fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/", self.origin_port)
    }

    /// A URL on the second origin server, by address (127.0.0.2).
    pub fn ip_url(&self) -> String {
        format!("http://127.0.0.2:{}/", self.alt_port)
    }

    /// The access log of monitored (tightened) destinations.
    pub fn monitor_log(&self) -> PathBuf {
        self.dir.path().join("monitor.log")
    }

    /// The proxy's general access log.
    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for h in &self.origin {
            h.abort();
        }
    }
}

/// The `proxy` user's name, uid and gid, when it exists.
fn proxy_user() -> Option<(String, u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == "proxy")
            .then(|| Some((f[0].to_owned(), f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Two tiny HTTP servers (127.0.0.1 and 127.0.0.2) answering 200 "belay origin" to anything.
async fn start_origins() -> Result<(Vec<tokio::task::AbortHandle>, u16, u16), String> {
    let mut handles = Vec::new();
    let mut ports = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .map_err(|e| format!("cannot listen on {ip}: {e}"))?;
        ports.push(
            listener
                .local_addr()
                .map_err(|e| format!("no local address: {e}"))?
                .port(),
        );
        handles.push(tokio::spawn(serve_origin(listener)).abort_handle());
    }
    Ok((handles, ports[0], ports[1]))
}

async fn serve_origin(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut sock, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut seen = 0;
            while seen < buf.len() {
                match sock.read(&mut buf[seen..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen += n,
                }
                if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let body = "belay origin\n";
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
