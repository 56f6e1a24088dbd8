//! One raw RFC 5322 message → [`ParsedMessage`]: headers, addresses, bodies, links, attachments.
//!
//! MIME decoding (base64, charsets, RFC 2047 words) is mail-parser's, except quoted-printable
//! text bodies, which are decoded again by [`crate::qp`] (RFC 2045, soft breaks first). This
//! module decides what is a body and what is an attachment, and never fails on odd content:
//! only input that is not a message at all is an error. It works within a [`Budget`] of time
//! and of body bytes searched: past it, the message is still returned, marked
//! `parse_incomplete` with the reason, never stalled.

use crate::links::{Link, LinkSet};
use crate::received::{self, Hop};
use ipnet::IpNet;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{
    Address, Encoding, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Why a message could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The input is empty or only whitespace.
    #[error("the message is empty")]
    Empty,
    /// The input is longer than [`MAX_MESSAGE_BYTES`]; holds its length in bytes.
    #[error("the message is {0} bytes, more than the {MAX_MESSAGE_BYTES} accepted")]
    TooLarge(usize),
    /// The MIME parser found no header in the input.
    #[error("not an RFC 5322 message: no header could be read")]
    NotAMessage,
    /// The MIME parser panicked on the input (caught, so only this message is lost).
    #[error("the MIME parser failed on this message (a bug: please report it with the message)")]
    Internal,
}

/// Largest message accepted (the catalog's limit for `email.parse`'s input).
pub const MAX_MESSAGE_BYTES: usize = 25 << 20;
/// Longest text or HTML body kept in the output (the links come from the whole body).
const MAX_BODY_CHARS: usize = 1 << 20;

/// How to parse.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// When the message is a user's report with the suspect message attached (message/rfc822),
    /// parse the attached one and record the reporter.
    pub unwrap: bool,
    /// Networks of our own mail relays, skipped when looking for the originating IP.
    pub own_relays: Vec<IpNet>,
    /// What one message may cost.
    pub budget: Budget,
}

/// What parsing one message may cost. Past either limit the bodies left are not searched for
/// links, and the result says so in [`ParsedMessage::parse_incomplete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock time for searching the bodies (after MIME decoding).
    pub time: Duration,
    /// Decoded text and HTML body bytes searched for links, all parts together.
    pub body_bytes: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            time: Duration::from_secs(10),
            body_bytes: 64 << 20,
        }
    }
}

/// An attachment (or inline non-body part, e.g. an embedded image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// The file name given (Content-Disposition `filename`, or Content-Type `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The declared content type, lower-case (`application/pdf`).
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
    /// SHA-256 of the decoded content, lower-case hex.
    pub sha256: String,
    /// Shown inline (Content-Disposition `inline`, or an embedded image without one).
    pub inline: bool,
}

/// spf, dkim and dmarc results from the topmost Authentication-Results header (the one our
/// own receiving server added).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Authentication {
    /// The first `spf=` result, lower-case (`pass`, `fail`, `softfail`...); none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spf: Option<String>,
    /// The first `dkim=` result, lower-case; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dkim: Option<String>,
    /// The first `dmarc=` result, lower-case; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<String>,
}

/// What `email.parse` extracts from a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParsedMessage {
    /// The From address (lower-case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The From display name, decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// The domain of the From address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_domain: Option<String>,
    /// The first Reply-To address (lower-case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The Return-Path address (lower-case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_path: Option<String>,
    /// To and Cc addresses.
    pub recipients: Vec<String>,
    /// Who reported the message, when it was unwrapped from a report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter: Option<String>,
    /// The Subject header, decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The Message-ID header, as the MIME parser reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The Date header, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Every header in order, values decoded (RFC 2047) and unfolded.
    pub headers: Vec<(String, String)>,
    /// Received headers, newest first.
    pub received: Vec<Hop>,
    /// See [`crate::received`] for the rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originating_ip: Option<String>,
    /// Text bodies, decoded and joined (first megabyte).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// HTML bodies, decoded and joined (first megabyte).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Distinct normalized URLs of the message, in order of appearance.
    pub urls: Vec<String>,
    /// One entry per distinct (URL, link text), with its flags.
    pub links: Vec<Link>,
    /// Hosts of the URLs and their registrable domains, distinct.
    pub domains: Vec<String>,
    /// IP-literal URL hosts and the originating IP.
    pub ips: Vec<String>,
    /// Attachments and inline non-body parts in part order, those of nested messages (and the
    /// nested messages themselves) included.
    pub attachments: Vec<Attachment>,
    /// SHA-256 of the attachments, distinct.
    pub hashes: Vec<String>,
    /// SPF, DKIM and DMARC results from the topmost Authentication-Results header; all none
    /// when there is no such header.
    pub authentication: Authentication,
    /// Whether a reported message was unwrapped from its report.
    pub unwrapped: bool,
    /// Why the message was not searched to its end (a budget ran out), when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_incomplete: Option<String>,
}

