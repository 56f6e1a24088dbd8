//! Normalizers: one received line (syslog, CEF, Suricata EVE JSON, Windows event JSON, DLP JSON)
//! becomes one typed belay [`Event`].
//!
//! Known lines become `auth.privilege_change`, `network.new_device`, `dlp.alert` or `ids.alert`;
//! everything else stays a generic event (`syslog.message`, `cef.event`, `windows.event`,
//! `suricata.event`, `log.json`) with its fields. Nothing is dropped and the original line is
//! always kept in `data.raw`. Syslog line rules are data (`rules/rules.toml`); JSON sources with a
//! fixed schema are code. This module never does I/O.

use crate::{cef, syslog};
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

const RULES_TOML: &str = include_str!("rules/rules.toml");
const OUI_TSV: &str = include_str!("rules/oui.tsv");

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
    pub event: Event,
    /// Set when the line was neither JSON nor had a syslog header (it is still an event).
    pub parse_error: Option<String>,
}

/// A broken embedded or user rule file.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules are not valid TOML: {0}")]
    Toml(String),
    #[error("rule `{id}`: bad `{field}` regex: {message}")]
    Regex {
        id: String,
        field: &'static str,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
    #[serde(default)]
    privileged: Privileged,
    #[serde(default)]
    data_type: Vec<DataTypeDef>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Privileged {
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    program: String,
    #[serde(rename = "match")]
    pattern: String,
    kind: String,
    #[serde(default)]
    set: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataTypeDef {
    name: String,
    pattern: String,
}

struct Rule {
    id: String,
    program: Regex,
    pattern: Regex,
    kind: String,
    set: Map<String, Value>,
}

struct Rules {
    rules: Vec<Rule>,
    privileged: HashSet<String>,
    data_types: Vec<(String, Regex)>,
    oui: HashMap<[u8; 3], &'static str>,
}

/// Turns lines into events. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Normalizer {
    rules: Arc<Rules>,
}

static BUILTIN: LazyLock<Result<Normalizer, String>> =
    LazyLock::new(|| Normalizer::from_rules(RULES_TOML).map_err(|e| e.to_string()));

impl Normalizer {
    /// The normalizer with the embedded rules.
    pub fn builtin() -> Normalizer {
        match &*BUILTIN {
            Ok(n) => n.clone(),
            // The embedded rules are checked by this crate's tests; reaching this is a build bug.
            Err(e) => panic!("embedded rules are broken: {e}"),
        }
    }

    /// A normalizer with rules from TOML text in the format of the embedded `rules.toml`.
    pub fn from_rules(text: &str) -> Result<Normalizer, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError::Toml(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for r in file.rule {
            let program =
                Regex::new(&format!("^(?:{})$", r.program)).map_err(|e| RulesError::Regex {
                    id: r.id.clone(),
                    field: "program",
                    message: e.to_string(),
                })?;
            let pattern = Regex::new(&r.pattern).map_err(|e| RulesError::Regex {
                id: r.id.clone(),
                field: "match",
                message: e.to_string(),
            })?;
            rules.push(Rule {
                id: r.id,
                program,
                pattern,
                kind: r.kind,
                set: r.set,
            });
        }
        let mut data_types = Vec::new();
        for d in file.data_type {
            let re = Regex::new(&format!("(?i){}", d.pattern)).map_err(|e| RulesError::Regex {
                id: d.name.clone(),
                field: "pattern",
                message: e.to_string(),
            })?;
            data_types.push((d.name, re));
        }
        Ok(Normalizer {
            rules: Arc::new(Rules {
                rules,
                privileged: file
                    .privileged
                    .groups
                    .iter()
                    .map(|g| g.to_lowercase())
                    .collect(),
                data_types,
                oui: parse_oui(OUI_TSV),
            }),
        })
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
        if let Some(at) = cef::locate(&msg.raw)
            && let Ok(c) = cef::parse(&msg.raw[at..])
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
        if let Some(e) = snare(&msg.raw, &base, time, ctx) {
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
        if let Some(at) = cef::locate(text)
            && let Ok(c) = cef::parse(&text[at..])
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
        make(
            "syslog.message",
            ctx.received,
            Severity::Low,
            Observables::default(),
            data,
            None,
            ctx,
        )
    }

    fn apply_rules(
        &self,
        program: &str,
        message: &str,
        base: &Map<String, Value>,
        time: DateTime<Utc>,
        host: Option<&str>,
        ctx: &Context,
    ) -> Option<Event> {
        let rule = self
            .rules
            .rules
            .iter()
            .find(|r| r.program.is_match(program) && r.pattern.is_match(message))?;
        let caps = rule.pattern.captures(message)?;
        let mut fields = Map::new();
        for name in rule.pattern.capture_names().flatten() {
            if let Some(m) = caps.name(name) {
                let key = name.split("__").next().unwrap_or(name);
                fields.insert(key.to_owned(), Value::from(m.as_str()));
            }
        }
        for (k, v) in &rule.set {
            fields.insert(k.clone(), v.clone());
        }
        let mut data = base.clone();
        data.insert("rule".into(), Value::from(rule.id.clone()));
        data.insert("program".into(), Value::from(program));
        data.insert("message".into(), Value::from(message));
        match rule.kind.as_str() {
            "auth.privilege_change" => Some(self.privilege_change(fields, data, time, host, ctx)),
            "network.new_device" => Some(self.new_device(fields, data, time, host, ctx)),
            _ => {
                for (k, v) in fields {
                    data.insert(k, v);
                }
                let mut obs = Observables::default();
                if let Some(h) = host {
                    push(&mut obs.hosts, h);
                }
                Some(make(
                    &rule.kind,
                    time,
                    Severity::Medium,
                    obs,
                    data,
                    None,
                    ctx,
                ))
            }
        }
    }

    fn is_privileged(&self, group: &str) -> bool {
        let name = group.rsplit(['\\', '/']).next().unwrap_or(group);
        self.rules.privileged.contains(&name.to_lowercase())
    }

    fn privilege_change(
        &self,
        fields: Map<String, Value>,
        mut data: Map<String, Value>,
        time: DateTime<Utc>,
        host: Option<&str>,
        ctx: &Context,
    ) -> Event {
        let get = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let action = get("action").unwrap_or_else(|| "added".into());
        let user = get("user");
        // A new user's primary group is known by number only.
        let group = get("group");
        let gid = get("gid");
        let actor = get("actor");
        let privileged = group.as_deref().is_some_and(|g| self.is_privileged(g))
            || (action == "user_created" && gid.as_deref() == Some("0"));
        data.insert("action".into(), Value::from(action.clone()));
        data.insert("user".into(), opt(user.clone()));
        data.insert("group".into(), opt(group.clone()));
        data.insert("actor".into(), opt(actor));
        data.insert("host".into(), opt(host.map(str::to_owned)));
        data.insert("privileged".into(), Value::Bool(privileged));
        for k in ["uid", "gid"] {
            if let Some(v) = get(k) {
                data.insert(k.into(), Value::from(v));
            }
        }
        let mut obs = Observables::default();
        if let Some(u) = &user {
            for u in u.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                push(&mut obs.users, u);
            }
        }
        if let Some(h) = host {
            push(&mut obs.hosts, h);
        }
        let severity = privilege_severity(&action, privileged);
        make(
            "auth.privilege_change",
            time,
            severity,
            obs,
            data,
            None,
            ctx,
        )
    }

    fn new_device(
        &self,
        fields: Map<String, Value>,
        mut data: Map<String, Value>,
        time: DateTime<Utc>,
        host: Option<&str>,
        ctx: &Context,
    ) -> Event {
        let get = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let mac = get("mac").and_then(|m| normalize_mac(&m));
        let ip = get("ip").filter(|ip| ip.parse::<IpAddr>().is_ok());
        let hostname = get("hostname").filter(|h| !h.is_empty());
        let vendor = mac.as_deref().and_then(|m| self.vendor(m));
        data.insert("mac".into(), opt(mac.clone()));
        data.insert("ip".into(), opt(ip.clone()));
        data.insert("hostname".into(), opt(hostname.clone()));
        data.insert("vendor".into(), opt(vendor));
        data.insert("observer".into(), opt(host.map(str::to_owned)));
        for k in ["interface", "observation", "previous_mac", "what"] {
            if let Some(v) = get(k) {
                let v = if k == "previous_mac" {
                    normalize_mac(&v).unwrap_or(v)
                } else {
                    v
                };
                data.insert(k.into(), Value::from(v));
            }
        }
        let mut obs = Observables::default();
        if let Some(m) = &mac {
            push(&mut obs.macs, m);
        }
        if let Some(ip) = &ip {
            push(&mut obs.ips, ip);
        }
        if let Some(h) = &hostname {
            push(&mut obs.hosts, h);
        }
        let severity = match get("observation").as_deref() {
            Some("arpwatch_bogon") | Some("arpwatch_address_change") => Severity::Medium,
            _ => Severity::Low,
        };
        make("network.new_device", time, severity, obs, data, None, ctx)
    }

    /// The organization owning a MAC's OUI in the embedded table, or a note for locally
    /// administered (random or virtual) addresses.
    pub fn vendor(&self, mac: &str) -> Option<String> {
        let bytes: Vec<u8> = mac
            .split(':')
            .take(3)
            .filter_map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        let key: [u8; 3] = bytes.try_into().ok()?;
        if let Some(v) = self.rules.oui.get(&key) {
            return Some((*v).to_owned());
        }
        (key[0] & 0x02 != 0).then(|| "locally administered address".to_owned())
    }

    fn cef(
        &self,
        c: &cef::CefEvent,
        mut base: Map<String, Value>,
        time: DateTime<Utc>,
        host: Option<&str>,
        ctx: &Context,
    ) -> Event {
        let ext: Map<String, Value> = c
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        let time = c.get("rt").and_then(parse_cef_time).unwrap_or(time);
        if c.product.to_ascii_uppercase().contains("DLP") {
            let kv: Vec<(String, String)> = c.extensions.clone();
            let rec = DlpRecord {
                vendor: c.vendor.clone(),
                product: c.product.clone(),
                policy: c.name.clone(),
                fields: kv,
            };
            base.insert("cef".into(), cef_header(c));
            base.insert("extensions".into(), Value::Object(ext));
            return self.dlp(rec, base, time, ctx);
        }
        let mut obs = Observables::default();
        for k in [
            "src",
            "dst",
            "dvc",
            "sourceTranslatedAddress",
            "destinationTranslatedAddress",
        ] {
            if let Some(v) = c.get(k).filter(|v| v.parse::<IpAddr>().is_ok()) {
                push(&mut obs.ips, v);
            }
        }
        for k in ["shost", "dhost", "dvchost"] {
            if let Some(v) = c.get(k).filter(|v| useful(v)) {
                push(&mut obs.hosts, v);
            }
        }
        for k in ["suser", "duser"] {
            if let Some(v) = c.get(k).filter(|v| useful(v)) {
                push(&mut obs.users, v);
            }
        }
        for k in ["smac", "dmac"] {
            if let Some(v) = c.get(k).and_then(normalize_mac) {
                push(&mut obs.macs, &v);
            }
        }
        for k in ["request", "requestURL"] {
            if let Some(v) = c
                .get(k)
                .filter(|v| v.starts_with("http://") || v.starts_with("https://"))
            {
                push(&mut obs.urls, v);
            }
        }
        if let Some(h) = host {
            push(&mut obs.hosts, h);
        }
        base.insert("cef".into(), cef_header(c));
        base.insert("extensions".into(), Value::Object(ext));
        make(
            "cef.event",
            time,
            cef_severity(&c.severity),
            obs,
            base,
            None,
            ctx,
        )
    }

    /// Normalizes one JSON document: Windows Security events, Suricata EVE, Sentinel
    /// CommonSecurityLog DLP records; anything else becomes `log.json`.
    pub fn json(&self, value: &Value, raw: &str, ctx: &Context) -> Event {
        if let Some(e) = windows(self, value, raw, ctx) {
            return e;
        }
        if let Some(e) = suricata(value, raw, ctx) {
            return e;
        }
        if let Some(rec) = dlp_from_common_security_log(value) {
            let mut base = Map::new();
            base.insert("raw".into(), Value::from(raw));
            let time = dlp_time(value, &rec).unwrap_or(ctx.received);
            return self.dlp(rec, base, time, ctx);
        }
        let data = json!({ "raw": raw, "json": value });
        let data = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        make(
            "log.json",
            ctx.received,
            Severity::Low,
            Observables::default(),
            data,
            None,
            ctx,
        )
    }

    fn dlp(
        &self,
        rec: DlpRecord,
        mut data: Map<String, Value>,
        time: DateTime<Utc>,
        ctx: &Context,
    ) -> Event {
        let get = |keys: &[&str]| -> Option<String> {
            keys.iter().find_map(|k| {
                rec.fields
                    .iter()
                    .find(|(fk, _)| fk.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.trim().to_owned())
                    .filter(|v| useful(v))
            })
        };
        let policy = get(&["POLICY", "POLICY_NAME", "cs2"]).unwrap_or_else(|| rec.policy.clone());
        let user = get(&[
            "USER",
            "USER_NAME",
            "ENDPOINT_USER_NAME",
            "suser",
            "duser",
            "ENDPOINT_DEVICE_ID",
        ]);
        let channel = get(&["PROTOCOL", "CHANNEL", "app"]);
        let file = get(&["ATTACHMENT_FILENAME", "FILE_NAME", "fname", "filePath"]);
        let incident_id = get(&["INCIDENT_ID", "externalId"]);
        let match_count = get(&["MATCH_COUNT", "cnt"]).and_then(|v| v.parse::<u64>().ok());
        let endpoint = get(&["ENDPOINT_MACHINE", "shost", "dvchost"]);
        let machine_ip = get(&["MACHINE_IP", "src"]).filter(|v| v.parse::<IpAddr>().is_ok());
        let destination_ip =
            get(&["DESTINATION_IP", "dst"]).filter(|v| v.parse::<IpAddr>().is_ok());
        let blocked = get(&["BLOCKED", "act"]);
        let vendor_severity = get(&["SEVERITY"]);
        let explicit_encrypted = get(&["ENCRYPTED", "IS_ENCRYPTED"])
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1"));
        let encrypted = explicit_encrypted
            .or_else(|| content_encrypted(&policy, &rec.policy, file.as_deref(), match_count));
        let transport_encrypted = channel.as_deref().and_then(channel_encrypted);
        let mut data_types: Vec<String> = Vec::new();
        for (name, re) in &self.rules.data_types {
            if re.is_match(&policy) || re.is_match(&rec.policy) {
                data_types.push(name.clone());
            }
        }
        let severity = vendor_severity
            .as_deref()
            .map(dlp_severity)
            .unwrap_or(Severity::Medium);
        data.insert("vendor".into(), Value::from(rec.vendor.clone()));
        data.insert("product".into(), Value::from(rec.product.clone()));
        data.insert("policy".into(), Value::from(policy));
        data.insert("user".into(), opt(user.clone()));
        data.insert("channel".into(), opt(channel));
        data.insert("data_types".into(), json!(data_types));
        data.insert("file".into(), opt(file));
        data.insert(
            "encrypted".into(),
            encrypted.map_or(Value::Null, Value::Bool),
        );
        data.insert(
            "channel_encrypted".into(),
            transport_encrypted.map_or(Value::Null, Value::Bool),
        );
        data.insert(
            "match_count".into(),
            match_count.map_or(Value::Null, Value::from),
        );
        data.insert("incident_id".into(), opt(incident_id.clone()));
        data.insert("endpoint".into(), opt(endpoint.clone()));
        data.insert("action".into(), opt(blocked));
        data.insert("vendor_severity".into(), opt(vendor_severity));
        let fields: Map<String, Value> = rec
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.trim())))
            .collect();
        data.insert("fields".into(), Value::Object(fields));
        let mut obs = Observables::default();
        if let Some(u) = &user {
            push(&mut obs.users, u);
        }
        if let Some(h) = &endpoint {
            push(&mut obs.hosts, h);
        }
        for ip in [machine_ip, destination_ip].into_iter().flatten() {
            push(&mut obs.ips, &ip);
        }
        make("dlp.alert", time, severity, obs, data, None, ctx)
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

