//! What each observable list of an event may hold, checked when an event is read from JSON.
//!
//! A value that is not of its list's type (`ips: ["0"]`) would reach playbooks and connectors
//! as if it were one (a firewall rule for address "0"), so it is refused with the list, the
//! position and what that list holds. This module only checks forms; it never resolves,
//! canonicalizes or looks anything up.

use crate::event::Observables;
use std::net::IpAddr;

/// Longest observable value (URLs included).
pub const MAX_OBSERVABLE_CHARS: usize = 8192;

/// One observable list: its name, its values, the check of one value, and what it holds.
type List<'a> = (&'static str, &'a [String], fn(&str) -> bool, &'static str);

/// The first value of `obs` that is not of its list's type, as a message naming it.
pub fn check(obs: &Observables) -> Result<(), String> {
    let lists: [List; 9] = [
        ("ips", &obs.ips, is_ip, "an IPv4 or IPv6 address"),
        (
            "cidrs",
            &obs.cidrs,
            is_cidr,
            "a network (`ADDRESS/PREFIX`) or an address",
        ),
        (
            "domains",
            &obs.domains,
            is_domain,
            "a host name (labels of letters, digits, `-`, `_`)",
        ),
        (
            "urls",
            &obs.urls,
            is_url,
            "a URL with a scheme (`https://…`) and no spaces",
        ),
        (
            "hashes",
            &obs.hashes,
            is_hash,
            "32, 40, 64 or 128 hexadecimal digits",
        ),
        ("users", &obs.users, is_printable, "printable text"),
        ("hosts", &obs.hosts, is_printable, "printable text"),
        (
            "emails",
            &obs.emails,
            is_email,
            "an address `LOCAL@DOMAIN` without spaces",
        ),
        (
            "macs",
            &obs.macs,
            is_mac,
            "six hexadecimal octets (`3c:22:fb:00:00:01`)",
        ),
    ];
    for (name, values, ok, what) in lists {
        for (i, v) in values.iter().enumerate() {
            let fits = !v.is_empty() && v.chars().count() <= MAX_OBSERVABLE_CHARS && ok(v);
            if !fits {
                let shown: String = v.chars().take(80).collect();
                return Err(format!(
                    "`observables.{name}[{i}]` is `{shown}`, which is not {what}"
                ));
            }
        }
    }
    Ok(())
}

fn is_ip(v: &str) -> bool {
    v.parse::<IpAddr>().is_ok()
}

fn is_cidr(v: &str) -> bool {
    match v.split_once('/') {
        None => is_ip(v),
        Some((addr, len)) => {
            let max = match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            !len.is_empty()
                && len.len() <= 3
                && len.bytes().all(|b| b.is_ascii_digit())
                && len.parse::<u32>().is_ok_and(|n| n <= max)
        }
    }
}

fn is_domain(v: &str) -> bool {
    let name = v.strip_suffix('.').unwrap_or(v);
    name.len() <= 253
        && !is_ip(name)
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '*')
        })
        // A name ending in a number is an (invalid) IPv4 address to every URL parser.
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

fn is_url(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_hash(v: &str) -> bool {
    matches!(v.len(), 32 | 40 | 64 | 128) && v.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_printable(v: &str) -> bool {
    !v.chars().any(char::is_control)
}

fn is_email(v: &str) -> bool {
    v.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && (is_domain(domain) || is_bracketed_ip(domain))
    }) && !v.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_bracketed_ip(d: &str) -> bool {
    d.strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .is_some_and(|ip| is_ip(ip.strip_prefix("IPv6:").unwrap_or(ip)))
}

fn is_mac(v: &str) -> bool {
    let octets: Vec<&str> = v.split([':', '-']).collect();
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match octets.as_slice() {
        [one] => one.len() == 12 && hex(one),
        [_, _, _, _, _, _] => octets.iter().all(|o| o.len() == 2 && hex(o)),
        _ => false,
    }
}
