//! A reported message → a `phishing.reported` event, with a suspicion score and a severity.
//!
//! **Suspicion score.** The sum of the weights of the indicators found (each counted once):
//!
//! | indicator | weight | when |
//! |---|---|---|
//! | `link_text_mismatch` | 3 | a link's text names a host of another registrable domain |
//! | `ip_url` | 3 | a URL's host is an IP address |
//! | `userinfo_url` | 3 | a URL has a user part (`https://bank.com@evil.example/`) |
//! | `html_attachment` | 3 | an HTML/SVG attachment (credential forms that run locally) |
//! | `risky_attachment` | 3 | an executable, script, disk image, shortcut or configuration profile |
//! | `punycode_url` | 2 | a URL's host has a punycode label |
//! | `shortener_url` | 2 | a URL goes through a known shortener |
//! | `archive_attachment` | 2 | a zip/rar/7z/gz attachment |
//! | `reply_to_elsewhere` | 2 | Reply-To is in another registrable domain than From |
//! | `auth_failed` | 2 | spf, dkim or dmarc failed (Authentication-Results) |
//! | `lookalike_subject` | 2 | a subject word mixes Latin with Cyrillic or Greek letters, or has combining marks |
//! | `display_name_address` | 2 | the From display name holds an address of another domain |
//! | `sender_invalid` | 2 | From has no address, or its domain has no known public suffix |
//! | `unauthenticated` | 1 | Authentication-Results has spf/dkim/dmarc, none passed, none failed |
//! | `document_attachment` | 1 | a PDF or Office document |
//! | `links` | 1 | the message has at least one URL |
//!
//! **Severity.** high at a score of 6 or more, medium from 2, low below. A report is a person's
//! judgement, so even a low one is an event worth a playbook.

use crate::links::registrable;
use crate::message::ParsedMessage;
use base64::Engine as _;
use belay_model::{Event, Observables, Severity};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The event kind of a reported message.
pub const EVENT_KIND: &str = "phishing.reported";

/// The suspicion score and what made it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Suspicion {
    /// The sum of the weights of the indicators found; 0 when none.
    pub score: u32,
    /// The names of the indicators found (`ip_url`...), in the order of the table above.
    pub indicators: Vec<&'static str>,
}

/// Scores a parsed message by the table above.
pub fn suspicion(m: &ParsedMessage) -> Suspicion {
    let mut s = Suspicion::default();
    let mut add = |hit: bool, name: &'static str, weight: u32| {
        if hit {
            s.score += weight;
            s.indicators.push(name);
        }
    };
    add(
        m.links.iter().any(|l| l.text_mismatch),
        "link_text_mismatch",
        3,
    );
    add(m.links.iter().any(|l| l.ip_literal), "ip_url", 3);
    add(m.links.iter().any(|l| l.userinfo), "userinfo_url", 3);
    let kinds: Vec<AttachmentKind> = m
        .attachments
        .iter()
        .map(|a| attachment_kind(a.filename.as_deref(), &a.content_type))
        .collect();
    add(kinds.contains(&AttachmentKind::Html), "html_attachment", 3);
    add(
        kinds.contains(&AttachmentKind::Risky),
        "risky_attachment",
        3,
    );
    add(m.links.iter().any(|l| l.punycode), "punycode_url", 2);
    add(m.links.iter().any(|l| l.shortener), "shortener_url", 2);
    add(
        kinds.contains(&AttachmentKind::Archive),
        "archive_attachment",
        2,
    );
    let reply_elsewhere = match (&m.reply_to, &m.sender_domain) {
        (Some(r), Some(from)) => r
            .rsplit_once('@')
            .map(|(_, d)| base_domain(d) != base_domain(from))
            .unwrap_or(false),
        _ => false,
    };
    add(reply_elsewhere, "reply_to_elsewhere", 2);
    let a = &m.authentication;
    let failed = [&a.spf, &a.dkim, &a.dmarc].iter().any(|r| {
        r.as_deref()
            .is_some_and(|r| matches!(r, "fail" | "softfail" | "permerror"))
    });
    add(failed, "auth_failed", 2);
    add(
        m.subject.as_deref().is_some_and(lookalike),
        "lookalike_subject",
        2,
    );
    let display_addr = match (&m.sender_name, &m.sender_domain) {
        (Some(name), Some(from)) => name.split_whitespace().any(|w| {
            w.trim_matches(|c: char| "<>()\"'[],;".contains(c))
                .rsplit_once('@')
                .is_some_and(|(_, d)| d.contains('.') && base_domain(d) != base_domain(from))
        }),
        _ => false,
    };
    add(display_addr, "display_name_address", 2);
    let sender_ok = m.sender_domain.as_deref().is_some_and(|d| {
        d.contains('.') && psl::suffix(d.as_bytes()).is_some_and(|s| s.is_known())
    });
    add(!sender_ok, "sender_invalid", 2);
    let passed = [&a.spf, &a.dkim, &a.dmarc]
        .iter()
        .any(|r| r.as_deref() == Some("pass"));
    let checked = a.spf.is_some() || a.dkim.is_some() || a.dmarc.is_some();
    add(checked && !passed && !failed, "unauthenticated", 1);
    add(
        kinds.contains(&AttachmentKind::Document),
        "document_attachment",
        1,
    );
    add(!m.urls.is_empty(), "links", 1);
    s
}