/// A DLP incident from any transport: the vendor's key/value fields and its policy name.
struct DlpRecord {
    vendor: String,
    product: String,
    policy: String,
    fields: Vec<(String, String)>,
}

fn dlp_from_common_security_log(v: &Value) -> Option<DlpRecord> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let product = s("DeviceProduct");
    if !product.to_ascii_uppercase().contains("DLP") {
        return None;
    }
    let mut fields = split_semicolon_pairs(&s("AdditionalExtensions"));
    for (k, name) in [
        ("SourceUserName", "suser"),
        ("DestinationUserName", "duser"),
        ("FileName", "fname"),
    ] {
        let val = s(k);
        if !val.is_empty() {
            fields.push((name.into(), val));
        }
    }
    Some(DlpRecord {
        vendor: s("DeviceVendor"),
        product,
        policy: s("Activity"),
        fields,
    })
}

/// Splits Symantec's `KEY=value;KEY2=value` where values may themselves hold `;` (URLs): a
/// pair starts only at `;` followed by an upper-case `KEY=`.
fn split_semicolon_pairs(text: &str) -> Vec<(String, String)> {
    static KEY: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"(?:^|;)([A-Z][A-Z0-9_]*)=").ok());
    let Some(re) = KEY.as_ref() else {
        return Vec::new();
    };
    let marks: Vec<(usize, usize, &str)> = re
        .captures_iter(text)
        .filter_map(|c| {
            let whole = c.get(0)?;
            Some((whole.start(), whole.end(), c.get(1)?.as_str()))
        })
        .collect();
    marks
        .iter()
        .enumerate()
        .map(|(i, &(_, value_start, key))| {
            let end = marks.get(i + 1).map_or(text.len(), |m| m.0);
            let value = text.get(value_start..end).unwrap_or("");
            (key.to_owned(), value.trim_start_matches(';').to_owned())
        })
        .collect()
}

