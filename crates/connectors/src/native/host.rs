//! What the sandboxes need from the host: installed programs, root, network namespaces (`ip`),
//! free loopback ports, unique names, waiting for a daemon to answer, and daemons killed on
//! drop. Only sandboxes use it; a connector never starts a process through it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A new temporary directory named `PREFIX…`, removed on drop.
pub(crate) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))
}

/// Starts `command`, the daemon `name`, with no input and its output and errors written to
/// the new file `log`.
pub(crate) fn spawn_logged(
    command: &mut std::process::Command,
    name: &str,
    log: &Path,
) -> Result<std::process::Child, String> {
    let file = log.file_name().unwrap_or_default().to_string_lossy();
    let out = std::fs::File::create(log).map_err(|e| format!("cannot create {file}: {e}"))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot clone a file handle: {e}"))?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))
}

/// The error of the daemon `name` that did not start: why waiting for it failed (`Ok(false)`:
/// it exited) and the last five lines of its `log`, newest first.
pub(crate) fn did_not_start(name: &str, waited: Result<bool, String>, log: &Path) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    format!(
        "{name} did not start: {} ({})",
        waited.err().unwrap_or_else(|| "it exited".into()),
        tail.join(" | ")
    )
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

/// Runs `f` on a thread that has entered the named network namespace (sockets it opens stay
/// in that namespace).
pub(crate) fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("cannot enter {path}: {e}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_owned())?
}

/// A TCP listener in a network namespace that accepts and closes every connection, on a
/// thread stopped on drop: the server end of the sandboxes' connection checks.
pub(crate) struct Acceptor {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Acceptor {
    /// Listens on `[::]` (IPv4 and IPv6) on a free port of the namespace `ns`.
    pub(crate) fn start(ns: &str) -> Result<Acceptor, String> {
        use std::sync::atomic::Ordering;
        let listener = in_netns(ns, || std::net::TcpListener::bind("[::]:0"))?
            .map_err(|e| format!("cannot listen in {ns}: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("listener address: {e}"))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("listener: {e}"))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Acceptor {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a TCP connection from the namespace `ns` to `to` succeeds within `timeout`.
pub(crate) fn can_connect(ns: &str, to: std::net::SocketAddr, timeout: Duration) -> bool {
    in_netns(ns, move || {
        std::net::TcpStream::connect_timeout(&to, timeout).is_ok()
    })
    .unwrap_or(false)
}