/// Parses a raw message without unwrapping reports. See [`parse_with`].
pub fn parse(raw: &[u8]) -> Result<ParsedMessage, ParseError> {
    parse_with(raw, &ParseOptions::default())
}

/// Parses a raw RFC 5322 message.
pub fn parse_with(raw: &[u8], options: &ParseOptions) -> Result<ParsedMessage, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    if raw.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge(raw.len()));
    }
    // A panic in the MIME parser on hostile input must cost one message, not the ingest loop.
    // (The fuzz target still sees panics: libFuzzer aborts on them before any unwinding.)
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_checked(raw, options)))
        .unwrap_or(Err(ParseError::Internal))
}

fn parse_checked(raw: &[u8], options: &ParseOptions) -> Result<ParsedMessage, ParseError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NotAMessage)?;
    if message.headers().is_empty() {
        return Err(ParseError::NotAMessage);
    }
    if options.unwrap
        && let Some(inner) = attached_message(&message)
    {
        let reporter = first_address(message.from());
        let mut parsed = extract(inner, options);
        parsed.reporter = reporter;
        parsed.unwrapped = true;
        return Ok(parsed);
    }
    Ok(extract(&message, options))
}

/// The first message/rfc822 part attached to a report (one level: a report of a report is
/// not searched further).
fn attached_message<'a>(message: &'a Message<'a>) -> Option<&'a Message<'a>> {
    message.attachments.iter().find_map(|id| {
        let part = message.parts.get(*id as usize)?;
        match &part.body {
            PartType::Message(m) if !m.headers().is_empty() => Some(m),
            _ => None,
        }
    })
}

fn extract(message: &Message<'_>, options: &ParseOptions) -> ParsedMessage {
    let mut out = ParsedMessage {
        subject: message.subject().map(str::to_owned),
        message_id: message.message_id().map(str::to_owned),
        date: message.date().map(|d| d.to_rfc3339()),
        reply_to: first_address(message.reply_to()),
        return_path: message.return_address().map(str::to_ascii_lowercase),
        ..Default::default()
    };
    if let Some(from) = message.from().and_then(Address::first) {
        out.sender = from.address().map(str::to_ascii_lowercase);
        out.sender_name = from
            .name()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        out.sender_domain = out
            .sender
            .as_deref()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.trim_end_matches('>').to_owned())
            .filter(|d| !d.is_empty());
    }
    for addr in message.to().into_iter().chain(message.cc()) {
        for a in addr.iter() {
            if let Some(a) = a.address() {
                let a = a.to_ascii_lowercase();
                if !out.recipients.contains(&a) {
                    out.recipients.push(a);
                }
            }
        }
    }
    headers_and_hops(message, &mut out);
    out.originating_ip =
        received::originating_ip(&out.received, &options.own_relays).map(received::canonical);

    // Bodies and attachments, also of messages nested in this one (an inline forward): what
    // the recipient was shown. A part is an attachment when mail-parser filed it as one (a
    // disposition of attachment, a file name, or not text); the rest is the readable body.
    let mut bodies = Bodies {
        links: LinkSet::default(),
        text: String::new(),
        html: String::new(),
        deadline: Instant::now().checked_add(options.budget.time),
        bytes_left: options.budget.body_bytes,
        budget_bytes: options.budget.body_bytes,
        incomplete: None,
    };
    walk(message, 0, &mut bodies, &mut out.attachments);
    let Bodies {
        links,
        text,
        html,
        incomplete,
        ..
    } = bodies;
    out.parse_incomplete = incomplete;
    out.text = (!text.is_empty()).then_some(text);
    out.html = (!html.is_empty()).then_some(html);
    for l in &links.links {
        if !out.urls.contains(&l.url) {
            out.urls.push(l.url.clone());
        }
        if l.ip_literal {
            push_unique(&mut out.ips, l.host.clone());
        } else {
            push_unique(&mut out.domains, l.host.clone());
            if let Some(d) = &l.registrable_domain {
                push_unique(&mut out.domains, d.clone());
            }
        }
    }
    out.links = links.links;
    if let Some(ip) = &out.originating_ip {
        push_unique(&mut out.ips, ip.clone());
    }
    for a in &out.attachments {
        push_unique(&mut out.hashes, a.sha256.clone());
    }
    out
}