fn dlp_time(v: &Value, rec: &DlpRecord) -> Option<DateTime<Utc>> {
    if let Some(t) = v.get("TimeGenerated").and_then(Value::as_str)
        && let Ok(t) = DateTime::parse_from_rfc3339(t)
    {
        return Some(t.with_timezone(&Utc));
    }
    // Symantec writes OCCURRED_ON in UTC, e.g. `November 20, 2020 3:52:00 PM`.
    let occurred = rec
        .fields
        .iter()
        .find(|(k, _)| k == "OCCURRED_ON")?
        .1
        .trim();
    NaiveDateTime::parse_from_str(occurred, "%B %d, %Y %I:%M:%S %p")
        .ok()
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Whether the leaked content itself was encrypted (an encrypted archive or file), when the
/// product does not say: a policy about encrypted content or an encrypted file type says yes;
/// content matches (the DLP could read it) say no; otherwise unknown.
fn content_encrypted(
    policy: &str,
    activity: &str,
    file: Option<&str>,
    match_count: Option<u64>,
) -> Option<bool> {
    let mentions = |s: &str| s.to_ascii_lowercase().contains("encrypt");
    let encrypted_ext = file.is_some_and(|f| {
        let ext = f
            .trim()
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        ["gpg", "pgp", "asc", "aes", "enc", "p7m", "axx", "kdbx"].contains(&ext.as_str())
    });
    if mentions(policy) || mentions(activity) || encrypted_ext {
        Some(true)
    } else if match_count.is_some_and(|n| n > 0) {
        Some(false)
    } else {
        None
    }
}

/// Whether a DLP channel name implies an encrypted transfer; `None` when it says nothing.
fn channel_encrypted(channel: &str) -> Option<bool> {
    let c = channel.to_ascii_uppercase();
    let words: Vec<&str> = c.split(|ch: char| !ch.is_ascii_alphanumeric()).collect();
    let has = |w: &str| words.contains(&w);
    if [
        "HTTPS", "TLS", "SSL", "SFTP", "FTPS", "SMTPS", "IMAPS", "SSH", "SCP",
    ]
    .iter()
    .any(|w| has(w))
    {
        Some(true)
    } else if ["HTTP", "FTP", "SMTP", "IMAP", "POP3", "TELNET"]
        .iter()
        .any(|w| has(w))
    {
        Some(false)
    } else {
        None
    }
}

/// Symantec `SEVERITY=4:Info` (1 High, 2 Medium, 3 Low, 4 Info) or a plain word.
fn dlp_severity(s: &str) -> Severity {
    let word = s
        .rsplit(':')
        .next()
        .unwrap_or(s)
        .trim()
        .to_ascii_lowercase();
    match word.as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" | "info" | "informational" => Severity::Low,
        _ => Severity::Medium,
    }
}

