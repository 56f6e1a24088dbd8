//! Syslog messages: RFC 5424 and RFC 3164 headers, as real senders write them.
//!
//! Parsing is tolerant (missing PRI, odd date forms, no hostname, 8-bit text, a UTF-8 BOM) and
//! never panics. It fails when no header can be found at all, or when the header parser would
//! swallow text without finding a header field in it (a frame starting with `-`); the caller
//! then keeps the line as plain text (see [`crate::normalize`]), so nothing is dropped. A
//! message of NUL bytes is an error of its own ([`ParseError::OnlyNul`]), never "empty".

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// Which header form a message had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// BSD syslog (`<PRI>Mmm dd hh:mm:ss host tag: msg`), read as loosely as senders write it.
    #[serde(rename = "rfc3164")]
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`.
    #[serde(rename = "rfc5424")]
    Rfc5424,
}

/// One RFC 5424 structured-data element: `[id name="value" ...]`, values unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdElement {
    /// The SD-ID, e.g. `timeQuality` or `exampleSDID@32473`.
    pub id: String,
    /// Its parameters `(name, value)` in the order written.
    pub params: Vec<(String, String)>,
}

/// A parsed syslog message. Text fields are owned; `raw` is the whole input as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyslogMessage {
    /// The header form found.
    pub protocol: Protocol,
    /// The PRI value (`facility * 8 + severity`) when the message had one.
    pub pri: Option<u8>,
    /// Syslog facility name (`kern`, `auth`, `local4`…) when the message had a PRI.
    pub facility: Option<&'static str>,
    /// Syslog severity name (`emerg` … `debug`).
    pub severity: Option<&'static str>,
    /// The header's date in UTC (dates without a zone taken as UTC; year-less RFC 3164
    /// dates given a year, see [`parse_at`]); none when the header had no date.
    pub timestamp: Option<DateTime<Utc>>,
    /// The sending host as written; none when absent or `-`.
    pub hostname: Option<String>,
    /// The program (RFC 3164 tag, RFC 5424 APP-NAME).
    pub appname: Option<String>,
    /// The process id as written (RFC 3164 `tag[PID]`, RFC 5424 PROCID).
    pub procid: Option<String>,
    /// The RFC 5424 MSGID; none when absent or `-`.
    pub msgid: Option<String>,
    /// The RFC 5424 structured data; empty when nil or RFC 3164.
    pub structured_data: Vec<SdElement>,
    /// The free-text part, without a leading UTF-8 BOM.
    pub msg: String,
    /// The input as text (see `latin1`).
    pub raw: String,
    /// The input was not valid UTF-8 and was decoded as Latin-1, byte for byte.
    pub latin1: bool,
}

/// Why bytes are not a syslog message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace and line endings.
    #[error("empty message")]
    Empty,
    /// No header could be read (e.g. a bare `program: text` line).
    #[error("no RFC 5424 or RFC 3164 header found")]
    NoHeader,
    /// The parser found no header field but would have consumed leading text (a frame
    /// starting with `-`); holds that text, at most 64 characters.
    #[error("no header field found, and `{0}` before the message would be lost")]
    DroppedText(String),
    /// Only NUL bytes (and whitespace); holds the number of NUL bytes.
    #[error("the message is {0} NUL byte(s) and no text")]
    OnlyNul(usize),
}

/// Decodes bytes as UTF-8, or byte for byte as Latin-1 when they are not valid UTF-8
/// (8-bit syslog senders), so no byte is lost. The flag says which.
pub fn decode(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (bytes.iter().map(|&b| b as char).collect(), true),
    }
}

/// Parses one message, resolving year-less RFC 3164 dates against the current time.
pub fn parse(bytes: &[u8]) -> Result<SyslogMessage, ParseError> {
    parse_at(bytes, Utc::now())
}

/// Like [`parse`], with "now" given: a year-less date more than a month after `now` is taken
/// as last year's (a December line read in January). Dates without a zone are UTC.
pub fn parse_at(bytes: &[u8], now: DateTime<Utc>) -> Result<SyslogMessage, ParseError> {
    let (text, latin1) = decode(bytes);
    let body = text
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n', '\0']);
    if body.trim().is_empty() {
        let nuls = text.bytes().filter(|&b| b == 0).count();
        return Err(if nuls > 0 {
            ParseError::OnlyNul(nuls)
        } else {
            ParseError::Empty
        });
    }
    let year = now.year();
    let this_month = now.month();
    let get_year = move |(month, _day, _h, _m, _s): syslog_loose::IncompleteDate| {
        if month > this_month + 1 {
            year - 1
        } else {
            year
        }
    };
    let m = syslog_loose::parse_message_with_year_exact_tz(
        body,
        get_year,
        Some(Utc),
        syslog_loose::Variant::Either,
    )
    .map_err(|_| ParseError::NoHeader)?;
    let pri = match (m.facility, m.severity) {
        (Some(f), Some(s)) => Some(((f as u8) << 3) | s as u8),
        _ => None,
    };
    let protocol = match m.protocol {
        syslog_loose::Protocol::RFC3164 => Protocol::Rfc3164,
        syslog_loose::Protocol::RFC5424(_) => Protocol::Rfc5424,
    };
    let structured_data = m
        .structured_data
        .iter()
        .map(|e| SdElement {
            id: e.id.to_owned(),
            params: e.params().map(|(k, v)| (k.to_string(), v)).collect(),
        })
        .collect();
    // A header parser that found no field at all must not have eaten text: syslog_loose reads
    // a leading `-` as a nil timestamp, which would turn `-1 failed logins` into `1 failed…`.
    let no_field = m.facility.is_none()
        && m.timestamp.is_none()
        && m.hostname.is_none()
        && m.appname.is_none()
        && m.procid.is_none()
        && m.msgid.is_none()
        && m.structured_data.is_empty();
    if no_field && body.ends_with(m.msg) {
        let eaten = body[..body.len() - m.msg.len()].trim();
        if !eaten.is_empty() {
            return Err(ParseError::DroppedText(eaten.chars().take(64).collect()));
        }
    }
    // After an RFC 3164 header the same `-` is taken as an (RFC 5424) nil field: put it back.
    let mut msg = m.msg;
    if protocol == Protocol::Rfc3164 && body.ends_with(m.msg) {
        let before = body[..body.len() - m.msg.len()].trim_end_matches(' ');
        let standalone = before
            .strip_suffix('-')
            .is_some_and(|b| b.is_empty() || b.ends_with([' ', ':', ']']));
        if standalone {
            msg = &body[before.len() - 1..];
        }
    }
    let nil = |s: Option<&str>| s.filter(|s| !s.is_empty() && *s != "-").map(str::to_owned);
    Ok(SyslogMessage {
        protocol,
        pri,
        facility: m.facility.map(|f| f.as_str()),
        severity: m.severity.map(|s| s.as_str()),
        timestamp: m.timestamp.map(|t| t.with_timezone(&Utc)),
        hostname: nil(m.hostname),
        appname: nil(m.appname),
        procid: m.procid.as_ref().map(|p| p.to_string()),
        msgid: nil(m.msgid),
        structured_data,
        msg: msg.trim_start_matches('\u{feff}').to_owned(),
        raw: body.to_owned(),
        latin1,
    })
}

impl SyslogMessage {
    /// The header fields as a JSON object (for an event's `data`), without `raw`.
    pub fn header_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "protocol".into(),
            serde_json::to_value(self.protocol).unwrap_or(Value::Null),
        );
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("pri", self.pri.map(Value::from));
        put("facility", self.facility.map(Value::from));
        put("syslog_severity", self.severity.map(Value::from));
        put(
            "timestamp",
            self.timestamp.map(|t| Value::from(t.to_rfc3339())),
        );
        put("hostname", self.hostname.clone().map(Value::from));
        put("appname", self.appname.clone().map(Value::from));
        put("procid", self.procid.clone().map(Value::from));
        put("msgid", self.msgid.clone().map(Value::from));
        if !self.structured_data.is_empty() {
            let mut sd = Map::new();
            for e in &self.structured_data {
                let params: Map<String, Value> = e
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
                sd.insert(e.id.clone(), Value::Object(params));
            }
            m.insert("structured_data".into(), Value::Object(sd));
        }
        if self.latin1 {
            m.insert("latin1".into(), Value::Bool(true));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 7, 0, 0).unwrap()
    }

    #[test]
    fn rfc5424_with_structured_data_and_bom() {
        let line = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \u{feff}An application event log entry...";
        let m = parse_at(line.as_bytes(), now()).unwrap();
        assert_eq!(m.protocol, Protocol::Rfc5424);
        assert_eq!(m.pri, Some(165));
        assert_eq!(m.facility, Some("local4"));
        assert_eq!(m.severity, Some("notice"));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.appname.as_deref(), Some("evntslog"));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid.as_deref(), Some("ID47"));
        assert_eq!(m.structured_data[0].id, "exampleSDID@32473");
        assert_eq!(
            m.structured_data[0].params[2],
            ("eventID".into(), "1011".into())
        );
        assert_eq!(m.msg, "An application event log entry...");
        assert_eq!(
            m.timestamp.unwrap().to_rfc3339(),
            "2003-10-11T22:14:15.003+00:00"
        );
    }

    #[test]
    fn rfc3164_year_is_resolved_against_now() {
        let m = parse_at(
            b"<38>Mar 27 19:06:53 source_server sshd(pam_unix)[12750]: session opened",
            now(),
        )
        .unwrap();
        assert_eq!(m.protocol, Protocol::Rfc3164);
        assert_eq!(m.appname.as_deref(), Some("sshd(pam_unix)"));
        assert_eq!(m.procid.as_deref(), Some("12750"));
        assert_eq!(m.timestamp.unwrap().year(), 2026);
        let january = Utc.with_ymd_and_hms(2027, 1, 2, 0, 0, 0).unwrap();
        let m = parse_at(b"<38>Dec 31 23:59:59 h prog: late", january).unwrap();
        assert_eq!(
            m.timestamp.unwrap().year(),
            2026,
            "December read in January is last year"
        );
    }

    #[test]
    fn missing_pri_and_latin1_are_tolerated() {
        let m = parse_at(
            b"Dec  1 16:22:16 ip-10-0-0-220 gpasswd[3246]: user bart added",
            now(),
        )
        .unwrap();
        assert_eq!(m.pri, None);
        assert_eq!(m.hostname.as_deref(), Some("ip-10-0-0-220"));
        let m = parse_at(b"<6>Aug 10 22:18:24 host tag: caf\xe9", now()).unwrap();
        assert!(m.latin1);
        assert_eq!(m.msg, "caf\u{e9}");
    }

    #[test]
    fn empty_and_headerless_input_are_errors_not_panics() {
        assert_eq!(parse_at(b"", now()), Err(ParseError::Empty));
        assert_eq!(parse_at(b" \r\n", now()), Err(ParseError::Empty));
        assert_eq!(
            parse_at(
                b"arpwatch: new station 192.168.1.103 0:11:43:5e:5d:80 eth0",
                now()
            ),
            Err(ParseError::NoHeader)
        );
    }

    #[test]
    fn a_leading_dash_is_a_parse_error_not_a_lost_character() {
        let err = parse(b"-1 failed logins for root").unwrap_err();
        assert_eq!(err, ParseError::DroppedText("-".into()));
        // With a header, a message starting with `-` keeps it.
        let m = parse(b"<13>Oct 11 22:14:15 host app: -1 failed").unwrap();
        assert_eq!(m.msg, "-1 failed");
        let m = parse(b"<13>Oct 11 22:14:15 host app: - done").unwrap();
        assert_eq!(m.msg, "- done");
    }

    #[test]
    fn a_message_of_nul_bytes_is_an_error_of_its_own() {
        assert_eq!(parse(b"\0\0\0\0"), Err(ParseError::OnlyNul(4)));
        assert_eq!(parse(b"\0\0\r\n"), Err(ParseError::OnlyNul(2)));
        assert_eq!(parse(b" \r\n"), Err(ParseError::Empty));
    }
}