/// Nested messages deeper than this are kept as attachments but not opened.
const MAX_NESTING: usize = 8;

/// The readable bodies of a message, gathered part by part within the budget.
struct Bodies {
    links: LinkSet,
    text: String,
    html: String,
    deadline: Option<Instant>,
    bytes_left: usize,
    budget_bytes: usize,
    incomplete: Option<String>,
}

impl Bodies {
    /// Whether the body may be searched; records why not when a budget has run out.
    fn afford(&mut self, len: usize) -> bool {
        if self.incomplete.is_some() {
            return false;
        }
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            self.incomplete = Some("the time budget ran out before every body was read".into());
            return false;
        }
        if len > self.bytes_left {
            self.incomplete = Some(format!(
                "the bodies hold more than the {} bytes searched for links (the budget)",
                self.budget_bytes
            ));
            return false;
        }
        self.bytes_left -= len;
        true
    }

    fn add_text(&mut self, t: &str) {
        push_capped(&mut self.text, t);
        if self.afford(t.len()) {
            self.links.add_text(t);
        }
    }

    fn add_html(&mut self, h: &str) {
        push_capped(&mut self.html, h);
        if self.afford(h.len()) {
            let scan = self.links.add_html(h, self.deadline);
            if scan.stopped.is_some() {
                self.incomplete = scan.stopped;
            }
        }
    }
}

fn walk(
    message: &Message<'_>,
    depth: usize,
    bodies: &mut Bodies,
    attachments: &mut Vec<Attachment>,
) {
    let attachment_ids: HashSet<u32> = message.attachments.iter().copied().collect();
    for (i, part) in message.parts.iter().enumerate() {
        let is_attachment = u32::try_from(i).is_ok_and(|i| attachment_ids.contains(&i));
        match &part.body {
            PartType::Message(nested) => {
                attachments.push(attachment(part));
                if depth < MAX_NESTING {
                    walk(nested, depth + 1, bodies, attachments);
                }
            }
            _ if is_attachment => attachments.push(attachment(part)),
            PartType::Text(t) => {
                bodies.add_text(&redecoded(message, part).unwrap_or_else(|| t.clone()))
            }
            PartType::Html(h) => {
                bodies.add_html(&redecoded(message, part).unwrap_or_else(|| h.clone()))
            }
            PartType::Binary(_) | PartType::InlineBinary(_) => attachments.push(attachment(part)),
            PartType::Multipart(_) => {}
        }
    }
}

/// A quoted-printable text part decoded again from its raw bytes by [`crate::qp`], in its
/// declared charset (UTF-8 when none or unknown); `None` for other encodings.
fn redecoded<'a>(
    message: &Message<'_>,
    part: &mail_parser::MessagePart<'_>,
) -> Option<std::borrow::Cow<'a, str>> {
    // By the header: mail-parser gives up on some bodies it cannot decode (`=2=` before a soft
    // break) and keeps them raw, without their encoding.
    let qp = part.encoding == Encoding::QuotedPrintable
        || part
            .content_transfer_encoding()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("quoted-printable"));
    if !qp {
        return None;
    }
    let raw = message
        .raw_message()
        .get(part.offset_body as usize..part.offset_end as usize)?;
    let bytes = crate::qp::decode(raw);
    let decoder = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .and_then(|cs| charset_decoder(cs.as_bytes()));
    Some(std::borrow::Cow::Owned(match decoder {
        Some(decode) => decode(&bytes),
        None => String::from_utf8_lossy(&bytes).into_owned(),
    }))
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

