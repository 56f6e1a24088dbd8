//! The `never` guardrail kind: targets that must never be changed (networks, domains, hosts,
//! users, device classes), and the address ranges behind it with O(log n) lookups. It only
//! says why a target is protected; what happens then is the guardrail's `on_violation`.

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

/// Parses an address or a network.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
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

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any protected address lies in `net` (an address is a one-address network).
    pub fn overlaps(&self, net: &ipnet::IpNet) -> bool {
        let (is4, a, b) = bounds(net);
        let v = if is4 { &self.v4 } else { &self.v6 };
        // The first interval ending at or after `a` is the only candidate.
        let i = v.partition_point(|(_, end)| *end < a);
        v.get(i).is_some_and(|(start, _)| *start <= b)
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

pub(super) fn normalize_domain(d: &str) -> String {
    d.trim()
        .trim_end_matches('.')
        .trim_start_matches("*.")
        .to_ascii_lowercase()
}

/// Targets that must never be changed.
#[derive(Debug, Default)]
pub struct Never {
    pub nets: RangeSet,
    pub(super) domains: HashSet<String>,
    pub(super) hosts: HashSet<String>,
    pub(super) users: HashSet<String>,
    pub(super) device_classes: HashSet<String>,
}

impl Never {
    /// The protected domain that `domain` is, or is under (label suffix match).
    fn domain_match(&self, domain: &str) -> Option<String> {
        let d = normalize_domain(domain);
        let mut rest = d.as_str();
        loop {
            if self.domains.contains(rest) {
                return Some(rest.to_owned());
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// Why `target` (of type `kind`) is protected, if it is.
    pub fn violation(&self, kind: TargetType, target: &str) -> Option<String> {
        let t = target.trim();
        let lower = t.to_ascii_lowercase();
        let as_net = || parse_net(t);
        let host_of_url = || {
            t.split_once("://").map(|(_, r)| {
                r.split(['/', ':', '?', '#'])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
        };
        let by_net = |n: ipnet::IpNet| {
            self.nets
                .overlaps(&n)
                .then(|| format!("{t} is inside a protected network"))
        };
        let by_domain = |d: &str| {
            self.domain_match(d)
                .map(|p| format!("{d} is protected (under {p})"))
        };
        match kind {
            TargetType::Ip => as_net().and_then(by_net),
            TargetType::Domain => by_domain(&lower),
            TargetType::Url => host_of_url().and_then(|h| match parse_net(&h) {
                Some(n) => by_net(n),
                None => by_domain(&h.to_ascii_lowercase()),
            }),
            TargetType::Host => self
                .hosts
                .contains(&lower)
                .then(|| format!("host {t} is protected")),
            TargetType::User | TargetType::Email => {
                let user = lower.split('@').next().unwrap_or(&lower).to_owned();
                (self.users.contains(&lower) || self.users.contains(&user))
                    .then(|| format!("user {t} is protected"))
            }
            TargetType::DeviceClass => self
                .device_classes
                .contains(&lower)
                .then(|| format!("device class {t} is protected")),
            TargetType::Mac | TargetType::Hash => None,
            // Classified by form: an address or network, a URL, a domain, a host or user name.
            TargetType::Generic => {
                if let Some(n) = as_net() {
                    by_net(n)
                } else if t.contains("://") {
                    self.violation(TargetType::Url, t)
                } else if lower.trim_start_matches('.').contains('.') {
                    by_domain(lower.trim_start_matches('.'))
                } else if self.hosts.contains(&lower) {
                    Some(format!("host {t} is protected"))
                } else if self.users.contains(&lower) {
                    Some(format!("user {t} is protected"))
                } else {
                    None
                }
            }
        }
    }
}

/// Figures of [`bench_never`].
pub struct NeverBench {
    pub load_secs: f64,
    pub ranges: usize,
    pub lookups: u64,
    pub hits: u64,
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
            domains: domains.iter().map(|d| normalize_domain(d)).collect(),
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
        assert!(n.violation(TargetType::Domain, "crm.example.com").is_some());
        assert!(
            n.violation(TargetType::Domain, "EU.CRM.example.com.")
                .is_some()
        );
        assert!(
            n.violation(TargetType::Domain, "notcrm.example.com")
                .is_none()
        );
        assert!(
            n.violation(TargetType::Url, "https://login.crm.example.com/x")
                .is_some()
        );
        assert!(
            n.violation(TargetType::Generic, ".crm.example.com")
                .is_some()
        );
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
