//! `ips.*` on Suricata: belay's rules live in `<ruleset>.rules` files that suricata.yaml lists
//! under `rule-files`; values go into datasets declared in suricata.yaml. Everything goes through
//! the unix command socket with `suricatasc`.
//!
//! A rule change rewrites the file, runs `reload-rules`, and then checks that the reload happened
//! (`ruleset-reload-time` moved) and that no rule of the file is in `ruleset-failed-rules`:
//! Suricata answers "done" even when it rejects a rule. On failure the previous file is put back
//! and reloaded, so a bad rule changes nothing.
//!
//! The connector works the same whether Suricata runs as an IDS (a `drop` rule alerts) or
//! inline on NFQUEUE (a `drop` rule drops the packets, and removing it lets them through).
//!
//! A dataset can be kept in a file (`datasets`): set-level changes of it are one file replace
//! and one rule reload (see `many`).

mod many;
mod sandbox;
mod socket;

pub use sandbox::{LISTED_DROP_SID, Mode, SENTINEL_SID, Sandbox, dataset_rule};

use super::cmd::Cmd;
use crate::files;
use crate::{ActionError, input_str};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[connectors.NAME] type = "suricata"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuricataConfig {
    /// Suricata's unix command socket (`unix-command: filename:` in suricata.yaml).
    pub socket: PathBuf,
    /// Directory of belay's rule files, `<ruleset>.rules` (suricata.yaml's `default-rule-path`,
    /// or listed there by full path).
    pub rule_dir: PathBuf,
    /// The rulesets belay may write; each must be listed under `rule-files` in suricata.yaml.
    #[serde(default = "default_rulesets")]
    pub rulesets: Vec<String>,
    /// The `suricatasc` program.
    #[serde(default = "default_suricatasc")]
    pub suricatasc: String,
    /// Seconds a command (a rule reload above all) may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Datasets belay keeps in a file: name → the file the site's rules load it from
    /// (`dataset:isset,NAME,type ip,load FILE`, without `state`, in every rule naming it).
    /// `ips.dataset_add_many|remove_many` need one; the single-value actions keep it current.
    #[serde(default)]
    pub datasets: BTreeMap<String, PathBuf>,
}

fn default_rulesets() -> Vec<String> {
    vec!["belay".into()]
}

fn default_suricatasc() -> String {
    "suricatasc".into()
}

fn default_timeout() -> u64 {
    60
}

/// The `ips` connector for Suricata.
pub struct Suricata {
    config: SuricataConfig,
    /// Serializes rule changes (each one rewrites a file and reloads all rules).
    lock: tokio::sync::Mutex<()>,
}

/// A rule Suricata failed to load.
struct FailedRule {
    file: String,
    line: u64,
    rule: String,
}

