//! A real Unbound for tests, `belay lab up` and `belay demo`: loopback only, authoritative for
//! `example.com`, refusing every other name. It only starts and stops; it must never query the
//! Internet.

use super::UnboundConfig;
use super::probe::{DnsAnswer, query};
use crate::native::host;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A real Unbound on a free loopback port, configured in a temporary directory, with its
/// control interface on a unix socket (no certificates, no root). It is authoritative for
/// `example.com` (`example.com` and `www.example.com` → 192.0.2.10, `phish.example.com` →
/// 192.0.2.66, `www.phish.example.com` → 192.0.2.67) and refuses every other name, so it
/// never queries the Internet. Stopped and removed on drop.
pub struct Sandbox {
    dir: tempfile::TempDir,
    conf: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

const ZONE: &str = "$ORIGIN example.com.
$TTL 60
@ IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 60
@ IN NS ns.example.com.
ns IN A 192.0.2.53
@ IN A 192.0.2.10
www IN A 192.0.2.10
phish IN A 192.0.2.66
www.phish IN A 192.0.2.67
";

impl Sandbox {
    /// The sinkhole address of the sandbox's configuration (`default_answer`).
    pub const DEFAULT_ANSWER: &'static str = "192.0.2.250";

    /// Whether `unbound` and `unbound-control` are installed.
    pub fn available() -> Result<(), String> {
        match std::process::Command::new("unbound").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            Ok(_) => return Err("`unbound -V` failed".into()),
            Err(_) => return Err("unbound not installed".into()),
        }
        match std::process::Command::new("unbound-control")
            .arg("-h")
            .output()
        {
            Ok(_) => Ok(()),
            Err(_) => Err("unbound-control not installed".into()),
        }
    }

    /// Writes the configuration and starts Unbound; ready when `unbound-control status` answers.
    pub fn start() -> Result<Sandbox, String> {
        Self::available()?;
        let dir = host::temp_dir("belay-unbound-")?;
        let conf = dir.path().join("unbound.conf");
        let mut sandbox = Sandbox {
            dir,
            conf,
            port: 0,
            child: None,
        };
        let mut last = String::new();
        // A port found free may be taken before Unbound binds it: try a few.
        for _ in 0..3 {
            sandbox.port = free_port()?;
            sandbox.write_config()?;
            match sandbox.spawn() {
                Ok(()) => return Ok(sandbox),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn write_config(&self) -> Result<(), String> {
        let d = self.dir.path().display();
        std::fs::write(self.dir.path().join("example.com.zone"), ZONE)
            .map_err(|e| format!("cannot write the zone file: {e}"))?;
        let conf = format!(
            r#"server:
  interface: 127.0.0.1@{port}
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  so-reuseport: no
  do-not-query-localhost: yes
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  local-zone: "." refuse
  local-zone: "example.com." transparent
auth-zone:
  name: "example.com."
  zonefile: "{d}/example.com.zone"
  for-downstream: yes
  for-upstream: yes
  fallback-enabled: no
remote-control:
  control-enable: yes
  control-interface: "{d}/control.sock"
  control-use-cert: no
"#,
            port = self.port
        );
        std::fs::write(&self.conf, conf).map_err(|e| format!("cannot write unbound.conf: {e}"))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = host::spawn_logged(
            std::process::Command::new("unbound")
                .arg("-d")
                .arg("-c")
                .arg(&self.conf),
            "unbound",
            &self.dir.path().join("unbound.log"),
        )?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("unbound.log"))
                    .unwrap_or_default();
                return Err(format!("unbound exited ({status}): {}", log.trim()));
            }
            let ready = std::process::Command::new("unbound-control")
                .arg("-c")
                .arg(&self.conf)
                .arg("status")
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("unbound did not answer unbound-control within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stops Unbound and starts it again with the same configuration and port: runtime
    /// zones are gone afterwards.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    /// The connector configuration that reaches this Unbound (its `unbound-control` config
    /// file), with `default_answer` [`Sandbox::DEFAULT_ANSWER`].
    pub fn config(&self) -> UnboundConfig {
        UnboundConfig {
            config_file: Some(self.conf.clone()),
            default_answer: Self::DEFAULT_ANSWER.parse().ok(),
            ..UnboundConfig::default()
        }
    }

    /// Where Unbound answers DNS queries.
    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether this Unbound answers `name` with the sinkhole address (panics if it does not
    /// answer at all: for tests).
    pub fn sinkholed(&self, name: &str) -> bool {
        let answer = self.query(name, false).expect("unbound answers");
        answer
            .addrs
            .iter()
            .any(|a| a.to_string() == Self::DEFAULT_ANSWER)
    }

    /// Asks this Unbound for `name`'s A (or AAAA) records.
    pub fn query(&self, name: &str, ipv6: bool) -> Result<DnsAnswer, String> {
        query(self.dns_addr(), name, ipv6)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, String> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    socket
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}