fn windows(n: &Normalizer, v: &Value, raw: &str, ctx: &Context) -> Option<Event> {
    // The corpus's python-evtx shape, and Winlogbeat's.
    let (event_id, computer, record_id, time, event_data) = if let Some(ev) = v.get("Event") {
        let sys = ev.get("System")?;
        let id = sys.get("EventID").and_then(text_or_number)?;
        let time = sys
            .get("TimeCreated")
            .and_then(|t| t.get("SystemTime"))
            .and_then(Value::as_str)
            .and_then(parse_loose_time);
        (
            id,
            sys.get("Computer")
                .and_then(Value::as_str)
                .map(str::to_owned),
            sys.get("EventRecordID").and_then(text_or_number),
            time,
            ev.get("EventData").cloned().unwrap_or(Value::Null),
        )
    } else if let Some(w) = v.get("winlog") {
        let id = w.get("event_id").and_then(text_or_number)?;
        let time = v
            .get("@timestamp")
            .and_then(Value::as_str)
            .and_then(parse_loose_time);
        (
            id,
            w.get("computer_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            w.get("record_id").and_then(text_or_number),
            time,
            w.get("event_data").cloned().unwrap_or(Value::Null),
        )
    } else {
        return None;
    };
    let time = time.unwrap_or(ctx.received);
    let ed = |k: &str| {
        event_data
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| useful(s))
    };
    // Re-importing the same record must not start its runs twice.
    let id = match (&computer, &record_id) {
        (Some(c), Some(r)) => Some(format!("win:{c}:{r}")),
        _ => None,
    };
    let mut data = Map::new();
    data.insert("raw".into(), Value::from(raw));
    data.insert("event_id".into(), Value::from(event_id.clone()));
    data.insert("host".into(), opt(computer.clone()));
    data.insert("event_data".into(), event_data.clone());
    let action = match event_id.as_str() {
        "4728" | "4732" | "4756" => Some("added"),
        "4729" | "4733" | "4757" => Some("removed"),
        _ => None,
    };
    let mut obs = Observables::default();
    if let Some(c) = &computer {
        push(&mut obs.hosts, c);
    }
    let Some(action) = action else {
        if let Some(u) = ed("TargetUserName") {
            push(&mut obs.users, &u);
        }
        return Some(make(
            "windows.event",
            time,
            Severity::Low,
            obs,
            data,
            id,
            ctx,
        ));
    };
    let member_dn = ed("MemberName");
    let member_sid = ed("MemberSid");
    // `CN=honey-pot1,OU=…` names the user; local accounts come with a SID only.
    let user = member_dn
        .as_deref()
        .and_then(dn_common_name)
        .or_else(|| member_sid.clone());
    let group = ed("TargetUserName");
    let group_domain = ed("TargetDomainName");
    let actor = ed("SubjectUserName");
    let privileged = group.as_deref().is_some_and(|g| n.is_privileged(g));
    data.insert("action".into(), Value::from(action));
    data.insert("user".into(), opt(user.clone()));
    data.insert("member_dn".into(), opt(member_dn));
    data.insert("member_sid".into(), opt(member_sid));
    data.insert("group".into(), opt(group));
    data.insert("group_domain".into(), opt(group_domain));
    data.insert("group_sid".into(), opt(ed("TargetSid")));
    data.insert("actor".into(), opt(actor));
    data.insert("actor_domain".into(), opt(ed("SubjectDomainName")));
    data.insert("privileged".into(), Value::Bool(privileged));
    if let Some(u) = &user {
        push(&mut obs.users, u);
    }
    Some(make(
        "auth.privilege_change",
        time,
        privilege_severity(action, privileged),
        obs,
        data,
        id,
        ctx,
    ))
}

