//! STIX 2.0 and 2.1 indicators.
//!
//! Accepts a bundle, a TAXII 2.1 envelope (`{"objects": [...]}`), a bare array of objects or a
//! single object. Only `indicator` objects are read (observables such as a lone `ipv4-addr`
//! object are context, not indicators). An indicator's pattern is supported when it is a
//! disjunction of equality comparisons on a supported path, e.g.
//! `[ipv4-addr:value = '198.51.100.1' OR domain-name:value = 'evil.example']`: each compared
//! value is then an indicator of its own. Anything else (`AND`, `FOLLOWEDBY`, `MATCHES`,
//! `!=`, qualifiers, other paths, non-STIX pattern languages) is reported as unsupported, as
//! are revoked indicators. `valid_until` becomes the records' expiry. STIX 2.0 bundles
//! (no `pattern_type`) are read the same way.

use super::{Sink, rfc3339_ms};
use crate::indicator::{Kind, shorten};
use serde_json::Value;

/// Why a document is not STIX at all.
#[derive(Debug, thiserror::Error)]
pub enum StixError {
    /// The bytes are not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but none of the accepted shapes; holds what was found instead.
    #[error(
        "expected a STIX bundle, a TAXII envelope, an array of objects or an object, found {0}"
    )]
    Shape(&'static str),
}

/// Parses a STIX document.
pub fn parse_stix(bytes: &[u8], sink: &mut dyn Sink) -> Result<(), StixError> {
    let doc: Value = serde_json::from_slice(bytes)?;
    parse_value(&doc, sink)
}

/// Reads the indicators of an already parsed STIX document.
pub fn parse_value(doc: &Value, sink: &mut dyn Sink) -> Result<(), StixError> {
    let objects: &[Value] = match doc {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("objects") {
            Some(Value::Array(a)) => a,
            Some(Value::Null) | None
                if o.contains_key("more")
                    || o.get("type").and_then(Value::as_str) == Some("bundle") =>
            {
                &[]
            }
            Some(_) => return Err(StixError::Shape("an `objects` that is not an array")),
            None => std::slice::from_ref(doc),
        },
        _ => return Err(StixError::Shape("a JSON scalar")),
    };
    for obj in objects {
        indicator(obj, sink);
    }
    Ok(())
}

