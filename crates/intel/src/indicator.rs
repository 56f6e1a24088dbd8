//! Indicator kinds and their canonical forms.
//!
//! Every value enters the store through [`normalize`], so one indicator has one spelling:
//! IPs in their shortest standard form (IPv4-mapped IPv6 becomes IPv4), CIDRs truncated to
//! their network address (a /32 or /128 is an IP), domains lower-case ASCII (IDNA) without
//! a trailing dot, URLs parsed and re-serialized by the WHATWG rules without their fragment,
//! hashes lower-case hex, e-mail addresses with a normalized domain. Common defanging
//! (`hxxp`, `[.]`, `(.)`, `[:]`, `[@]`) is undone first.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// What an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An IPv4 or IPv6 address (a /32 or /128 network included).
    Ip,
    /// An IPv4 or IPv6 network, wider than one address.
    Cidr,
    /// A domain name.
    Domain,
    /// A URL.
    Url,
    /// A file hash: MD5, SHA-1, SHA-256 or SHA-512 hex digits.
    Hash,
    /// An e-mail address.
    Email,
}

impl Kind {
    /// The kind's lower-case name, as serialized and as [`Kind::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Cidr => "cidr",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Hash => "hash",
            Kind::Email => "email",
        }
    }

    /// The kind named by `name` (`ip`, `cidr`, `domain`, `url`, `hash`, `email`).
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "ip" => Kind::Ip,
            "cidr" => Kind::Cidr,
            "domain" => Kind::Domain,
            "url" => Kind::Url,
            "hash" => Kind::Hash,
            "email" => Kind::Email,
            _ => return None,
        })
    }

    /// The kind a feed's type label stands for (MISP attribute types, STIX object types,
    /// CSV type columns), case-insensitively; `None` for types belay does not keep.
    pub fn from_label(label: &str) -> Option<Kind> {
        let l = label.trim().to_ascii_lowercase();
        Some(match l.as_str() {
            "ip" | "ip-dst" | "ip-src" | "ipv4" | "ipv6" | "ipv4-addr" | "ipv6-addr"
            | "ip-addr" | "ip_address" | "ipaddress" | "address" => Kind::Ip,
            "cidr" | "net" | "netblock" | "network" | "subnet" => Kind::Cidr,
            "domain" | "hostname" | "domain-name" | "fqdn" | "host" => Kind::Domain,
            "url" | "uri" | "link" => Kind::Url,
            "md5" | "sha1" | "sha-1" | "sha256" | "sha-256" | "sha512" | "sha-512" | "hash"
            | "filehash" | "file-hash" => Kind::Hash,
            "email" | "email-src" | "email-dst" | "email-addr" | "e-mail" => Kind::Email,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Indicator {
    /// What the value is.
    pub kind: Kind,
    /// The canonical spelling (see the module docs); equal values are the same indicator.
    pub value: String,
}

/// Why a value is not an indicator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// Nothing left once whitespace and quotes are trimmed.
    #[error("empty value")]
    Empty,
    /// The value does not parse as the kind it was given as, or as the kind its form
    /// suggests (a `://` URL, an address with `@`).
    #[error("`{value}` is not a valid {kind}: {reason}")]
    Invalid {
        /// The value after refanging, cut to 80 bytes (with `…`) when longer.
        value: String,
        /// The kind it was expected to be.
        kind: Kind,
        /// What is wrong with it.
        reason: String,
    },
    /// Without a kind given, the value has the form of no indicator; also any value longer
    /// than [`MAX_VALUE_LEN`]. Holds the value, cut to 80 bytes (with `…`) when longer.
    #[error("`{0}` is not an IP address, network, domain, URL, hash or e-mail address")]
    Unrecognized(String),
}

/// Longest value accepted (URLs included); longer text is not an indicator.
pub const MAX_VALUE_LEN: usize = 4096;

/// Brings `raw` to its canonical form. With `hint`, the value must be of that kind (an IP
/// given as a `cidr`, or a `/32` given as an `ip`, is accepted as the other); without, the
/// kind is guessed from the value's form.
pub fn normalize(raw: &str, hint: Option<Kind>) -> Result<Indicator, NormalizeError> {
    let text = raw.trim().trim_matches(|c| c == '"' || c == '\'');
    let text = text.trim();
    if text.is_empty() {
        return Err(NormalizeError::Empty);
    }
    if text.len() > MAX_VALUE_LEN {
        return Err(NormalizeError::Unrecognized(shorten(text, SHOWN)));
    }
    let text = refang(text);
    match hint {
        Some(Kind::Ip | Kind::Cidr) => ip_or_cidr(&text).ok_or_else(|| invalid(&text, hint)),
        Some(Kind::Domain) => {
            // Hosts columns and `domain|ip` attributes sometimes hold an IP: keep it as one.
            if let Some(i) = ip_or_cidr(&text) {
                return Ok(i);
            }
            domain(&text).map_err(refused(&text, Kind::Domain))
        }
        Some(Kind::Url) => url(&text).map_err(refused(&text, Kind::Url)),
        Some(Kind::Hash) => hash(&text).ok_or_else(|| invalid(&text, hint)),
        Some(Kind::Email) => email(&text).map_err(refused(&text, Kind::Email)),
        None => guess(&text),
    }
}

fn guess(text: &str) -> Result<Indicator, NormalizeError> {
    if let Some(i) = ip_or_cidr(text) {
        return Ok(i);
    }
    if text.contains("://") {
        return url(text).map_err(refused(text, Kind::Url));
    }
    if let Some(h) = hash(text) {
        return Ok(h);
    }
    if text.contains('@') {
        return email(text).map_err(refused(text, Kind::Email));
    }
    if text.contains('.') && !text.contains(char::is_whitespace) {
        return domain(text).map_err(|_| NormalizeError::Unrecognized(shorten(text, SHOWN)));
    }
    Err(NormalizeError::Unrecognized(shorten(text, SHOWN)))
}

/// The error for `text` refused as a `kind`, for the reason given.
fn refused(text: &str, kind: Kind) -> impl FnOnce(String) -> NormalizeError {
    move |reason| NormalizeError::Invalid {
        value: shorten(text, SHOWN),
        kind,
        reason,
    }
}

fn invalid(text: &str, hint: Option<Kind>) -> NormalizeError {
    let kind = hint.unwrap_or(Kind::Domain);
    NormalizeError::Invalid {
        value: shorten(text, SHOWN),
        kind,
        reason: match kind {
            Kind::Ip | Kind::Cidr => "expected an IPv4/IPv6 address or network".into(),
            Kind::Hash => "expected 32, 40, 64 or 128 hexadecimal digits".into(),
            _ => "unexpected form".into(),
        },
    }
}

/// How much of a refused value its error shows, in bytes.
const SHOWN: usize = 80;

/// `text` cut to at most `max` bytes (on a character boundary), with `…` when it was cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Undoes the usual defanging of shared indicators.
fn refang(text: &str) -> String {
    let mut s = text.to_owned();
    if s.contains('[') || s.contains('(') || s.contains('{') {
        for (from, to) in [
            ("[.]", "."),
            ("(.)", "."),
            ("{.}", "."),
            ("[dot]", "."),
            ("(dot)", "."),
            ("[:]", ":"),
            ("[://]", "://"),
            ("[@]", "@"),
            ("[at]", "@"),
        ] {
            if s.contains(from) {
                s = s.replace(from, to);
            }
        }
    }
    let lower = s.get(..5).map(str::to_ascii_lowercase);
    if let Some(prefix) = lower {
        if prefix.starts_with("hxxp") {
            s.replace_range(..4, "http");
        } else if prefix.starts_with("fxp:") {
            s.replace_range(..3, "ftp");
        }
    }
    s
}

fn ip(addr: IpAddr) -> Indicator {
    let addr = match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    Indicator {
        kind: Kind::Ip,
        value: addr.to_string(),
    }
}

/// An IP, or a network truncated to its address (a full-length prefix is an IP).
fn ip_or_cidr(text: &str) -> Option<Indicator> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(ip(addr));
    }
    if !text.contains('/') {
        return None;
    }
    let net: IpNet = text.parse().ok()?;
    let net = match net {
        IpNet::V6(n) if n.addr().to_ipv4_mapped().is_some() && n.prefix_len() >= 96 => {
            let v4 = n.addr().to_ipv4_mapped()?;
            IpNet::V4(ipnet::Ipv4Net::new(v4, n.prefix_len() - 96).ok()?)
        }
        n => n,
    }
    .trunc();
    if net.prefix_len() == net.max_prefix_len() {
        return Some(ip(net.addr()));
    }
    Some(Indicator {
        kind: Kind::Cidr,
        value: net.to_string(),
    })
}

