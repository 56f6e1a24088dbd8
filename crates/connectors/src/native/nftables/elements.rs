//! Set elements: the inputs (an address or network to block, a device to quarantine) parsed
//! into what nft stores, the elements of a `nft -j list set` answer, and the timeouts and
//! comments they carry. Pure functions: nothing here runs nft.

use super::Nftables;
use crate::{ActionError, input_str};
use ipnet::IpNet;
use nftables::expr::{Elem, Expression, NamedExpression, Prefix};
use nftables::schema::{NfCmd, NfListObject};
use serde_json::Value;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The two nft sets of one address family of a block set. `<base>_a4`/`_a6` hold single
/// addresses: a hash set, looked up in constant time per packet, which the kernel lists and
/// changes faster than an interval set (a feed of 200,000 addresses lists in half the time and
/// is added in under a third of it). `<base>_v4`/`_v6` hold networks (an interval set), and
/// the single addresses blocked before the address sets existed.
pub(super) struct FamilySets {
    pub(super) addrs: String,
    pub(super) nets: String,
}

impl FamilySets {
    pub(super) fn of(base: &str, v4: bool) -> FamilySets {
        let n = if v4 { 4 } else { 6 };
        FamilySets {
            addrs: format!("{base}_a{n}"),
            nets: format!("{base}_v{n}"),
        }
    }

    /// The set a new element for `net` goes to.
    pub(super) fn home(&self, net: &IpNet) -> &str {
        if net.prefix_len() == net.max_prefix_len() {
            &self.addrs
        } else {
            &self.nets
        }
    }
}

/// An address or network to block, and the sets of its family.
pub(super) struct BlockTarget {
    pub(super) net: IpNet,
    pub(super) set: String,
    pub(super) sets: FamilySets,
}

impl BlockTarget {
    pub(super) fn parse(conn: &Nftables, input: &Value) -> Result<BlockTarget, ActionError> {
        let address = input_str(input, "address")?;
        let set = input.get("set").and_then(Value::as_str).unwrap_or("egress");
        let net = parse_net(address)?;
        let base = conn.block_base(set)?;
        Ok(BlockTarget {
            net,
            set: set.to_owned(),
            sets: FamilySets::of(base, net.addr().is_ipv4()),
        })
    }
}

pub(super) struct BlockState {
    pub(super) exact: Option<Entry>,
    /// The nft set holding the exact element, or the one a new element goes to.
    pub(super) holder: String,
    /// The most specific element containing the target (possibly the exact one).
    pub(super) covering: Option<Entry>,
    /// Elements strictly inside the target network.
    pub(super) covered: Vec<IpNet>,
}

/// An address or CIDR network; host bits of a network are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub(super) fn parse_net(s: &str) -> Result<IpNet, ActionError> {
    let bad = |why: String| ActionError::permanent(format!("invalid address `{s}`: {why}"));
    let net = if s.contains('/') {
        s.parse::<IpNet>().map_err(|e| bad(e.to_string()))?.trunc()
    } else {
        IpNet::from(s.parse::<IpAddr>().map_err(|e| bad(e.to_string()))?)
    };
    Ok(net)
}

/// `192.0.2.1` for a single address, `10.0.0.0/8` for a network.
pub(super) fn net_str(net: IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

pub(super) fn net_expr(net: IpNet) -> Expression<'static> {
    let addr = Expression::String(net.addr().to_string().into());
    if net.prefix_len() == net.max_prefix_len() {
        addr
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(addr),
            len: u32::from(net.prefix_len()),
        }))
    }
}

/// A device to quarantine: a MAC address (normalized to `aa:bb:cc:dd:ee:ff`) or an IP address.
pub(super) struct Device {
    pub(super) value: String,
    pub(super) nft_set: String,
}

impl Device {
    pub(super) fn parse(s: &str, base: &str) -> Result<Device, ActionError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            let suffix = if ip.is_ipv4() { "v4" } else { "v6" };
            return Ok(Device {
                value: ip.to_string(),
                nft_set: format!("{base}_{suffix}"),
            });
        }
        let octets: Vec<&str> = s.split([':', '-']).collect();
        let sep_ok = !(s.contains(':') && s.contains('-'));
        if sep_ok
            && octets.len() == 6
            && octets
                .iter()
                .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Ok(Device {
                value: octets.join(":").to_ascii_lowercase(),
                nft_set: format!("{base}_mac"),
            });
        }
        Err(ActionError::permanent(format!(
            "invalid device `{s}`: expected a MAC address (aa:bb:cc:dd:ee:ff) or an IP address"
        )))
    }
}

