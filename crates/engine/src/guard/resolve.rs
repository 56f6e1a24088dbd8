//! Resolving a target to its other identities through a directory of devices (a CMDB): a
//! host name to its address and MAC, an address or MAC to its host name. A never-list that
//! names a `resolve` action checks every identity the directory gives, so a protected laptop
//! listed by name is found when a change names its address, and the other way round.
//!
//! This module decides what to ask and how to read the answer; the executor makes the call.

use super::canon;
use belay_playbook::TargetType;
use serde_json::{Value, json};
use std::collections::HashMap;

/// What the directory said about one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The device is known, with these other identities (kind, canonical-enough text).
    Known(Vec<(TargetType, String)>),
    /// The directory does not know the device.
    Unknown,
    /// The directory could not be asked (no connector, an error, an answer not understood).
    Failed(String),
}

/// Resolutions by (guardrail name, target), as the guard gate gathered them.
pub type Identities = HashMap<(String, String), Resolution>;

/// The input of the resolve action for `target` of type `kind`: an `ip`, a `mac` or a
/// `hostname`; `None` for what a device directory cannot look up (a network, a domain, a user).
pub fn lookup_input(kind: TargetType, target: &str) -> Option<Value> {
    let t = target.trim();
    if !matches!(
        kind,
        TargetType::Host | TargetType::Ip | TargetType::Mac | TargetType::Generic
    ) {
        return None;
    }
    if let Some(mac) = canon::mac(t) {
        return Some(json!({ "mac": mac }));
    }
    match canon::net(t) {
        Ok(Some(net)) if net.prefix_len() == net.max_prefix_len() => {
            Some(json!({ "ip": net.addr().to_string() }))
        }
        Ok(Some(_)) | Err(_) => None,
        Ok(None) if matches!(kind, TargetType::Host) => canon::host_name(t)
            .ok()
            .map(|(full, _)| json!({ "hostname": full })),
        Ok(None) => None,
    }
}

/// Reads a directory's answer (`known`, `hostname`, `ip`, `mac`) into a resolution.
pub fn read_answer(answer: &Value) -> Resolution {
    if answer.get("known") == Some(&Value::Bool(false)) {
        return Resolution::Unknown;
    }
    let mut ids = Vec::new();
    for (field, kind) in [
        ("hostname", TargetType::Host),
        ("ip", TargetType::Ip),
        ("mac", TargetType::Mac),
    ] {
        match answer.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => ids.push((kind, s.trim().to_owned())),
            Some(Value::Array(items)) => ids.extend(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| (kind, s.trim().to_owned())),
            ),
            _ => {}
        }
    }
    if ids.is_empty() {
        Resolution::Failed(format!(
            "the answer names no host name, address or MAC: {}",
            truncate(&answer.to_string(), 200)
        ))
    } else {
        Resolution::Known(ids)
    }
}

/// Whether the identities include one of another kind than the target's own notation: a
/// name for an address or MAC, an address for a name. Such a target is resolved.
pub fn completes(target: &str, ids: &[(TargetType, String)]) -> bool {
    let t = target.trim();
    let by_address = canon::net(t).is_ok_and(|n| n.is_some()) || canon::mac(t).is_some();
    let wanted = if by_address {
        TargetType::Host
    } else {
        TargetType::Ip
    };
    ids.iter().any(|(k, _)| *k == wanted)
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_by_the_notation_the_target_is_in() {
        assert_eq!(
            lookup_input(TargetType::Ip, "::ffff:10.20.0.15"),
            Some(json!({"ip": "10.20.0.15"}))
        );
        assert_eq!(
            lookup_input(TargetType::Host, "CFO-LAPTOP.corp.example."),
            Some(json!({"hostname": "cfo-laptop.corp.example"}))
        );
        assert_eq!(
            lookup_input(TargetType::Mac, "AA-BB-CC-00-11-22"),
            Some(json!({"mac": "aa:bb:cc:00:11:22"}))
        );
        assert_eq!(lookup_input(TargetType::Ip, "10.0.0.0/8"), None);
        assert_eq!(lookup_input(TargetType::Domain, "evil.example"), None);
    }

    #[test]
    fn reads_known_unknown_and_useless_answers() {
        assert_eq!(
            read_answer(&json!({"known": true, "hostname": "cfo-laptop", "ip": "10.20.0.15"})),
            Resolution::Known(vec![
                (TargetType::Host, "cfo-laptop".into()),
                (TargetType::Ip, "10.20.0.15".into())
            ])
        );
        assert_eq!(read_answer(&json!({"known": false})), Resolution::Unknown);
        assert!(matches!(
            read_answer(&json!({"known": true})),
            Resolution::Failed(_)
        ));
    }
}
