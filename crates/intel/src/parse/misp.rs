//! MISP events and MISP feed manifests.
//!
//! An event's attributes (its own and those of its objects) become records when their type
//! has an indicator kind (`ip-dst`, `domain`, `url`, `md5`, `filename|sha256`, `domain|ip`...)
//! and their producer marked them for detection (`to_ids` not false). Others are reported as
//! unsupported. A manifest (`manifest.json`: event UUID to summary) only lists events: the
//! caller fetches `UUID.json` beside it for each and parses them with [`parse_event`].

use super::Sink;
use crate::indicator::Kind;
use serde_json::Value;

/// Why a document is not MISP.
#[derive(Debug, thiserror::Error)]
pub enum MispError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("expected a MISP event (`{{\"Event\": ...}}`) or a feed manifest")]
    Shape,
    #[error("manifest key `{0}` is not an event UUID")]
    BadUuid(String),
}

/// What a MISP document is.
pub enum MispDoc {
    Event(Value),
    /// The event UUIDs a manifest lists.
    Manifest(Vec<String>),
}

/// Tells an event from a manifest.
pub fn read(bytes: &[u8]) -> Result<MispDoc, MispError> {
    let doc: Value = serde_json::from_slice(bytes)?;
    let Value::Object(map) = &doc else {
        return Err(MispError::Shape);
    };
    if map.contains_key("Event") || map.contains_key("Attribute") {
        return Ok(MispDoc::Event(doc));
    }
    if map.is_empty() || !map.values().all(Value::is_object) {
        return Err(MispError::Shape);
    }
    let mut uuids = Vec::with_capacity(map.len());
    for key in map.keys() {
        if !is_uuid(key) {
            return Err(MispError::BadUuid(key.chars().take(64).collect()));
        }
        uuids.push(key.to_ascii_lowercase());
    }
    Ok(MispDoc::Manifest(uuids))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Reads one event's attributes; returns how many attributes it looked at.
pub fn parse_event(doc: &Value, sink: &mut dyn Sink) -> usize {
    let event = doc.get("Event").unwrap_or(doc);
    let mut seen = 0;
    let attrs = |v: &Value| -> Vec<Value> {
        v.get("Attribute")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for a in attrs(event) {
        seen += 1;
        attribute(&a, sink);
    }
    if let Some(objects) = event.get("Object").and_then(Value::as_array) {
        for o in objects {
            for a in attrs(o) {
                seen += 1;
                attribute(&a, sink);
            }
        }
    }
    seen
}

fn attribute(a: &Value, sink: &mut dyn Sink) {
    let kind = a.get("type").and_then(Value::as_str).unwrap_or("");
    let Some(value) = a.get("value").and_then(Value::as_str) else {
        sink.unsupported(format!(
            "MISP attribute of type `{kind}` without a text value"
        ));
        return;
    };
    if a.get("to_ids").and_then(to_bool) == Some(false) {
        sink.unsupported(format!("MISP {kind} `{}`: to_ids is false", clip(value)));
        return;
    }
    if a.get("deleted").and_then(to_bool) == Some(true) {
        return;
    }
    // Composite types hold two values separated by `|`.
    let (left, right) = match value.split_once('|') {
        Some((l, r)) if kind.contains('|') => (l, Some(r)),
        _ => (value, None),
    };
    match kind {
        "domain|ip" => {
            sink.record(left, Some(Kind::Domain), None);
            if let Some(r) = right {
                sink.record(r, Some(Kind::Ip), None);
            }
        }
        "ip-dst|port" | "ip-src|port" | "hostname|port" => {
            let k = if kind.starts_with("hostname") {
                Kind::Domain
            } else {
                Kind::Ip
            };
            sink.record(left, Some(k), None);
        }
        k if k.starts_with("filename|") => {
            let algo = &k["filename|".len()..];
            match (Kind::from_label(algo), right) {
                (Some(Kind::Hash), Some(r)) => sink.record(r, Some(Kind::Hash), None),
                _ => sink.unsupported(format!("MISP {kind} `{}`", clip(value))),
            }
        }
        "link" => sink.unsupported(format!("MISP link `{}` (a reference)", clip(value))),
        k => match Kind::from_label(k) {
            Some(kind) => sink.record(value, Some(kind), None),
            None => sink.unsupported(format!("MISP {k} `{}`", clip(value))),
        },
    }
}

fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::VecSink;

    #[test]
    fn attributes_by_type_and_to_ids() {
        let doc = serde_json::json!({"Event": {
            "Attribute": [
                {"type": "ip-dst", "value": "192.0.2.1", "to_ids": true},
                {"type": "filename", "value": "x.arm5", "to_ids": false},
                {"type": "filename|sha256", "value": "x|aa", "to_ids": true},
                {"type": "domain|ip", "value": "a.example|192.0.2.2", "to_ids": "1"},
                {"type": "mutex", "value": "m", "to_ids": true}
            ],
            "Object": [{"Attribute": [{"type": "md5", "value": "bb", "to_ids": true}]}]
        }});
        let mut s = VecSink::default();
        assert_eq!(parse_event(&doc, &mut s), 6);
        let v: Vec<&str> = s.records.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(v, ["192.0.2.1", "aa", "a.example", "192.0.2.2", "bb"]);
        assert_eq!(s.unsupported.len(), 2);
    }

    #[test]
    fn manifests_list_uuids() {
        let m = br#"{"1e89c624-23fe-4c79-a310-a69d85e6820f": {"info": "x"}}"#;
        match read(m).unwrap() {
            MispDoc::Manifest(u) => assert_eq!(u, ["1e89c624-23fe-4c79-a310-a69d85e6820f"]),
            MispDoc::Event(_) => panic!("not an event"),
        }
        assert!(matches!(
            read(br#"{"../../etc/passwd": {}}"#),
            Err(MispError::BadUuid(_))
        ));
        assert!(read(b"[]").is_err());
    }
}