/// `CN=Jane Doe\, Jr.,OU=x,DC=y` → `Jane Doe, Jr.`.
fn dn_common_name(dn: &str) -> Option<String> {
    let rest = dn.strip_prefix("CN=").or_else(|| dn.strip_prefix("cn="))?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            ',' => break,
            _ => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

fn suricata(v: &Value, raw: &str, ctx: &Context) -> Option<Event> {
    let event_type = v.get("event_type").and_then(Value::as_str)?;
    let time = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_loose_time)
        .unwrap_or(ctx.received);
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut obs = Observables::default();
    for k in ["src_ip", "dest_ip"] {
        if let Some(ip) = s(k).filter(|ip| ip.parse::<IpAddr>().is_ok()) {
            push(&mut obs.ips, &ip);
        }
    }
    for path in [["http", "hostname"], ["tls", "sni"], ["dns", "rrname"]] {
        if let Some(d) = v
            .get(path[0])
            .and_then(|o| o.get(path[1]))
            .and_then(Value::as_str)
            .filter(|d| d.parse::<IpAddr>().is_err() && !d.is_empty())
        {
            push(&mut obs.domains, d);
        }
    }
    let mut data = Map::new();
    data.insert("raw".into(), Value::from(raw));
    data.insert("event_type".into(), Value::from(event_type));
    for k in ["src_ip", "dest_ip", "proto", "app_proto", "in_iface"] {
        data.insert(k.into(), opt(s(k)));
    }
    for k in ["src_port", "dest_port", "flow_id"] {
        data.insert(k.into(), v.get(k).cloned().unwrap_or(Value::Null));
    }
    if event_type != "alert" {
        data.insert("eve".into(), v.clone());
        return Some(make(
            "suricata.event",
            time,
            Severity::Low,
            obs,
            data,
            None,
            ctx,
        ));
    }
    let alert = v.get("alert")?;
    let a = |k: &str| alert.get(k).cloned().unwrap_or(Value::Null);
    let severity = match alert.get("severity").and_then(Value::as_u64) {
        Some(1) => Severity::High,
        Some(2) => Severity::Medium,
        Some(_) => Severity::Low,
        None => Severity::Medium,
    };
    data.insert("signature".into(), a("signature"));
    data.insert("sid".into(), a("signature_id"));
    data.insert("gid".into(), a("gid"));
    data.insert("rev".into(), a("rev"));
    data.insert("category".into(), a("category"));
    data.insert("action".into(), a("action"));
    data.insert("ids_severity".into(), a("severity"));
    for k in ["http", "tls", "dns", "app_proto"] {
        if let Some(x) = v.get(k) {
            data.insert(k.into(), x.clone());
        }
    }
    Some(make("ids.alert", time, severity, obs, data, None, ctx))
}