/// The severity for a score, by the rule above.
pub fn severity(score: u32) -> Severity {
    match score {
        6.. => Severity::High,
        2.. => Severity::Medium,
        _ => Severity::Low,
    }
}

fn base_domain(d: &str) -> String {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    registrable(&d, false).unwrap_or(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttachmentKind {
    Html,
    Risky,
    Archive,
    Document,
    Other,
}

fn attachment_kind(filename: Option<&str>, content_type: &str) -> AttachmentKind {
    let ext = filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "htm" | "html" | "shtml" | "xhtml" | "svg" | "mht" | "mhtml" => AttachmentKind::Html,
        "exe" | "scr" | "com" | "pif" | "bat" | "cmd" | "js" | "jse" | "vbs" | "vbe" | "wsf"
        | "ps1" | "hta" | "jar" | "msi" | "lnk" | "iso" | "img" | "vhd" | "one"
        | "mobileconfig" | "reg" | "dll" | "cpl" => AttachmentKind::Risky,
        "zip" | "rar" | "7z" | "gz" | "tgz" | "tar" | "cab" | "ace" => AttachmentKind::Archive,
        "pdf" | "doc" | "docx" | "docm" | "xls" | "xlsx" | "xlsm" | "ppt" | "pptx" | "pptm"
        | "rtf" => AttachmentKind::Document,
        _ => match content_type {
            "text/html" | "image/svg+xml" => AttachmentKind::Html,
            "application/x-msdownload"
            | "application/x-msdos-program"
            | "application/java-archive"
            | "application/hta" => AttachmentKind::Risky,
            "application/zip"
            | "application/x-rar-compressed"
            | "application/x-7z-compressed"
            | "application/gzip" => AttachmentKind::Archive,
            "application/pdf" | "application/msword" => AttachmentKind::Document,
            _ => AttachmentKind::Other,
        },
    }
}

/// A word that mixes ASCII letters with letters of a confusable script (Greek, Cyrillic,
/// Armenian, Cherokee: "Amаzon" with a Cyrillic а), or any word with combining marks between
/// its letters ("Aܿmܿaܿzܿoܿn", used to break up words that filters look for).
fn lookalike(subject: &str) -> bool {
    let confusable = |c: char| matches!(c as u32, 0x0370..=0x03FF | 0x0400..=0x052F | 0x0530..=0x058F | 0x13A0..=0x13FF);
    let combining = |c: char| {
        matches!(c as u32,
            0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05C7 | 0x0610..=0x061A
            | 0x064B..=0x065F | 0x0711 | 0x0730..=0x074A | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF
            | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
    };
    subject
        .split(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
        .any(|w| {
            let ascii = w.chars().any(|c| c.is_ascii_alphabetic());
            ascii && w.chars().any(|c| confusable(c) || combining(c))
        })
}

/// The event id of a raw message: the same bytes always give the same id, so a message read
/// twice (e.g. after a crash before it was moved) is acknowledged as a duplicate, not run again.
pub fn event_id(raw: &[u8]) -> String {
    format!("email-{}", hex::encode(Sha256::digest(raw)))
}

/// The raw message as the event keeps it: text when it is UTF-8, else base64.
pub fn message_field(raw: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(raw) {
        Ok(text) => (Value::String(text.to_owned()), "text"),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
            "base64",
        ),
    }
}

/// The `phishing.reported` event of a reported message.
///
/// `data` holds `message` (the raw message, re-parsable with `email.parse` as
/// `message: ${{ event.data.message }}`, `encoding: ${{ event.data.message_encoding }}`),
/// `message_encoding` (`text` or `base64`), `summary` (the parse output without the bodies)
/// and `suspicion`.
pub fn to_event(raw: &[u8], parsed: &ParsedMessage, source: &str) -> Event {
    let suspicion = suspicion(parsed);
    let mut emails = Vec::new();
    for a in [&parsed.sender, &parsed.reply_to].into_iter().flatten() {
        if !emails.contains(a) {
            emails.push(a.clone());
        }
    }
    let mut summary = serde_json::to_value(parsed).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut summary {
        map.remove("text");
        map.remove("html");
    }
    let (message, encoding) = message_field(raw);
    Event {
        id: event_id(raw),
        kind: EVENT_KIND.into(),
        source: source
            .chars()
            .filter(|c| !c.is_control())
            .take(256)
            .collect(),
        time: chrono::Utc::now(),
        severity: severity(suspicion.score),
        observables: Observables {
            emails,
            urls: parsed.urls.clone(),
            domains: parsed.domains.clone(),
            ips: parsed.ips.clone(),
            hashes: parsed.hashes.clone(),
            ..Default::default()
        },
        data: json!({
            "message": message,
            "message_encoding": encoding,
            "summary": summary,
            "suspicion": suspicion,
            // Why the message was not searched to its end; null when it was.
            "parse_incomplete": parsed.parse_incomplete,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalike_subjects_are_caught_and_plain_ones_are_not() {
        assert!(lookalike("Your Am\u{430}zon order"));
        assert!(lookalike("Acc\u{301}ount"));
        assert!(lookalike("A\u{73f}m\u{73f}a\u{73f}z\u{73f}o\u{73f}n"));
        assert!(
            !lookalike("Gmail\u{30a2}\u{30ab}\u{30a6}\u{30f3}\u{30c8}"),
            "Japanese next to ASCII"
        );
        assert!(!lookalike("Amazon\u{2122} order"));
        assert!(!lookalike("Ваш заказ (order 42)"));
        assert!(!lookalike("Plain subject"));
    }

    #[test]
    fn severity_follows_the_score() {
        assert_eq!(severity(0), Severity::Low);
        assert_eq!(severity(2), Severity::Medium);
        assert_eq!(severity(6), Severity::High);
    }

    #[test]
    fn attachments_are_classed_by_name_then_type() {
        assert_eq!(
            attachment_kind(Some("Email.htm"), "text/htm"),
            AttachmentKind::Html
        );
        assert_eq!(
            attachment_kind(Some("x.PDF"), "image/jpeg"),
            AttachmentKind::Document
        );
        assert_eq!(attachment_kind(None, "text/html"), AttachmentKind::Html);
        assert_eq!(
            attachment_kind(Some("a.jpg"), "image/jpeg"),
            AttachmentKind::Other
        );
    }
}