impl Suricata {
    /// Checks the configured ruleset names; touches no rule file yet. `name` is the
    /// connector's configured name, for errors.
    pub fn new(name: &str, config: SuricataConfig) -> Result<Suricata, crate::http::ConfigError> {
        for r in &config.rulesets {
            check_name("ruleset", r).map_err(|e| crate::http::ConfigError {
                connector: name.into(),
                message: e.message,
            })?;
        }
        Ok(Suricata {
            config,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs one socket command; returns whether Suricata answered OK, and its message.
    async fn sc(&self, command: &str) -> Result<(bool, Value), ActionError> {
        let out = Cmd::new(&self.config.suricatasc)
            .arg("-c")
            .arg(command)
            .arg(self.config.socket.display().to_string())
            .timeout(Duration::from_secs(self.config.timeout_secs.max(1)))
            .output()
            .await?;
        let verb = command.split(' ').next().unwrap_or(command);
        let reply: Value = serde_json::from_str(out.stdout.trim()).map_err(|_| {
            ActionError::transient(format!(
                "suricata did not answer `{verb}` on {} (status {}): {}",
                self.config.socket.display(),
                out.status,
                out.stderr.trim().chars().take(300).collect::<String>()
            ))
        })?;
        let ok = reply.get("return").and_then(Value::as_str) == Some("OK");
        Ok((ok, reply.get("message").cloned().unwrap_or(Value::Null)))
    }

    /// Runs a command that must answer OK.
    async fn sc_ok(&self, command: &str) -> Result<Value, ActionError> {
        let (ok, msg) = self.sc(command).await?;
        if ok {
            Ok(msg)
        } else {
            let verb = command.split(' ').next().unwrap_or(command);
            Err(ActionError::transient(format!(
                "suricata refused `{verb}`: {msg}"
            )))
        }
    }

    fn ruleset_path(&self, input: &Value) -> Result<PathBuf, ActionError> {
        let r = input
            .get("ruleset")
            .and_then(Value::as_str)
            .unwrap_or("belay");
        check_name("ruleset", r)?;
        if !self.config.rulesets.iter().any(|x| x == r) {
            return Err(ActionError::permanent(format!(
                "unknown ruleset `{r}` (configured: {})",
                self.config.rulesets.join(", ")
            )));
        }
        Ok(self.config.rule_dir.join(format!("{r}.rules")))
    }

    async fn reload_time(&self) -> Result<String, ActionError> {
        let msg = self.sc_ok("ruleset-reload-time").await?;
        Ok(msg.to_string())
    }

    async fn failed_rules(&self) -> Result<Vec<FailedRule>, ActionError> {
        let msg = self.sc_ok("ruleset-failed-rules").await?;
        Ok(msg
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| FailedRule {
                        file: r["filename"].as_str().unwrap_or_default().to_owned(),
                        line: r["line"].as_u64().unwrap_or(0),
                        rule: r["rule"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// (rules loaded, rules failed) over all tenants.
    async fn stats(&self) -> Result<(u64, u64), ActionError> {
        let msg = self.sc_ok("ruleset-stats").await?;
        let sum = |k: &str| {
            msg.as_array()
                .map(|a| a.iter().filter_map(|t| t[k].as_u64()).sum())
                .unwrap_or(0)
        };
        Ok((sum("rules_loaded"), sum("rules_failed")))
    }

    /// Replaces the rule file by `new`, reloads, and puts `old` back if Suricata rejects a
    /// rule of the file or does not reload. Returns the number of rules loaded.
    async fn reload_checked(&self, path: &Path, old: &str, new: &str) -> Result<u64, ActionError> {
        let before = self.reload_time().await?;
        write_off_runtime(path, new).await?;
        let problem = match self.sc_ok("reload-rules").await {
            Err(e) => Some(e.message),
            Ok(_) => {
                if self.reload_time().await? == before {
                    Some("suricata did not reload its rules (its log says why)".to_owned())
                } else {
                    let failed: Vec<String> = self
                        .failed_rules()
                        .await?
                        .into_iter()
                        .filter(|f| same_file(&f.file, path))
                        .map(|f| format!("line {}: {}", f.line, f.rule))
                        .collect();
                    (!failed.is_empty())
                        .then(|| format!("suricata rejected the rule: {}", failed.join(" | ")))
                }
            }
        };
        let Some(problem) = problem else {
            return Ok(self.stats().await?.0);
        };
        write_off_runtime(path, old).await?;
        let restored = match self.sc_ok("reload-rules").await {
            Ok(_) => "previous rules restored".to_owned(),
            Err(e) => format!(
                "previous file restored, but its reload failed: {}",
                e.message
            ),
        };
        Err(ActionError::permanent(format!("{problem} ({restored})")))
    }

    async fn deploy(&self, sid: u64, rule: &str, input: &Value) -> Result<Value, ActionError> {
        check_rule(sid, rule)?;
        let path = self.ruleset_path(input)?;
        let _guard = self.lock.lock().await;
        let old = files::read_text(&path)?;
        let mut found = false;
        let mut new = String::with_capacity(old.len() + rule.len() + 1);
        for line in old.lines() {
            if rule_sid(line) == Some(sid) {
                if line.trim() == rule {
                    let loaded = self.stats().await?.0;
                    return Ok(json!({"sid": sid, "changed": false, "rules_loaded": loaded}));
                }
                if !found {
                    new.push_str(rule);
                    new.push('\n');
                }
                found = true;
            } else {
                new.push_str(line);
                new.push('\n');
            }
        }
        if !found {
            new.push_str(rule);
            new.push('\n');
        }
        let loaded = self.reload_checked(&path, &old, &new).await?;
        Ok(json!({"sid": sid, "changed": true, "rules_loaded": loaded}))
    }

    async fn remove(&self, sid: u64, rule: &str, input: &Value) -> Result<Value, ActionError> {
        let path = self.ruleset_path(input)?;
        let _guard = self.lock.lock().await;
        let old = files::read_text(&path)?;
        let removed: Vec<&str> = old.lines().filter(|l| rule_sid(l) == Some(sid)).collect();
        let Some(first) = removed.first() else {
            return Ok(json!({"sid": sid, "changed": false, "rule": rule}));
        };
        let first = first.trim().to_owned();
        let new: String = old
            .lines()
            .filter(|l| rule_sid(l) != Some(sid))
            .flat_map(|l| [l, "\n"])
            .collect();
        self.reload_checked(&path, &old, &new).await?;
        Ok(json!({"sid": sid, "changed": true, "rule": first}))
    }

    /// The rule with `sid` in the ruleset's file, and whether it is loaded.
    async fn rule_state(&self, sid: u64, input: &Value) -> Result<Value, ActionError> {
        let path = self.ruleset_path(input)?;
        let text = files::read_text(&path)?;
        let rule = text
            .lines()
            .find(|l| rule_sid(l) == Some(sid))
            .map(|l| l.trim().to_owned());
        let loaded = match &rule {
            None => false,
            Some(r) => !self
                .failed_rules()
                .await?
                .iter()
                .any(|f| same_file(&f.file, &path) && f.rule.trim() == r),
        };
        Ok(json!({"rule": rule, "loaded": loaded}))
    }

    async fn status(&self, input: &Value) -> Result<Value, ActionError> {
        let (loaded, failed_count) = self.stats().await?;
        let failed: Vec<String> = self
            .failed_rules()
            .await?
            .into_iter()
            .map(|f| format!("{}:{}: {}", f.file, f.line, f.rule))
            .collect();
        let mut out = json!({
            "rules_loaded": loaded,
            "rules_failed": failed_count,
            "failed": failed,
        });
        if let Ok(Value::Array(a)) = self.sc_ok("ruleset-reload-time").await
            && let Some(t) = a.first().and_then(|t| t["last_reload"].as_str())
        {
            out["last_reload"] = json!(rfc3339(t));
        }
        if let Ok(Value::String(mode)) = self.sc_ok("capture-mode").await {
            out["capture_mode"] = json!(mode);
        }
        if let Some(sid) = input.get("sid").and_then(Value::as_u64) {
            let state = self.rule_state(sid, input).await?;
            out["loaded"] = state["loaded"].clone();
            if let Some(r) = state["rule"].as_str() {
                out["rule"] = json!(r);
            }
        }
        Ok(out)
    }

    /// `{"present": …}`: whether the input's value is in its dataset.
    async fn dataset_presence(&self, input: &Value) -> Result<Value, ActionError> {
        let (_, present) = self.dataset_has(input).await?;
        Ok(json!({ "present": present }))
    }

    /// Whether the dataset holds the value; the dataset and value are checked first.
    async fn dataset_has(&self, input: &Value) -> Result<(String, bool), ActionError> {
        let dataset = input_str(input, "dataset")?;
        check_name("dataset", dataset)?;
        let kind = input.get("type").and_then(Value::as_str).unwrap_or("ip");
        let value = dataset_value(kind, input_str(input, "value")?)?;
        let args = format!("{dataset} {kind} {value}");
        let (ok, msg) = self.sc(&format!("dataset-lookup {args}")).await?;
        if ok {
            return Ok((args, true));
        }
        match msg.as_str() {
            Some(m) if m.contains("not found in set") => Ok((args, false)),
            _ => Err(ActionError::permanent(format!(
                "dataset `{dataset}` of type {kind}: {msg} (is it declared in suricata.yaml with this type?)"
            ))),
        }
    }

    async fn dataset_change(&self, input: &Value, add: bool) -> Result<Value, ActionError> {
        let file = self.dataset_file(input_str(input, "dataset")?)?;
        // A file-backed dataset changes under the locks a batch holds (this connector's, and
        // the file's, which other belay processes take too), so a batch's rule reload never
        // drops a value added meanwhile.
        let (_guard, _file) = match &file {
            Some(f) => (
                Some(self.lock.lock().await),
                Some(files::lock_async(f, true).await?),
            ),
            None => (None, None),
        };
        let (args, present) = self.dataset_has(input).await?;
        let changed = present != add;
        if changed {
            let value = args.rsplit(' ').next().unwrap_or_default();
            // Only what belay added: a value of a file-backed dataset that its file lacks was
            // put there by someone else.
            if let Some(f) = &file
                && !add
                && !self.in_file(f, value).await?
            {
                return Err(ActionError::permanent(format!(
                    "`{}` is in dataset `{}` but not in belay's file {}: belay removes only what \
                     it added",
                    input_str(input, "value")?,
                    input_str(input, "dataset")?,
                    f.display()
                )));
            }
            let verb = if add { "dataset-add" } else { "dataset-remove" };
            let (ok, msg) = self.sc(&format!("{verb} {args}")).await?;
            if !ok {
                return Err(ActionError::permanent(format!(
                    "suricata refused `{verb}`: {msg}"
                )));
            }
            if let Some(f) = &file
                && let Err(e) = self.follow_in_file(f, value, add).await
            {
                // The live dataset goes back to how it was: the change is all or nothing.
                let undo = if add { "dataset-remove" } else { "dataset-add" };
                let _ = self.sc(&format!("{undo} {args}")).await;
                return Err(e);
            }
        }
        Ok(json!({
            "dataset": input_str(input, "dataset")?,
            "value": input_str(input, "value")?,
            "changed": changed,
        }))
    }
}

/// Replaces a rule file on the blocking pool.
async fn write_off_runtime(path: &Path, text: &str) -> Result<(), ActionError> {
    let (path, text) = (path.to_owned(), text.to_owned());
    files::blocking(move || files::write_atomically(&path, text.as_bytes())).await
}

/// Suricata's `2026-01-02T03:04:05.123456+0000` as RFC 3339 (`+00:00`).
fn rfc3339(t: &str) -> String {
    let b = t.as_bytes();
    let n = b.len();
    if n > 5 && matches!(b[n - 5], b'+' | b'-') && b[n - 4..].iter().all(u8::is_ascii_digit) {
        format!("{}:{}", &t[..n - 2], &t[n - 2..])
    } else {
        t.to_owned()
    }
}

fn same_file(reported: &str, path: &Path) -> bool {
    let r = Path::new(reported);
    r == path
        || match (r.canonicalize(), path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

fn check_name(what: &str, name: &str) -> Result<(), ActionError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ActionError::permanent(format!(
            "invalid {what} name `{name}`"
        )))
    }
}

/// A dataset value in the form `dataset-*` commands take.
fn dataset_value(kind: &str, value: &str) -> Result<String, ActionError> {
    let bad = |why: &str| {
        ActionError::permanent(format!(
            "invalid {kind} value `{}`: {why}",
            value.chars().take(80).collect::<String>()
        ))
    };
    let hex = |n: usize| {
        if value.len() == n && value.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(value.to_ascii_lowercase())
        } else {
            Err(bad(&format!("expected {n} hexadecimal digits")))
        }
    };
    match kind {
        "ip" => value
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad("not an IP address")),
        "ipv4" => value
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad("not an IPv4 address")),
        "md5" => hex(32),
        "sha256" => hex(64),
        "string" => {
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err(bad("empty or has control characters"));
            }
            Ok(base64::engine::general_purpose::STANDARD.encode(value))
        }
        other => Err(ActionError::permanent(format!(
            "unknown dataset type `{other}` (ip, ipv4, string, md5, sha256)"
        ))),
    }
}

/// The rule's options, split on unquoted, unescaped `;`.
fn rule_options(rule: &str) -> Vec<(&str, &str)> {
    let Some(start) = rule.find('(') else {
        return Vec::new();
    };
    let body = &rule[start + 1..];
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut from) = (false, false, 0);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                let opt = body[from..i].trim();
                let (k, v) = opt.split_once(':').unwrap_or((opt, ""));
                out.push((k.trim(), v.trim()));
                from = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// The sid of a rule line (None for comments, blank lines and rules without one).
fn rule_sid(line: &str) -> Option<u64> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    rule_options(line)
        .into_iter()
        .find(|(k, _)| *k == "sid")
        .and_then(|(_, v)| v.parse().ok())
}

/// The checks Suricata cannot make for us: one line, a known action, exactly one sid, equal
/// to the `sid` input.
fn check_rule(sid: u64, rule: &str) -> Result<(), ActionError> {
    let bad = |why: String| ActionError::permanent(format!("invalid rule: {why}"));
    if rule.contains(['\n', '\r', '\0']) {
        return Err(bad("it must be one line".into()));
    }
    let action = rule.split(' ').next().unwrap_or_default();
    if !matches!(
        action,
        "alert" | "drop" | "reject" | "rejectsrc" | "rejectdst" | "rejectboth" | "pass"
    ) {
        return Err(bad(format!("unknown action `{action}`")));
    }
    if !rule.trim_end().ends_with(')') {
        return Err(bad("its options must end with `)`".into()));
    }
    let sids: Vec<&str> = rule_options(rule)
        .into_iter()
        .filter(|(k, _)| *k == "sid")
        .map(|(_, v)| v)
        .collect();
    match sids.as_slice() {
        [one] if one.parse::<u64>() == Ok(sid) => Ok(()),
        [one] => Err(bad(format!("its sid is {one}, not {sid}"))),
        _ => Err(bad(format!("it must have exactly one sid option ({sid})"))),
    }
}

fn input_sid(input: &Value) -> Result<u64, ActionError> {
    input
        .get("sid")
        .and_then(Value::as_u64)
        .filter(|s| (1..=u64::from(u32::MAX)).contains(s))
        .ok_or_else(|| ActionError::permanent("`sid` must be an integer from 1 to 4294967295"))
}

belay_connector_api::connector! {
    impl Suricata {
        family: "ips",
        named: "`ips` (suricata)",
        call(ips, call) {
            "ips.deploy_rule" => {
                let rule = input_str(call.input, "rule")?.trim();
                ips.deploy(input_sid(call.input)?, rule, call.input).await
            }
            "ips.remove_rule" => {
                let rule = input_str(call.input, "rule")?.trim();
                ips.remove(input_sid(call.input)?, rule, call.input).await
            }
            "ips.status" => ips.status(call.input).await,
            "ips.dataset_add" => ips.dataset_change(call.input, true).await,
            "ips.dataset_remove" => ips.dataset_change(call.input, false).await,
            "ips.dataset_contains" => ips.dataset_presence(call.input).await,
            "ips.dataset_add_many" => ips.dataset_add_many(call.input, call.before).await,
            "ips.dataset_remove_many" => ips.dataset_remove_many(call.input).await,
        }

        async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
            match action {
                "ips.dataset_add" | "ips.dataset_remove" | "ips.dataset_contains" => {
                    self.dataset_presence(input).await
                }
                "ips.dataset_add_many" | "ips.dataset_remove_many" => {
                    self.many_read_state(action, input).await
                }
                _ => self.rule_state(input_sid(input)?, input).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_read_from_options() {
        let r = r#"alert udp any any -> any any (msg:"sid:5; not this"; content:"a\;b"; sid: 42 ; rev:1;)"#;
        assert_eq!(rule_sid(r), Some(42));
        assert!(check_rule(42, r).is_ok());
        assert!(check_rule(43, r).is_err());
        assert!(check_rule(1, "alert ip any any -> any any (sid:1; sid:1;)").is_err());
        assert!(check_rule(1, "bogus ip any any -> any any (sid:1;)").is_err());
        assert_eq!(rule_sid("# alert ip any any -> any any (sid:1;)"), None);
    }

    #[test]
    fn reload_time_as_rfc3339() {
        assert_eq!(
            rfc3339("2026-11-28T10:20:14.311126+0000"),
            "2026-11-28T10:20:14.311126+00:00"
        );
        assert_eq!(rfc3339("2026-11-28T10:20:14Z"), "2026-11-28T10:20:14Z");
    }

    #[test]
    fn dataset_values() {
        assert_eq!(
            dataset_value("string", "evil.example").unwrap(),
            "ZXZpbC5leGFtcGxl"
        );
        assert_eq!(dataset_value("ip", "2001:DB8::1").unwrap(), "2001:db8::1");
        assert!(dataset_value("ipv4", "2001:db8::1").is_err());
        assert!(dataset_value("sha256", "abc").is_err());
        assert!(dataset_value("md5", &"A".repeat(32)).is_ok());
    }
}
