//! Events: what a source reports (kind, severity, data, observables) and the checks an event
//! passes before anything acts on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// How bad an event is, as the source judged it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `low`.
    Low,
    /// `medium`, the default when an event gives none.
    #[default]
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// The things an event is about, by type. Every list may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Observables {
    /// IPv4 or IPv6 addresses.
    pub ips: Vec<String>,
    /// Networks in CIDR notation.
    pub cidrs: Vec<String>,
    /// Domain names.
    pub domains: Vec<String>,
    /// URLs.
    pub urls: Vec<String>,
    /// File hashes (MD5, SHA-1, SHA-256...), hex.
    pub hashes: Vec<String>,
    /// User names or account ids.
    pub users: Vec<String>,
    /// Host names or device ids.
    pub hosts: Vec<String>,
    /// Email addresses.
    pub emails: Vec<String>,
    /// MAC addresses.
    pub macs: Vec<String>,
}

impl Observables {
    /// The lists' keys, in the order the event's JSON has them.
    pub const KEYS: &'static [&'static str] = &[
        "ips", "cidrs", "domains", "urls", "hashes", "users", "hosts", "emails", "macs",
    ];

    /// The list under `key` (one of [`Observables::KEYS`]); `None` for another key.
    pub fn list(&self, key: &str) -> Option<&[String]> {
        Some(match key {
            "ips" => &self.ips,
            "cidrs" => &self.cidrs,
            "domains" => &self.domains,
            "urls" => &self.urls,
            "hashes" => &self.hashes,
            "users" => &self.users,
            "hosts" => &self.hosts,
            "emails" => &self.emails,
            "macs" => &self.macs,
            _ => return None,
        })
    }
}

/// Something that happened, as belay ingests it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Unique id; events re-sent with an id already accepted are acknowledged, not run again.
    pub id: String,
    /// Dotted kind, e.g. `phishing.reported`; playbook triggers match on it.
    pub kind: String,
    /// Who sent it (a product or feed name); `unknown` when not given.
    pub source: String,
    /// When it happened, as the source says (RFC 3339 on the wire); ingest time when not given.
    pub time: DateTime<Utc>,
    /// How bad it is; `medium` when not given.
    pub severity: Severity,
    /// What it is about; not validated beyond being lists of strings.
    pub observables: Observables,
    /// The original payload, any JSON.
    pub data: Value,
}

/// Why a JSON document is not a valid event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    /// The text is not JSON (the parser's message).
    #[error("event is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a valid event: not an object, an unknown field, or a bad `id`, `kind`,
    /// `time` or `source`.
    #[error("invalid event: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: Option<String>,
    kind: Option<String>,
    source: Option<String>,
    time: Option<String>,
    severity: Option<Severity>,
    #[serde(default)]
    observables: Observables,
    #[serde(default)]
    data: Value,
}

/// Longest `id`, in characters.
const MAX_ID_LEN: usize = 256;

