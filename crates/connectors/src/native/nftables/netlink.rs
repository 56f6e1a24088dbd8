//! The elements of a set without `flags interval` read from the kernel's nf_tables netlink
//! dump: no `nft` process, no JSON between the kernel and the entries. `nft -j list set` spends
//! as long formatting a 200,000-element set as the kernel spends dumping it; this reads the same
//! dump directly. An interval set (whose elements are start/end pairs) is left to `nft`.

use super::elements::{Entry, unmarked};
use rustix::fd::{AsFd, OwnedFd};
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NFPROTO_INET: u8 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
/// libnftnl's user-data record holding an element's comment.
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;

/// How many times a dump the kernel marks as interrupted (the set changed meanwhile) is read
/// again before giving up.
const ATTEMPTS: usize = 5;

/// Why the kernel's dump could not be used.
#[derive(Debug)]
pub(super) enum DumpError {
    /// Not readable this way (no permission, no such namespace, an element this reader does not
    /// know): `nft` lists it instead.
    Unsupported(String),
    /// The kernel answered with an error, or the set kept changing during every dump.
    Failed(String),
}

/// The elements of set `set` of `inet` table `table` in network namespace `netns` (the
/// process's own when `None`); empty when the table or the set does not exist.
///
/// Blocking. In another namespace the socket is opened on a thread of its own, which enters
/// the namespace and ends with it (the socket stays in the namespace it was opened in).
pub(super) fn list_set(
    netns: Option<&str>,
    table: &str,
    set: &str,
    timeout: Duration,
) -> Result<Vec<Entry>, DumpError> {
    let sock = match netns {
        None => open(timeout)?,
        Some(ns) => {
            let ns = ns.to_owned();
            std::thread::Builder::new()
                .name("nft-netns".into())
                .spawn(move || {
                    enter_netns(&ns)?;
                    open(timeout)
                })
                .map_err(|e| DumpError::Unsupported(format!("cannot start a thread: {e}")))?
                .join()
                .map_err(|_| DumpError::Failed("the namespace thread panicked".into()))??
        }
    };
    for _ in 0..ATTEMPTS {
        if let Some(entries) = dump(&sock, table, set)? {
            return Ok(entries);
        }
    }
    Err(DumpError::Failed(format!(
        "nft set `{set}` changed during each of {ATTEMPTS} listings"
    )))
}

fn enter_netns(ns: &str) -> Result<(), DumpError> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path)
        .map_err(|e| DumpError::Unsupported(format!("cannot open {path}: {e}")))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| DumpError::Unsupported(format!("cannot enter network namespace {ns}: {e}")))
}

fn open(timeout: Duration) -> Result<OwnedFd, DumpError> {
    let unsupported = |what: &str, e: rustix::io::Errno| {
        DumpError::Unsupported(format!("netlink socket: {what}: {e}"))
    };
    let sock = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::RAW,
        Some(netlink::NETFILTER),
    )
    .map_err(|e| unsupported("socket", e))?;
    rustix::net::bind(&sock, &SocketAddrNetlink::new(0, 0)).map_err(|e| unsupported("bind", e))?;
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(timeout),
    )
    .map_err(|e| unsupported("timeout", e))?;
    Ok(sock)
}

