//! `dlp.alert` from DLP products, whatever the transport: Symantec DLP records in Sentinel's
//! CommonSecurityLog JSON (`AdditionalExtensions` key/value pairs) and DLP products' CEF. Finds
//! policy, user, channel, file, data types and whether the content or the channel was encrypted.
//!
//! This module never reads transports itself: JSON and CEF arrive here as a [`DlpRecord`].

use super::fields::{make, opt, push, useful};
use super::{Context, Normalizer};
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use regex::Regex;
use serde_json::{Map, Value, json};
use std::net::IpAddr;
use std::sync::LazyLock;

impl Normalizer {
    /// The `dlp.alert` for one record; `data` already holds `raw` and the transport's fields.
    pub(super) fn dlp(
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

/// A DLP incident from any transport: the vendor's key/value fields and its policy name.
pub(super) struct DlpRecord {
    pub(super) vendor: String,
    pub(super) product: String,
    pub(super) policy: String,
    pub(super) fields: Vec<(String, String)>,
}

/// A DLP record from a Sentinel CommonSecurityLog row; `None` when the product is not a DLP.
pub(super) fn dlp_from_common_security_log(v: &Value) -> Option<DlpRecord> {
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

/// When the incident happened: `TimeGenerated`, else Symantec's `OCCURRED_ON`.
pub(super) fn dlp_time(v: &Value, rec: &DlpRecord) -> Option<DateTime<Utc>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
