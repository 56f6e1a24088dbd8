//! A real Suricata for tests, `belay lab up` and `belay demo`, in a network namespace of its
//! own, inline (IPS) or as an IDS. It only starts, probes (the sentinel rule, TCP connections)
//! and stops; the connector never uses it.

use super::{Suricata, SuricataConfig, default_rulesets, default_suricatasc};
use crate::files;
use crate::native::cmd::Cmd;
use crate::native::host::ip;
use crate::native::host::{self, Acceptor, Daemon};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the sandbox's Suricata sees traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// IPS: iptables-nft `NFQUEUE` rules (without `--queue-bypass`) hand every packet of the
    /// namespace to Suricata (`-q 0`, workers runmode), whose verdict passes or drops it; a
    /// `drop` rule drops. Packets are dropped while Suricata is not reading the queue.
    Inline,
    /// IDS: Suricata captures loopback with af-packet; a `drop` rule only alerts.
    Ids,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Inline => "inline IPS on NFQUEUE",
            Mode::Ids => "IDS on af-packet",
        })
    }
}

/// The client's end of the veth pair into the sandbox's namespace.
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
/// The sandbox's end, where its TCP listener answers.
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// The sid of the site rule [`Sandbox::drop_listed`] adds.
pub const LISTED_DROP_SID: u64 = 9_999_998;

/// The NFQUEUE queue number (queues are per network namespace).
const QUEUE: &str = "0";

/// The sid of the rule that declares the dataset `belay-ips` (loaded from its file).
const DATASET_SID: u64 = 9_999_990;

/// The sid of the sandbox's sentinel rule, which alerts on UDP payloads containing
/// `belay-sentinel`.
pub const SENTINEL_SID: u64 = 9_999_999;

