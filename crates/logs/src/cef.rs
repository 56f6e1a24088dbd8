//! ArcSight Common Event Format: `CEF:Version|Vendor|Product|Version|SignatureID|Name|Severity|Extension`.
//!
//! Header fields unescape `\|` and `\\`; extension values unescape `\=`, `\\`, `\n` and `\r`, may
//! contain spaces and unescaped `=` (a value ends where the next ` key=` starts). Accepts the
//! non-standard `CEF: 0|` (space after the colon) and empty vendor/product fields. Linear in the
//! input; never panics.

use serde::Serialize;

/// A parsed CEF record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CefEvent {
    /// The CEF version after `CEF:` (`0` or `1`), spaces trimmed.
    pub version: String,
    /// Device Vendor, unescaped.
    pub vendor: String,
    /// Device Product, unescaped.
    pub product: String,
    /// Device Version, unescaped.
    pub device_version: String,
    /// Device Event Class ID.
    pub signature_id: String,
    /// The human-readable event name, unescaped.
    pub name: String,
    /// As written: `0`–`10`, or `Low`/`Medium`/`High`/`Very-High` (some vendors write others).
    pub severity: String,
    /// Extension pairs in their order, values unescaped.
    pub extensions: Vec<(String, String)>,
}

/// Why text is not a CEF record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CefError {
    /// The text (leading spaces aside) does not start with `CEF:`.
    #[error("no `CEF:` marker")]
    NoMarker,
    /// The header has fewer than 7 fields; holds how many it has.
    #[error("CEF header has {0} of its 7 `|`-separated fields")]
    ShortHeader(usize),
}

/// Where a CEF record starts in a line (after a syslog header, say): the byte offset of `CEF:`
/// followed by optional spaces, digits and `|`.
pub fn locate(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(pos) = line.get(from..).and_then(|s| s.find("CEF:")) {
        let start = from + pos;
        let mut i = start + 4;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let digits = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i > digits && bytes.get(i) == Some(&b'|') {
            return Some(start);
        }
        from = start + 4;
    }
    None
}

impl CefEvent {
    /// The first value of an extension key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a custom field by its label: `cs1` for `cs1Label=appName`, asked as `appName`.
    pub fn labeled(&self, label: &str) -> Option<&str> {
        let (k, _) = self
            .extensions
            .iter()
            .find(|(k, v)| k.ends_with("Label") && v == label)?;
        self.get(k.strip_suffix("Label")?)
    }
}

/// Parses text starting with `CEF:` (leading spaces allowed).
pub fn parse(text: &str) -> Result<CefEvent, CefError> {
    let text = text.trim_start();
    let rest = text.strip_prefix("CEF:").ok_or(CefError::NoMarker)?;
    let rest = rest.trim_start_matches(' ');
    let mut fields: Vec<String> = Vec::with_capacity(7);
    let mut cur = String::new();
    let mut chars = rest.char_indices();
    let mut ext_start = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n @ ('|' | '\\'))) => cur.push(n),
                Some((_, n)) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut cur));
                if fields.len() == 7 {
                    ext_start = Some(i + 1);
                    break;
                }
            }
            _ => cur.push(c),
        }
    }
    let Some(ext_start) = ext_start else {
        // A record without the final `|` but with all seven header fields still counts.
        if fields.len() == 6 {
            fields.push(cur);
            return Ok(build(fields, Vec::new()));
        }
        return Err(CefError::ShortHeader(
            fields.len() + usize::from(!cur.is_empty()),
        ));
    };
    let extensions = parse_extensions(rest.get(ext_start..).unwrap_or(""));
    Ok(build(fields, extensions))
}

fn build(mut f: Vec<String>, extensions: Vec<(String, String)>) -> CefEvent {
    let mut next = || {
        if f.is_empty() {
            String::new()
        } else {
            f.remove(0)
        }
    };
    CefEvent {
        version: next().trim().to_owned(),
        vendor: next(),
        product: next(),
        device_version: next(),
        signature_id: next(),
        name: next(),
        severity: next().trim().to_owned(),
        extensions,
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']')
}

