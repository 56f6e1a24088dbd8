//! `dlp.classify`: tells an inadvertent leak (sensitive data in an ordinary e-mail or upload,
//! in the clear) from a possibly malicious one (an encrypted or password-protected archive
//! leaving through the gateway, or any deliberately hidden content), from the fields the DLP
//! normalizer extracts (`channel`, `encrypted`, `file`, `data_types`, `action`).

use serde_json::{Value, json};

/// The `dlp` connector.
pub struct Dlp;

/// File names that are archives: content a DLP engine cannot read when encrypted.
const ARCHIVES: &[&str] = &[
    ".zip", ".7z", ".rar", ".gpg", ".pgp", ".enc", ".tar.gz", ".tgz",
];

fn channel_of(raw: &str) -> &'static str {
    let c = raw.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| c.contains(w));
    if has(&["smtp", "mail", "exchange", "outlook"]) {
        "email"
    } else if has(&["usb", "removable", "cd/dvd", "bluetooth"]) {
        "removable_media"
    } else if has(&["gateway", "network", "ftp", "sftp", "ssh", "firewall"]) {
        "gateway"
    } else if has(&["cloud", "onedrive", "dropbox", "box.com", "drive", "s3"]) {
        "cloud"
    } else if has(&["http", "web", "browser"]) {
        "web"
    } else {
        "other"
    }
}

/// Classifies one alert (the event's `data`).
pub fn classify(alert: &Value) -> Value {
    let s = |k: &str| alert[k].as_str().unwrap_or("").trim();
    let channel = channel_of(s("channel"));
    let file = s("file").to_ascii_lowercase();
    let archive = ARCHIVES.iter().any(|a| file.ends_with(a));
    let encrypted = alert["encrypted"].as_bool();
    let data_types: Vec<&str> = alert["data_types"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut reasons = Vec::new();
    let verdict = if encrypted == Some(true) {
        reasons.push(format!(
            "the {} is encrypted, so its content cannot be inspected",
            if archive { "archive" } else { "file" }
        ));
        if matches!(channel, "gateway" | "cloud" | "removable_media") {
            reasons.push(format!("it left through the {}", channel.replace('_', " ")));
        }
        "malicious"
    } else if archive && channel == "gateway" {
        reasons.push("an archive left through the gateway".into());
        "malicious"
    } else if !data_types.is_empty() && encrypted == Some(false) {
        reasons.push(format!(
            "{} sent in the clear over {channel}: a mistake more likely than theft",
            data_types.join(", ").replace('_', " ")
        ));
        "inadvertent"
    } else {
        reasons.push("not enough detail in the alert to tell".into());
        "unknown"
    };
    let mut out = json!({ "verdict": verdict, "reasons": reasons, "channel": channel });
    if let Some(u) = alert["user"].as_str() {
        out["user"] = json!(u);
    }
    if let Some(h) = alert["endpoint"].as_str().or(alert["host"].as_str()) {
        out["host"] = json!(h);
    }
    out
}

belay_connector_api::connector! {
    impl Dlp {
        family: "dlp",
        named: "the dlp connector",
        call(_dlp, call) {
            "dlp.classify" => Ok(classify(&call.input["alert"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_numbers_by_mail_are_inadvertent_an_encrypted_archive_is_not() {
        let mail = json!({"channel": "SMTP", "encrypted": false, "file": "q3.xlsx",
                          "data_types": ["bank_account_number"], "user": "jsmith"});
        let v = classify(&mail);
        assert_eq!(v["verdict"], "inadvertent");
        assert_eq!(v["channel"], "email");
        let gw = json!({"channel": "Network Gateway", "encrypted": true, "file": "export.7z",
                        "data_types": [], "endpoint": "eng-ws-101"});
        let v = classify(&gw);
        assert_eq!(v["verdict"], "malicious");
        assert_eq!(v["host"], "eng-ws-101");
        assert_eq!(classify(&json!({}))["verdict"], "unknown");
    }
}