/// One set element as listed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    /// `10.0.0.0/8`, `192.0.2.1`, `02:00:00:00:00:01`, or `a-b` for a range.
    pub(super) value: String,
    pub(super) timeout: Option<u32>,
    pub(super) expires: Option<u32>,
    /// The comment, without the connector's mark.
    pub(super) comment: Option<String>,
    /// Whether the connector added it (its comment carries the mark).
    pub(super) ours: bool,
}

impl Entry {
    pub(super) fn net(&self) -> Option<IpNet> {
        parse_net(&self.value).ok()
    }

    pub(super) fn expires_at(&self) -> Option<String> {
        self.expires.map(rfc3339_in)
    }
}

/// The elements of the sets in an `nft -j list set` answer, read straight from the text into
/// entries: no document tree in between (a set of 200,000 elements would take hundreds of
/// bytes per element as one).
pub(super) fn parse_set_listing(json: &str) -> Result<Vec<Entry>, String> {
    let listing: listing::Listing = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(listing
        .nftables
        .into_iter()
        .filter_map(|o| o.set)
        .flat_map(|s| s.elem)
        .map(|e| e.0)
        .collect())
}

/// The shape of `nft -j list set` output, as far as the elements go; everything else is
/// skipped unread.
mod listing {
    use super::{Entry, unmarked};
    use serde::Deserialize;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    #[derive(Deserialize)]
    pub(super) struct Listing {
        #[serde(default)]
        pub(super) nftables: Vec<Object>,
    }

    /// One object of the listing: a set (its elements), or another kind (skipped).
    #[derive(Deserialize)]
    pub(super) struct Object {
        pub(super) set: Option<Set>,
    }

    #[derive(Deserialize)]
    pub(super) struct Set {
        #[serde(default)]
        pub(super) elem: Vec<Listed>,
    }

    /// One listed element.
    pub(super) struct Listed(pub(super) Entry);

    /// An element's value as text: `192.0.2.1`, `10.0.0.0/8`, `a-b`.
    struct Val(String);

    #[derive(Deserialize)]
    struct Prefix {
        addr: Val,
        len: u32,
    }

    /// An element with its attributes (`{"elem": {...}}`).
    #[derive(Deserialize)]
    struct Elem {
        val: Val,
        timeout: Option<u32>,
        expires: Option<u32>,
        comment: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum Kind {
        Elem,
        Prefix,
        Range,
        #[serde(other)]
        Other,
    }

    /// An element or a value: a string, or a one-key object whose key says what it is.
    enum Item {
        Plain(String),
        Elem(Elem),
    }

    struct ItemVisitor {
        /// Whether `{"elem": …}` is allowed (at the top of an element, not inside one).
        elem: bool,
    }

