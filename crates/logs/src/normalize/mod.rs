//! Normalizers: one received line (syslog, CEF, Suricata EVE JSON, Windows event JSON, DLP JSON)
//! becomes one typed belay [`Event`]. This module is the entry point: it decides what a line is
//! (JSON, syslog, a bare line) and hands it to the family that knows it.
//!
//! Known lines become `auth.privilege_change`, `network.new_device`, `dlp.alert` or `ids.alert`;
//! everything else stays a generic event (`syslog.message`, `cef.event`, `windows.event`,
//! `suricata.event`, `log.json`) with its fields. Nothing is dropped and the original line is
//! always kept in `data.raw`. Syslog line rules are data (`rules/rules.toml`, loaded by
//! `rules.rs`); JSON sources with a fixed schema are code, one file per source family. No module
//! under this one ever does I/O.

mod cef;
mod devices;
mod dlp;
mod fields;
mod privilege;
mod rules;
mod suricata;
mod windows;

pub use devices::normalize_mac;
pub use rules::RulesError;

use crate::syslog;
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, Utc};
use fields::{make, push, unrecognized};
use regex::Regex;
use serde_json::{Map, Value, json};
use std::sync::{Arc, LazyLock};

/// Where and when a line was received.
#[derive(Debug, Clone)]
pub struct Context {
    /// The event's `source`, e.g. `syslog` or `file:auth.log` (printable, at most 256 bytes).
    pub source: String,
    /// When it was received: the event's time when the line carries none.
    pub received: DateTime<Utc>,
    /// The sending peer, e.g. `udp:192.0.2.1:514`.
    pub peer: Option<String>,
    /// The message was longer than the listener's limit and was cut.
    pub truncated: bool,
}

impl Context {
    /// A context received now from `source`.
    pub fn new(source: impl Into<String>) -> Context {
        Context {
            source: source.into(),
            received: Utc::now(),
            peer: None,
            truncated: false,
        }
    }
}

/// The event made from one line, and why its syslog header could not be read, if so.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The event; made even when the line could not be parsed.
    pub event: Event,
    /// Set when the line was neither JSON nor had a syslog header (it is still an event).
    pub parse_error: Option<String>,
}

/// Turns lines into events. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Normalizer {
    rules: Arc<rules::Rules>,
}

static BUILTIN: LazyLock<Result<Normalizer, String>> =
    LazyLock::new(|| Normalizer::from_rules(rules::RULES_TOML).map_err(|e| e.to_string()));

impl Normalizer {
    /// The normalizer with the embedded rules.
    pub fn builtin() -> Normalizer {
        match &*BUILTIN {
            Ok(n) => n.clone(),
            // The embedded rules are checked by this crate's tests; reaching this is a build bug.
            Err(e) => panic!("embedded rules are broken: {e}"),
        }
    }

    /// Normalizes one received line or datagram. `None` only for an empty one.
    pub fn line(&self, bytes: &[u8], ctx: &Context) -> Option<Normalized> {
        let (text, latin1) = syslog::decode(bytes);
        let trimmed =
            text.trim_matches(|c: char| c.is_whitespace() || c == '\0' || c == '\u{feff}');
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.starts_with('{')
            && let Ok(value) = serde_json::from_str::<Value>(trimmed)
        {
            return Some(Normalized {
                event: self.json(&value, trimmed, ctx),
                parse_error: None,
            });
        }
        match syslog::parse(trimmed.as_bytes()) {
            Ok(mut msg) => {
                msg.latin1 |= latin1;
                Some(Normalized {
                    event: self.syslog(&msg, ctx),
                    parse_error: None,
                })
            }
            Err(e) => Some(Normalized {
                event: self.plain(trimmed, latin1, &e.to_string(), ctx),
                parse_error: Some(e.to_string()),
            }),
        }
    }

    /// Normalizes a parsed syslog message (CEF payloads included).
    pub fn syslog(&self, msg: &syslog::SyslogMessage, ctx: &Context) -> Event {
        let mut base = msg.header_json();
        base.insert("raw".into(), Value::from(msg.raw.clone()));
        let time = msg.timestamp.unwrap_or(ctx.received);
        if let Some(at) = crate::cef::locate(&msg.raw)
            && let Ok(c) = crate::cef::parse(&msg.raw[at..])
        {
            return self.cef(&c, base, time, msg.hostname.as_deref(), ctx);
        }
        // JSON after a syslog header (Suricata's `eve-log` to syslog, Windows event forwarders).
        let body = msg.msg.trim();
        if body.starts_with('{')
            && let Ok(v) = serde_json::from_str::<Value>(body)
        {
            let e = self.json(&v, &msg.raw, ctx);
            if e.kind != "log.json" {
                return e;
            }
        }
        let program = msg.appname.as_deref().map(strip_pid).unwrap_or("");
        if let Some(e) =
            self.apply_rules(program, &msg.msg, &base, time, msg.hostname.as_deref(), ctx)
        {
            return e;
        }
        if let Some(e) = windows::snare(&msg.raw, &base, time, ctx) {
            return e;
        }
        let severity = msg.severity.map_or(Severity::Low, syslog_severity);
        let mut data = base;
        data.insert("message".into(), Value::from(msg.msg.clone()));
        let mut obs = Observables::default();
        if let Some(h) = &msg.hostname {
            push(&mut obs.hosts, h);
        }
        make("syslog.message", time, severity, obs, data, None, ctx)
    }