/// Snare's Windows-over-syslog lines: `MSWinEventLog<TAB>criticality<TAB>log<TAB>…` (tabs may
/// arrive escaped as `\011`). Becomes a `windows.event` with the fields named.
fn snare(
    msg: &str,
    base: &Map<String, Value>,
    time: DateTime<Utc>,
    ctx: &Context,
) -> Option<Event> {
    let start = msg.find("MSWinEventLog")?;
    let body = &msg[start..];
    let parts: Vec<&str> = if body.contains('\t') {
        body.split('\t').collect()
    } else {
        body.split("\\011").collect()
    };
    if parts.len() < 12 {
        return None;
    }
    let names = [
        "marker",
        "criticality",
        "log",
        "counter",
        "time",
        "event_id",
        "source",
        "user",
        "sid_type",
        "event_type",
        "computer",
        "category",
        "data",
        "description",
        "checksum",
    ];
    let mut snare = Map::new();
    for (name, value) in names.iter().zip(parts.iter()).skip(1) {
        snare.insert((*name).into(), Value::from(value.trim()));
    }
    let mut obs = Observables::default();
    if let Some(u) = parts.get(7).map(|u| u.trim()).filter(|u| useful(u)) {
        push(&mut obs.users, u);
    }
    if let Some(c) = parts.get(10).map(|c| c.trim()).filter(|c| useful(c)) {
        push(&mut obs.hosts, c);
    }
    let mut data = base.clone();
    data.insert("event_id".into(), Value::from(parts[5].trim()));
    data.insert("snare".into(), Value::Object(snare));
    Some(make(
        "windows.event",
        time,
        Severity::Low,
        obs,
        data,
        None,
        ctx,
    ))
}