/// A real Suricata 7 in a network namespace of its own, with a minimal suricata.yaml in a
/// temporary directory (no app-layer parsers, no default rules: it answers on its socket about
/// half a second after start), the rule file `belay.rules`, a sentinel rule, and the datasets
/// `belay-ips` (ip, kept in the file `belay-ips.lst`, which a site rule loads it from: see
/// [`dataset_rule`]), `belay-strings` (string) and `belay-sha256` (sha256).
///
/// A second namespace, the *client*, reaches the sandbox's namespace over a veth pair
/// (10.78.0.1 to 10.78.0.2), where a TCP listener accepts connections: inline, Suricata's
/// verdict decides whether [`Sandbox::can_connect`] succeeds. Everything is stopped, and the
/// namespaces deleted, on drop.
pub struct Sandbox {
    config: SuricataConfig,
    mode: Mode,
    netns: String,
    client_ns: String,
    acceptor: Option<Acceptor>,
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Whether Suricata can run here in `mode` (installed, with `iptables-nft` for inline, and
    /// root for network namespaces).
    pub fn available(mode: Mode) -> Result<(), String> {
        host::require_programs(&["suricata", "suricatasc", "ip", "bash"])?;
        if mode == Mode::Inline {
            host::require_programs(&["iptables-nft"])?;
        }
        if !host::is_root() {
            return Err("the Suricata sandbox needs root for network namespaces".into());
        }
        Ok(())
    }

    /// Creates the namespaces and starts Suricata in `mode`; returns once it answers on its
    /// socket and sees traffic.
    pub async fn start(mode: Mode) -> Result<Sandbox, String> {
        Self::available(mode)?;
        let dir = host::temp_dir("belay-suricata-")?;
        let root = dir.path().to_path_buf();
        let rules = root.join("rules");
        let logs = root.join("log");
        for d in [&rules, &logs] {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create {d:?}: {e}"))?;
        }
        let ips_file = root.join("belay-ips.lst");
        let config = SuricataConfig {
            socket: root.join("suricata.sock"),
            rule_dir: rules.clone(),
            rulesets: default_rulesets(),
            suricatasc: default_suricatasc(),
            timeout_secs: 30,
            datasets: [("belay-ips".to_owned(), ips_file.clone())].into(),
        };
        let write = |p: PathBuf, text: &str| {
            files::write_atomically(&p, text.as_bytes()).map_err(|e| e.message)
        };
        write(rules.join("belay.rules"), "")?;
        write(ips_file.clone(), "")?;
        write(
            rules.join("sandbox.rules"),
            &format!(
                "{}\nalert udp any any -> any any (msg:\"belay sandbox sentinel\"; content:\"belay-sentinel\"; sid:{SENTINEL_SID}; rev:1;)\n",
                dataset_rule(&ips_file, "ip.dst", "alert", DATASET_SID, "noalert; ")
            ),
        )?;
        let yaml = format!(
            r#"%YAML 1.1
---
vars:
  address-groups:
    HOME_NET: "any"
    EXTERNAL_NET: "any"
  port-groups:
    HTTP_PORTS: "80"
default-log-dir: {logs}
default-rule-path: {rules}
rule-files:
  - belay.rules
  - sandbox.rules
classification-file: /etc/suricata/classification.config
reference-config-file: /etc/suricata/reference.config
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - alert
        - drop
  - stats:
      enabled: no
logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: no
    - file:
        enabled: yes
        filename: {logs}/suricata.log
af-packet:
  - interface: lo
    threads: 1
    cluster-id: 99
    cluster-type: cluster_flow
    defrag: no
    checksum-checks: no
nfq:
  mode: accept
  fail-open: no
unix-command:
  enabled: yes
  filename: {socket}
app-layer:
  protocols:
    http: {{ enabled: no }}
    tls: {{ enabled: no }}
    dns: {{ enabled: no }}
    smb: {{ enabled: no }}
    ftp: {{ enabled: no }}
    ssh: {{ enabled: no }}
stream:
  checksum-validation: no
datasets:
  belay-strings:
    type: string
  belay-sha256:
    type: sha256
detect:
  profile: low
threading:
  set-cpu-affinity: no
max-pending-packets: 128
"#,
            logs = logs.display(),
            rules = rules.display(),
            socket = config.socket.display(),
        );
        let yaml_path = root.join("suricata.yaml");
        write(yaml_path.clone(), &yaml)?;
        let netns = host::unique_name("belay-sc");
        let mut sandbox = Sandbox {
            config,
            mode,
            netns: String::new(),
            client_ns: String::new(),
            acceptor: None,
            daemon: None,
            dir,
        };
        ip(&["netns", "add", &netns])?;
        sandbox.netns = netns.clone();
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let client = format!("{netns}c");
        ip(&["netns", "add", &client])?;
        sandbox.client_ns = client.clone();
        let (cv, sv) = (format!("bsc{}", &netns[8..]), format!("bss{}", &netns[8..]));
        #[rustfmt::skip]
        ip(&["-n", &client, "link", "add", &cv, "type", "veth", "peer", "name", &sv,
             "netns", &netns])?;
        for (ns, dev, addr) in [(&client, &cv, CLIENT_V4), (&netns, &sv, SERVER_V4)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &client, "link", "set", "lo", "up"])?;
        sandbox.acceptor = Some(Acceptor::start(&netns)?);
        let capture: &[&str] = match mode {
            Mode::Ids => &["--af-packet=lo"],
            Mode::Inline => {
                // Every packet arriving in the namespace, and every one leaving it other than
                // on loopback (seen once already, on arrival), waits for Suricata's verdict.
                #[rustfmt::skip]
                let queue: [&[&str]; 2] = [
                    &["-A", "INPUT", "-j", "NFQUEUE", "--queue-num", QUEUE],
                    &["-A", "OUTPUT", "!", "-o", "lo", "-j", "NFQUEUE", "--queue-num", QUEUE],
                ];
                for rule in queue {
                    iptables(&netns, rule)?;
                }
                &["-q", QUEUE, "--runmode", "workers"]
            }
        };
        // `ip netns exec` enters the namespace and execs suricata: the child is suricata itself.
        let child = host::spawn_logged(
            std::process::Command::new("ip")
                .args(["netns", "exec", &netns, "suricata", "-c"])
                .arg(&yaml_path)
                .args(capture),
            "suricata",
            &root.join("suricata.out"),
        )?;
        sandbox.daemon = Some(Daemon {
            child,
            name: "suricata",
        });
        let connector = Suricata::new("sandbox", sandbox.config.clone()).map_err(|e| e.message)?;
        let ready = host::wait_for(Duration::from_secs(30), "suricata did not answer", || {
            let exited = sandbox.daemon.as_mut().and_then(Daemon::exited);
            let c = &connector;
            async move {
                if exited.is_some() {
                    return Some(false);
                }
                match c.sc("uptime").await {
                    Ok((true, _)) => Some(true),
                    _ => None,
                }
            }
        })
        .await;
        if ready != Ok(true) {
            return Err(host::did_not_start(
                "suricata",
                ready,
                &logs.join("suricata.log"),
            ));
        }
        // The socket answers before capture starts: wait until a probe is seen.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Err(e) = sandbox
            .probe_within(9, "belay-warmup", Duration::from_millis(500))
            .await
        {
            if std::time::Instant::now() >= deadline {
                return Err(format!("suricata does not see traffic: {e}"));
            }
        }
        Ok(sandbox)
    }

    /// How this Suricata sees traffic.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The client namespace's name (for `ip netns exec`).
    pub fn client_netns(&self) -> &str {
        &self.client_ns
    }

