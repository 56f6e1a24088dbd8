//! The audit trail in ArcSight CEF, the line format SIEMs ingest: one entry, one line.
//!
//! Formatting only: it never reads or verifies the chain, and it escapes every field so an
//! actor or detail cannot forge a header field or a second extension.

use crate::AuditEntry;

/// One audit entry as a CEF line; `version` is the reporting product's version.
pub fn cef_line(e: &AuditEntry, version: &str) -> String {
    fn header(s: &str) -> String {
        s.replace('\\', "\\\\").replace('|', "\\|")
    }
    fn ext(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('=', "\\=")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    }
    let severity = if e.kind.contains("failed") || e.kind.contains("denied") {
        7
    } else {
        3
    };
    format!(
        "CEF:0|belay|belay|{}|{}|{}|{severity}|rt={} suser={} cs1Label=subject cs1={} cs2Label=hash cs2={} cn1Label=seq cn1={} msg={}",
        version,
        header(&e.kind),
        header(&e.kind),
        e.at,
        ext(&e.actor),
        ext(&e.subject),
        e.hash,
        e.seq,
        ext(&crate::audit::canonical_json(&e.detail)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cef_line_escapes_separators_so_no_field_can_be_forged() {
        let e = AuditEntry {
            seq: 4,
            at: 1_700_000_000_000,
            kind: "change|failed".into(),
            actor: "eve suser=admin".into(),
            subject: "run\\1".into(),
            detail: json!({"note": "a=b\nc"}),
            prev_hash: String::new(),
            hash: "ab12".into(),
        };
        assert_eq!(
            cef_line(&e, "9.9.9"),
            r#"CEF:0|belay|belay|9.9.9|change\|failed|change\|failed|7|rt=1700000000000 suser=eve suser\=admin cs1Label=subject cs1=run\\1 cs2Label=hash cs2=ab12 cn1Label=seq cn1=4 msg={"note":"a\=b\\nc"}"#
        );
    }
}
