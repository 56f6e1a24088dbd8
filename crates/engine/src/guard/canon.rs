//! Canonical forms of the targets guardrails compare: addresses and networks (IPv4 embedded in
//! IPv6 read as IPv4), domains (IDNA to punycode, lower case, full-width dots, no trailing
//! dot), the host of a URL (no userinfo, port or path), host names (full and short), user
//! names (no `DOMAIN\` prefix or `@domain` suffix) and MAC addresses. Notations that systems
//! read differently (leading zeros, integer, hex or octal IPv4) are refused with an error that
//! says why, never guessed. This module only rewrites text; it never decides what is protected.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a URL-like target names: an address or a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An address, as a one-address network in canonical form.
    Net(IpNet),
    /// A domain in canonical form.
    Name(String),
}

/// An address or network in canonical form, or `Ok(None)` when `s` is not written as one.
/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) forms become IPv4;
/// host bits of a network are cleared. Integer, hex, octal and zero-padded IPv4 forms are
/// an error.
pub fn net(s: &str) -> Result<Option<IpNet>, String> {
    let s = s.trim();
    // `[v6]` and `[v6]/len`, as written in URLs.
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(a, rest)| format!("{a}{rest}"));
    let s = unbracketed.as_deref().unwrap_or(s);
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip = match addr.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if ipv4_like(addr) => return Err(ambiguous(s)),
        Err(_) => return Ok(None),
    };
    let len = match prefix {
        None => None,
        Some(p)
            if p == "0"
                || (!p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && !p.starts_with('0')) =>
        {
            Some(p.parse::<u8>().map_err(|_| prefix_error(s))?)
        }
        Some(_) => return Err(prefix_error(s)),
    };
    let n = match (ip, len) {
        (ip, None) => IpNet::from(ip),
        (IpAddr::V4(a), Some(l)) => IpNet::V4(Ipv4Net::new(a, l).map_err(|_| prefix_error(s))?),
        (IpAddr::V6(a), Some(l)) => IpNet::V6(Ipv6Net::new(a, l).map_err(|_| prefix_error(s))?),
    };
    Ok(Some(unmap(n.trunc())))
}

fn prefix_error(s: &str) -> String {
    format!("`{s}` has an invalid prefix length (0-32 for IPv4, 0-128 for IPv6, no leading zeros)")
}

fn ambiguous(s: &str) -> String {
    let read = inet_aton(s.split('/').next().unwrap_or(s))
        .map(|a| format!(" (some systems read it as {a})"))
        .unwrap_or_default();
    format!(
        "`{s}` is an ambiguous IPv4 notation{read}: integer, hex, octal and zero-padded forms \
         are refused; write four decimal numbers such as 203.0.113.1"
    )
}

/// Whether `s` looks like an IPv4 address in some notation (1 to 4 dot-separated decimal,
/// octal or hex numbers).
pub(super) fn ipv4_like(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    let parts: Vec<&str> = s.split('.').collect();
    !s.is_empty()
        && parts.len() <= 4
        && parts.iter().all(|p| {
            let hex = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"));
            match hex {
                Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
                None => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
            }
        })
}

/// How `inet_aton` (and so curl, ping and many browsers) reads a loose IPv4 notation.
pub(super) fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let n = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            if h.is_empty() {
                0
            } else {
                u64::from_str_radix(h, 16).ok()?
            }
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len() as u32);
    if rest_bits < 64 && *last >= 1u64 << rest_bits {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

/// An IPv6 network inside the IPv4-mapped or IPv4-compatible space, as IPv4.
fn unmap(n: IpNet) -> IpNet {
    if let IpNet::V6(v6) = n
        && v6.prefix_len() >= 96
    {
        let a = v6.network();
        let seg = a.segments();
        let mapped = seg[..5] == [0; 5] && seg[5] == 0xffff;
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        let compat = seg[..6] == [0; 6] && u128::from(a) > 1;
        if mapped || compat {
            let v4 = Ipv4Addr::from(u128::from(a) as u32);
            if let Ok(n4) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                return IpNet::V4(n4);
            }
        }
    }
    n
}

