//! `dns.*` on Unbound: sinkholes as runtime local zones, through `unbound-control`.
//!
//! A redirect sinkhole is `local_zone D redirect` plus `local_data "D TTL IN A|AAAA ANSWER"`
//! (every name under D gets that answer); an NXDOMAIN one is `local_zone D always_nxdomain`.
//! Removing one is `local_zone_remove D` (which drops its data too). Runtime zones vanish when
//! Unbound restarts: re-applying the change restores them (and reports `changed: true`).
//! A domain that already has a local zone of another type (from Unbound's configuration) is
//! refused: the sinkhole would replace that zone, and removing it would not bring it back.

use super::cmd::Cmd;
use crate::{ActionError, Call, Connector, input_str};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `[connectors.NAME] type = "unbound"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnboundConfig {
    /// The `unbound-control` program.
    pub unbound_control: String,
    /// Configuration file `unbound-control` reads the control interface from (`-c`).
    pub config_file: Option<PathBuf>,
    /// Control interface (`-s`): `HOST@PORT` or a unix socket path; overrides the file's.
    pub server: Option<String>,
    /// The sinkhole address when an action gives none (e.g. the internal warning page).
    pub default_answer: Option<IpAddr>,
    /// How long one `unbound-control` run may take, in seconds.
    pub timeout_secs: u64,
}

impl Default for UnboundConfig {
    fn default() -> Self {
        UnboundConfig {
            unbound_control: "unbound-control".into(),
            config_file: None,
            server: None,
            default_answer: None,
            timeout_secs: 10,
        }
    }
}

/// The `unbound` connector.
pub struct Unbound {
    config: UnboundConfig,
    /// Serializes read-then-change sequences.
    lock: tokio::sync::Mutex<()>,
}

/// What Unbound holds for one zone name.
#[derive(Debug, Default, PartialEq)]
struct ZoneState {
    /// The local zone's type, when there is a zone by that name.
    kind: Option<String>,
    /// The zone apex's records as `TYPE RDATA` (TTL left out).
    records: Vec<String>,
}

impl ZoneState {
    fn mode(&self) -> Option<&'static str> {
        match self.kind.as_deref() {
            Some("redirect") => Some("redirect"),
            Some("always_nxdomain") => Some("nxdomain"),
            _ => None,
        }
    }

    fn answer(&self) -> Option<&str> {
        self.records.iter().find_map(|r| {
            r.strip_prefix("A ")
                .or_else(|| r.strip_prefix("AAAA "))
                .map(str::trim)
        })
    }
}

impl Unbound {
    pub fn new(name: &str, config: UnboundConfig) -> Result<Self, String> {
        let _ = name;
        if let Some(s) = &config.server
            && (s.is_empty() || s.starts_with('-'))
        {
            return Err(format!("invalid control interface `{s}`"));
        }
        Ok(Unbound {
            config,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `unbound-control COMMAND ARGS`; a reply starting with `error` is an error.
    async fn ctl(&self, args: &[&str]) -> Result<String, ActionError> {
        let mut cmd = Cmd::new(&self.config.unbound_control)
            .timeout(Duration::from_secs(self.config.timeout_secs.max(1)));
        if let Some(c) = &self.config.config_file {
            cmd = cmd.arg("-c").arg(c.to_string_lossy());
        }
        if let Some(s) = &self.config.server {
            cmd = cmd.arg("-s").arg(s);
        }
        let cmd = cmd.args(args.iter().copied());
        let out = cmd.output().await?;
        let reply = out.stdout.trim_start();
        if out.success() && !reply.starts_with("error") {
            return Ok(out.stdout);
        }
        let text = if out.stderr.trim().is_empty() {
            reply.lines().next().unwrap_or("").to_owned()
        } else {
            out.stderr.trim().to_owned()
        };
        let message = format!("`unbound-control {}` failed: {text}", args.join(" "));
        // Not reaching the daemon may pass (a restart); a refused command will not.
        if text.contains("connect") || text.contains("Connection refused") {
            Err(ActionError::transient(message))
        } else {
            Err(ActionError::permanent(message))
        }
    }

    /// Every local zone as (name without the final dot, type).
    async fn zones(&self) -> Result<Vec<(String, String)>, ActionError> {
        let text = self.ctl(&["list_local_zones"]).await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (name, kind) = l.trim().split_once(char::is_whitespace)?;
                Some((fqdn_to_name(name), kind.trim().to_owned()))
            })
            .collect())
    }

    async fn zone_state(&self, domain: &str) -> Result<ZoneState, ActionError> {
        let kind = self
            .zones()
            .await?
            .into_iter()
            .find(|(n, _)| n == domain)
            .map(|(_, k)| k);
        let mut records = Vec::new();
        if kind.is_some() {
            let text = self.ctl(&["list_local_data"]).await?;
            for line in text.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // name ttl class type rdata...
                if fields.len() >= 5 && fqdn_to_name(fields[0]) == domain && fields[2] == "IN" {
                    records.push(format!("{} {}", fields[3], fields[4..].join(" ")));
                }
            }
            records.sort();
        }
        Ok(ZoneState { kind, records })
    }

    async fn sinkhole(&self, input: &Value) -> Result<Value, ActionError> {
        let domain = parse_domain(input_str(input, "domain")?)?;
        let mode = input
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("redirect");
        let ttl = match input.get("ttl") {
            None | Some(Value::Null) => 300,
            Some(v) => v
                .as_u64()
                .filter(|t| *t <= 86_400)
                .ok_or_else(|| ActionError::permanent("`ttl` must be 0 to 86400 seconds"))?,
        };
        let (kind, answer) = match mode {
            "redirect" => {
                let answer = match input.get("answer").and_then(Value::as_str) {
                    Some(a) => a.parse::<IpAddr>().map_err(|e| {
                        ActionError::permanent(format!("invalid answer address `{a}`: {e}"))
                    })?,
                    None => self.config.default_answer.ok_or_else(|| {
                        ActionError::permanent(
                            "no `answer` given and no `default_answer` configured",
                        )
                    })?,
                };
                ("redirect", Some(answer))
            }
            "nxdomain" => ("always_nxdomain", None),
            other => {
                return Err(ActionError::permanent(format!(
                    "unknown sinkhole mode `{other}` (redirect or nxdomain)"
                )));
            }
        };
        let record = answer.map(|a| {
            let rtype = if a.is_ipv4() { "A" } else { "AAAA" };
            (
                format!("{rtype} {a}"),
                format!("{domain} {ttl} IN {rtype} {a}"),
            )
        });
        let mut out = json!({ "domain": domain, "mode": mode });
        if let Some(a) = answer {
            out["answer"] = json!(a.to_string());
        }

        let _guard = self.lock.lock().await;
        let now = self.zone_state(&domain).await?;
        let wanted = ZoneState {
            kind: Some(kind.to_owned()),
            records: record.iter().map(|(r, _)| r.clone()).collect(),
        };
        if now == wanted {
            out["changed"] = json!(false);
            return Ok(out);
        }
        if let Some(other) = now.kind.as_deref().filter(|_| now.mode().is_none()) {
            return Err(ActionError::permanent(format!(
                "`{domain}` already has a local zone of type {other} (from Unbound's \
                 configuration?); a sinkhole would replace it for good"
            )));
        }
        if now.kind.is_some() {
            self.ctl(&["local_zone_remove", &domain]).await?;
        }
        self.ctl(&["local_zone", &domain, kind]).await?;
        if let Some((_, data)) = &record
            && let Err(e) = self.ctl(&["local_data", data]).await
        {
            // Leave no half-made sinkhole behind.
            let _ = self.ctl(&["local_zone_remove", &domain]).await;
            return Err(e);
        }
        out["changed"] = json!(true);
        Ok(out)
    }

    async fn unsinkhole(&self, input: &Value) -> Result<Value, ActionError> {
        let domain = parse_domain(input_str(input, "domain")?)?;
        let _guard = self.lock.lock().await;
        let now = self.zone_state(&domain).await?;
        let changed = now.mode().is_some();
        if changed {
            self.ctl(&["local_zone_remove", &domain]).await?;
        }
        Ok(json!({ "domain": domain, "changed": changed }))
    }

    /// Whether the zone that governs `domain` (the closest enclosing local zone) is a sinkhole.
    async fn status(&self, input: &Value) -> Result<Value, ActionError> {
        let domain = parse_domain(input_str(input, "domain")?)?;
        let zones = self.zones().await?;
        let closest = ancestors(&domain).find_map(|name| {
            zones
                .iter()
                .find(|(n, _)| n == name)
                .map(|(n, _)| n.clone())
        });
        let Some(zone) = closest else {
            return Ok(json!({ "sinkholed": false }));
        };
        let state = self.zone_state(&zone).await?;
        let Some(mode) = state.mode() else {
            return Ok(json!({ "sinkholed": false }));
        };
        let mut out = json!({ "sinkholed": true, "zone": zone, "mode": mode });
        if let Some(a) = state.answer() {
            out["answer"] = json!(a);
        }
        Ok(out)
    }

    async fn state_of(&self, input: &Value) -> Result<Value, ActionError> {
        let domain = parse_domain(input_str(input, "domain")?)?;
        let state = self.zone_state(&domain).await?;
        Ok(json!({
            "domain": domain,
            "sinkholed": state.mode().is_some(),
            "zone_type": state.kind,
            "mode": state.mode(),
            "answer": state.answer(),
            "records": state.records,
        }))
    }
}

#[async_trait]
impl Connector for Unbound {
    fn family(&self) -> &str {
        "dns"
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        match call.action {
            "dns.sinkhole_domain" => self.sinkhole(call.input).await,
            "dns.unsinkhole_domain" => self.unsinkhole(call.input).await,
            "dns.status" => self.status(call.input).await,
            other => Err(ActionError::permanent(format!(
                "the unbound connector has no action `{other}`"
            ))),
        }
    }

    async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        match action {
            "dns.sinkhole_domain" | "dns.unsinkhole_domain" => self.state_of(input).await,
            _ => Ok(Value::Null),
        }
    }
}

fn fqdn_to_name(s: &str) -> String {
    s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase()
}

/// `a.b.example.com`, `b.example.com`, `example.com`, `com`.
fn ancestors(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |d| d.split_once('.').map(|(_, rest)| rest))
}

/// A host name of two labels or more: letters, digits, `-` (not at a label's ends) and `_`,
/// labels of 1 to 63 characters, 253 in all. Lower-cased, without a final dot.
fn parse_domain(s: &str) -> Result<String, ActionError> {
    let bad = |why: &str| {
        ActionError::permanent(format!(
            "invalid domain `{}`: {why}",
            s.chars().take(80).collect::<String>()
        ))
    };
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(bad("must be 1 to 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("needs at least two labels"));
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label must be 1 to 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("only letters, digits, `-` and `_` are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with `-`"));
        }
    }
    Ok(name)
}

// ---------------------------------------------------------------------- sandbox

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

/// A resolver's reply: its response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED...) and the
/// addresses in its answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    pub rcode: u8,
    pub addrs: Vec<IpAddr>,
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
        let dir = tempfile::Builder::new()
            .prefix("belay-unbound-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
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
        let log = std::fs::File::create(self.dir.path().join("unbound.log"))
            .map_err(|e| format!("cannot create the log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot create the log: {e}"))?;
        let mut child = std::process::Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&self.conf)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start unbound: {e}"))?;
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

/// One DNS query over UDP (recursion desired) for A or AAAA records, with a 2 s timeout.
pub fn query(server: SocketAddr, name: &str, ipv6: bool) -> Result<DnsAnswer, String> {
    let qtype: u16 = if ipv6 { 28 } else { 1 };
    let id = fastrand::u16(..);
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..64).contains(l))
            .ok_or_else(|| format!("invalid name `{name}`"))?;
        msg.push(len);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());

    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| format!("udp socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("udp socket: {e}"))?;
    socket
        .send_to(&msg, server)
        .map_err(|e| format!("cannot send to {server}: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer from {server}: {e}"))?;
        if from == server && n >= 12 && buf[..2] == id.to_be_bytes() {
            return parse_reply(&buf[..n]);
        }
    }
}

fn parse_reply(r: &[u8]) -> Result<DnsAnswer, String> {
    let short = || "truncated DNS reply".to_owned();
    let u16_at = |i: usize| -> Result<u16, String> {
        r.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(short)
    };
    // Skips a (possibly compressed) name.
    let skip_name = |mut i: usize| -> Result<usize, String> {
        loop {
            let len = *r.get(i).ok_or_else(short)?;
            if len & 0xc0 == 0xc0 {
                return Ok(i + 2);
            }
            if len == 0 {
                return Ok(i + 1);
            }
            i += 1 + usize::from(len);
        }
    };
    let rcode = r.get(3).ok_or_else(short)? & 0x0f;
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(i)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        i = skip_name(i)?;
        let (rtype, rdlen) = (u16_at(i)?, usize::from(u16_at(i + 8)?));
        let data = r.get(i + 10..i + 10 + rdlen).ok_or_else(short)?;
        match (rtype, rdlen) {
            (1, 4) => addrs.push(IpAddr::from(
                <[u8; 4]>::try_from(data).map_err(|_| short())?,
            )),
            (28, 16) => addrs.push(IpAddr::from(
                <[u8; 16]>::try_from(data).map_err(|_| short())?,
            )),
            _ => {}
        }
        i += 10 + rdlen;
    }
    Ok(DnsAnswer { rcode, addrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_checked_and_normalized() {
        assert_eq!(
            parse_domain("Phish.Example.COM.").ok().as_deref(),
            Some("phish.example.com")
        );
        assert_eq!(
            parse_domain("_dmarc.example.com").ok().as_deref(),
            Some("_dmarc.example.com")
        );
        for bad in [
            "exa mple..com",
            "example..com",
            "com",
            "-bad.example.com",
            "bad-.example.com",
            ".example.com",
            "exa\"mple.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "abcdefghi.".repeat(26)),
        ] {
            assert!(parse_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ancestors_walk_up_to_the_tld() {
        let all: Vec<&str> = ancestors("a.b.example.com").collect();
        assert_eq!(
            all,
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
    }
}