impl Event {
    /// The event's keys, in the order its JSON has them.
    pub const KEYS: &'static [&'static str] = &[
        "id",
        "kind",
        "source",
        "time",
        "severity",
        "observables",
        "data",
    ];

    /// Parses and validates one event from JSON text. An object with the same key twice is
    /// refused (a JSON value would keep the last, so a second `kind` could hide behind the
    /// first one a reader sees).
    pub fn from_json_str(text: &str) -> Result<Event, EventError> {
        unique_keys(text)?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError::Json(e.to_string()))?;
        Event::from_json(value)
    }

    /// Validates a JSON value as an event. Missing `id` gets a fresh one, missing `time` is now,
    /// missing `severity` is `medium`, missing `source` is `unknown`.
    pub fn from_json(value: Value) -> Result<Event, EventError> {
        if !value.is_object() {
            return Err(EventError::Invalid(format!(
                "expected a JSON object, found {}",
                json_type(&value)
            )));
        }
        // The field a type error stands at, by path (`observables.ips[0]`), so the sender
        // knows what to fix.
        let raw: RawEvent = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            EventError::Invalid(if path.is_empty() || path == "." {
                inner
            } else {
                format!("`{path}`: {inner}")
            })
        })?;
        let kind = raw
            .kind
            .ok_or_else(|| EventError::Invalid("missing field `kind`".into()))?;
        validate_kind(&kind)?;
        let id = match raw.id {
            Some(id)
                if id.is_empty()
                    || id.chars().count() > MAX_ID_LEN
                    || id.chars().any(char::is_control) =>
            {
                return Err(EventError::Invalid(format!(
                    "`id` must be 1 to {MAX_ID_LEN} printable characters"
                )));
            }
            Some(id) => id,
            None => crate::new_id(),
        };
        let time = match raw.time {
            Some(t) => DateTime::parse_from_rfc3339(&t)
                .map_err(|e| EventError::Invalid(format!("`time` is not RFC 3339 (`{t}`): {e}")))?
                .with_timezone(&Utc),
            None => Utc::now(),
        };
        crate::observable::check(&raw.observables).map_err(EventError::Invalid)?;
        let source = raw.source.unwrap_or_else(|| "unknown".into());
        if source.chars().count() > 256 || source.chars().any(char::is_control) {
            return Err(EventError::Invalid(
                "`source` must be at most 256 printable characters".into(),
            ));
        }
        Ok(Event {
            id,
            kind,
            source,
            time,
            severity: raw.severity.unwrap_or_default(),
            observables: raw.observables,
            data: raw.data,
        })
    }

    /// Parses an event from a stream (`belay ingest`, a webhook), where a retried delivery must
    /// not run twice: one without an `id` gets [`Event::content_id`] instead of a fresh one.
    pub fn from_json_str_stream(
        text: &str,
        window: std::time::Duration,
    ) -> Result<Event, EventError> {
        unique_keys(text)?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError::Json(e.to_string()))?;
        let (has_id, has_time) = (value.get("id").is_some(), value.get("time").is_some());
        let mut event = Event::from_json(value)?;
        if !has_id {
            event.id = event.content_id(has_time, window, crate::now_ms());
        }
        Ok(event)
    }

    /// An id derived from what the event says: SHA-256 over its source and canonical body
    /// (kind, severity, observables, data, and its time when the source gave one), so the same
    /// alert delivered twice gets the same id. Without a source time the id also names the
    /// `window` the event arrived in (`c:HASH:N`, N = arrival ms / window ms): the same alert
    /// in a later window runs again (see [`Event::previous_window_id`] for the boundary).
    pub fn content_id(&self, with_time: bool, window: std::time::Duration, now_ms: i64) -> String {
        let mut body = serde_json::json!({
            "source": self.source, "kind": self.kind, "severity": self.severity,
            "observables": self.observables, "data": self.data,
        });
        if with_time {
            body["time"] = Value::String(self.time.to_rfc3339());
        }
        let hash = crate::sha256_hex(crate::audit::canonical_json(&body).as_bytes());
        if with_time {
            format!("c:{}", &hash[..40])
        } else {
            let window_ms = (window.as_millis() as i64).max(1);
            format!("c:{}:{}", &hash[..40], now_ms / window_ms)
        }
    }

    /// For a content id with a window number (`c:HASH:N`), the same content's id in the window
    /// before (`c:HASH:N-1`): a delivery just after a window boundary is still a duplicate of one
    /// just before it, when that one arrived less than a window ago.
    pub fn previous_window_id(id: &str) -> Option<String> {
        let rest = id.strip_prefix("c:")?;
        let (hash, n) = rest.split_once(':')?;
        let n: i64 = n.parse().ok()?;
        Some(format!("c:{hash}:{}", n.checked_sub(1)?))
    }

    /// The event as the JSON object playbook expressions see under `event`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn validate_kind(kind: &str) -> Result<(), EventError> {
    let ok = !kind.is_empty()
        && kind.len() <= 128
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(EventError::Invalid(format!(
            "`kind` must be 1 to 128 characters of letters, digits, `.`, `_` or `-`, found `{kind}`"
        )))
    }
}

/// Refuses JSON text in which an object has a key twice, naming the key and where.
fn unique_keys(text: &str) -> Result<(), EventError> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    UniqueKeys
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| {
            if e.is_data() {
                EventError::Invalid(e.to_string())
            } else {
                EventError::Json(e.to_string())
            }
        })
}

