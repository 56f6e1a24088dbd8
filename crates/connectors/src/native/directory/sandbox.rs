//! A private mount namespace for tests, `belay lab up` and `belay demo`, in which `gpasswd`
//! changes an overlay of `/etc`. It only sets up and tears down; it must never let a change reach
//! the host's account files.

use super::GpasswdConfig;
use crate::native::host;
use std::path::PathBuf;
use std::time::Duration;

/// A private mount namespace whose `/etc` is an overlay (upper and work directories in a
/// temporary directory), kept alive by a `sleep` process: users and groups made in it never
/// reach the host's account files. Killed and removed on drop.
pub struct Sandbox {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Sandbox {
    /// Whether root, `unshare`, `nsenter`, `gpasswd`, `useradd` and `groupadd` are available.
    pub fn available() -> Result<(), String> {
        if !rustix::process::geteuid().is_root() {
            return Err("needs root for mount namespaces and overlay mounts".into());
        }
        for program in [
            "unshare", "nsenter", "gpasswd", "useradd", "groupadd", "getent",
        ] {
            if std::process::Command::new(program)
                .arg("--help")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_err()
            {
                return Err(format!("{program} not installed"));
            }
        }
        Ok(())
    }

    /// Starts the namespace and waits until its `/etc` overlay is mounted.
    pub fn start() -> Result<Sandbox, String> {
        Self::available()?;
        let dir = host::temp_dir("belay-etc-")?;
        let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let options = format!(
            "lowerdir=/etc,upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        let child = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t overlay overlay -o \"$1\" /etc && exec sleep infinity")
            .args(["sh", &options])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut sandbox = Sandbox {
            dir,
            child: Some(child),
        };
        let pid = sandbox.pid();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = sandbox.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("the namespace exited ({status}): {}", err.trim()));
            }
            let mounted =
                std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
                    m.lines()
                        .any(|l| l.contains(" /etc ") && l.contains("overlay"))
                });
            if mounted {
                return Ok(sandbox);
            }
            if std::time::Instant::now() > deadline {
                return Err("the /etc overlay was not mounted within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process holding the namespace.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// The prefix that runs a command inside the namespace.
    pub fn command_prefix(&self) -> Vec<String> {
        ["nsenter", "-t", &self.pid().to_string(), "-m", "--"]
            .map(String::from)
            .to_vec()
    }

    /// A connector configuration that manages the namespace's groups, as host `host`.
    pub fn config(&self, host: &str) -> GpasswdConfig {
        GpasswdConfig {
            command_prefix: self.command_prefix(),
            hosts: vec![host.to_owned()],
            ..GpasswdConfig::default()
        }
    }

    /// Runs a command inside the namespace (e.g. `useradd`), requiring success.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let prefix = self.command_prefix();
        let out = std::process::Command::new(&prefix[0])
            .args(&prefix[1..])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Creates a group inside the namespace.
    pub fn add_group(&self, group: &str) -> Result<(), String> {
        self.run(&["groupadd", "--", group]).map(drop)
    }

    /// Creates a user (no home, no login, not in lastlog) inside the namespace, optionally
    /// listed in `groups`.
    pub fn add_user(&self, user: &str, groups: &[&str]) -> Result<(), String> {
        let mut args = vec!["useradd", "-l", "-M", "-N", "-s", "/usr/sbin/nologin"];
        let list = groups.join(",");
        if !groups.is_empty() {
            args.extend(["-G", &list]);
        }
        args.extend(["--", user]);
        self.run(&args).map(drop)
    }

    /// The namespace's `/etc/group` overlay directory.
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The namespace (and its mount) goes with its last process.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
