//! `firewall.block_many` and `firewall.unblock_many`: a set of addresses and networks in one
//! atomic `nft -f` batch, journaled as one change. The state of a batch is the part of it the
//! set lacks (`block_many`) or holds (`unblock_many`), so the change's before-state is its
//! exact item diff and its inverse puts back exactly that.

use super::Nftables;
use super::elements::{Entry, FamilySets, comment_of, net_expr, net_str, parse_net, parse_timeout};
use crate::ActionError;
use crate::native::batch;
use ipnet::IpNet;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// A batch's addresses parsed, without repeats, in order, and the nft sets of each family.
struct Batch {
    set: String,
    nets: Vec<IpNet>,
    v4: FamilySets,
    v6: FamilySets,
}

impl Batch {
    fn parse(conn: &Nftables, input: &Value) -> Result<Batch, ActionError> {
        let set = input.get("set").and_then(Value::as_str).unwrap_or("egress");
        let base = conn.block_base(set)?;
        let nets = batch::items(input, "addresses", "address", |_, s| {
            let net = parse_net(s)?;
            Ok((net, net))
        })?;
        Ok(Batch {
            set: set.to_owned(),
            nets,
            v4: FamilySets::of(base, true),
            v6: FamilySets::of(base, false),
        })
    }

    fn family(&self, net: &IpNet) -> &FamilySets {
        if net.addr().is_ipv4() {
            &self.v4
        } else {
            &self.v6
        }
    }

    /// The sets of the families the batch has addresses of.
    fn families(&self) -> impl Iterator<Item = &FamilySets> {
        let has = |v4: bool| self.nets.iter().any(|n| n.addr().is_ipv4() == v4);
        [(has(true), &self.v4), (has(false), &self.v6)]
            .into_iter()
            .filter_map(|(has, sets)| has.then_some(sets))
    }
}

/// The elements of the sets of a batch's families, for lookups by exact element and by
/// covering network.
struct Elements {
    exact: HashSet<IpNet>,
    /// Prefix lengths of the networks (not single addresses) present, per family.
    prefixes_v4: BTreeSet<u8>,
    prefixes_v6: BTreeSet<u8>,
}

impl Elements {
    fn new(entries: &[Entry]) -> Elements {
        let mut e = Elements {
            exact: HashSet::with_capacity(entries.len()),
            prefixes_v4: BTreeSet::new(),
            prefixes_v6: BTreeSet::new(),
        };
        for net in entries.iter().filter_map(Entry::net) {
            e.insert(net);
        }
        e
    }

    fn insert(&mut self, net: IpNet) {
        if net.prefix_len() < net.max_prefix_len() {
            match net {
                IpNet::V4(_) => self.prefixes_v4.insert(net.prefix_len()),
                IpNet::V6(_) => self.prefixes_v6.insert(net.prefix_len()),
            };
        }
        self.exact.insert(net);
    }

    /// Whether `net` is an element, or inside a network that is.
    fn covers(&self, net: &IpNet) -> bool {
        if self.exact.contains(net) {
            return true;
        }
        let prefixes = match net {
            IpNet::V4(_) => &self.prefixes_v4,
            IpNet::V6(_) => &self.prefixes_v6,
        };
        prefixes
            .range(..net.prefix_len())
            .any(|&p| IpNet::new(net.addr(), p).is_ok_and(|n| self.exact.contains(&n.trunc())))
    }
}

impl Nftables {
    async fn elements(&self, b: &Batch) -> Result<(Vec<Entry>, Elements), ActionError> {
        let mut all = Vec::new();
        for sets in b.families() {
            all.extend(self.list_hashed(&sets.addrs).await?);
            all.extend(self.list(&sets.nets).await?);
        }
        let elements = Elements::new(&all);
        Ok((all, elements))
    }

    /// Adds every address of the batch the sets do not cover yet, in one nft batch.
    ///
    /// Given the state the engine read just before under its lock (`before`, the addresses
    /// absent then), a batch of single addresses adds those without listing the sets again:
    /// adding an element another process added meanwhile changes nothing, and the engine's
    /// read after the call shows what the sets hold. A batch with networks is checked against
    /// a fresh listing, which refusing a network that contains blocked elements needs.
    pub(super) async fn block_many(
        &self,
        input: &Value,
        before: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let timeout = match input.get("timeout").and_then(Value::as_str) {
            Some(t) => Some(parse_timeout(t)?),
            None => None,
        };
        let comment = input.get("reason").and_then(Value::as_str).map(comment_of);
        let b = Batch::parse(self, input)?;
        let _guard = self.lock.lock().await;
        let to_add = match absent_before(&b, before) {
            Some(absent) => absent,
            None => self.uncovered(&b).await?,
        };
        let mut by_set: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
        for net in to_add {
            by_set
                .entry(b.family(&net).home(&net))
                .or_default()
                .push(net);
        }
        let added: usize = by_set.values().map(Vec::len).sum();
        if added > 0 {
            let cmds = by_set
                .into_iter()
                .map(|(set, nets)| self.elements_cmd(true, set, &nets, timeout, comment.clone()))
                .collect();
            self.apply(cmds).await?;
        }
        Ok(json!({ "set": b.set, "added": added, "changed": added > 0 }))
    }