/// IPv6 prefixes that carry an IPv4 address: the bits of the IPv4 address start at `offset`.
const EMBEDDING: [(u128, u8, u8); 4] = [
    (0xffff_0000_0000, 96, 96),       // ::ffff:0:0/96, mapped
    (0, 96, 96),                      // ::/96, compatible
    (0x0064_ff9b_u128 << 96, 96, 96), // 64:ff9b::/96, NAT64
    (0x2002_u128 << 112, 16, 16),     // 2002::/16, 6to4
];

/// The IPv4 networks an IPv6 network reaches through the embeddings downstream systems
/// translate (mapped, compatible, NAT64, 6to4).
pub fn embedded_v4(n: &Ipv6Net) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    for (prefix, plen, offset) in EMBEDDING {
        let Ok(p) = Ipv6Net::new(Ipv6Addr::from(prefix), plen) else {
            continue;
        };
        if n.prefix_len() <= plen {
            if n.contains(&p) {
                out.push(Ipv4Net::default());
            }
            continue;
        }
        if !p.contains(n) {
            continue;
        }
        let bits = u128::from(n.network());
        let v4 = (bits >> (128 - offset - 32)) as u32;
        let len = (n.prefix_len() - offset).min(32);
        if let Ok(n4) = Ipv4Net::new(Ipv4Addr::from(v4), len) {
            out.push(n4.trunc());
        }
    }
    out
}

/// A domain in canonical form: IDNA (UTS 46) to punycode, lower case, full-width dots read
/// as dots, no trailing dot, no leading `*.`.
pub fn domain(s: &str) -> Result<String, String> {
    let t = s.trim();
    let t = t.strip_prefix("*.").unwrap_or(t);
    let ascii = idna::domain_to_ascii(t).map_err(|_| {
        format!("`{s}` is not a valid domain name (IDNA: letters, digits, hyphens and dots)")
    })?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii).to_owned();
    if !ascii
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "`{s}` is not a valid domain name (letters, digits, hyphens, underscores, dots)"
        ));
    }
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err(format!(
            "`{s}` has an empty label (a leading, doubled or lone dot)"
        ));
    }
    Ok(ascii)
}

/// Whether `s` has more than a bare host name: a scheme, userinfo, a port or a path.
pub fn is_url_like(s: &str) -> bool {
    s.contains("://") || s.contains(['/', '@', '?', '#']) || s.matches(':').count() == 1
}

/// The host a URL (or a bare `user@host:port/path`) points at, as downstream systems read
/// it: userinfo, port and path dropped, addresses canonical, domains in IDNA form.
pub fn url_host(s: &str) -> Result<Host, String> {
    let t = s.trim();
    let parsed = if t.contains("://") {
        url::Url::parse(t)
    } else {
        url::Url::parse(&format!("http://{t}"))
    }
    .map_err(|e| format!("`{s}` is not a URL whose host can be read: {e}"))?;
    match parsed.host() {
        Some(url::Host::Ipv4(a)) => Ok(Host::Net(IpNet::from(IpAddr::V4(a)))),
        Some(url::Host::Ipv6(a)) => Ok(Host::Net(unmap(IpNet::from(IpAddr::V6(a))))),
        Some(url::Host::Domain(d)) => domain(d).map(Host::Name),
        None => Err(format!("`{s}` names no host")),
    }
}

/// A host name in canonical form (as [`domain`]) with its short name (first label).
pub fn host_name(s: &str) -> Result<(String, String), String> {
    let full = domain(s).map_err(|_| format!("`{s}` is not a valid host name"))?;
    let short = full.split('.').next().unwrap_or(&full).to_owned();
    Ok((full, short))
}

