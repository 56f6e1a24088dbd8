//! `proxy.*` on Squid: block lists and the "monitor" policy are ACL files that squid.conf
//! includes (see [`SquidConfig::acl_directives`]). Every change writes candidate files, has
//! `squid -k parse` check a copy of squid.conf that points at them (a bad file never reaches
//! the running proxy), renames them into place and runs `squid -k reconfigure`. State is read
//! from the files. Changes and state reads take the ACL files' advisory lock (`.acl-files.lock`),
//! which every belay process honours, so processes sharing the files never lose a change.
//!
//! Files in `acl_dir`: `block-<list>.domains` (`dstdomain`, one `.domain` per line: the domain
//! and its subdomains) and `block-<list>.ips` (`dst`, addresses and networks) for each block
//! list; `monitor-detailed.*` and `monitor-full.*` for tightened addresses, whose requests are
//! logged to a separate access log (with request headers for `full`); `pcap.txt` lists the
//! addresses whose capture was asked for (Squid captures nothing itself: a capture tool reads it).
//!
//! `proxy.block_many|unblock_many` change a whole batch of one list in one checked replace and
//! one reconfigure (see `many`).

mod many;
mod sandbox;

pub use sandbox::Sandbox;

use super::cmd::Cmd;
use crate::files;
use crate::{ActionError, Call, Connector, input_str};
use async_trait::async_trait;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[connectors.NAME] type = "squid"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SquidConfig {
    /// The running proxy's squid.conf, which holds [`SquidConfig::acl_directives`] itself
    /// (not through an `include`: the candidate check rewrites the ACL file paths in it).
    pub config: PathBuf,
    /// Directory of belay's ACL files (writable by belay, readable by Squid).
    pub acl_dir: PathBuf,
    /// Block list names squid.conf denies; `proxy.block` to another list is refused.
    #[serde(default = "default_lists")]
    pub lists: Vec<String>,
    /// Where the monitor policy logs requests (used by `acl_directives`).
    #[serde(default)]
    pub monitor_log: Option<PathBuf>,
    /// The squid program.
    #[serde(default = "default_squid")]
    pub squid: String,
    /// Seconds a squid command may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_lists() -> Vec<String> {
    vec!["belay".into()]
}

fn default_squid() -> String {
    "squid".into()
}

fn default_timeout() -> u64 {
    20
}

const MONITOR_LEVELS: [&str; 2] = ["detailed", "full"];

impl SquidConfig {
    /// The squid.conf lines that enforce belay's files: one deny per block list and the monitor
    /// access log. Put them before the `http_access allow` rules.
    pub fn acl_directives(&self) -> String {
        // `NAME_dom` and `NAME_ip`: the domains and addresses listed in `FILE.domains` and `FILE.ips`.
        let acls = |name: &str, file: &str| {
            let path = |ext: &str| {
                self.acl_dir
                    .join(format!("{file}.{ext}"))
                    .display()
                    .to_string()
            };
            format!(
                "acl {name}_dom dstdomain -n \"{}\"\nacl {name}_ip dst \"{}\"\n",
                path("domains"),
                path("ips")
            )
        };
        let mut s = String::from("# belay: block lists and monitor policy (managed files)\n");
        for list in &self.lists {
            let id = acl_id(list);
            s += &acls(&format!("belay_block_{id}"), &format!("block-{list}"));
            s += &format!("http_access deny belay_block_{id}_dom\n");
            s += &format!("http_access deny belay_block_{id}_ip\n");
        }
        s += "logformat belay_detailed %ts.%03tu %>a %Ss/%03>Hs %rm %ru %<A %mt\n";
        s += "logformat belay_full %ts.%03tu %>a %Ss/%03>Hs %rm %ru %<A %mt [%>h]\n";
        let log = self
            .monitor_log
            .clone()
            .unwrap_or_else(|| self.acl_dir.join("monitor.log"));
        for level in MONITOR_LEVELS {
            s += &acls(&format!("belay_mon_{level}"), &format!("monitor-{level}"));
            s += &format!(
                "acl belay_mon_{level} any-of belay_mon_{level}_dom belay_mon_{level}_ip\n"
            );
            s += &format!(
                "access_log stdio:{} belay_{level} belay_mon_{level}\n",
                log.display()
            );
        }
        s
    }
}