fn domain(text: &str) -> Result<Indicator, String> {
    let t = text.strip_suffix('.').unwrap_or(text);
    let t = t.strip_prefix("*.").unwrap_or(t);
    if t.is_empty() {
        return Err("empty name".into());
    }
    if t.contains(|c: char| c.is_whitespace() || "/\\:@?#[]<>\"'%,;|".contains(c)) {
        return Err("contains characters a host name cannot hold".into());
    }
    let ascii = idna::domain_to_ascii(t).map_err(|_| "not a valid internationalized name")?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err("a name has 1 to 253 characters".into());
    }
    for label in ascii.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label has 1 to 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "label `{label}` holds characters a host name cannot"
            ));
        }
    }
    if !ascii.contains('.') {
        return Err("a single label is not a domain".into());
    }
    // A name ending in a number is read as an IPv4 address by every URL parser (WHATWG), so
    // `300.1.1.1` is an invalid address, not a domain.
    if ascii.rsplit('.').next().is_some_and(numeric_label) {
        return Err("ends in a number, so it is an IPv4 address, and not a valid one".into());
    }
    Ok(Indicator {
        kind: Kind::Domain,
        value: ascii,
    })
}

/// A decimal, or `0x` hexadecimal, label (the forms WHATWG's IPv4 parser takes).
fn numeric_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn url(text: &str) -> Result<Indicator, String> {
    let text = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let mut u = url::Url::parse(&text).map_err(|e| e.to_string())?;
    if u.host().is_none() {
        return Err("no host".into());
    }
    u.set_fragment(None);
    Ok(Indicator {
        kind: Kind::Url,
        value: u.into(),
    })
}