    /// A line without a syslog header: `prog[pid]: text` is still matched against the rules.
    fn plain(&self, text: &str, latin1: bool, error: &str, ctx: &Context) -> Event {
        let mut base = Map::new();
        base.insert("raw".into(), Value::from(text));
        base.insert("parse_error".into(), Value::from(error));
        if latin1 {
            base.insert("latin1".into(), Value::Bool(true));
        }
        if let Some(at) = crate::cef::locate(text)
            && let Ok(c) = crate::cef::parse(&text[at..])
        {
            return self.cef(&c, base, ctx.received, None, ctx);
        }
        static TAGGED: LazyLock<Option<Regex>> =
            LazyLock::new(|| Regex::new(r"^([A-Za-z0-9_.()/-]{1,64})(?:\[\d+\])?: (.*)$").ok());
        if let Some(re) = TAGGED.as_ref()
            && let Some(c) = re.captures(text)
        {
            let program = c.get(1).map_or("", |m| m.as_str());
            let message = c.get(2).map_or("", |m| m.as_str());
            if let Some(e) = self.apply_rules(program, message, &base, ctx.received, None, ctx) {
                return e;
            }
            base.insert("appname".into(), Value::from(program));
        }
        let mut data = base;
        data.insert("message".into(), Value::from(text));
        unrecognized("syslog.message", data, ctx)
    }

    /// CommonSecurityLog DLP records; anything else becomes `log.json`.
    pub fn json(&self, value: &Value, raw: &str, ctx: &Context) -> Event {
        if let Some(e) = windows::windows(self, value, raw, ctx) {
            return e;
        }
        if let Some(e) = suricata::suricata(value, raw, ctx) {
            return e;
        }
        if let Some(rec) = dlp::dlp_from_common_security_log(value) {
            let mut base = Map::new();
            base.insert("raw".into(), Value::from(raw));
            let time = dlp::dlp_time(value, &rec).unwrap_or(ctx.received);
            return self.dlp(rec, base, time, ctx);
        }
        let data = json!({ "raw": raw, "json": value });
        let data = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        unrecognized("log.json", data, ctx)
    }
}

/// Splits a file into records: the elements of a top-level JSON array (as compact JSON), or
/// else its lines (with their 1-based line numbers; blank lines skipped).
pub fn split_records(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[')
        && let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(bytes)
    {
        return items
            .iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v.to_string().into_bytes()))
            .collect();
    }
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(|b| b.is_ascii_whitespace()))
        .map(|(i, l)| (i + 1, l.to_vec()))
        .collect()
}

fn syslog_severity(s: &str) -> Severity {
    match s {
        "emerg" | "alert" | "crit" => Severity::Critical,
        "err" => Severity::High,
        "warning" => Severity::Medium,
        _ => Severity::Low,
    }
}

/// `sshd[123]` → `sshd`.
fn strip_pid(program: &str) -> &str {
    match program.find('[') {
        Some(i) if program.ends_with(']') => &program[..i],
        _ => program,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::new("test")
    }

    fn one(line: &str) -> Event {
        Normalizer::builtin()
            .line(line.as_bytes(), &ctx())
            .expect("an event")
            .event
    }

    #[test]
    fn usermod_add_to_sudo_is_a_high_privilege_change() {
        let e = one("<86>Nov 28 06:00:01 web1 usermod[4242]: add 'mallory' to group 'sudo'");
        assert_eq!(e.kind, "auth.privilege_change");
        assert_eq!(e.data["user"], "mallory");
        assert_eq!(e.data["group"], "sudo");
        assert_eq!(e.data["action"], "added");
        assert_eq!(e.data["host"], "web1");
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.observables.users, ["mallory"]);
        assert_eq!(e.observables.hosts, ["web1"]);
    }

    #[test]
    fn unknown_lines_stay_generic_with_the_raw_text() {
        let e = one("<13>Nov 28 06:00:01 web1 cron[1]: (root) CMD (true)");
        assert_eq!(e.kind, "syslog.message");
        assert_eq!(e.data["appname"], "cron");
        assert!(e.data["raw"].as_str().unwrap().contains("CMD (true)"));
        let n = Normalizer::builtin()
            .line(b"just some words", &ctx())
            .unwrap();
        assert_eq!(n.event.kind, "syslog.message");
        assert!(n.parse_error.is_some());
        assert!(Normalizer::builtin().line(b" \n", &ctx()).is_none());
    }

    #[test]
    fn eve_json_inside_syslog_is_an_ids_alert() {
        let e = one(
            r#"<134>Nov 28 06:00:01 sensor suricata[1]: {"timestamp":"2026-11-28T06:00:00.000000+0000","event_type":"alert","src_ip":"203.0.113.5","dest_ip":"10.0.0.2","alert":{"signature":"ET SCAN x","signature_id":2000001,"severity":1}}"#,
        );
        assert_eq!(e.kind, "ids.alert");
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.observables.ips, ["203.0.113.5", "10.0.0.2"]);
        assert!(e.data["raw"].as_str().unwrap().starts_with("<134>"));
    }
}