/// An ACL name part for a list name (Squid ACL names take letters, digits, `_`, `-`, `.`).
fn acl_id(list: &str) -> String {
    list.replace(['.', '-'], "_")
}

/// What a proxy entry names: a domain with its subdomains, or an address or network.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Domain(String),
    Net(IpNet),
}

impl Target {
    fn parse(address: &str) -> Result<Target, ActionError> {
        let bad = |why: &str| {
            ActionError::permanent(format!(
                "invalid proxy address `{}`: {why}",
                address.chars().take(80).collect::<String>()
            ))
        };
        if address.contains("://") {
            return Err(bad(
                "Squid blocks by domain or IP address (it sees no HTTPS paths); give the URL's domain",
            ));
        }
        if let Ok(ip) = address.parse::<IpAddr>() {
            return Ok(Target::Net(IpNet::from(ip)));
        }
        if address.contains('/') {
            return address
                .parse::<IpNet>()
                .map(|n| Target::Net(n.trunc()))
                .map_err(|_| bad("neither an IP address, a CIDR network nor a domain"));
        }
        let d = address
            .strip_suffix('.')
            .unwrap_or(address)
            .to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if d.is_empty() || d.len() > 253 || !d.split('.').all(label_ok) {
            return Err(bad("not a valid domain name"));
        }
        if d.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit())) {
            return Err(bad("not a valid IP address"));
        }
        Ok(Target::Domain(d))
    }

    /// The ACL file line: `.domain` (the domain and its subdomains), an address, or a network.
    fn line(&self) -> String {
        match self {
            Target::Domain(d) => format!(".{d}"),
            Target::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
            Target::Net(n) => n.to_string(),
        }
    }

    fn ext(&self) -> &'static str {
        match self {
            Target::Domain(_) => "domains",
            Target::Net(_) => "ips",
        }
    }

    /// Whether an ACL file line matches this target (equal, a parent domain, a containing network).
    fn covered_by(&self, line: &str) -> bool {
        match self {
            Target::Domain(d) => {
                line.strip_prefix('.').is_some_and(|e| {
                    d == e
                        || (d.len() > e.len()
                            && d.ends_with(e)
                            && d[..d.len() - e.len()].ends_with('.'))
                }) || line == d
            }
            Target::Net(n) => line
                .parse::<IpAddr>()
                .map(IpNet::from)
                .or_else(|_| line.parse::<IpNet>())
                .is_ok_and(|e| e.contains(n)),
        }
    }
}

/// The `proxy` connector for Squid.
pub struct Squid {
    config: SquidConfig,
    /// Serializes changes: each one re-reads, checks and replaces files.
    lock: tokio::sync::Mutex<()>,
}

/// A file to replace, and whether squid.conf reads it (then `squid -k parse` checks it).
struct Edit {
    path: PathBuf,
    text: String,
    checked: bool,
}