fn privilege_severity(action: &str, privileged: bool) -> Severity {
    match (action, privileged) {
        ("added", true) => Severity::High,
        ("added", false) | ("removed", true) | ("user_created", true) => Severity::Medium,
        _ => Severity::Low,
    }
}

fn syslog_severity(s: &str) -> Severity {
    match s {
        "emerg" | "alert" | "crit" => Severity::Critical,
        "err" => Severity::High,
        "warning" => Severity::Medium,
        _ => Severity::Low,
    }
}

/// CEF severity: 0–3 low, 4–6 medium, 7–8 high, 9–10 critical, or the words vendors use.
fn cef_severity(s: &str) -> Severity {
    if let Ok(n) = s.parse::<u32>() {
        return match n {
            0..=3 => Severity::Low,
            4..=6 => Severity::Medium,
            7 | 8 => Severity::High,
            _ => Severity::Critical,
        };
    }
    match s.to_ascii_lowercase().as_str() {
        "low" | "info" | "informational" => Severity::Low,
        "medium" | "moderate" => Severity::Medium,
        "high" | "substantial" => Severity::High,
        "very-high" | "very high" | "critical" => Severity::Critical,
        _ => Severity::Medium,
    }
}

fn cef_header(c: &cef::CefEvent) -> Value {
    json!({
        "version": c.version, "vendor": c.vendor, "product": c.product,
        "device_version": c.device_version, "signature_id": c.signature_id,
        "name": c.name, "severity": c.severity,
    })
}

/// CEF `rt`: milliseconds since the epoch, or RFC 3339.
fn parse_cef_time(s: &str) -> Option<DateTime<Utc>> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    }
    parse_loose_time(s)
}

/// RFC 3339, `+0000` offsets (Suricata) and `2020-07-12 06:01:13.758734+00:00` (python-evtx).
fn parse_loose_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