/// Walks a JSON document, keeping nothing, and fails at the first repeated key of an object.
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(UniqueKeys)?;
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key `{key}`: each key of an object may appear once"
                )));
            }
        }
        Ok(())
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_value_names_its_field_and_what_is_allowed() {
        let err = Event::from_json_str(r#"{"kind":"ids.alert","severity":"HIGH"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`severity`: unknown variant `HIGH`"), "{err}");
        assert!(
            err.contains("`high`"),
            "the allowed values are listed: {err}"
        );
        let err = Event::from_json_str(r#"{"kind":"ids.alert","observables":{"ips":"1.2.3.4"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "`observables.ips`: invalid type: string \"1.2.3.4\", expected a sequence"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_keys_are_those_of_the_json_in_its_order() {
        let mut e = Event::from_json(serde_json::json!({"kind": "k"})).unwrap();
        let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(keys(&e.to_value()), Event::KEYS);
        let obs = serde_json::to_value(&e.observables).unwrap();
        assert_eq!(keys(&obs), Observables::KEYS);
        for (i, key) in Observables::KEYS.iter().enumerate() {
            e.observables = Observables::default();
            let mut one = serde_json::to_value(&e.observables).unwrap();
            one[key] = serde_json::json!([format!("v{i}")]);
            e.observables = serde_json::from_value(one).unwrap();
            assert_eq!(
                e.observables.list(key),
                Some(&[format!("v{i}")][..]),
                "{key}"
            );
        }
        assert_eq!(e.observables.list("other"), None);
    }

    #[test]
    fn minimal_event_gets_defaults() {
        let e = Event::from_json_str(r#"{"kind":"dlp.alert"}"#).unwrap();
        assert_eq!(e.kind, "dlp.alert");
        assert_eq!(e.severity, Severity::Medium);
        assert_eq!(e.source, "unknown");
        assert!(!e.id.is_empty());
    }

    #[test]
    fn full_event_round_trips() {
        let text = r#"{"id":"e1","kind":"phishing.reported","source":"mailbox","time":"2026-01-02T03:04:05Z",
            "severity":"high","observables":{"ips":["192.0.2.1"],"domains":["evil.example"]},"data":{"x":1}}"#;
        let e = Event::from_json_str(text).unwrap();
        assert_eq!(e.observables.ips, vec!["192.0.2.1"]);
        assert_eq!(e.severity, Severity::High);
        let back = Event::from_json(e.to_value()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn bad_events_say_why() {
        let cases = [
            ("[]", "expected a JSON object"),
            ("{}", "missing field `kind`"),
            (r#"{"kind":"a b"}"#, "`kind` must be"),
            (
                r#"{"kind":"x","severity":"urgent"}"#,
                "unknown variant `urgent`",
            ),
            (r#"{"kind":"x","time":"yesterday"}"#, "RFC 3339"),
            (
                r#"{"kind":"x","observables":{"ipz":[]}}"#,
                "unknown field `ipz`",
            ),
            (r#"{"kind":"x","colour":"red"}"#, "unknown field `colour`"),
            ("{", "not valid JSON"),
            (r#"{"kind":"x","id":"a\u0000b"}"#, "printable"),
            (r#"{"kind":"x","source":"s\nt"}"#, "printable"),
        ];
        for (text, want) in cases {
            let err = Event::from_json_str(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_repeated_key_is_refused_not_silently_replaced() {
        let text = r#"{"kind":"benign.test","data":{"a":1},"kind":"phishing.reported"}"#;
        let err = Event::from_json_str(text).unwrap_err().to_string();
        assert!(err.contains("duplicate key `kind`"), "{err}");
        let nested = r#"{"kind":"x","observables":{"ips":["192.0.2.1"],"ips":["192.0.2.2"]}}"#;
        let err = Event::from_json_str(nested).unwrap_err().to_string();
        assert!(err.contains("duplicate key `ips`"), "{err}");
        // The same key in two different objects is fine.
        assert!(Event::from_json_str(r#"{"kind":"x","data":{"kind":"y"}}"#).is_ok());
    }

    #[test]
    fn observables_must_be_of_their_lists_type() {
        let bad = [
            (r#"{"ips":["0"]}"#, "observables.ips[0]"),
            (
                r#"{"ips":["192.0.2.1","evil.example"]}"#,
                "observables.ips[1]",
            ),
            (r#"{"cidrs":["10.0.0.0/33"]}"#, "observables.cidrs[0]"),
            (r#"{"domains":["evil example"]}"#, "observables.domains[0]"),
            (r#"{"domains":["300.1.1.1"]}"#, "observables.domains[0]"),
            (r#"{"urls":["not a url"]}"#, "observables.urls[0]"),
            (r#"{"hashes":["abc"]}"#, "observables.hashes[0]"),
            (r#"{"emails":["nobody"]}"#, "observables.emails[0]"),
            (r#"{"macs":["3c:22:fb"]}"#, "observables.macs[0]"),
            (r#"{"users":[""]}"#, "observables.users[0]"),
        ];
        for (obs, want) in bad {
            let text = format!(r#"{{"kind":"x","observables":{obs}}}"#);
            let err = Event::from_json_str(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{obs}: {err}");
        }
        let good = r#"{"kind":"x","observables":{"ips":["192.0.2.1","2001:db8::1"],
            "cidrs":["10.0.0.0/8","192.0.2.1"],"domains":["xn--bcher-kva.example","bücher.example"],
            "urls":["https://evil.example/a?b=c"],"hashes":["d41d8cd98f00b204e9800998ecf8427e"],
            "users":["CORP\\alice"],"hosts":["laptop-7"],"emails":["a@b.example"],
            "macs":["3c:22:fb:00:00:01","3C-22-FB-00-00-01"]}}"#;
        Event::from_json_str(good).unwrap();
    }

    #[test]
    fn the_id_limit_counts_characters() {
        let id = "é".repeat(256); // 512 bytes, 256 characters
        let text = format!(r#"{{"kind":"x","id":"{id}"}}"#);
        assert_eq!(Event::from_json_str(&text).unwrap().id, id);
        let text = format!(r#"{{"kind":"x","id":"{id}é"}}"#);
        let err = Event::from_json_str(&text).unwrap_err().to_string();
        assert!(err.contains("1 to 256 printable characters"), "{err}");
    }
}