impl Squid {
    /// Checks the configured block lists (at least one, valid names, distinct Squid ACL names);
    /// touches no file yet. `name` is the connector's configured name, for errors.
    pub fn new(name: &str, config: SquidConfig) -> Result<Squid, crate::http::ConfigError> {
        let err = |message: String| crate::http::ConfigError {
            connector: name.into(),
            message,
        };
        if config.lists.is_empty() {
            return Err(err("`lists` names no block list".into()));
        }
        for (i, l) in config.lists.iter().enumerate() {
            check_list_name(l).map_err(|e| err(e.message))?;
            if config.lists[..i].iter().any(|o| acl_id(o) == acl_id(l)) {
                return Err(err(format!(
                    "list `{l}` would share its Squid ACL name with another list"
                )));
            }
        }
        Ok(Squid {
            config,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    fn list(&self, input: &Value) -> Result<String, ActionError> {
        let list = input.get("list").and_then(Value::as_str).unwrap_or("belay");
        check_list_name(list)?;
        if !self.config.lists.iter().any(|l| l == list) {
            return Err(ActionError::permanent(format!(
                "unknown block list `{list}` (configured: {})",
                self.config.lists.join(", ")
            )));
        }
        Ok(list.to_owned())
    }

    /// The advisory lock on the ACL files, which every belay process takes: exclusive for a
    /// change (from its first read to its last write), shared to read a state.
    async fn files_lock(&self, exclusive: bool) -> Result<files::FileLock, ActionError> {
        files::lock_async(&self.path("acl-files"), exclusive).await
    }

    fn path(&self, name: &str) -> PathBuf {
        self.config.acl_dir.join(name)
    }

    fn block_file(&self, list: &str, t: &Target) -> PathBuf {
        self.path(&format!("block-{list}.{}", t.ext()))
    }

    fn monitor_file(&self, level: &str, t: &Target) -> PathBuf {
        self.path(&format!("monitor-{level}.{}", t.ext()))
    }

    fn pcap_file(&self) -> PathBuf {
        self.path("pcap.txt")
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }

    /// The first line of `path` matching `t` (exactly, or covering it).
    fn find(path: &Path, t: &Target, exact: bool) -> Result<Option<String>, ActionError> {
        let line = t.line();
        Ok(files::read_text(path)?
            .lines()
            .map(str::trim)
            .find(|l| if exact { *l == line } else { t.covered_by(l) })
            .map(str::to_owned))
    }

    /// The edit that adds or removes `t`'s line in `path`, or None when it is already so.
    fn edit(
        path: PathBuf,
        t: &Target,
        present: bool,
        checked: bool,
    ) -> Result<Option<Edit>, ActionError> {
        let text = files::read_text(&path)?;
        let line = t.line();
        let has = text.lines().any(|l| l.trim() == line);
        if has == present {
            return Ok(None);
        }
        let mut out: String = text
            .lines()
            .filter(|l| l.trim() != line)
            .flat_map(|l| [l, "\n"])
            .collect();
        if present {
            out.push_str(&line);
            out.push('\n');
        }
        Ok(Some(Edit {
            path,
            text: out,
            checked,
        }))
    }

    /// Checks the candidate files with `squid -k parse`, puts them in place and reconfigures.
    async fn apply(&self, edits: Vec<Edit>) -> Result<bool, ActionError> {
        if edits.is_empty() {
            return Ok(false);
        }
        // Candidates are written and fsynced on the blocking pool (the lock is held meanwhile).
        let acl_dir = self.config.acl_dir.clone();
        let conf_path = self.config.config.clone();
        let conf_candidate = self.path("squid.conf");
        let (edits, staged, conf_tmp) = files::blocking(move || {
            std::fs::create_dir_all(&acl_dir).map_err(|e| {
                ActionError::transient(format!("cannot create {}: {e}", acl_dir.display()))
            })?;
            let mut conf = std::fs::read_to_string(&conf_path).map_err(|e| {
                ActionError::transient(format!("cannot read {}: {e}", conf_path.display()))
            })?;
            let mut staged = Vec::new();
            for e in &edits {
                let tmp = files::candidate(&e.path, e.text.as_bytes())?;
                if e.checked {
                    let quoted = format!("\"{}\"", e.path.display());
                    if !conf.contains(&quoted) {
                        return Err(ActionError::permanent(format!(
                            "{} does not include {quoted}: add SquidConfig::acl_directives to it",
                            conf_path.display()
                        )));
                    }
                    conf = conf.replace(&quoted, &format!("\"{}\"", tmp.path().display()));
                }
                let old = files::read_text(&e.path)?;
                staged.push((tmp, old));
            }
            let conf_tmp = files::candidate(&conf_candidate, conf.as_bytes())?;
            Ok((edits, staged, conf_tmp))
        })
        .await?;
        let out = Cmd::new(&self.config.squid)
            .args(["-k", "parse", "-f"])
            .arg(conf_tmp.path().display().to_string())
            .timeout(self.timeout())
            .output()
            .await?;
        if !out.success() {
            let complaint: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.contains("FATAL") || l.contains("ERROR") || l.contains("Bungled"))
                .take(4)
                .collect();
            return Err(ActionError::permanent(format!(
                "squid rejects the change (nothing applied): {}",
                complaint.join(" | ")
            )));
        }
        let (edits, olds) = files::blocking(move || {
            let mut olds = Vec::new();
            for ((tmp, old), e) in staged.into_iter().zip(&edits) {
                files::persist(tmp, &e.path)?;
                olds.push(old);
            }
            Ok((edits, olds))
        })
        .await?;
        let reconf = Cmd::new(&self.config.squid)
            .args(["-k", "reconfigure", "-f"])
            .arg(self.config.config.display().to_string())
            .timeout(self.timeout())
            .run()
            .await;
        if let Err(err) = reconf {
            // The proxy did not take the change: put the files back as they were.
            let _ = files::blocking(move || {
                for (old, e) in olds.iter().zip(&edits) {
                    let _ = files::write_atomically(&e.path, old.as_bytes());
                }
                Ok(())
            })
            .await;
            return Err(ActionError::transient(format!(
                "squid did not reconfigure (files restored): {}",
                err.message
            )));
        }
        Ok(true)
    }

    fn policy(&self, t: &Target, exact: bool) -> Result<Value, ActionError> {
        let mut logging = "standard";
        for level in MONITOR_LEVELS {
            if Self::find(&self.monitor_file(level, t), t, exact)?.is_some() {
                logging = level;
            }
        }
        let pcap = Self::find(&self.pcap_file(), t, exact)?.is_some();
        Ok(json!({
            "policy": if logging == "standard" { "default" } else { "tightened" },
            "logging": logging,
            "pcap": pcap,
        }))
    }

    fn status(&self, address: &str) -> Result<Value, ActionError> {
        let t = Target::parse(url_host(address).unwrap_or(address))?;
        let mut out = self.policy(&t, false)?;
        out["address"] = json!(address);
        out["blocked"] = json!(false);
        for list in &self.config.lists {
            if let Some(m) = Self::find(&self.block_file(list, &t), &t, false)? {
                out["blocked"] = json!(true);
                out["matched"] = json!(m);
                out["list"] = json!(list);
                break;
            }
        }
        Ok(out)
    }
}

/// The host of an `http(s)://` URL (what Squid matches without SSL bumping), for status reads.
fn url_host(address: &str) -> Option<&str> {
    let (_, rest) = address.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(host.split_once(':').map_or(host, |(h, _)| h))
}

fn check_list_name(list: &str) -> Result<(), ActionError> {
    let ok = !list.is_empty()
        && list.len() <= 64
        && !list.starts_with('.')
        && list
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ActionError::permanent(format!(
            "invalid list name `{list}`"
        )))
    }
}