    impl<'de> Visitor<'de> for ItemVisitor {
        type Value = Item;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a set element")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
            Ok(Item::Plain(v.to_owned()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Item, E> {
            Ok(Item::Plain(v))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
            let item = match map.next_key::<Kind>()? {
                Some(Kind::Elem) if self.elem => Item::Elem(map.next_value()?),
                Some(Kind::Prefix) => {
                    let p: Prefix = map.next_value()?;
                    Item::Plain(format!("{}/{}", p.addr.0, p.len))
                }
                Some(Kind::Range) => {
                    let [from, to]: [Val; 2] = map.next_value()?;
                    Item::Plain(format!("{}-{}", from.0, to.0))
                }
                _ => return Err(de::Error::custom("unexpected set element")),
            };
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(item)
        }
    }

    impl<'de> Deserialize<'de> for Val {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Val, D::Error> {
            match d.deserialize_any(ItemVisitor { elem: false })? {
                Item::Plain(s) => Ok(Val(s)),
                Item::Elem(_) => Err(de::Error::custom("an element inside an element")),
            }
        }
    }

    impl<'de> Deserialize<'de> for Listed {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Listed, D::Error> {
            let plain = |value: String| Entry {
                value,
                timeout: None,
                expires: None,
                comment: None,
                ours: false,
            };
            Ok(Listed(
                match d.deserialize_any(ItemVisitor { elem: true })? {
                    Item::Plain(value) => plain(value),
                    Item::Elem(e) => {
                        let (ours, comment) = unmarked(e.comment.as_deref());
                        Entry {
                            timeout: e.timeout,
                            expires: e.expires,
                            comment,
                            ours,
                            ..plain(e.val.0)
                        }
                    }
                },
            ))
        }
    }
}

/// The mark on the comment of every element the connector adds: `belay`, or `belay: COMMENT`.
const MARK: &str = "belay";

/// The comment the connector gives an element it adds: the mark, then `comment`.
pub(super) fn marked(comment: Option<&str>) -> String {
    match comment.filter(|c| !c.is_empty()) {
        Some(c) => comment_of(&format!("{MARK}: {c}")),
        None => MARK.to_owned(),
    }
}

/// `cmd` with the mark at the head of the comment of every element it adds; other commands
/// unchanged.
pub(super) fn with_mark(cmd: NfCmd<'static>) -> NfCmd<'static> {
    let NfCmd::Add(NfListObject::Element(mut element)) = cmd else {
        return cmd;
    };
    element.elem = element
        .elem
        .iter()
        .cloned()
        .map(|e| match e {
            Expression::Named(NamedExpression::Elem(mut elem)) => {
                elem.comment = Some(marked(elem.comment.as_deref()).into());
                Expression::Named(NamedExpression::Elem(elem))
            }
            value => Expression::Named(NamedExpression::Elem(Elem {
                val: Box::new(value),
                timeout: None,
                expires: None,
                comment: Some(marked(None).into()),
                counter: None,
            })),
        })
        .collect::<Vec<_>>()
        .into();
    NfCmd::Add(NfListObject::Element(element))
}

/// Whether a listed comment carries the mark, and the comment without it.
pub(super) fn unmarked(comment: Option<&str>) -> (bool, Option<String>) {
    match comment {
        Some(MARK) => (true, None),
        Some(c) => match c.strip_prefix(MARK).and_then(|r| r.strip_prefix(": ")) {
            Some(rest) => (true, Some(rest.to_owned())),
            None => (false, Some(c.to_owned())),
        },
        None => (false, None),
    }
}

/// The objects (`{"set": …}`, `{"chain": …}`, `{"rule": …}`) of the `inet` table `table` in
/// an `nft -j list ruleset` answer; `None` when the table is not in it. Other tables are
/// skipped unread, whatever their rules hold.
pub(super) fn table_objects(json: &str, table: &str) -> Result<Option<Vec<Value>>, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let objects = doc["nftables"]
        .as_array()
        .ok_or("no `nftables` array in nft's answer")?;
    let ours = |o: &Value| {
        o.as_object()
            .and_then(|m| m.iter().next())
            .is_some_and(|(kind, v)| {
                v["family"] == "inet"
                    && if kind == "table" {
                        v["name"] == table
                    } else {
                        v["table"] == table
                    }
            })
    };
    let mine: Vec<Value> = objects.iter().filter(|o| ours(o)).cloned().collect();
    Ok(mine
        .iter()
        .any(|o| o.get("table").is_some())
        .then_some(mine))
}

/// `30s`, `15m`, `24h`, `7d` → seconds.
pub(super) fn parse_timeout(s: &str) -> Result<u32, ActionError> {
    let bad = || {
        ActionError::permanent(format!(
            "invalid timeout `{s}`: a number followed by s, m, h or d, at most 49710d"
        ))
    };
    let unit = match s.chars().last() {
        Some('s') => 1u64,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    let secs = n.checked_mul(unit).ok_or_else(bad)?;
    if secs == 0 {
        return Err(bad());
    }
    u32::try_from(secs).map_err(|_| bad())
}

/// Seconds in the `timeout` input's form (`^[1-9][0-9]{0,5}(s|m|h|d)$`), rounded up.
pub(super) fn duration_input(secs: u32) -> String {
    let secs = u64::from(secs.max(1));
    for (unit, size) in [("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400)] {
        let n = secs.div_ceil(size);
        if n <= 999_999 {
            return format!("{n}{unit}");
        }
    }
    format!("{}d", secs.div_ceil(86_400))
}

pub(super) fn rfc3339_in(secs: u32) -> String {
    let at = SystemTime::now() + Duration::from_secs(u64::from(secs));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// nft keeps at most 128 bytes of an element comment.
pub(super) fn comment_of(text: &str) -> String {
    let mut s: String = text.chars().filter(|c| !c.is_control()).collect();
    if s.len() > 128 {
        s.truncate(s.floor_char_boundary(128));
    }
    s
}

/// Splits a quarantine comment into its timestamp and reason.
pub(super) fn split_since(comment: Option<&str>) -> (Option<&str>, Option<&str>) {
    let Some(c) = comment else {
        return (None, None);
    };
    let (first, rest) = c.split_once(' ').unwrap_or((c, ""));
    if humantime::parse_rfc3339(first).is_ok() {
        (Some(first), Some(rest).filter(|r| !r.is_empty()))
    } else {
        (None, Some(c))
    }
}
