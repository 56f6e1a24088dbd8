//! `dns.*` on Unbound: sinkholes as runtime local zones, through `unbound-control`.
//!
//! A redirect sinkhole is `local_zone D redirect` plus `local_data "D TTL IN A|AAAA ANSWER"`
//! (every name under D gets that answer); an NXDOMAIN one is `local_zone D always_nxdomain`.
//! Removing one is `local_zone_remove D` (which drops its data too). Runtime zones vanish when
//! Unbound restarts: re-applying the change restores them (and reports `changed: true`).
//! A domain that already has a local zone of another type (from Unbound's configuration) is
//! refused: the sinkhole would replace that zone, and removing it would not bring it back.
//!
//! `dns.sinkhole_many|unsinkhole_many` change a batch with the bulk commands that read their
//! lines from standard input (see `many`).

mod many;
mod probe;
mod sandbox;

pub use probe::{DnsAnswer, query};
pub use sandbox::Sandbox;

use super::cmd::Cmd;
use crate::{ActionError, input_str};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;
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

/// The sinkhole mode a local zone type stands for.
fn sinkhole_mode(kind: &str) -> Option<&'static str> {
    match kind {
        "redirect" => Some("redirect"),
        "always_nxdomain" => Some("nxdomain"),
        _ => None,
    }
}

impl ZoneState {
    fn mode(&self) -> Option<&'static str> {
        sinkhole_mode(self.kind.as_deref()?)
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
    /// Checks the control interface (`server`: not empty, not an option); runs nothing yet.
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
        self.ctl_with(args, None).await
    }

    /// Runs a bulk command (`local_zones`, `local_datas`, `local_zones_remove`) with its lines
    /// on standard input; a reply line starting with `error` is an error.
    async fn ctl_stdin(&self, command: &str, lines: String) -> Result<String, ActionError> {
        self.ctl_with(&[command], Some(lines)).await
    }

    async fn ctl_with(&self, args: &[&str], stdin: Option<String>) -> Result<String, ActionError> {
        let mut cmd = Cmd::new(&self.config.unbound_control)
            .timeout(Duration::from_secs(self.config.timeout_secs.max(1)));
        if let Some(c) = &self.config.config_file {
            cmd = cmd.arg("-c").arg(c.to_string_lossy());
        }
        if let Some(s) = &self.config.server {
            cmd = cmd.arg("-s").arg(s);
        }
        let mut cmd = cmd.args(args.iter().copied());
        if let Some(lines) = stdin {
            cmd = cmd.stdin(lines);
        }
        let out = cmd.output().await?;
        let reply = out.stdout.trim_start();
        let refused = reply.lines().find(|l| l.trim_start().starts_with("error"));
        if out.success() && refused.is_none() {
            return Ok(out.stdout);
        }
        let text = if out.stderr.trim().is_empty() {
            refused
                .or_else(|| reply.lines().next())
                .unwrap_or("")
                .to_owned()
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

    /// The local zone type and answer of a sinkhole in `mode`: `redirect` to `answer` (the
    /// configured default answer when none is given), or `nxdomain`.
    fn sinkhole_of(
        &self,
        mode: &str,
        answer: Option<&str>,
    ) -> Result<(&'static str, Option<IpAddr>), ActionError> {
        match mode {
            "redirect" => {
                let answer = match answer {
                    Some(a) => a.parse::<IpAddr>().map_err(|e| {
                        ActionError::permanent(format!("invalid answer address `{a}`: {e}"))
                    })?,
                    None => self.config.default_answer.ok_or_else(|| {
                        ActionError::permanent(
                            "no `answer` given and no `default_answer` configured",
                        )
                    })?,
                };
                Ok(("redirect", Some(answer)))
            }
            "nxdomain" => Ok(("always_nxdomain", None)),
            other => Err(ActionError::permanent(format!(
                "unknown sinkhole mode `{other}` (redirect or nxdomain)"
            ))),
        }
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
        let (kind, answer) = self.sinkhole_of(mode, input.get("answer").and_then(Value::as_str))?;
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

belay_connector_api::connector! {
    impl Unbound {
        family: "dns",
        named: "the unbound connector",
        call(unbound, call) {
            "dns.sinkhole_domain" => unbound.sinkhole(call.input).await,
            "dns.unsinkhole_domain" => unbound.unsinkhole(call.input).await,
            "dns.status" => unbound.status(call.input).await,
            "dns.sinkhole_many" => unbound.sinkhole_many(call.input).await,
            "dns.unsinkhole_many" => unbound.unsinkhole_many(call.input).await,
        }

        async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
            match action {
                "dns.sinkhole_domain" | "dns.unsinkhole_domain" => self.state_of(input).await,
                "dns.sinkhole_many" | "dns.unsinkhole_many" => {
                    self.many_read_state(action, input).await
                }
                _ => Ok(Value::Null),
            }
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
