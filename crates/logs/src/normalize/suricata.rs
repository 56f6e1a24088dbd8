//! Suricata EVE JSON: `alert` records become `ids.alert` (signature, sid, category, severity);
//! every other `event_type` stays `suricata.event` with the whole record.
//!
//! This module never guesses: a JSON document without `event_type` is not EVE.

use super::Context;
use super::fields::{make, opt, parse_loose_time, push};
use belay_model::{Event, Observables, Severity};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// The event for an EVE record; `None` when `v` is not one.
pub(super) fn suricata(v: &Value, raw: &str, ctx: &Context) -> Option<Event> {
    let event_type = v.get("event_type").and_then(Value::as_str)?;
    // The product is the source (`event.source == "suricata"`), wherever the record was read;
    // where it came from (a file, a listener) stays in `data.received_from`.
    let from = ctx;
    let ctx = &Context {
        source: "suricata".into(),
        ..ctx.clone()
    };
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
    data.insert("received_from".into(), Value::from(from.source.clone()));
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
