//! `network.new_device` from syslog rules (arpwatch, DHCP servers, …), MAC address
//! normalization, and the MAC vendor (OUI) table.
//!
//! This module never matches lines itself: the rules do, and hand it their captures.

use super::fields::{opt, push};
use super::rules::Matched;
use super::{Context, Normalizer};
use belay_model::{Event, Observables, Severity};
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;

impl Normalizer {
    /// The event for a rule of kind `network.new_device`, from its captures.
    pub(super) fn new_device(&self, mut m: Matched<'_>, ctx: &Context) -> Event {
        let get = |k: &str| m.fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let mac = get("mac").and_then(|m| normalize_mac(&m));
        let ip = get("ip").filter(|ip| ip.parse::<IpAddr>().is_ok());
        let hostname = get("hostname").filter(|h| !h.is_empty());
        let vendor = mac.as_deref().and_then(|m| self.vendor(m));
        m.data.insert("mac".into(), opt(mac.clone()));
        m.data.insert("ip".into(), opt(ip.clone()));
        m.data.insert("hostname".into(), opt(hostname.clone()));
        m.data.insert("vendor".into(), opt(vendor));
        m.data
            .insert("observer".into(), opt(m.host.map(str::to_owned)));
        for k in ["interface", "observation", "previous_mac", "what"] {
            if let Some(v) = get(k) {
                let v = if k == "previous_mac" {
                    normalize_mac(&v).unwrap_or(v)
                } else {
                    v
                };
                m.data.insert(k.into(), Value::from(v));
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
        m.event("network.new_device", severity, obs, ctx)
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

/// The embedded `oui.tsv`: `hex OUI<TAB>organization`, `#` comments.
pub(super) fn parse_oui(text: &str) -> HashMap<[u8; 3], &str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