/// One dump of the set's elements; `None` when the kernel marked it interrupted.
fn dump(sock: &OwnedFd, table: &str, set: &str) -> Result<Option<Vec<Entry>>, DumpError> {
    let seq = fastrand::u32(..);
    let request = request(seq, table, set);
    rustix::net::sendto(
        sock,
        &request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .map_err(|e| DumpError::Unsupported(format!("netlink send: {e}")))?;
    let mut entries = Vec::new();
    let mut interrupted = false;
    // Larger than the kernel's largest dump message (32 KiB), so one message per read.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, _) = rustix::net::recv(sock, &mut buf[..], RecvFlags::empty())
            .map_err(|e| DumpError::Failed(format!("reading nft set `{set}`: {e}")))?;
        if n == 0 {
            return Err(DumpError::Failed(format!(
                "the kernel ended the listing of nft set `{set}` early"
            )));
        }
        let mut rest = &buf[..n];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(word(rest, 0)) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let flags = u16::from_ne_bytes([rest[6], rest[7]]);
            let msg_seq = u32::from_ne_bytes(word(rest, 8));
            if len < 16 || len > rest.len() {
                return Err(DumpError::Failed(format!(
                    "a malformed netlink message listing nft set `{set}`"
                )));
            }
            let payload = &rest[16..len];
            rest = &rest[align(len).min(rest.len())..];
            if msg_seq != seq {
                continue;
            }
            interrupted |= flags & NLM_F_DUMP_INTR != 0;
            match kind {
                NLMSG_DONE => return Ok((!interrupted).then_some(entries)),
                NLMSG_ERROR => {
                    let errno = payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    return match -errno {
                        0 => Ok((!interrupted).then_some(entries)),
                        // No such table or set: nothing blocked yet.
                        2 => Ok(Some(Vec::new())),
                        1 | 13 => Err(DumpError::Unsupported(format!(
                            "not permitted to list nft set `{set}`"
                        ))),
                        e => Err(DumpError::Failed(format!(
                            "listing nft set `{set}`: {}",
                            std::io::Error::from_raw_os_error(e)
                        ))),
                    };
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM) => {
                    // After the 4-byte nfgenmsg header, the attributes.
                    let attrs = payload.get(4..).unwrap_or_default();
                    for (ty, list) in Attrs(attrs) {
                        if ty == NFTA_SET_ELEM_LIST_ELEMENTS {
                            for (ty, elem) in Attrs(list) {
                                if ty == NFTA_LIST_ELEM {
                                    entries.push(element(elem, set)?);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A dump request for the elements of `table`'s set `set` (family `inet`).
fn request(seq: u32, table: &str, set: &str) -> Vec<u8> {
    let mut msg = vec![0u8; 16];
    msg.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
    for (ty, name) in [
        (NFTA_SET_ELEM_LIST_TABLE, table),
        (NFTA_SET_ELEM_LIST_SET, set),
    ] {
        let len = 4 + name.len() + 1;
        msg.extend_from_slice(&(len as u16).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(name.as_bytes());
        msg.push(0);
        msg.resize(align(msg.len()), 0);
    }
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM).to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    msg
}

/// One listed element: its key (an IPv4, IPv6 or MAC address), timeout, time left, comment.
fn element(attrs: &[u8], set: &str) -> Result<Entry, DumpError> {
    let mut value = None;
    let (mut timeout, mut expires, mut comment) = (None, None, None);
    for (ty, data) in Attrs(attrs) {
        match ty {
            NFTA_SET_ELEM_KEY => {
                value = Attrs(data)
                    .find(|(t, _)| *t == NFTA_DATA_VALUE)
                    .and_then(|(_, key)| key_text(key));
            }
            NFTA_SET_ELEM_FLAGS if be_u32(data) & NFT_SET_ELEM_INTERVAL_END != 0 => {
                return Err(DumpError::Unsupported(format!(
                    "nft set `{set}` holds intervals"
                )));
            }
            // Milliseconds, as nft shows them: whole seconds.
            NFTA_SET_ELEM_TIMEOUT => timeout = Some(seconds(data)),
            NFTA_SET_ELEM_EXPIRATION => expires = Some(seconds(data)),
            NFTA_SET_ELEM_USERDATA => comment = comment_of(data),
            _ => {}
        }
    }
    let value = value.ok_or_else(|| {
        DumpError::Unsupported(format!("an element of nft set `{set}` of an unknown type"))
    })?;
    let (ours, comment) = unmarked(comment.as_deref());
    Ok(Entry {
        value,
        timeout,
        expires,
        comment,
        ours,
    })
}

/// The text nft shows for a key: an IPv4 or IPv6 address, or a MAC address.
fn key_text(key: &[u8]) -> Option<String> {
    match key.len() {
        4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(key).ok()?).to_string()),
        16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(key).ok()?).to_string()),
        // An ether_addr key is 6 bytes, padded to 8 in the register.
        6 | 8 => Some(
            key[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        _ => None,
    }
}

/// The comment in an element's user data (libnftnl's type-length-value records).
fn comment_of(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (ty, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if ty == NFTNL_UDATA_SET_ELEM_COMMENT {
            let text = value.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        udata = &udata[2 + len..];
    }
    None
}

fn seconds(data: &[u8]) -> u32 {
    let ms = data
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes);
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

fn be_u32(data: &[u8]) -> u32 {
    data.get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

fn word(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The netlink attributes in a buffer, as (type without its flags, payload).
struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        self.0 = &b[align(len).min(b.len())..];
        Some((ty, &b[4..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::nftables::elements::parse_set_listing;
    use std::process::Command;

    #[test]
    fn reads_user_data_comments_and_keys() {
        // libnftnl's layout: type, length (with the NUL), text.
        let mut udata = vec![1, 4, 0, 0, 0, 1];
        udata.extend_from_slice(&[0, 8]);
        udata.extend_from_slice(b"belay: \0");
        assert_eq!(comment_of(&udata).as_deref(), Some("belay: "));
        assert_eq!(
            comment_of(&[0, 40, 1]),
            None,
            "a record longer than the data"
        );
        assert_eq!(key_text(&[192, 0, 2, 1]).as_deref(), Some("192.0.2.1"));
        assert_eq!(
            key_text(&[2, 0xbe, 0x1a, 0, 0, 1, 0, 0]).as_deref(),
            Some("02:be:1a:00:00:01")
        );
        assert_eq!(key_text(&[1, 2, 3]), None);
        let mut v6 = [0u8; 16];
        v6[0] = 0xfd;
        v6[15] = 2;
        assert_eq!(key_text(&v6).as_deref(), Some("fd00::2"));
        let mut attrs = Vec::new();
        for (ty, body) in [(3u16, &b"abcde"[..]), (0x8001, &b"xy"[..])] {
            attrs.extend_from_slice(&((4 + body.len()) as u16).to_ne_bytes());
            attrs.extend_from_slice(&ty.to_ne_bytes());
            attrs.extend_from_slice(body);
            attrs.resize(align(attrs.len()), 0);
        }
        let got: Vec<(u16, &[u8])> = Attrs(&attrs).collect();
        assert_eq!(got, vec![(3, &b"abcde"[..]), (1, &b"xy"[..])]);
        assert_eq!(
            Attrs(&[200, 0, 1, 0, 9]).count(),
            0,
            "a length past the end"
        );
    }

    /// The kernel's dump, read here, gives the entries `nft -j list set` gives, for sets of
    /// every key type the connector declares, with comments (its mark, an administrator's, one
    /// cut at nft's 128 bytes), timeouts and none.
    #[test]
    fn lists_what_nft_lists() {
        if let Err(why) = super::super::Sandbox::available() {
            belay_testkit::skip::unless_required(
                "BELAY_REQUIRE_NATIVE",
                &format!("nftables sandbox unavailable: {why}"),
            );
            return;
        }
        /// A network namespace of the test's own, deleted however the test ends.
        struct Netns(String);
        impl Drop for Netns {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let ns = format!("belay-nl-{:08x}", fastrand::u32(..));
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let run = |args: &[&str], stdin: Option<&str>| -> String {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns, "nft"]).args(args);
            let out = match stdin {
                Some(text) => {
                    let path = scratch.path().join("rules.nft");
                    std::fs::write(&path, text).expect("writes the ruleset");
                    cmd.arg("-f").arg(&path).output()
                }
                None => cmd.output(),
            }
            .expect("nft runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(
            Command::new("ip")
                .args(["netns", "add", &ns])
                .status()
                .is_ok_and(|s| s.success())
        );
        let _netns = Netns(ns.clone());
        let long = "x".repeat(127);
        let mut elems: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "10.{}.{}.{} comment \"belay\"",
                    i / 65536,
                    (i / 256) % 256,
                    i % 256
                )
            })
            .collect();
        elems.push("192.0.2.7 timeout 1h comment \"belay: C2 ü {x}\"".into());
        elems.push("192.0.2.8 timeout 2d".into());
        elems.push(format!("192.0.2.9 comment \"{long}\""));
        elems.push("198.51.100.1 comment \"admin\"".into());
        let rules = format!(
            "table inet t {{\n\
             set a4 {{ type ipv4_addr; flags timeout; elements = {{ {} }} }}\n\
             set a6 {{ type ipv6_addr; flags timeout; elements = {{ fd00::2 comment \"belay\", 2001:db8::1 timeout 5m, ::ffff:192.0.2.1 }} }}\n\
             set mac {{ type ether_addr; elements = {{ 02:be:1a:00:00:01 comment \"belay\" }} }}\n\
             set empty {{ type ipv4_addr; }}\n\
             set nets {{ type ipv4_addr; flags interval; elements = {{ 10.0.0.0/8 }} }}\n\
             }}\n",
            elems.join(", ")
        );
        run(&[], Some(&rules));
        let timeout = Duration::from_secs(10);
        for set in ["a4", "a6", "mac", "empty"] {
            let mut from_nft =
                parse_set_listing(&run(&["-j", "list", "set", "inet", "t", set], None))
                    .expect("nft's listing parses");
            let mut read = list_set(Some(&ns), "t", set, timeout).expect("the dump reads");
            for entries in [&mut from_nft, &mut read] {
                entries.sort_by(|a, b| a.value.cmp(&b.value));
            }
            assert_eq!(read.len(), from_nft.len(), "{set}");
            for (r, n) in read.iter().zip(&from_nft) {
                assert_eq!(
                    (&r.value, r.timeout, &r.comment, r.ours),
                    (&n.value, n.timeout, &n.comment, n.ours),
                    "{set}"
                );
                // Read a moment apart.
                assert!(r.expires.unwrap_or(0).abs_diff(n.expires.unwrap_or(0)) <= 2);
                assert_eq!(r.expires.is_some(), n.expires.is_some());
            }
        }
        assert!(
            matches!(
                list_set(Some(&ns), "t", "nets", timeout),
                Err(DumpError::Unsupported(_))
            ),
            "an interval set is left to nft"
        );
        assert!(
            list_set(Some(&ns), "t", "missing", timeout)
                .expect("no such set")
                .is_empty()
                && list_set(Some(&ns), "none", "a4", timeout)
                    .expect("no such table")
                    .is_empty()
        );
    }
}