    /// The addresses of the batch the sets do not cover, read from the sets; refused when a
    /// network of the batch contains elements already there.
    async fn uncovered(&self, b: &Batch) -> Result<Vec<IpNet>, ActionError> {
        let (all, mut present) = self.elements(b).await?;
        // Widest first: an address inside a network of the same batch is blocked by it.
        let mut order: Vec<&IpNet> = b.nets.iter().collect();
        order.sort_by_key(|n| n.prefix_len());
        let mut uncovered = Vec::new();
        let mut refused = Vec::new();
        for net in order {
            if present.covers(net) {
                continue;
            }
            if net.prefix_len() < net.max_prefix_len() {
                let inside: Vec<String> = all
                    .iter()
                    .filter_map(Entry::net)
                    .filter(|n| net.contains(n) && n != net)
                    .take(3)
                    .map(net_str)
                    .collect();
                if !inside.is_empty() {
                    refused.push(format!("{} contains {}", net_str(*net), inside.join(", ")));
                    continue;
                }
            }
            present.insert(*net);
            uncovered.push(*net);
        }
        if !refused.is_empty() {
            return Err(ActionError::permanent(format!(
                "{} networks of the batch contain elements already in set `{}` ({}); unblock them first; nothing was applied",
                refused.len(),
                b.set,
                refused.into_iter().take(5).collect::<Vec<_>>().join("; ")
            )));
        }
        Ok(uncovered)
    }

    /// Removes every address of the batch that is an element of the sets, in one nft batch.
    ///
    /// An address set's elements are deleted one by one (constant time each). nft deletes an
    /// element of an interval set in time proportional to the set, so deleting a batch costs
    /// batch × set; instead the batch flushes each interval set it touches and adds back the
    /// elements that stay, with their timeouts (and what was left of them) and comments, in
    /// the same transaction: packets see the sets before or after, never in between.
    pub(super) async fn unblock_many(&self, input: &Value) -> Result<Value, ActionError> {
        let b = Batch::parse(self, input)?;
        let _guard = self.lock.lock().await;
        let gone: HashSet<IpNet> = b.nets.iter().copied().collect();
        let mut removed = 0usize;
        let mut cmds = Vec::new();
        for sets in b.families() {
            for nft_set in [&sets.addrs, &sets.nets] {
                let entries = if nft_set == &sets.addrs {
                    self.list_hashed(nft_set).await?
                } else {
                    self.list(nft_set).await?
                };
                let (drop, keep): (Vec<Entry>, Vec<Entry>) = entries
                    .into_iter()
                    .partition(|e| e.net().is_some_and(|n| gone.contains(&n)));
                if drop.is_empty() {
                    continue;
                }
                // Only what belay added: an administrator's element stays, and the batch says so.
                if let Some(theirs) = drop.iter().find(|e| !e.ours) {
                    return Err(ActionError::permanent(format!(
                        "{} in nft set `{nft_set}` was not added by belay: belay removes only what it \
                         added; nothing of the batch was removed",
                        theirs.value
                    )));
                }
                removed += drop.len();
                if nft_set == &sets.addrs {
                    let nets: Vec<IpNet> = drop.iter().filter_map(Entry::net).collect();
                    cmds.push(self.elements_cmd(false, nft_set, &nets, None, None));
                    continue;
                }
                cmds.push(self.flush_set_cmd(nft_set));
                if !keep.is_empty() {
                    cmds.push(self.restore_cmd(nft_set, &keep)?);
                }
            }
        }
        if !cmds.is_empty() {
            // The elements that stay go back exactly as listed, each with its own comment.
            self.apply_as_listed(cmds).await?;
        }
        Ok(json!({ "set": b.set, "removed": removed, "changed": removed > 0 }))
    }