fn text_or_number(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `0:11:43:5e:5d:80` → `00:11:43:5e:5d:80`; also accepts `-` separators. `None` if not a MAC.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = Vec::with_capacity(6);
    for p in parts {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        out.push(format!("{:02x}", u8::from_str_radix(p, 16).ok()?));
    }
    Some(out.join(":"))
}

fn parse_oui(text: &str) -> HashMap<[u8; 3], &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (hex, org) = l.split_once('\t')?;
            let n = u32::from_str_radix(hex.trim(), 16).ok()?;
            let [_, a, b, c] = n.to_be_bytes();
            Some(([a, b, c], org.trim()))
        })
        .collect()
}

/// `sshd[123]` → `sshd`.
fn strip_pid(program: &str) -> &str {
    match program.find('[') {
        Some(i) if program.ends_with(']') => &program[..i],
        _ => program,
    }
}

/// Not a placeholder (`-`, `N/A`, `null`, empty).
fn useful(s: &str) -> bool {
    let t = s.trim();
    !(t.is_empty() || t == "-" || t.eq_ignore_ascii_case("n/a") || t.eq_ignore_ascii_case("null"))
}

fn push(list: &mut Vec<String>, v: &str) {
    let v = v.trim();
    if !v.is_empty() && !list.iter().any(|x| x == v) {
        list.push(v.to_owned());
    }
}

fn opt(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn make(
    kind: &str,
    time: DateTime<Utc>,
    severity: Severity,
    observables: Observables,
    mut data: Map<String, Value>,
    id: Option<String>,
    ctx: &Context,
) -> Event {
    if let Some(p) = &ctx.peer {
        data.insert("peer".into(), Value::from(p.clone()));
    }
    if ctx.truncated {
        data.insert("truncated".into(), Value::Bool(true));
    }
    let id = id
        .filter(|id| id.len() <= 256 && !id.chars().any(char::is_control))
        .unwrap_or_else(belay_model::new_id);
    Event {
        id,
        kind: kind.to_owned(),
        source: ctx.source.clone(),
        time,
        severity,
        observables,
        data: Value::Object(data),
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
    fn embedded_rules_compile() {
        assert!(Normalizer::from_rules(RULES_TOML).is_ok());
        assert!(Normalizer::builtin().rules.oui.len() > 1000);
    }

    #[test]
    fn bad_rules_say_which_rule_and_field() {
        let err = Normalizer::from_rules(
            "[[rule]]\nid = \"x\"\nprogram = \"a\"\nmatch = \"(\"\nkind = \"k\"\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("rule `x`: bad `match` regex"), "{err}");
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

    #[test]
    fn macs_are_normalized_and_vendors_looked_up() {
        assert_eq!(
            normalize_mac("0:e:3b:a:cb:67").as_deref(),
            Some("00:0e:3b:0a:cb:67")
        );
        assert_eq!(normalize_mac("0:e:3b:a:cb"), None);
        let n = Normalizer::builtin();
        assert_eq!(
            n.vendor("b4:b5:2f:15:4c:ec").as_deref(),
            Some("Hewlett Packard")
        );
        assert_eq!(
            n.vendor("52:54:00:12:34:56").as_deref(),
            Some("locally administered address")
        );
    }

    #[test]
    fn symantec_extension_pairs_keep_semicolons_inside_values() {
        let pairs = split_semicolon_pairs("A=1;URL=https://x/?a=;b&c=;d;MATCH_COUNT=4");
        assert_eq!(
            pairs,
            vec![
                ("A".to_owned(), "1".to_owned()),
                ("URL".to_owned(), "https://x/?a=;b&c=;d".to_owned()),
                ("MATCH_COUNT".to_owned(), "4".to_owned()),
            ]
        );
    }

    #[test]
    fn content_encryption_comes_from_the_policy_the_file_type_or_readable_matches() {
        assert_eq!(
            content_encrypted("Encrypted Archives - Gateway", "", None, None),
            Some(true)
        );
        assert_eq!(
            content_encrypted("PCI", "", Some("q3.zip.gpg"), None),
            Some(true)
        );
        assert_eq!(
            content_encrypted("PCI", "", Some("q3.xlsx"), Some(4)),
            Some(false)
        );
        assert_eq!(content_encrypted("PCI", "", Some("q3.zip"), None), None);
    }

    #[test]
    fn channel_encryption_is_inferred_only_when_the_channel_says_so() {
        assert_eq!(channel_encrypted("Endpoint HTTPS"), Some(true));
        assert_eq!(channel_encrypted("SMTP"), Some(false));
        assert_eq!(channel_encrypted("Removable Storage"), None);
    }
}