fn push_capped(buf: &mut String, s: &str) {
    if buf.len() >= MAX_BODY_CHARS {
        return;
    }
    if !buf.is_empty() {
        buf.push('\n');
    }
    let room = MAX_BODY_CHARS - buf.len();
    let mut end = s.len().min(room);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.push_str(&s[..end]);
}

fn first_address(addr: Option<&Address<'_>>) -> Option<String> {
    addr.and_then(Address::first)
        .and_then(|a| a.address())
        .map(str::to_ascii_lowercase)
}

fn attachment(part: &mail_parser::MessagePart<'_>) -> Attachment {
    let bytes: &[u8] = match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.as_bytes(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b,
        PartType::Message(m) => m.raw_message(),
        PartType::Multipart(_) => &[],
    };
    let content_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_ascii_lowercase();
    let inline = match part.content_disposition() {
        Some(cd) => cd.ctype().eq_ignore_ascii_case("inline"),
        None => matches!(part.body, PartType::InlineBinary(_)),
    };
    Attachment {
        filename: part.attachment_name().map(|n| n.trim().to_owned()),
        content_type,
        size: bytes.len(),
        sha256: hex::encode(Sha256::digest(bytes)),
        inline,
    }
}

fn headers_and_hops(message: &Message<'_>, out: &mut ParsedMessage) {
    let raw = message.raw_message();
    let mut auth_seen = false;
    for h in message.headers() {
        let name = h.name().to_owned();
        let raw_value = raw
            .get(h.offset_start() as usize..h.offset_end() as usize)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let value = match h.value() {
            HeaderValue::Text(t) => t.to_string(),
            HeaderValue::TextList(l) => l.join(", "),
            HeaderValue::Address(a) => address_text(a, &raw_value),
            HeaderValue::DateTime(d) => d.to_rfc3339(),
            _ => unfold(&raw_value),
        };
        if matches!(h.name, HeaderName::Received) {
            let parsed = h.value().as_received();
            let from_ip = parsed
                .and_then(|r| r.from_ip())
                .or_else(|| received::bracketed_ip(&raw_value));
            out.received.push(Hop {
                from_host: parsed
                    .and_then(|r| r.from().or(r.helo()))
                    .map(|h| h.to_string()),
                from_ip,
                by: parsed.and_then(|r| r.by()).map(|h| h.to_string()),
            });
        } else if !auth_seen && name.eq_ignore_ascii_case("Authentication-Results") {
            auth_seen = true;
            out.authentication = authentication(&value);
        }
        out.headers.push((name, value));
    }
}

/// Decoded addresses as `Name <addr>`, comma-separated; the raw text when none parsed.
fn address_text(a: &Address<'_>, raw_value: &str) -> String {
    let items: Vec<String> = a
        .iter()
        .map(|x| match (x.name(), x.address()) {
            (Some(n), Some(ad)) => format!("{n} <{ad}>"),
            (None, Some(ad)) => ad.to_owned(),
            (Some(n), None) => n.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        unfold(raw_value)
    } else {
        items.join(", ")
    }
}

fn unfold(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `spf=pass`, `dkim=fail`, `dmarc=none`… from an Authentication-Results value.
fn authentication(value: &str) -> Authentication {
    let mut auth = Authentication::default();
    for token in value.split(|c: char| c == ';' || c.is_whitespace()) {
        let Some((method, result)) = token.split_once('=') else {
            continue;
        };
        let result = result
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_ascii_lowercase();
        let slot = match method.to_ascii_lowercase().as_str() {
            "spf" => &mut auth.spf,
            "dkim" => &mut auth.dkim,
            "dmarc" => &mut auth.dmarc,
            _ => continue,
        };
        if slot.is_none() && !result.is_empty() {
            *slot = Some(result);
        }
    }
    auth
}
