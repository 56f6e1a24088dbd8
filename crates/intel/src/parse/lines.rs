//! Line-oriented lists: plain lists, FireHOL `.ipset`/`.netset`, and hosts files.

use super::Sink;
use crate::indicator::Kind;
use std::net::IpAddr;

/// Most networks one `a-b` range may expand to (an IPv4 range needs at most 62, IPv6 254).
pub const MAX_RANGE_NETWORKS: usize = 256;

/// Lines with one value each; the first whitespace-separated token counts (so IPsum's
/// `IP<TAB>count` and `value # comment` work). Blank lines and `#`/`;`/`//` comments are skipped.
/// `a-b` IP ranges become the networks that cover them exactly.
pub fn parse_plain(text: &str, sink: &mut dyn Sink) {
    for line in text.lines() {
        let Some(token) = data_line(line).and_then(|l| l.split_whitespace().next()) else {
            continue;
        };
        if let Some((a, b)) = token.split_once('-')
            && let (Ok(a), Ok(b)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>())
        {
            range(a, b, sink);
            continue;
        }
        sink.record(token, None, None);
    }
}

/// A hosts file: `ADDRESS NAME [NAME...]`; the names are the indicators. Lines that name
/// the machine itself (`localhost` and friends) are skipped; a line with one token is
/// read as a plain value.
pub fn parse_hosts(text: &str, sink: &mut dyn Sink) {
    for line in text.lines() {
        let Some(line) = data_line(line) else {
            continue;
        };
        let mut tokens = line.split_whitespace();
        let Some(first) = tokens.next() else { continue };
        let names: Vec<&str> = tokens.collect();
        if names.is_empty() {
            sink.record(first, None, None);
            continue;
        }
        for name in names {
            if matches!(
                name,
                "localhost"
                    | "localhost.localdomain"
                    | "local"
                    | "broadcasthost"
                    | "ip6-localhost"
                    | "ip6-loopback"
                    | "0.0.0.0"
            ) {
                continue;
            }
            sink.record(name, Some(Kind::Domain), None);
        }
    }
}

/// The data part of a line: without an inline `#` comment, `None` when nothing is left.
fn data_line(line: &str) -> Option<&str> {
    let line = line.trim_start_matches('\u{feff}').trim();
    if line.is_empty() || line.starts_with(['#', ';']) || line.starts_with("//") {
        return None;
    }
    let line = match line.find(" #").or_else(|| line.find("\t#")) {
        Some(i) => line[..i].trim_end(),
        None => line,
    };
    (!line.is_empty()).then_some(line)
}

fn range(a: IpAddr, b: IpAddr, sink: &mut dyn Sink) {
    let nets: Vec<String> = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => ipnet::Ipv4Subnets::new(a, b, 0)
            .take(MAX_RANGE_NETWORKS + 1)
            .map(|n| n.to_string())
            .collect(),
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => ipnet::Ipv6Subnets::new(a, b, 0)
            .take(MAX_RANGE_NETWORKS + 1)
            .map(|n| n.to_string())
            .collect(),
        _ => {
            sink.unsupported(format!(
                "range {a}-{b}: not an ascending range of one family"
            ));
            return;
        }
    };
    if nets.len() > MAX_RANGE_NETWORKS {
        sink.unsupported(format!(
            "range {a}-{b}: more than {MAX_RANGE_NETWORKS} networks"
        ));
        return;
    }
    for n in nets {
        sink.record(&n, Some(Kind::Cidr), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::VecSink;

    fn values(s: &VecSink) -> Vec<&str> {
        s.records.iter().map(|r| r.0.as_str()).collect()
    }

    #[test]
    fn plain_lists_take_the_first_token_and_skip_comments() {
        let mut s = VecSink::default();
        parse_plain(
            "# IPsum\n\n77.90.185.20\t10\n; other\nevil.example # note\n// x\n10.0.0.0-10.0.0.5\n",
            &mut s,
        );
        assert_eq!(
            values(&s),
            ["77.90.185.20", "evil.example", "10.0.0.0/30", "10.0.0.4/31"]
        );
    }

    #[test]
    fn hosts_files_yield_names() {
        let mut s = VecSink::default();
        parse_hosts(
            "# t\n127.0.0.1 localhost\n0.0.0.0 a.example b.example\n0.0.0.0 c.example # x\n",
            &mut s,
        );
        assert_eq!(values(&s), ["a.example", "b.example", "c.example"]);
    }

    #[test]
    fn wide_ranges_become_few_networks_and_backwards_ones_are_refused() {
        let mut s = VecSink::default();
        parse_plain("0.0.0.1-255.255.255.254\n10.0.0.9-10.0.0.1\n", &mut s);
        // Any IPv4 range is at most 62 networks.
        assert_eq!(s.records.len(), 62);
        assert_eq!(s.records[0].0, "0.0.0.1/32");
        assert_eq!(s.unsupported.len(), 1);
    }
}