/// Length of a `key=` starting at `i` (key bytes then `=`), if there is one.
fn key_at(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < bytes.len() && is_key_byte(bytes[j]) {
        j += 1;
    }
    (j > i && bytes.get(j) == Some(&b'=')).then_some(j - i)
}

/// Splits `k1=v1 k2=v two k3=` into pairs. Text before the first key is ignored.
fn parse_extensions(ext: &str) -> Vec<(String, String)> {
    let bytes = ext.as_bytes();
    // Byte offsets where a key starts: at 0 or after a space, and not after a backslash-escaped `=`.
    let mut starts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if (i == 0 || bytes[i - 1] == b' ')
            && let Some(len) = key_at(bytes, i)
        {
            starts.push((i, len));
            i += len + 1;
            continue;
        }
        i += 1;
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, &(start, len)) in starts.iter().enumerate() {
        let key = &ext[start..start + len];
        let value_start = start + len + 1;
        let value_end = starts.get(n + 1).map_or(bytes.len(), |&(next, _)| next);
        let raw = ext.get(value_start..value_end).unwrap_or("");
        // Separating spaces belong to no value; trailing spaces of the last value are noise too.
        out.push((key.to_owned(), unescape_value(raw.trim_end_matches(' '))));
    }
    out
}

fn unescape_value(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('=') => out.push('='),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escapes_and_extension_values_with_spaces() {
        let e = parse(r"CEF:0|Ven\|dor|Prod\\uct|1.0|100|Name with spaces|7|src=10.0.0.1 msg=a b\=c d requestClientApplication=Mozilla/5.0 (X11; Linux) cs1=x\\y").unwrap();
        assert_eq!(e.vendor, "Ven|dor");
        assert_eq!(e.product, r"Prod\uct");
        assert_eq!(e.name, "Name with spaces");
        assert_eq!(e.severity, "7");
        assert_eq!(e.get("src"), Some("10.0.0.1"));
        assert_eq!(e.get("msg"), Some("a b=c d"));
        assert_eq!(
            e.get("requestClientApplication"),
            Some("Mozilla/5.0 (X11; Linux)")
        );
        assert_eq!(e.get("cs1"), Some(r"x\y"));
    }

    #[test]
    fn non_standard_space_empty_fields_and_unescaped_equals() {
        let e =
            parse("CEF: 0|BarracudaNetworks|WAAS|BNWAS-1.0|WAF|WAF|4| cat=TR msg=lang=en a= b=2")
                .unwrap();
        assert_eq!(e.version, "0");
        assert_eq!(e.get("cat"), Some("TR"));
        assert_eq!(e.get("msg"), Some("lang=en"));
        assert_eq!(e.get("a"), Some(""));
        assert_eq!(e.get("b"), Some("2"));
        let e =
            parse("CEF:0||||N/A|URL Access Violation|Substantial|cs1=My App 1 cs1Label=appName")
                .unwrap();
        assert_eq!((e.vendor.as_str(), e.product.as_str()), ("", ""));
        assert_eq!(e.signature_id, "N/A");
        assert_eq!(e.labeled("appName"), Some("My App 1"));
    }

    #[test]
    fn locate_finds_the_record_after_a_syslog_header() {
        let line = "Aug  3 10:49:35 Barracuda CEF: 0|BarracudaNetworks|WAAS|1|WAF|WAF|4| cat=TR";
        let at = locate(line).unwrap();
        assert!(line[at..].starts_with("CEF: 0|"));
        assert_eq!(locate("no CEF:here"), None);
    }

    #[test]
    fn short_headers_are_errors() {
        assert_eq!(parse("CEF:0|a|b"), Err(CefError::ShortHeader(3)));
        assert_eq!(parse("hello"), Err(CefError::NoMarker));
        assert!(parse("CEF:0|a|b|c|d|e|f").is_ok());
    }
}
