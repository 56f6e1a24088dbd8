//! One URL parsed, normalized and classified: its host, registrable domain and warning signs.

use super::text::has_scheme;
use super::{Link, LinkSource, MAX_URL_LEN, refang};
use std::borrow::Cow;
use std::net::IpAddr;

/// URL shortener hosts (a link through one hides where it goes).
pub const SHORTENERS: &[&str] = &[
    "bit.ly",
    "bitly.com",
    "bl.ink",
    "buff.ly",
    "cutt.ly",
    "goo.gl",
    "is.gd",
    "lnkd.in",
    "ow.ly",
    "qrco.de",
    "rb.gy",
    "rebrand.ly",
    "s.id",
    "shorturl.at",
    "t.co",
    "t.ly",
    "tiny.cc",
    "tinyurl.com",
    "tr.im",
    "urlz.fr",
    "v.gd",
    "x.co",
];

/// Parses and classifies one URL; `None` for what is not an http(s)/ftp URL with a host.
pub fn classify(raw: &str, source: LinkSource, text: Option<String>) -> Option<Link> {
    if raw.len() > MAX_URL_LEN {
        return None;
    }
    let UrlParts {
        text: url,
        scheme,
        userinfo,
        host,
        ip: ip_literal,
    } = parse_url(raw)?;
    if !matches!(scheme.as_str(), "http" | "https" | "ftp") {
        return None;
    }
    if host.is_empty() {
        return None;
    }
    let punycode = !ip_literal && host.split('.').any(|l| l.starts_with("xn--"));
    let host_unicode = punycode
        .then(|| idna::domain_to_unicode(&host).0)
        .filter(|u| *u != host);
    let registrable_domain = registrable(&host, ip_literal);
    let shortener = !ip_literal && is_shortener(&host);
    let text_host = text.as_deref().and_then(host_named_by);
    let text_mismatch = text_host.as_deref().is_some_and(|th| {
        let theirs = registrable(th, th.parse::<IpAddr>().is_ok());
        let ours = registrable_domain.as_deref().unwrap_or(&host);
        theirs.as_deref().unwrap_or(th) != ours
    });
    Some(Link {
        url,
        host,
        host_unicode,
        registrable_domain,
        source,
        text,
        text_host,
        text_mismatch,
        shortener,
        ip_literal,
        punycode,
        userinfo,
    })
}

struct UrlParts {
    text: String,
    scheme: String,
    userinfo: bool,
    host: String,
    ip: bool,
}

/// A parsed URL with its host (ASCII form) and whether that is an IP address.
///
/// A host with a punycode label that does not decode (`xn--b-123milhas-xbazskd3dq-uc.a.run.app`)
/// fails WHATWG parsing, yet such links are sent, and are exactly the suspicious ones: the
/// URL is then normalized around a placeholder host and the original host, lower-cased, is
/// put back.
fn parse_url(raw: &str) -> Option<UrlParts> {
    match url::Url::parse(raw) {
        Ok(url) => {
            let (host, ip) = match url.host()? {
                url::Host::Domain(d) => (d.trim_end_matches('.').to_owned(), false),
                url::Host::Ipv4(ip) => (ip.to_string(), true),
                // An IPv4-mapped address is the IPv4 one (as the intel store keeps it).
                url::Host::Ipv6(ip) => match ip.to_ipv4_mapped() {
                    Some(v4) => (v4.to_string(), true),
                    None => (ip.to_string(), true),
                },
            };
            Some(UrlParts {
                text: url.to_string(),
                scheme: url.scheme().to_owned(),
                userinfo: !url.username().is_empty() || url.password().is_some(),
                host,
                ip,
            })
        }
        Err(url::ParseError::IdnaError) => {
            let (scheme, rest) = raw.split_once("://")?;
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
                _ => (hostport, None),
            };
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let ldh = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ldh {
                return None;
            }
            const PLACEHOLDER: &str = "belay-placeholder.invalid";
            let mut rebuilt = format!("{scheme}://");
            if let Some(u) = userinfo {
                rebuilt.push_str(u);
                rebuilt.push('@');
            }
            rebuilt.push_str(PLACEHOLDER);
            if let Some(p) = port {
                rebuilt.push(':');
                rebuilt.push_str(p);
            }
            rebuilt.push_str(&rest[end..]);
            let url = url::Url::parse(&rebuilt).ok()?;
            Some(UrlParts {
                // Put the real host back without IDNA processing: it is already ASCII.
                text: url.as_str().replacen(PLACEHOLDER, &host, 1),
                scheme: url.scheme().to_owned(),
                userinfo: !url.username().is_empty() || url.password().is_some(),
                host,
                ip: false,
            })
        }
        Err(_) => None,
    }
}

/// The registrable domain (eTLD+1) of a host name, lower-case.
pub fn registrable(host: &str, ip: bool) -> Option<String> {
    if ip {
        return None;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&host).map(str::to_owned)
}

/// Whether a host (or a parent domain of it) is a known shortener.
pub fn is_shortener(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    SHORTENERS.iter().any(|s| {
        host.eq_ignore_ascii_case(s)
            || (host.len() > s.len()
                && host.as_bytes()[host.len() - s.len() - 1] == b'.'
                && host[host.len() - s.len()..].eq_ignore_ascii_case(s))
    })
}

/// The host a link text names: a URL (`https://bank.example/login`) or a bare domain
/// (`www.bank.example`, `bank.example`) with a known public suffix. Text that is a sentence
/// ("Click here", "Sign in to bank.example") names no host: only the whole text counts.
pub(super) fn host_named_by(text: &str) -> Option<String> {
    let t = refang(text.trim());
    let t = t.trim_matches(|c: char| c == '<' || c == '>' || c == '"' || c == '\'');
    if t.is_empty() || t.len() > MAX_URL_LEN || t.contains(char::is_whitespace) {
        return None;
    }
    let explicit = has_scheme(t);
    let with_scheme: Cow<str> = if explicit {
        Cow::Borrowed(t)
    } else {
        Cow::Owned(format!("http://{t}"))
    };
    let parts = parse_url(&with_scheme)?;
    // A text with a scheme is a URL whatever its host; without one, a bare word ("Login") is
    // not a host, and a dotted name needs a real public suffix to count ("invoice.pdf" no).
    if parts.ip || explicit {
        return Some(parts.host);
    }
    if !parts.host.contains('.') {
        return None;
    }
    let suffix_known = psl::suffix(parts.host.as_bytes()).is_some_and(|s| s.is_known());
    suffix_known.then_some(parts.host)
}