#[async_trait]
impl Connector for Squid {
    fn family(&self) -> &str {
        "proxy"
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        match call.action {
            "proxy.block_many" => return self.change_many(call.input, true).await,
            "proxy.unblock_many" => return self.change_many(call.input, false).await,
            _ => {}
        }
        let address = input_str(call.input, "address")?;
        match call.action {
            "proxy.status" => self.status(address),
            "proxy.block" | "proxy.unblock" => {
                let list = self.list(call.input)?;
                let t = Target::parse(address)?;
                let _guard = self.lock.lock().await;
                let _files = self.files_lock(true).await?;
                let add = call.action == "proxy.block";
                let edits = Self::edit(self.block_file(&list, &t), &t, add, true)?;
                let changed = self.apply(edits.into_iter().collect()).await?;
                Ok(json!({ "address": address, "list": list, "changed": changed }))
            }
            "proxy.tighten_policy" => {
                if call.input.get("duration").is_some_and(|d| !d.is_null()) {
                    return Err(ActionError::permanent(
                        "Squid cannot expire a policy by itself: tighten without `duration` and relax it later",
                    ));
                }
                let level = call
                    .input
                    .get("logging")
                    .and_then(Value::as_str)
                    .unwrap_or("detailed");
                if !MONITOR_LEVELS.contains(&level) {
                    return Err(ActionError::permanent(format!(
                        "invalid logging level `{level}` (detailed or full)"
                    )));
                }
                let pcap = call
                    .input
                    .get("pcap")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let t = Target::parse(address)?;
                let _guard = self.lock.lock().await;
                let _files = self.files_lock(true).await?;
                let mut edits = Vec::new();
                for l in MONITOR_LEVELS {
                    edits.extend(Self::edit(self.monitor_file(l, &t), &t, l == level, true)?);
                }
                edits.extend(Self::edit(self.pcap_file(), &t, pcap, false)?);
                let changed = self.apply(edits).await?;
                Ok(json!({ "address": address, "changed": changed }))
            }
            "proxy.relax_policy" => {
                let t = Target::parse(address)?;
                let _guard = self.lock.lock().await;
                let _files = self.files_lock(true).await?;
                let mut edits = Vec::new();
                for l in MONITOR_LEVELS {
                    edits.extend(Self::edit(self.monitor_file(l, &t), &t, false, true)?);
                }
                edits.extend(Self::edit(self.pcap_file(), &t, false, false)?);
                let changed = self.apply(edits).await?;
                Ok(json!({ "address": address, "changed": changed }))
            }
            other => Err(ActionError::no_action("`proxy` (squid)", other)),
        }
    }

