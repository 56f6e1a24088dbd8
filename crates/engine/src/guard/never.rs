//! The `never` guardrail kind: targets that must never be changed (networks, domains, hosts
//! with the addresses known for them, users, MACs, device classes), and the address ranges
//! behind it with O(log n) lookups. Targets and entries are compared in canonical form
//! (`canon`); a target is checked as every identity it can be read as (a host's address
//! against the networks and the hosts' addresses, a URL's host as a domain and a host name),
//! and one that cannot be read unambiguously is refused. It only says why a target is
//! protected or cannot be resolved; what happens then is the guardrail's `on_violation`.

use super::canon;
use super::resolve::{self, Resolution};
use belay_playbook::TargetType;
use std::collections::HashSet;
use std::net::IpAddr;

/// Address ranges with O(log n) overlap lookups: sorted, merged `[start, end]` intervals.
#[derive(Debug, Default)]
pub struct RangeSet {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

fn bounds(net: &ipnet::IpNet) -> (bool, u128, u128) {
    match net {
        ipnet::IpNet::V4(n) => (
            true,
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        ipnet::IpNet::V6(n) => (false, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Parses an address or a network (canonical form; `None` for anything else, including the
/// ambiguous notations [`canon::net`] refuses).
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    canon::net(s).ok().flatten()
}

/// How a target network stands to the protected ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Every address of the target is protected.
    Inside,
    /// The target is wider than, or straddles, protected addresses.
    Contains,
}

impl RangeSet {
    pub(super) fn build(nets: impl IntoIterator<Item = ipnet::IpNet>) -> RangeSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for n in nets {
            let (is4, a, b) = bounds(&n);
            if is4 {
                v4.push((a, b))
            } else {
                v6.push((a, b))
            }
        }
        RangeSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// The number of merged ranges (IPv4 and IPv6), not of the networks given.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether it protects no address.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any protected address lies in `net` (an address is a one-address network).
    pub fn overlaps(&self, net: &ipnet::IpNet) -> bool {
        self.relation(net).is_some()
    }

    /// How `net` overlaps the protected addresses, if it does; an IPv6 network is also
    /// compared through the IPv4 addresses it embeds (mapped, compatible, NAT64, 6to4).
    pub fn relation(&self, net: &ipnet::IpNet) -> Option<Overlap> {
        let direct = self.interval(net);
        if direct.is_some() {
            return direct;
        }
        match net {
            ipnet::IpNet::V6(n) => canon::embedded_v4(n)
                .into_iter()
                .find_map(|n4| self.interval(&ipnet::IpNet::V4(n4))),
            ipnet::IpNet::V4(_) => None,
        }
    }

    fn interval(&self, net: &ipnet::IpNet) -> Option<Overlap> {
        let (is4, a, b) = bounds(net);
        let v = if is4 { &self.v4 } else { &self.v6 };
        // The first interval ending at or after `a` is the only candidate.
        let i = v.partition_point(|(_, end)| *end < a);
        let (start, end) = *v.get(i)?;
        if start > b {
            None
        } else if start <= a && b <= end {
            Some(Overlap::Inside)
        } else {
            Some(Overlap::Contains)
        }
    }
}

fn merge(mut v: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    v.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// A protected host: its canonical full name, short name and the addresses known for it.
#[derive(Debug, Clone)]
pub(super) struct ProtectedHost {
    pub full: String,
    pub short: String,
    pub addresses: Vec<ipnet::IpNet>,
}

/// Targets that must never be changed, every entry in canonical form ([`canon`]).
#[derive(Debug, Default)]
pub struct Never {
    /// Protected networks and the addresses of protected hosts.
    pub nets: RangeSet,
    /// Whether `cidrs` or lists named networks besides the hosts' own addresses.
    pub(super) has_cidrs: bool,
    pub(super) domains: HashSet<String>,
    pub(super) hosts: Vec<ProtectedHost>,
    pub(super) users: HashSet<String>,
    pub(super) macs: HashSet<String>,
    pub(super) device_classes: HashSet<String>,
    /// The read action asked for a target's other identities (a host's addresses, an
    /// address's host name and MAC), when the guardrail names one.
    pub resolve: Option<String>,
}

fn refused(t: &str, why: &str) -> String {
    format!("cannot check `{t}` against the protected targets: {why}")
}

impl Never {
    /// The protected domain that `d` (canonical) is, or is under (label suffix match).
    fn domain_match(&self, d: &str) -> Option<String> {
        let mut rest = d;
        loop {
            if self.domains.contains(rest) {
                return Some(rest.to_owned());
            }
            rest = rest.split_once('.')?.1;
        }
    }

    fn by_net(&self, t: &str, n: ipnet::IpNet) -> Option<String> {
        if let Some(h) = self.hosts.iter().find(|h| {
            h.addresses
                .iter()
                .any(|a| RangeSet::build([*a]).relation(&n).is_some())
        }) {
            return Some(format!("{t} is an address of protected host {}", h.full));
        }
        match self.nets.relation(&n)? {
            Overlap::Inside => Some(format!("{t} is inside a protected network")),
            Overlap::Contains => Some(format!("{t} contains protected addresses")),
        }
    }

    fn by_domain(&self, t: &str, d: &str) -> Option<String> {
        self.domain_match(d)
            .map(|p| format!("{t} is protected (under {p})"))
    }

    fn by_host_name(&self, t: &str, full: &str, short: &str) -> Option<String> {
        self.hosts
            .iter()
            .find(|h| h.full == full || h.short == short)
            .map(|h| format!("host {t} is protected ({})", h.full))
    }

    fn by_user(&self, t: &str) -> Option<String> {
        let u = canon::user(t);
        self.users
            .contains(&u)
            .then(|| format!("user {t} is protected ({u})"))
    }

    /// A domain, URL or `user@host:port/path`: the host it points at.
    fn by_host_text(&self, t: &str) -> Option<String> {
        match canon::net(t) {
            Ok(Some(n)) => return self.by_net(t, n),
            Err(e) if !canon::is_url_like(t) => return Some(refused(t, &e)),
            _ => {}
        }
        let host = if canon::is_url_like(t) {
            canon::url_host(t)
        } else {
            canon::domain(t.trim_start_matches('.')).map(canon::Host::Name)
        };
        match host {
            Err(e) => Some(refused(t, &e)),
            Ok(canon::Host::Net(n)) => self.by_net(t, n),
            Ok(canon::Host::Name(d)) => self.by_domain(t, &d).or_else(|| {
                let short = d.split('.').next().unwrap_or(&d);
                self.by_host_name(t, &d, short)
            }),
        }
    }

    /// A host given by address or by short or fully qualified name.
    fn by_host(&self, t: &str) -> Option<String> {
        match canon::net(t) {
            Ok(Some(n)) => self.by_net(t, n),
            Err(e) => Some(refused(t, &e)),
            Ok(None) if canon::is_url_like(t) => self.by_host_text(t),
            Ok(None) => match canon::host_name(t) {
                Ok((full, short)) => self
                    .by_host_name(t, &full, &short)
                    .or_else(|| self.by_domain(t, &full)),
                Err(e) => Some(refused(t, &e)),
            },
        }
    }

    /// Why `target` (of type `kind`) is protected, if it is. A target in a notation that
    /// cannot be read unambiguously is refused (reported as a violation).
    pub fn violation(&self, kind: TargetType, target: &str) -> Option<String> {
        let t = target.trim();
        match kind {
            TargetType::Ip => match canon::net(t) {
                Ok(Some(n)) => self.by_net(t, n),
                Ok(None) => Some(refused(t, "not an address or network")),
                Err(e) => Some(refused(t, &e)),
            },
            TargetType::Domain | TargetType::Url => self.by_host_text(t),
            TargetType::Host => self.by_host(t),
            TargetType::User | TargetType::Email => self.by_user(t),
            TargetType::DeviceClass => self
                .device_classes
                .contains(&t.to_lowercase())
                .then(|| format!("device class {t} is protected")),
            TargetType::Mac => match canon::mac(t) {
                Some(m) => self
                    .macs
                    .contains(&m)
                    .then(|| format!("MAC {t} is protected ({m})")),
                None if self.macs.is_empty() => None,
                None => Some(refused(t, "not a MAC address")),
            },
            TargetType::Hash => None,
            TargetType::Generic => self.generic(t),
        }
    }

    /// A target of no declared type: checked as every kind of thing its form can be read as.
    fn generic(&self, t: &str) -> Option<String> {
        if let Some(m) = canon::mac(t)
            && self.macs.contains(&m)
        {
            return Some(format!("MAC {t} is protected ({m})"));
        }
        match canon::net(t) {
            Ok(Some(n)) => return self.by_net(t, n),
            // A bare integer is also a rule id, a case number...: checked as the address
            // it would be read as, otherwise passed.
            Err(_) if t.bytes().all(|b| b.is_ascii_digit()) => {
                return canon::inet_aton(t)
                    .and_then(|a| self.by_net(t, ipnet::IpNet::from(std::net::IpAddr::V4(a))));
            }
            Err(e) => return Some(refused(t, &e)),
            Ok(None) => {}
        }
        if canon::is_url_like(t) {
            if let Some(v) = self.by_host_text(t) {
                return Some(v);
            }
        } else if let Ok((full, short)) = canon::host_name(t.trim_start_matches('.'))
            && let Some(v) = self
                .by_domain(t, &full)
                .or_else(|| self.by_host_name(t, &full, &short))
        {
            return Some(v);
        }
        if let Some(v) = self.by_user(t) {
            return Some(v);
        }
        self.device_classes
            .contains(&t.to_lowercase())
            .then(|| format!("device class {t} is protected"))
    }

    /// Why `target` is protected as one of the other identities a directory gave for it.
    pub fn violation_of_identities(&self, target: &str, resolved: &Resolution) -> Option<String> {
        let Resolution::Known(ids) = resolved else {
            return None;
        };
        let by = self.resolve.as_deref().unwrap_or("the directory");
        ids.iter().find_map(|(kind, id)| {
            self.violation(*kind, id)
                .map(|why| format!("{} is {id} by {by}: {why}", target.trim()))
        })
    }

    /// As [`Never::unresolved`], given what the guardrail's `resolve` action said: a target
    /// it named another identity of (an address for a name, a name for an address) is
    /// resolved; one it could not be asked about stays unresolved, saying why.
    pub fn unresolved_after(
        &self,
        kind: TargetType,
        target: &str,
        resolved: Option<&Resolution>,
    ) -> Option<String> {
        let by = self.resolve.as_deref().unwrap_or("the directory");
        match resolved {
            Some(Resolution::Known(ids)) if resolve::completes(target, ids) => None,
            Some(Resolution::Failed(e)) => self
                .unresolved(kind, target)
                .map(|u| format!("{u}, and {by} could not resolve it: {e}")),
            _ => self.unresolved(kind, target),
        }
    }

    /// Why a host target cannot be matched to every identity this guardrail protects, if it
    /// cannot: an address when some protected host has no known address, a name that is not
    /// a protected host when protected networks exist (its addresses are unknown). At
    /// `guarded` such a target is held rather than passed.
    pub fn unresolved(&self, kind: TargetType, target: &str) -> Option<String> {
        if kind != TargetType::Host {
            return None;
        }
        let t = target.trim();
        match canon::net(t) {
            Ok(Some(_)) => {
                let unknown: Vec<&str> = self
                    .hosts
                    .iter()
                    .filter(|h| h.addresses.is_empty())
                    .map(|h| h.full.as_str())
                    .collect();
                (!unknown.is_empty()).then(|| {
                    format!(
                        "{t} cannot be matched to the protected hosts {} (their addresses are \
                         unknown: list them under `addresses`)",
                        unknown.join(", ")
                    )
                })
            }
            Ok(None) if self.has_cidrs => Some(format!(
                "host {t} has no known address to check against the protected networks"
            )),
            _ => None,
        }
    }
}

/// Figures of [`bench_never`].
pub struct NeverBench {
    /// Seconds to parse the list and build the ranges.
    pub load_secs: f64,
    /// Ranges left after merging overlapping and adjacent networks.
    pub ranges: usize,
    /// Addresses looked up.
    pub lookups: u64,
    /// Lookups that found a protected address.
    pub hits: u64,
    /// Mean nanoseconds per lookup.
    pub ns_per_lookup: f64,
}

/// Loads `n` distinct networks (written to a list file and read back, as `never.lists` does)
/// and times lookups of pseudo-random addresses against them.
pub fn bench_never(n: usize) -> NeverBench {
    let mut text = String::with_capacity(n * 18);
    for i in 0..n as u64 {
        // Spread /28s over the IPv4 space.
        let a = (i.wrapping_mul(2654435761) % (1 << 28)) << 4;
        let ip = std::net::Ipv4Addr::from(a as u32);
        text.push_str(&format!("{ip}/28\n"));
    }
    let start = std::time::Instant::now();
    let nets: Vec<ipnet::IpNet> = text.lines().filter_map(parse_net).collect();
    let set = RangeSet::build(nets);
    let load_secs = start.elapsed().as_secs_f64();
    let lookups = 2_000_000u64;
    let mut hits = 0;
    let mut x: u32 = 0x9e3779b9;
    let start = std::time::Instant::now();
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let net = ipnet::IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(x)));
        hits += u64::from(std::hint::black_box(set.overlaps(&net)));
    }
    let ns = start.elapsed().as_nanos() as f64 / lookups as f64;
    NeverBench {
        load_secs,
        ranges: set.len(),
        lookups,
        hits,
        ns_per_lookup: ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(cidrs: &[&str], domains: &[&str]) -> Never {
        Never {
            nets: RangeSet::build(cidrs.iter().map(|c| parse_net(c).unwrap())),
            domains: domains.iter().map(|d| canon::domain(d).unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn networks_match_addresses_inside_and_networks_that_overlap() {
        let n = never(&["203.0.113.0/24", "2001:db8::/32", "10.0.0.0/8"], &[]);
        assert!(n.violation(TargetType::Ip, "203.0.113.77").is_some());
        assert!(
            n.violation(TargetType::Ip, "203.0.112.0/22").is_some(),
            "a wider block covers the protected one"
        );
        assert!(n.violation(TargetType::Ip, "203.0.114.1").is_none());
        assert!(n.violation(TargetType::Ip, "2001:db8::1").is_some());
        assert!(
            n.violation(TargetType::Generic, "10.200.0.1").is_some(),
            "generic targets are classified by form"
        );
        assert!(n.violation(TargetType::Generic, "11.0.0.1").is_none());
    }

    #[test]
    fn domains_match_by_label_suffix() {
        let n = never(&[], &["crm.example.com"]);
        for (kind, target, protected) in [
            (TargetType::Domain, "crm.example.com", true),
            (TargetType::Domain, "EU.CRM.example.com.", true),
            (TargetType::Domain, "notcrm.example.com", false),
            (TargetType::Url, "https://login.crm.example.com/x", true),
            (TargetType::Generic, ".crm.example.com", true),
        ] {
            assert_eq!(n.violation(kind, target).is_some(), protected, "{target}");
        }
    }

    #[test]
    fn merged_ranges_stay_exact() {
        let r = RangeSet::build(
            ["10.0.0.0/25", "10.0.0.128/25", "10.0.2.0/24"]
                .iter()
                .map(|c| parse_net(c).unwrap()),
        );
        assert_eq!(r.len(), 2);
        assert!(r.overlaps(&parse_net("10.0.0.200").unwrap()));
        assert!(!r.overlaps(&parse_net("10.0.1.5").unwrap()));
        assert!(r.overlaps(&parse_net("10.0.1.0/23").unwrap()));
    }
}