    fn flush_set_cmd(&self, set: &str) -> nftables::schema::NfCmd<'static> {
        use nftables::schema::{FlushObject, NfCmd, Set, SetType, SetTypeValue};
        use nftables::types::NfFamily;
        NfCmd::Flush(FlushObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: self.config.table.clone().into(),
            name: set.to_owned().into(),
            handle: None,
            // The interval sets are `<base>_v4` and `<base>_v6`.
            set_type: SetTypeValue::Single(if set.ends_with("_v4") {
                SetType::Ipv4Addr
            } else {
                SetType::Ipv6Addr
            }),
            policy: None,
            flags: None,
            elem: None,
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        })))
    }

    /// Adds `entries` back as they were listed: value, timeout, what was left of it, comment.
    fn restore_cmd(
        &self,
        set: &str,
        entries: &[Entry],
    ) -> Result<nftables::schema::NfCmd<'static>, ActionError> {
        use nftables::expr::{Elem, Expression, NamedExpression, Range};
        use nftables::schema::{Element, NfCmd, NfListObject};
        use nftables::types::NfFamily;
        let mut elem = Vec::with_capacity(entries.len());
        for e in entries {
            let value = match (e.net(), e.value.split_once('-')) {
                (Some(net), _) => net_expr(net),
                (None, Some((from, to))) => Expression::Range(Box::new(Range {
                    range: [
                        Expression::String(from.to_owned().into()),
                        Expression::String(to.to_owned().into()),
                    ],
                })),
                (None, None) => {
                    return Err(ActionError::permanent(format!(
                        "cannot restore set element `{}` of `{set}`; nothing was applied",
                        e.value
                    )));
                }
            };
            // Belay's elements keep their mark; an administrator's keep their own comment.
            let comment = if e.ours {
                Some(super::elements::marked(e.comment.as_deref()))
            } else {
                e.comment.clone()
            };
            elem.push(if e.timeout.is_some() || comment.is_some() {
                Expression::Named(NamedExpression::Elem(Elem {
                    val: Box::new(value),
                    timeout: e.timeout,
                    expires: e.expires,
                    comment: comment.map(Into::into),
                    counter: None,
                }))
            } else {
                value
            });
        }
        Ok(NfCmd::Add(NfListObject::Element(Element {
            family: NfFamily::INet,
            table: self.config.table.clone().into(),
            name: set.to_owned().into(),
            elem: elem.into(),
        })))
    }

    /// `block_many`: the addresses of the batch the set does not cover (none once applied);
    /// `unblock_many`: those that are elements of it (none once applied).
    pub(super) async fn many_read_state(
        &self,
        action: &str,
        input: &Value,
    ) -> Result<Value, ActionError> {
        let b = Batch::parse(self, input)?;
        let (_, present) = self.elements(&b).await?;
        // Blocked: covered by an element; unblockable: an element itself.
        let add = action == "firewall.block_many";
        let held: Vec<bool> = b
            .nets
            .iter()
            .map(|n| {
                if add {
                    present.covers(n)
                } else {
                    present.exact.contains(n)
                }
            })
            .collect();
        let (key, items) = batch::diff(b.nets.iter().map(|n| net_str(*n)), &held, add);
        Ok(json!({ key: items }))
    }

    /// One `add element` or `delete element` command for many elements of one set.
    fn elements_cmd(
        &self,
        add: bool,
        set: &str,
        nets: &[IpNet],
        timeout: Option<u32>,
        comment: Option<String>,
    ) -> nftables::schema::NfCmd<'static> {
        use nftables::expr::{Elem, Expression, NamedExpression};
        use nftables::schema::{Element, NfCmd, NfListObject};
        use nftables::types::NfFamily;
        let elem: Vec<Expression<'static>> = nets
            .iter()
            .map(|n| {
                let value = net_expr(*n);
                if add && (timeout.is_some() || comment.is_some()) {
                    Expression::Named(NamedExpression::Elem(Elem {
                        val: Box::new(value),
                        timeout,
                        expires: None,
                        comment: comment.clone().map(Into::into),
                        counter: None,
                    }))
                } else {
                    value
                }
            })
            .collect();
        let obj = NfListObject::Element(Element {
            family: NfFamily::INet,
            table: self.config.table.clone().into(),
            name: set.to_owned().into(),
            elem: elem.into(),
        });
        if add {
            NfCmd::Add(obj)
        } else {
            NfCmd::Delete(obj)
        }
    }
}

/// The addresses the engine's before-state names absent, when the batch is single addresses
/// only; `None` otherwise (the sets are read instead).
fn absent_before(b: &Batch, before: Option<&Value>) -> Option<Vec<IpNet>> {
    if b.nets.iter().any(|n| n.prefix_len() < n.max_prefix_len()) {
        return None;
    }
    let batch: HashSet<&IpNet> = b.nets.iter().collect();
    batch::absent_before(before, |text| {
        parse_net(text).ok().filter(|net| batch.contains(net))
    })
}
