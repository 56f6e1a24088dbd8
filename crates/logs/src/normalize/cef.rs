//! CEF records (after a syslog header or bare): DLP products' records go to [`super::dlp`];
//! every other becomes `cef.event` with its header, extensions and the observables CEF names.
//!
//! Parsing CEF is `crate::cef`'s job; this module only maps a parsed record to an event.

use super::dlp::DlpRecord;
use super::fields::{make, parse_loose_time, push, useful};
use super::{Context, Normalizer, normalize_mac};
use crate::cef::CefEvent;
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

impl Normalizer {
    /// The event for one parsed CEF record; `base` holds the syslog header fields and `raw`.
    pub(super) fn cef(
        &self,
        c: &CefEvent,
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

fn cef_header(c: &CefEvent) -> Value {
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
