//! A minimal DNS client: one A or AAAA query over UDP and the parsing of its reply, so tests,
//! `belay lab up` and `belay demo` can see what a resolver answers. It only reads answers; it
//! never changes a resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A resolver's reply: its response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED...) and the
/// addresses in its answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The response code, the low 4 bits of the header's flags.
    pub rcode: u8,
    /// The A and AAAA records of the answer section, in order (other types skipped).
    pub addrs: Vec<IpAddr>,
}

/// One DNS query over UDP (recursion desired) for A or AAAA records, with a 2 s timeout.
pub fn query(server: SocketAddr, name: &str, ipv6: bool) -> Result<DnsAnswer, String> {
    let qtype: u16 = if ipv6 { 28 } else { 1 };
    let id = fastrand::u16(..);
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..64).contains(l))
            .ok_or_else(|| format!("invalid name `{name}`"))?;
        msg.push(len);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());

    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| format!("udp socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("udp socket: {e}"))?;
    socket
        .send_to(&msg, server)
        .map_err(|e| format!("cannot send to {server}: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer from {server}: {e}"))?;
        if from == server && n >= 12 && buf[..2] == id.to_be_bytes() {
            return parse_reply(&buf[..n]);
        }
    }
}

fn parse_reply(r: &[u8]) -> Result<DnsAnswer, String> {
    let short = || "truncated DNS reply".to_owned();
    let u16_at = |i: usize| -> Result<u16, String> {
        r.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(short)
    };
    // Skips a (possibly compressed) name.
    let skip_name = |mut i: usize| -> Result<usize, String> {
        loop {
            let len = *r.get(i).ok_or_else(short)?;
            if len & 0xc0 == 0xc0 {
                return Ok(i + 2);
            }
            if len == 0 {
                return Ok(i + 1);
            }
            i += 1 + usize::from(len);
        }
    };
    let rcode = r.get(3).ok_or_else(short)? & 0x0f;
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(i)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        i = skip_name(i)?;
        let (rtype, rdlen) = (u16_at(i)?, usize::from(u16_at(i + 8)?));
        let data = r.get(i + 10..i + 10 + rdlen).ok_or_else(short)?;
        match (rtype, rdlen) {
            (1, 4) => addrs.push(IpAddr::from(
                <[u8; 4]>::try_from(data).map_err(|_| short())?,
            )),
            (28, 16) => addrs.push(IpAddr::from(
                <[u8; 16]>::try_from(data).map_err(|_| short())?,
            )),
            _ => {}
        }
        i += 10 + rdlen;
    }
    Ok(DnsAnswer { rcode, addrs })
}
