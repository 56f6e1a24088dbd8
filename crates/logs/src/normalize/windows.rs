//! Windows events: Security log JSON (python-evtx's `Event.System`/`EventData` shape and
//! Winlogbeat's `winlog`) and Snare's Windows-over-syslog lines. Group-membership changes
//! (4728/4732/4756 added, 4729/4733/4757 removed) become `auth.privilege_change`; every other
//! event stays `windows.event`.
//!
//! This module never guesses: a JSON document without an event id is not a Windows event.

use super::fields::{make, opt, parse_loose_time, push, text_or_number, useful};
use super::privilege::privilege_severity;
use super::{Context, Normalizer};
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The event for a Windows event document; `None` when `v` is not one.
pub(super) fn windows(n: &Normalizer, v: &Value, raw: &str, ctx: &Context) -> Option<Event> {
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

/// Snare's Windows-over-syslog lines: `MSWinEventLog<TAB>criticality<TAB>log<TAB>…` (tabs may
/// arrive escaped as `\011`). Becomes a `windows.event` with the fields named.
pub(super) fn snare(
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
