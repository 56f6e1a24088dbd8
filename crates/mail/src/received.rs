//! The Received chain and the address the message came from.
//!
//! **Originating IP rule.** The hops are read from the bottom (the oldest `Received`, added
//! first, nearest to the sender) up. The first hop whose "from" address is public — not
//! private, loopback, link-local, shared (CGNAT), documentation, multicast or unspecified —
//! and not inside one of our own relay networks is the originating IP. The sender controls
//! the headers below the first hop our own relays added, so a forged bottom hop can name any
//! address: treat the result as "where the message says it came from", to check, not proof.

use ipnet::IpNet;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One `Received` header, newest first as in the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The name the sending host gave (HELO) or that its address resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_host: Option<String>,
    /// The sending host's address, as the receiving host saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_ip: Option<IpAddr>,
    /// The receiving host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The originating IP of a chain of hops (newest first), by the rule above.
pub fn originating_ip(hops: &[Hop], own_relays: &[IpNet]) -> Option<IpAddr> {
    hops.iter()
        .rev()
        .filter_map(|h| h.from_ip)
        .find(|ip| is_public(ip) && !own_relays.iter().any(|n| n.contains(ip)))
}

/// Whether an address is routable on the public Internet.
pub fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(&v4);
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local
                || (seg0 & 0xffc0) == 0xfe80 // link-local
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
        }
    }
}

fn is_public_v4(v4: &Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space (CGNAT)
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240)
}

/// The first address written in square brackets (or parentheses) in a raw Received value's
/// "from" clause, for hops whose form the MIME parser did not recognize.
pub(crate) fn bracketed_ip(raw: &str) -> Option<IpAddr> {
    // Only the part before " by ": later brackets belong to the receiving host.
    let trimmed = raw.trim_start();
    let from_part = if trimmed
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("by "))
    {
        ""
    } else {
        match find_ignore_case(trimmed, " by ") {
            Some(i) => &trimmed[..i],
            None => trimmed,
        }
    };
    from_part
        .split(['[', ']', '(', ')', ' ', '\t', '\r', '\n', ','])
        .filter(|t| !t.is_empty())
        .find_map(|t| {
            let t = t
                .strip_prefix("IPv6:")
                .or_else(|| t.strip_prefix("ipv6:"))
                .unwrap_or(t);
            t.parse::<IpAddr>().ok()
        })
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// An IPv6 address in its canonical text form; IPv4 unchanged.
pub(crate) fn canonical(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => Ipv6Addr::from(v6.octets()).to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(ip: &str) -> Hop {
        Hop {
            from_host: None,
            from_ip: Some(ip.parse().unwrap()),
            by: None,
        }
    }

    #[test]
    fn originating_ip_is_the_first_public_hop_from_the_bottom() {
        // Newest first: our relay got it from the Internet host, which got it from a LAN client.
        let hops = [hop("203.0.114.10"), hop("198.51.99.7"), hop("192.168.1.20")];
        assert_eq!(
            originating_ip(&hops, &[]),
            Some("198.51.99.7".parse().unwrap())
        );
    }

    #[test]
    fn own_relays_and_private_addresses_are_skipped() {
        let hops = [hop("10.0.0.5"), hop("81.2.69.142"), hop("127.0.0.1")];
        let own: IpNet = "81.2.69.0/24".parse().unwrap();
        assert_eq!(originating_ip(&hops, &[own]), None);
        assert_eq!(
            originating_ip(&hops, &[]),
            Some("81.2.69.142".parse().unwrap())
        );
    }

    #[test]
    fn special_ranges_are_not_public() {
        for ip in [
            "100.64.1.1",
            "169.254.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.1.1.1",
        ] {
            assert!(!is_public(&ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public(&"2a00:1450:4001::1".parse().unwrap()));
    }

    #[test]
    fn bracketed_ip_reads_only_the_from_clause() {
        assert_eq!(
            bracketed_ip("from mail.example (unknown [45.90.99.64]) by mx.example.org [10.0.0.1]"),
            Some("45.90.99.64".parse().unwrap())
        );
        assert_eq!(
            bracketed_ip("from x ([IPv6:2a00:1450::5]) by y"),
            Some("2a00:1450::5".parse().unwrap())
        );
        assert_eq!(bracketed_ip("by mx.example.org [10.0.0.1]"), None);
    }
}