    /// The address and port of the TCP listener in Suricata's namespace, as the client
    /// reaches it (10.78.0.2).
    pub fn server(&self) -> SocketAddr {
        let port = self.acceptor.as_ref().map_or(0, Acceptor::port);
        SocketAddr::new(IpAddr::V4(SERVER_V4), port)
    }

    /// Whether a TCP connection from the client namespace to the listener in Suricata's
    /// namespace succeeds within `timeout`.
    pub fn can_connect(&self, timeout: Duration) -> bool {
        host::can_connect(&self.client_ns, self.server(), timeout)
    }

    /// The configuration of a connector that drives this Suricata.
    pub fn config(&self) -> SuricataConfig {
        self.config.clone()
    }

    /// Adds the site's own rule (in `sandbox.rules`, not belay's file) that drops traffic to
    /// and from the addresses in the dataset `belay-ips`: `ips.dataset_add` then blocks an
    /// address, and `ips.dataset_remove` lets it through again. As an IDS, it only alerts.
    pub async fn drop_listed(&self) -> Result<(), String> {
        let file = &self.config.datasets["belay-ips"];
        let rule = format!(
            "{}\n{}\n",
            dataset_rule(file, "ip.dst", "drop", LISTED_DROP_SID, ""),
            dataset_rule(file, "ip.src", "drop", LISTED_DROP_SID - 1, "")
        );
        let path = self.config.rule_dir.join("sandbox.rules");
        let old = std::fs::read_to_string(&path).map_err(|e| format!("{path:?}: {e}"))?;
        let connector = Suricata::new("sandbox", self.config.clone()).map_err(|e| e.message)?;
        connector
            .reload_checked(&path, &old, &format!("{old}{rule}"))
            .await
            .map(drop)
            .map_err(|e| e.message)
    }

    /// Suricata's alert log.
    pub fn eve_log(&self) -> PathBuf {
        self.dir.path().join("log").join("eve.json")
    }

    /// Sends `payload` in a UDP datagram to 127.0.0.1:`port` inside the namespace, then the
    /// sentinel in another; waits until Suricata has alerted on the sentinel (its single capture
    /// thread has then seen the payload too) and returns the sids of the other alerts raised.
    pub async fn probe(&self, port: u16, payload: &str) -> Result<Vec<u64>, String> {
        self.probe_within(port, payload, Duration::from_secs(10))
            .await
    }

    async fn probe_within(
        &self,
        port: u16,
        payload: &str,
        limit: Duration,
    ) -> Result<Vec<u64>, String> {
        if payload.contains('\0') {
            return Err("the payload cannot hold NUL".into());
        }
        let start = std::fs::read_to_string(self.eve_log()).map_or(0, |t| t.len());
        let sentinel = host::unique_name("belay-sentinel-");
        Cmd::new("ip")
            .args(["netns", "exec", &self.netns, "bash", "-c"])
            .arg(format!(
                "printf %s \"$1\" >/dev/udp/127.0.0.1/{port} && sleep 0.05 && printf %s \"$2\" >/dev/udp/127.0.0.1/{port}"
            ))
            .args(["belay-probe", payload, sentinel.as_str()])
            .run()
            .await
            .map_err(|e| e.message)?;
        let eve = self.eve_log();
        host::wait_for(limit, "no sentinel alert", || {
            let text = std::fs::read_to_string(&eve).unwrap_or_default();
            async move {
                let alerts: Vec<u64> = text
                    .get(start..)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter_map(|v| v["alert"]["signature_id"].as_u64())
                    .collect();
                alerts
                    .contains(&SENTINEL_SID)
                    .then(|| alerts.into_iter().filter(|s| *s != SENTINEL_SID).collect())
            }
        })
        .await
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.daemon.take();
        self.acceptor.take();
        // Deleting a namespace removes its veth end (and so the pair) and its iptables rules.
        for ns in [&self.client_ns, &self.netns] {
            if !ns.is_empty() {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", ns])
                    .output();
            }
        }
    }
}

/// A rule matching the addresses of the dataset `belay-ips` on `field` (`ip.dst`, `ip.src`).
/// Every rule naming a dataset kept in a file names the file too (`load`): Suricata refuses a
/// rule whose `load` differs from the one the dataset was first declared with.
pub fn dataset_rule(file: &Path, field: &str, action: &str, sid: u64, options: &str) -> String {
    format!(
        "{action} ip any any -> any any (msg:\"belay-ips: listed address\"; {field}; dataset:isset,belay-ips,type ip,load {}; {options}sid:{sid}; rev:1;)",
        file.display()
    )
}

/// Runs `iptables-nft ARGS` in the namespace `ns`.
fn iptables(ns: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "iptables-nft"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables-nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`iptables-nft {}` failed in the sandbox's namespace: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
