//! Feed parsers: bytes in a feed's native format to raw records.
//!
//! A parser only finds values and what the feed says they are; it hands each to a [`Sink`],
//! which normalizes, de-duplicates and counts. Parsers never panic on bad input: a line,
//! row or object they cannot read is reported to the sink as unsupported and skipped.

pub mod csv;
pub mod lines;
pub(crate) mod misp;
pub mod stix;

use crate::indicator::Kind;
use serde::Serialize;
use std::fmt;

/// Receives what a parser finds.
pub trait Sink {
    /// A value the feed lists, with the kind the feed gives it (if any) and the time after
    /// which the feed says it is no longer valid (milliseconds since the epoch).
    fn record(&mut self, value: &str, hint: Option<Kind>, valid_until: Option<i64>);
    /// Something the feed lists that belay cannot hold (a compound STIX pattern, a MISP
    /// attribute type without an indicator kind); `what` says which and why.
    fn unsupported(&mut self, what: String);
}

/// Collects everything a parser reports; for tests and fuzzing.
#[derive(Debug, Default)]
pub struct VecSink {
    /// Every [`Sink::record`] call's `(value, hint, valid_until)`, in order.
    pub records: Vec<(String, Option<Kind>, Option<i64>)>,
    /// Every [`Sink::unsupported`] call's text, in order.
    pub unsupported: Vec<String>,
}

impl Sink for VecSink {
    fn record(&mut self, value: &str, hint: Option<Kind>, valid_until: Option<i64>) {
        self.records.push((value.to_owned(), hint, valid_until));
    }
    fn unsupported(&mut self, what: String) {
        self.unsupported.push(what);
    }
}

/// A feed format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One value per line (IPsum's `IP<TAB>count` included); `#` and `;` start comments.
    Plain,
    /// CSV with a header row; see [`csv::CsvOptions`].
    Csv,
    /// FireHOL `.ipset`/`.netset`: IPs, CIDRs and `a-b` ranges, one per line.
    Ipset,
    /// A hosts file: `0.0.0.0 name` lines.
    Hosts,
    /// A STIX 2.x bundle, a TAXII envelope, or a single STIX object.
    Stix,
    /// A MISP event, or a MISP feed manifest (its events are fetched beside it).
    Misp,
}

impl Format {
    /// The format a name stands for (`plain`/`txt`/`text`, `csv`, `ipset`/`netset`, `hosts`,
    /// `stix`/`taxii`, `misp`); `None` for any other.
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "plain" | "txt" | "text" => Format::Plain,
            "csv" => Format::Csv,
            "ipset" | "netset" => Format::Ipset,
            "hosts" => Format::Hosts,
            "stix" | "taxii" => Format::Stix,
            "misp" => Format::Misp,
            _ => return None,
        })
    }

    /// The format's lower-case name, as serialized and stored with a feed.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Csv => "csv",
            Format::Ipset => "ipset",
            Format::Hosts => "hosts",
            Format::Stix => "stix",
            Format::Misp => "misp",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Guesses a feed's format from its name (file name or URL path) and first bytes.
pub fn detect(name: &str, bytes: &[u8]) -> Format {
    let lower = name.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or("");
    if path.ends_with(".ipset") || path.ends_with(".netset") {
        return Format::Ipset;
    }
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || (trimmed.starts_with('[') && !looks_like_lines(trimmed)) {
        // MISP events carry `"Event"`; manifests are maps of UUID to event summaries with
        // `"info"` and `"Orgc"`. Everything else JSON is read as STIX.
        if trimmed.contains("\"Event\"")
            || (trimmed.contains("\"Orgc\"") && trimmed.contains("\"info\""))
        {
            return Format::Misp;
        }
        return Format::Stix;
    }
    if path.ends_with(".csv") {
        return Format::Csv;
    }
    if path.ends_with("hosts") || path.ends_with("hosts.txt") {
        return Format::Hosts;
    }
    let data: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .take(20)
        .collect();
    if !data.is_empty()
        && data.iter().all(|l| {
            let mut it = l.split_whitespace();
            matches!(
                it.next(),
                Some("0.0.0.0" | "127.0.0.1" | "::" | "::1" | "0" | "::0")
            ) && it.next().is_some()
        })
    {
        return Format::Hosts;
    }
    if data.iter().filter(|l| l.contains(',')).count() * 2 > data.len().max(1) {
        return Format::Csv;
    }
    Format::Plain
}

/// A `[` that starts a plain line such as `[.]`-defanged text is not JSON.
fn looks_like_lines(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("");
    !(first.trim() == "["
        || first
            .trim_start_matches('[')
            .trim_start()
            .starts_with(['{', '"']))
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub(crate) fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_by_name_and_content() {
        assert_eq!(detect("x/feodo.ipset", b"1.2.3.4\n"), Format::Ipset);
        assert_eq!(
            detect("a.json", br#"{"type":"bundle","objects":[]}"#),
            Format::Stix
        );
        assert_eq!(
            detect("e.json", br#"{"Event":{"Attribute":[]}}"#),
            Format::Misp
        );
        assert_eq!(
            detect("manifest.json", br#"{"u":{"Orgc":{},"info":"x"}}"#),
            Format::Misp
        );
        assert_eq!(detect("f", b"# c\n0.0.0.0 evil.example\n"), Format::Hosts);
        assert_eq!(detect("f", b"id,url\n1,http://a.example/\n"), Format::Csv);
        assert_eq!(detect("f", b"1.2.3.4\t10\n5.6.7.8\t3\n"), Format::Plain);
        assert_eq!(detect("f", b"evil[.]example\n"), Format::Plain);
    }
}