fn indicator(obj: &Value, sink: &mut dyn Sink) {
    if obj.get("type").and_then(Value::as_str) != Some("indicator") {
        return;
    }
    let id = obj.get("id").and_then(Value::as_str).unwrap_or("indicator");
    if obj.get("revoked").and_then(Value::as_bool) == Some(true) {
        sink.unsupported(format!("{id}: revoked"));
        return;
    }
    let language = obj
        .get("pattern_type")
        .and_then(Value::as_str)
        .unwrap_or("stix");
    if language != "stix" {
        sink.unsupported(format!("{id}: pattern language `{language}`"));
        return;
    }
    let Some(pattern) = obj.get("pattern").and_then(Value::as_str) else {
        sink.unsupported(format!("{id}: no pattern"));
        return;
    };
    let valid_until = obj
        .get("valid_until")
        .and_then(Value::as_str)
        .and_then(rfc3339_ms);
    match simple_pattern(pattern) {
        Ok(values) => {
            for (kind, value) in values {
                sink.record(&value, Some(kind), valid_until);
            }
        }
        Err(why) => sink.unsupported(format!("{id}: {why}: {}", shorten(pattern, 200))),
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Open,
    Close,
    LParen,
    RParen,
    Or,
    Eq,
    Path(String),
    Str(String),
    Other(String),
}

/// The values of a pattern that is a disjunction of supported equality comparisons.
pub fn simple_pattern(pattern: &str) -> Result<Vec<(Kind, String)>, String> {
    let tokens = tokenize(pattern)?;
    let mut out = Vec::new();
    let mut depth_square = 0i32;
    let mut depth_paren = 0i32;
    let mut i = 0;
    // Grammar accepted: brackets and parentheses anywhere they balance, `OR` between
    // comparisons or observations, and comparisons `PATH = 'STRING'`.
    while i < tokens.len() {
        match &tokens[i] {
            Token::Open => depth_square += 1,
            Token::Close => depth_square -= 1,
            Token::LParen => depth_paren += 1,
            Token::RParen => depth_paren -= 1,
            Token::Or => {}
            Token::Path(path) => {
                if depth_square != 1 {
                    return Err("comparison outside an observation".into());
                }
                match (tokens.get(i + 1), tokens.get(i + 2)) {
                    (Some(Token::Eq), Some(Token::Str(value))) => {
                        let kind = path_kind(path)
                            .ok_or_else(|| format!("unsupported object path `{path}`"))?;
                        out.push((kind, value.clone()));
                        i += 3;
                        continue;
                    }
                    (Some(Token::Other(op)), _) => {
                        return Err(format!("unsupported operator `{op}`"));
                    }
                    _ => return Err(format!("`{path}` is not compared to a string")),
                }
            }
            Token::Eq | Token::Str(_) => return Err("malformed comparison".into()),
            Token::Other(word) => return Err(format!("unsupported `{word}`")),
        }
        if depth_square < 0 || depth_paren < 0 || depth_square > 1 {
            return Err("unbalanced brackets".into());
        }
        i += 1;
    }
    if depth_square != 0 || depth_paren != 0 {
        return Err("unbalanced brackets".into());
    }
    if out.is_empty() {
        return Err("no comparison".into());
    }
    // `OR` must separate every two comparisons: a missing one means something we did not read.
    let ors = tokens.iter().filter(|t| **t == Token::Or).count();
    if ors + 1 != out.len() {
        return Err("comparisons not joined by OR".into());
    }
    Ok(out)
}

fn path_kind(path: &str) -> Option<Kind> {
    let (object, property) = path.split_once(':')?;
    match (object, property) {
        ("ipv4-addr" | "ipv6-addr", "value") => Some(Kind::Ip),
        ("domain-name", "value") => Some(Kind::Domain),
        ("url", "value") => Some(Kind::Url),
        ("email-addr", "value") | ("email-message", "from_ref.value" | "sender_ref.value") => {
            Some(Kind::Email)
        }
        ("file" | "artifact", p) => {
            let algo = p.strip_prefix("hashes.")?.trim_matches('\'');
            matches!(
                algo.to_ascii_uppercase().replace('-', "").as_str(),
                "MD5" | "SHA1" | "SHA256" | "SHA512"
            )
            .then_some(Kind::Hash)
        }
        _ => None,
    }
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '[' | ']' | '(' | ')' | '=' => {
                out.push(match c {
                    '[' => Token::Open,
                    ']' => Token::Close,
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    _ => Token::Eq,
                });
                i += 1;
            }
            '\'' => {
                let (lit, next) = string(&chars, i + 1)?;
                out.push(Token::Str(lit));
                i = next;
            }
            '!' | '<' | '>' => {
                let mut op = c.to_string();
                if chars.get(i + 1) == Some(&'=') {
                    op.push('=');
                    i += 1;
                }
                out.push(Token::Other(op));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                let mut path = String::new();
                while i < chars.len() {
                    let c = chars[i];
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.') {
                        path.push(c);
                        i += 1;
                    } else if c == '\'' && i > start && chars[i - 1] == '.' {
                        // A quoted path step: `hashes.'SHA-256'`.
                        let (lit, next) = string(&chars, i + 1)?;
                        path.push('\'');
                        path.push_str(&lit);
                        path.push('\'');
                        i = next;
                    } else if c == '[' && path.contains(':') {
                        // A list index step: `body_multipart[*]`, `values[0]`.
                        let end = chars[i..]
                            .iter()
                            .position(|&c| c == ']')
                            .ok_or("unclosed list index")?;
                        path.extend(&chars[i..=i + end]);
                        i += end + 1;
                    } else {
                        break;
                    }
                }
                if path.contains(':') {
                    out.push(Token::Path(path));
                } else if path == "OR" {
                    out.push(Token::Or);
                } else {
                    out.push(Token::Other(path));
                }
            }
            other => {
                // Timestamps `t'...'`, binary `b'...'`, numbers and other operators.
                out.push(Token::Other(other.to_string()));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A string literal starting after its opening quote: `\'` and `\\` are escapes.
fn string(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    let mut lit = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let next = *chars.get(i + 1).ok_or("unterminated string")?;
                lit.push(next);
                i += 2;
            }
            '\'' => return Ok((lit, i + 1)),
            c => {
                lit.push(c);
                i += 1;
            }
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::VecSink;

    #[test]
    fn simple_patterns_yield_their_values() {
        assert_eq!(
            simple_pattern("[ ipv4-addr:value = '10.0.0.0' ]").unwrap(),
            vec![(Kind::Ip, "10.0.0.0".into())]
        );
        assert_eq!(
            simple_pattern("[file:hashes.'SHA-256' = 'ef53']").unwrap(),
            vec![(Kind::Hash, "ef53".into())]
        );
        assert_eq!(
            simple_pattern("[file:hashes.md5 = 'aa']").unwrap(),
            vec![(Kind::Hash, "aa".into())]
        );
        assert_eq!(
            simple_pattern("[domain-name:value = 'a.example' OR ipv4-addr:value = '1.2.3.4']")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            simple_pattern("[url:value = 'http://x/it''s'] OR [email-addr:value = 'a@b.example']")
                .map(|v| v.len()),
            Err("malformed comparison".into())
        );
        assert_eq!(
            simple_pattern("[url:value = 'http://x/a\\'b'] OR [email-addr:value = 'a@b.example']")
                .unwrap(),
            vec![
                (Kind::Url, "http://x/a'b".into()),
                (Kind::Email, "a@b.example".into())
            ]
        );
    }

    #[test]
    fn compound_and_other_patterns_are_unsupported() {
        for p in [
            "[x509-certificate:issuer = 'CN=WEBMAIL' AND x509-certificate:serial_number = '4c']",
            "[email-message:subject MATCHES '^[IMPORTANT] Please']",
            "[email-message:body_multipart[*].body_raw_ref.name MATCHES '^Final Report.+\\\\.exe$']",
            "[ipv4-addr:value != '1.2.3.4']",
            "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '5.6.7.8']",
            "[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS",
            "[file:name = 'CBricksDoc']",
            "[ipv4-addr:value = '1.2.3.4'",
            "ipv4-addr:value = '1.2.3.4'",
            "[ipv4-addr:value = 'unterminated]",
            "[]",
            "[[ipv4-addr:value = '1.2.3.4']]",
        ] {
            assert!(simple_pattern(p).is_err(), "{p}");
        }
    }

    #[test]
    fn bundles_envelopes_and_revocation() {
        let doc = br#"{"more":false,"objects":[
          {"type":"indicator","id":"indicator--1","pattern_type":"stix","pattern":"[ipv4-addr:value = '192.0.2.1']","valid_until":"2030-01-01T00:00:00Z"},
          {"type":"indicator","id":"indicator--2","pattern_type":"stix","revoked":true,"pattern":"[ipv4-addr:value = '192.0.2.2']"},
          {"type":"indicator","id":"indicator--3","pattern_type":"sigma","pattern":"x"},
          {"type":"malware","id":"malware--1"}]}"#;
        let mut s = VecSink::default();
        parse_stix(doc, &mut s).unwrap();
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.records[0].2, Some(1_893_456_000_000));
        assert_eq!(s.unsupported.len(), 2);
        assert!(parse_stix(b"42", &mut s).is_err());
        assert!(parse_stix(b"{\"objects\":3}", &mut s).is_err());
    }
}
