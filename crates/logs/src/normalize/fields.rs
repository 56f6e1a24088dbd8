//! Small helpers every source family shares: reading loose times and values, skipping
//! placeholders, collecting observables, and building the [`Event`] with the context's `peer`,
//! `truncated` flag and source.
//!
//! This module never knows a source family; anything specific to one lives in its own file.

use super::Context;
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// RFC 3339, `+0000` offsets (Suricata) and `2020-07-12 06:01:13.758734+00:00` (python-evtx).
pub(super) fn parse_loose_time(s: &str) -> Option<DateTime<Utc>> {
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

/// A JSON string (non-empty) or number as text.
pub(super) fn text_or_number(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Not a placeholder (`-`, `N/A`, `null`, empty).
pub(super) fn useful(s: &str) -> bool {
    let t = s.trim();
    !(t.is_empty() || t == "-" || t.eq_ignore_ascii_case("n/a") || t.eq_ignore_ascii_case("null"))
}

/// Appends a trimmed, non-empty value once.
pub(super) fn push(list: &mut Vec<String>, v: &str) {
    let v = v.trim();
    if !v.is_empty() && !list.iter().any(|x| x == v) {
        list.push(v.to_owned());
    }
}

/// `null` for `None`.
pub(super) fn opt(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::from)
}

/// The event of a record no rule recognized: low severity, no observables, received now.
pub(super) fn unrecognized(kind: &str, data: Map<String, Value>, ctx: &Context) -> Event {
    make(
        kind,
        ctx.received,
        Severity::Low,
        Observables::default(),
        data,
        None,
        ctx,
    )
}

/// The event: `id` when given and printable (at most 256 bytes), else a new one.
pub(super) fn make(
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
    let given = id.filter(|id| id.len() <= 256 && !id.chars().any(char::is_control));
    let mut event = Event {
        id: String::new(),
        kind: kind.to_owned(),
        source: ctx.source.clone(),
        time,
        severity,
        observables,
        data: Value::Object(data),
    };
    // Without an id of its own, the same record read twice (a file parsed again, a relayed
    // line sent twice) gets the same id: derived from its source, content and time.
    event.id = match given {
        Some(id) => id,
        None => event.content_id(true, std::time::Duration::from_secs(86_400), 0),
    };
    event
}
