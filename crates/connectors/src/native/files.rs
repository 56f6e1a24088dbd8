//! Small helpers the native connectors (and the blocklist and stand-ins) share: component files written
//! atomically and readable by the daemon, and the checks their sandboxes make.

use crate::ActionError;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Reads a text file; a missing file reads as empty.
pub(crate) fn read_text(path: &Path) -> Result<String, ActionError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ActionError::transient(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `bytes` to a new world-readable temporary file beside `path` (a daemon that dropped
/// its privileges must be able to read it), synced; `persist` it to replace `path`.
pub(crate) fn candidate(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile, ActionError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |what: &str, e: std::io::Error| {
        ActionError::transient(format!("cannot {what} {}: {e}", path.display()))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".belay-candidate-")
        .tempfile_in(dir)
        .map_err(|e| fail("create a temporary file for", e))?;
    tmp.write_all(bytes).map_err(|e| fail("write", e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| fail("set permissions of", e))?;
    tmp.as_file().sync_all().map_err(|e| fail("sync", e))?;
    Ok(tmp)
}

/// Replaces `path` by a candidate from [`candidate`], then syncs the directory.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), ActionError> {
    tmp.persist(path).map_err(|e| {
        ActionError::transient(format!("cannot replace {}: {}", path.display(), e.error))
    })?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `path` atomically (temporary file and rename), world-readable.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ActionError> {
    persist(candidate(path, bytes)?, path)
}

/// Runs `ip ARGS` (network namespaces and links for the sandboxes).
pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process runs as root (owner of `/proc/self`).
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The full path of an executable found on `PATH` (or the path itself when it has a slash).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Requires each program to be installed, naming the first missing one.
pub(crate) fn require_programs(programs: &[&str]) -> Result<(), String> {
    match programs.iter().find(|p| which(p).is_none()) {
        Some(p) => Err(format!("`{p}` is not installed")),
        None => Ok(()),
    }
}

/// A loopback TCP port free at the time of the call.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A name unique on this host across processes and calls (pid and a counter), for
/// network namespaces and the like.
pub(crate) fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `limit` with `what`.
pub(crate) async fn wait_for<T, F, Fut>(
    limit: Duration,
    what: &str,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed and reaped on drop.
pub(crate) struct Daemon {
    pub(crate) child: std::process::Child,
    pub(crate) name: &'static str,
}

impl Daemon {
    /// Whether the process has exited (and how), for startup errors.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited during startup ({status})", self.name)),
            _ => None,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