fn hash(text: &str) -> Option<Indicator> {
    let ok =
        matches!(text.len(), 32 | 40 | 64 | 128) && text.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| Indicator {
        kind: Kind::Hash,
        value: text.to_ascii_lowercase(),
    })
}

fn email(text: &str) -> Result<Indicator, String> {
    let text = text.strip_prefix("mailto:").unwrap_or(text);
    let (local, host) = text.rsplit_once('@').ok_or("no `@`")?;
    if local.is_empty() || local.len() > 64 {
        return Err("the local part has 1 to 64 characters".into());
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c))
    {
        return Err("the local part holds characters it cannot".into());
    }
    let host = domain(host)?;
    Ok(Indicator {
        kind: Kind::Email,
        value: format!("{}@{}", local.to_lowercase(), host.value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> (Kind, String) {
        let i = normalize(s, None).unwrap_or_else(|e| panic!("{s}: {e}"));
        (i.kind, i.value)
    }

    #[test]
    fn ips_and_networks_have_one_spelling() {
        assert_eq!(n(" 192.0.2.1 "), (Kind::Ip, "192.0.2.1".into()));
        assert_eq!(n("2001:DB8:0:0::1"), (Kind::Ip, "2001:db8::1".into()));
        assert_eq!(n("::ffff:192.0.2.7"), (Kind::Ip, "192.0.2.7".into()));
        assert_eq!(n("10.1.2.3/8"), (Kind::Cidr, "10.0.0.0/8".into()));
        assert_eq!(n("192.0.2.9/32"), (Kind::Ip, "192.0.2.9".into()));
        assert_eq!(n("2001:db8::/32"), (Kind::Cidr, "2001:db8::/32".into()));
        assert!(normalize("300.1.1.1", Some(Kind::Ip)).is_err());
        assert!(normalize("10.0.0.0/33", None).is_err());
    }

    #[test]
    fn domains_are_lower_case_ascii() {
        for (raw, canonical) in [
            ("Evil.EXAMPLE.com.", "evil.example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("evil[.]example", "evil.example"),
        ] {
            assert_eq!(n(raw), (Kind::Domain, canonical.into()));
        }
        assert!(normalize("domain autuo.xicp.net", Some(Kind::Domain)).is_err());
        assert!(normalize("localhost", Some(Kind::Domain)).is_err());
    }

    #[test]
    fn urls_are_normalized() {
        for (raw, canonical) in [
            (
                "HTTP://Evil.Example:80/a/../b?x=1#frag",
                "http://evil.example/b?x=1",
            ),
            ("hxxps://evil[.]example/p", "https://evil.example/p"),
        ] {
            assert_eq!(n(raw), (Kind::Url, canonical.into()));
        }
        assert_eq!(
            normalize("evil.example/x", Some(Kind::Url)).map(|i| i.value),
            Ok("http://evil.example/x".into())
        );
    }

    #[test]
    fn hashes_and_emails() {
        for (raw, kind, canonical) in [
            (
                "001DD76872D80801692FF942308C64E6",
                Kind::Hash,
                "001dd76872d80801692ff942308c64e6",
            ),
            ("Alice@Evil.Example", Kind::Email, "alice@evil.example"),
        ] {
            assert_eq!(n(raw), (kind, canonical.into()));
        }
        assert!(normalize("abc", Some(Kind::Hash)).is_err());
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for s in ["", "   ", "hello", "a b.c", "\u{0}"] {
            assert!(normalize(s, None).is_err(), "{s:?}");
        }
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        assert!(normalize(&long, None).is_err());
    }
}