/// A user name as a user directory compares it: trimmed, lower case, without a `DOMAIN\`
/// prefix or an `@domain` suffix.
pub fn user(s: &str) -> String {
    let t = s.trim();
    let t = t.rsplit('\\').next().unwrap_or(t);
    let t = t.split('@').next().unwrap_or(t);
    t.trim().to_lowercase()
}

/// A MAC address as six lower-case colon-separated bytes, from `:`, `-` or `.` separated or
/// bare hex. `None` when `s` is not one.
pub fn mac(s: &str) -> Option<String> {
    let t = s.trim();
    let hex: String = t
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let groups_ok = t
        .split([':', '-', '.'])
        .all(|g| matches!(g.len(), 1 | 2 | 4 | 12) && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || !groups_ok {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &lower[2 * i..2 * i + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn embedded_ipv4_is_read_as_ipv4() {
        assert_eq!(
            net("::ffff:203.0.113.7").unwrap(),
            Some(n("203.0.113.7/32"))
        );
        assert_eq!(net("::FFFF:CB00:7107").unwrap(), Some(n("203.0.113.7/32")));
        assert_eq!(
            net("[::ffff:203.0.113.0]/120").unwrap(),
            Some(n("203.0.113.0/24"))
        );
        assert_eq!(net("::1").unwrap(), Some(n("::1/128")));
        assert_eq!(net("203.0.113.9/24").unwrap(), Some(n("203.0.113.0/24")));
        let nat64: Ipv6Net = "64:ff9b::cb00:7100/120".parse().unwrap();
        assert_eq!(
            embedded_v4(&nat64),
            vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]
        );
        let six: Ipv6Net = "2002:cb00:7101::/48".parse().unwrap();
        assert_eq!(
            embedded_v4(&six),
            vec!["203.0.113.1/32".parse::<Ipv4Net>().unwrap()]
        );
    }

    #[test]
    fn loose_ipv4_notations_are_refused() {
        for s in [
            "3405803777",
            "0xCB.0.113.1",
            "0313.0.113.1",
            "203.0.113.01",
            "203.113.1",
            "203.0.113.1.",
        ] {
            let e = net(s).unwrap_err();
            assert!(e.contains("ambiguous"), "{s}: {e}");
        }
        assert_eq!(inet_aton("3405803777"), Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(
            inet_aton("0xCB.0.113.1"),
            Some(Ipv4Addr::new(203, 0, 113, 1))
        );
        assert_eq!(
            inet_aton("0313.0.0161.1"),
            Some(Ipv4Addr::new(203, 0, 113, 1))
        );
        assert_eq!(inet_aton("203.113.1"), Some(Ipv4Addr::new(203, 113, 0, 1)));
        assert!(net("203.0.113.1/024").unwrap_err().contains("prefix"));
        assert_eq!(net("crm.example.com").unwrap(), None);
    }

    #[test]
    fn domains_urls_users_and_macs_take_one_form() {
        assert_eq!(domain("CRM.Example.COM.").unwrap(), "crm.example.com");
        assert_eq!(
            domain("crm\u{ff0e}example\u{3002}com").unwrap(),
            "crm.example.com"
        );
        assert_eq!(domain("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert!(domain(".crm.example.com").is_err());
        assert_eq!(
            url_host("https://u:p@CRM.example.com:8443/x?y").unwrap(),
            Host::Name("crm.example.com".into())
        );
        assert_eq!(
            url_host("crm.example.com/").unwrap(),
            Host::Name("crm.example.com".into())
        );
        assert_eq!(
            url_host("http://[::ffff:203.0.113.1]/").unwrap(),
            Host::Net(n("203.0.113.1/32"))
        );
        assert_eq!(user(" CORP\\Alice "), "alice");
        assert_eq!(user("alice@corp.example"), "alice");
        assert_eq!(
            mac("AA-BB-CC-00-11-22").as_deref(),
            Some("aa:bb:cc:00:11:22")
        );
        assert_eq!(mac("aabb.cc00.1122").as_deref(), Some("aa:bb:cc:00:11:22"));
        assert_eq!(mac("fin-cfo-lt01"), None);
    }
}