    async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        if matches!(action, "proxy.block_many" | "proxy.unblock_many") {
            return self.many_read_state(action, input).await;
        }
        let address = input_str(input, "address")?;
        let t = Target::parse(address)?;
        let _files = self.files_lock(false).await?;
        match action {
            "proxy.block" | "proxy.unblock" => {
                let list = self.list(input)?;
                let present = Self::find(&self.block_file(&list, &t), &t, true)?.is_some();
                Ok(json!({ "list": list, "blocked": present }))
            }
            "proxy.tighten_policy" | "proxy.relax_policy" => self.policy(&t, true),
            _ => self.status(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_strictly() {
        assert_eq!(
            Target::parse("Evil.Example.").unwrap().line(),
            ".evil.example"
        );
        assert_eq!(Target::parse("203.0.113.7").unwrap().line(), "203.0.113.7");
        assert_eq!(
            Target::parse("198.51.100.9/24").unwrap().line(),
            "198.51.100.0/24"
        );
        assert_eq!(
            Target::parse("2001:db8::/32").unwrap().line(),
            "2001:db8::/32"
        );
        for bad in [
            "http://evil.example/x",
            "evil..example",
            "-evil.example",
            "1.2.3.400",
            "10.0.0.0/33",
            "a b",
            "evil.example/path",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("http://u@Evil.example:8080/x?y"),
            Some("Evil.example")
        );
        assert_eq!(url_host("https://[2001:db8::1]:443/"), Some("2001:db8::1"));
        assert_eq!(url_host("evil.example"), None);
    }

    #[test]
    fn coverage() {
        let t = Target::parse("a.evil.example").unwrap();
        assert!(t.covered_by(".evil.example"));
        assert!(t.covered_by(".a.evil.example"));
        assert!(!t.covered_by(".vil.example"));
        let ip = Target::parse("198.51.100.7").unwrap();
        assert!(ip.covered_by("198.51.100.0/24"));
        assert!(ip.covered_by("198.51.100.7"));
        assert!(!ip.covered_by("198.51.101.0/24"));
    }
}
