//! `firewall.*` (egress block sets) and `nac.*` (device quarantine) on nftables.
//!
//! The connector owns one `inet` table and, in it, only what it declares: its sets and its base
//! chains (`firewall_output`, `firewall_forward`; `nac_input`, `nac_forward`, `nac_output`) with
//! one `belay: …`-commented drop rule per set. Every change is one atomic `nft -j -f -` batch of
//! element additions or deletions, of exactly the elements the action names, preceded by
//! whatever of those objects is missing (all of them on the first change; later, what someone
//! removed). It never flushes or deletes a chain or a rule, and deletes only an element an
//! action names (`firewall.unblock_ip`, `nac.release`, the rollback of a block or quarantine)
//! that it added itself: every element it adds carries `belay` at the head of its comment, and
//! an unblock or release of an element without it is refused. An administrator's chains,
//! rules and elements (in this table or another) survive every change and rollback. State is
//! read from the kernel's netlink dump for sets without intervals and with `nft -j list set` for
//! the others; a set that does not exist yet is read as empty.
//!
//! A block set is two nft sets per address family: single addresses in a hash set
//! (`<base>_a4`, `<base>_a6`), networks in an interval set (`<base>_v4`, `<base>_v6`, which also
//! holds addresses blocked by versions before the address sets); both are read for every
//! state. Blocking an address already covered by a blocked network changes nothing
//! (`changed: false`; `firewall.status` names the network), and blocking a network that contains
//! blocked elements is refused with the elements named. Blocking an element already present
//! keeps it as it is (its timeout and comment).

mod elements;
mod many;
mod netlink;
mod sandbox;

pub use sandbox::Sandbox;

use super::cmd::Cmd;
use crate::{ActionError, Call, Connector, input_str};
use async_trait::async_trait;
use elements::{
    BlockState, BlockTarget, Device, Entry, FamilySets, comment_of, duration_input, net_expr,
    net_str, parse_set_listing, parse_timeout, rfc3339_in, split_since, table_objects, with_mark,
};
use nftables::batch::Batch;
use nftables::expr::{Elem, Expression, NamedExpression, Payload, PayloadField};
use nftables::schema::{
    Chain, Element, NfCmd, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

/// The action family an nftables connector serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `firewall.block_ip|unblock_ip|status`: egress block sets (output and forward hooks).
    Firewall,
    /// `nac.quarantine|release|status`: drops a device's traffic by MAC or IP address.
    Nac,
}

/// `[connectors.NAME] type = "nftables"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NftablesConfig {
    /// The family served; configure the kind twice to serve both.
    pub family: Role,
    /// The `inet` table holding the sets and chains (created on first change).
    pub table: String,
    /// Block set names the `set` input accepts, each mapped to the base name of its nft sets:
    /// `<base>_a4` and `<base>_a6` (addresses), `<base>_v4` and `<base>_v6` (networks).
    /// Default: `egress = "egress"`.
    pub sets: BTreeMap<String, String>,
    /// Base name of the quarantine sets `<base>_v4`, `<base>_v6` and `<base>_mac`.
    pub quarantine: String,
    /// Network namespace to run `nft` in (`ip netns exec NS nft ...`).
    pub netns: Option<String>,
    /// The `nft` program.
    pub nft: String,
    /// Priority of the connector's base chains.
    pub priority: i32,
    /// How long one `nft` run may take, in seconds.
    pub timeout_secs: u64,
}

impl Default for NftablesConfig {
    fn default() -> Self {
        NftablesConfig {
            family: Role::Firewall,
            table: "belay".into(),
            sets: BTreeMap::from([("egress".to_owned(), "egress".to_owned())]),
            quarantine: "quarantine".into(),
            netns: None,
            nft: "nft".into(),
            priority: 0,
            timeout_secs: 10,
        }
    }
}

/// `PROTOCOL FIELD @SET drop`, e.g. `ip daddr @egress_v4 drop`.
type DropRule = (&'static str, &'static str, String);

/// One of the connector's base chains and the drop rules it holds.
type OwnChain = (Chain<'static>, Vec<Rule<'static>>);

/// The `nftables` connector.
pub struct Nftables {
    config: NftablesConfig,
    /// Serializes check-then-change sequences.
    lock: tokio::sync::Mutex<()>,
}

/// An nft object name: a letter, then letters, digits or `_` (room left for a `_v4` suffix).
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 28
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Nftables {
    /// Checks the configuration's names; touches nothing until the first change.
    pub fn new(name: &str, config: NftablesConfig) -> Result<Self, String> {
        let _ = name;
        let mut names: Vec<&str> = vec![config.table.as_str(), config.quarantine.as_str()];
        names.extend(config.sets.values().map(String::as_str));
        if let Some(bad) = names.iter().find(|n| !valid_name(n)) {
            return Err(format!(
                "invalid nft name `{bad}`: a letter, then up to 27 letters, digits or `_`"
            ));
        }
        if config.family == Role::Firewall && config.sets.is_empty() {
            return Err("`sets` must name at least one block set".into());
        }
        if let Some(ns) = &config.netns
            && (ns.is_empty() || ns.contains(['/', '\0']) || ns.starts_with('.'))
        {
            return Err(format!("invalid network namespace name `{ns}`"));
        }
        Ok(Nftables {
            config,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    fn nft(&self) -> Cmd {
        Cmd::in_netns(&self.config.nft, self.config.netns.as_deref())
            .timeout(Duration::from_secs(self.config.timeout_secs.max(1)))
    }

    /// The base name of the nft sets behind a block set name.
    fn block_base(&self, set: &str) -> Result<&str, ActionError> {
        self.config
            .sets
            .get(set)
            .map(String::as_str)
            .ok_or_else(|| {
                ActionError::permanent(format!(
                    "unknown block set `{set}` (configured: {})",
                    self.config
                        .sets
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The elements of one nft set; empty when the table or set does not exist yet.
    async fn list(&self, set: &str) -> Result<Vec<Entry>, ActionError> {
        let out = self
            .nft()
            .args(["-j", "list", "set", "inet", &self.config.table, set])
            .output()
            .await?;
        if !out.success() {
            if out.stderr.contains("No such file or directory") {
                return Ok(Vec::new());
            }
            return Err(ActionError::transient(format!(
                "`nft list set inet {} {set}` failed: {}",
                self.config.table,
                out.stderr.trim()
            )));
        }
        parse_set_listing(&out.stdout)
            .map_err(|e| ActionError::transient(format!("cannot read nft set `{set}`: {e}")))
    }

    /// The elements of a set without intervals (an address set, a quarantine set), read from
    /// the kernel's netlink dump; by `nft` when the dump cannot be read here (no permission to
    /// enter the namespace, say).
    async fn list_hashed(&self, set: &str) -> Result<Vec<Entry>, ActionError> {
        let netns = self.config.netns.clone();
        let (table, name) = (self.config.table.clone(), set.to_owned());
        let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
        let read = tokio::task::spawn_blocking(move || {
            netlink::list_set(netns.as_deref(), &table, &name, timeout)
        })
        .await
        .map_err(|e| ActionError::transient(format!("listing nft set `{set}`: {e}")))?;
        match read {
            Ok(entries) => Ok(entries),
            Err(netlink::DumpError::Unsupported(why)) => {
                tracing::debug!("nft set `{set}` listed by nft: {why}");
                self.list(set).await
            }
            Err(netlink::DumpError::Failed(why)) => Err(ActionError::transient(why)),
        }
    }

    /// Runs `changes` (element additions and deletions) as one atomic `nft -f` batch, preceded
    /// by the declarations of whatever of the connector's own table, sets, chains and rules is
    /// missing. Nothing else is declared, flushed or deleted: the administrator's chains, rules
    /// and elements, in this table or any other, are left as they are. Every element added
    /// gets the connector's mark at the head of its comment, by which a later deletion tells
    /// it from an administrator's ([`Entry::ours`]).
    async fn apply(&self, changes: Vec<NfCmd<'static>>) -> Result<(), ActionError> {
        self.apply_batch(changes.into_iter().map(with_mark).collect())
            .await
    }

    /// As [`Self::apply`], without marking added elements: for elements put back exactly as
    /// they were listed (their own comments, an administrator's unmarked ones included).
    async fn apply_as_listed(&self, changes: Vec<NfCmd<'static>>) -> Result<(), ActionError> {
        self.apply_batch(changes).await
    }

    async fn apply_batch(&self, changes: Vec<NfCmd<'static>>) -> Result<(), ActionError> {
        let mut batch = self.missing_declarations().await?;
        for c in changes {
            batch.add_cmd(c);
        }
        let doc = serde_json::to_string(&batch.to_nftables())
            .map_err(|e| ActionError::permanent(format!("cannot encode the nft batch: {e}")))?;
        self.nft().args(["-j", "-f", "-"]).stdin(doc).run().await?;
        Ok(())
    }

    /// What the table holds now: its sets (without their elements), chains and rules, as
    /// `nft -j -t list ruleset` lists them; `None` when the table does not exist. (Listing the
    /// ruleset tersely takes milliseconds; listing one table or chain reads every element of
    /// its sets.)
    async fn listing(&self) -> Result<Option<Vec<Value>>, ActionError> {
        let out = self
            .nft()
            .args(["-j", "-t", "list", "ruleset"])
            .output()
            .await?;
        if !out.success() {
            return Err(ActionError::transient(format!(
                "`nft list ruleset` failed: {}",
                out.stderr.trim()
            )));
        }
        table_objects(&out.stdout, &self.config.table)
            .map_err(|e| ActionError::transient(format!("cannot read the nft ruleset: {e}")))
    }

    /// Declarations of the connector's own objects that `nft` does not list: all of them on
    /// the first change, and after that only what someone removed.
    async fn missing_declarations(&self) -> Result<Batch<'static>, ActionError> {
        let listed = self.listing().await?;
        Ok(self.missing_from(listed.as_deref()))
    }

    /// The declarations of the connector's objects absent from `listed` (the table's objects;
    /// `None`: no table). A rule counts as present when a rule of the same chain has its
    /// expression or its comment.
    fn missing_from(&self, listed: Option<&[Value]>) -> Batch<'static> {
        let mut batch = Batch::new();
        let (table, sets, chains) = self.own_objects();
        let Some(listed) = listed else {
            batch.add(NfListObject::Table(table));
            for set in sets {
                batch.add(NfListObject::Set(Box::new(set)));
            }
            for (chain, rules) in chains {
                batch.add(NfListObject::Chain(chain));
                for rule in rules {
                    batch.add(NfListObject::Rule(rule));
                }
            }
            return batch;
        };
        let named = |kind: &str| -> HashSet<&str> {
            listed
                .iter()
                .filter_map(|o| o.get(kind)?.get("name")?.as_str())
                .collect()
        };
        let (have_sets, have_chains) = (named("set"), named("chain"));
        let have_rules: Vec<&Value> = listed.iter().filter_map(|o| o.get("rule")).collect();
        for set in sets {
            if !have_sets.contains(set.name.as_ref()) {
                batch.add(NfListObject::Set(Box::new(set)));
            }
        }
        for (chain, rules) in chains {
            if !have_chains.contains(chain.name.as_ref()) {
                batch.add(NfListObject::Chain(chain));
            }
            for rule in rules {
                let expr = serde_json::to_value(&rule.expr).unwrap_or(Value::Null);
                let comment = rule.comment.as_deref().map(|c| json!(c));
                let present = have_rules.iter().any(|r| {
                    r["chain"] == json!(rule.chain)
                        && (r["expr"] == expr || Some(&r["comment"]) == comment.as_ref())
                });
                if !present {
                    batch.add(NfListObject::Rule(rule));
                }
            }
        }
        batch
    }

    /// The connector's own table, its sets, and its base chains with their drop rules (each
    /// rule commented `belay: …`).
    fn own_objects(&self) -> (Table<'static>, Vec<Set<'static>>, Vec<OwnChain>) {
        let table: Cow<'static, str> = self.config.table.clone().into();
        let set = |name: String, ty: SetType, flags: &[SetFlag]| Set {
            family: NfFamily::INet,
            table: table.clone(),
            name: name.into(),
            handle: None,
            set_type: SetTypeValue::Single(ty),
            policy: None,
            flags: (!flags.is_empty()).then(|| flags.iter().copied().collect::<HashSet<_>>()),
            elem: None,
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        };
        let mut sets = Vec::new();
        let mut chains: Vec<(&str, NfHook, Vec<DropRule>)> = Vec::new();
        match self.config.family {
            Role::Firewall => {
                let mut rules = Vec::new();
                for base in self.config.sets.values() {
                    for (v4, ty, proto) in [
                        (true, SetType::Ipv4Addr, "ip"),
                        (false, SetType::Ipv6Addr, "ip6"),
                    ] {
                        let FamilySets { addrs, nets } = FamilySets::of(base, v4);
                        sets.push(set(addrs.clone(), ty, &[SetFlag::Timeout]));
                        sets.push(set(
                            nets.clone(),
                            ty,
                            &[SetFlag::Interval, SetFlag::Timeout],
                        ));
                        rules.push((proto, "daddr", addrs));
                        rules.push((proto, "daddr", nets));
                    }
                }
                chains.push(("firewall_output", NfHook::Output, rules.clone()));
                chains.push(("firewall_forward", NfHook::Forward, rules));
            }
            Role::Nac => {
                let q = &self.config.quarantine;
                sets.push(set(format!("{q}_v4"), SetType::Ipv4Addr, &[]));
                sets.push(set(format!("{q}_v6"), SetType::Ipv6Addr, &[]));
                sets.push(set(format!("{q}_mac"), SetType::EtherAddr, &[]));
                let from = vec![
                    ("ether", "saddr", format!("{q}_mac")),
                    ("ip", "saddr", format!("{q}_v4")),
                    ("ip6", "saddr", format!("{q}_v6")),
                ];
                let to = vec![
                    ("ip", "daddr", format!("{q}_v4")),
                    ("ip6", "daddr", format!("{q}_v6")),
                ];
                let both: Vec<_> = from.iter().chain(&to).cloned().collect();
                chains.push(("nac_input", NfHook::Input, from));
                chains.push(("nac_forward", NfHook::Forward, both));
                chains.push(("nac_output", NfHook::Output, to));
            }
        }
        let chains = chains
            .into_iter()
            .map(|(name, hook, rules)| {
                let chain = Chain {
                    family: NfFamily::INet,
                    table: table.clone(),
                    name: name.into(),
                    newname: None,
                    handle: None,
                    _type: Some(NfChainType::Filter),
                    hook: Some(hook),
                    prio: Some(self.config.priority),
                    dev: None,
                    policy: Some(NfChainPolicy::Accept),
                };
                let rules = rules
                    .into_iter()
                    .map(|(protocol, field, set)| Rule {
                        family: NfFamily::INet,
                        table: table.clone(),
                        chain: name.into(),
                        comment: Some(format!("belay: {protocol} {field} @{set} drop").into()),
                        expr: vec![
                            Statement::Match(Match {
                                left: Expression::Named(NamedExpression::Payload(
                                    Payload::PayloadField(PayloadField {
                                        protocol: protocol.into(),
                                        field: field.into(),
                                    }),
                                )),
                                right: Expression::String(format!("@{set}").into()),
                                op: Operator::EQ,
                            }),
                            Statement::Drop(None),
                        ]
                        .into(),
                        handle: None,
                        index: None,
                    })
                    .collect();
                (chain, rules)
            })
            .collect();
        (
            Table {
                family: NfFamily::INet,
                name: table,
                handle: None,
            },
            sets,
            chains,
        )
    }

    /// Adds (with its timeout and comment) or deletes one element of `set`.
    fn element_cmd(
        &self,
        add: bool,
        set: &str,
        value: Expression<'static>,
        timeout: Option<u32>,
        comment: Option<String>,
    ) -> NfCmd<'static> {
        let elem = if add && (timeout.is_some() || comment.is_some()) {
            Expression::Named(NamedExpression::Elem(Elem {
                val: Box::new(value),
                timeout,
                expires: None,
                comment: comment.map(Into::into),
                counter: None,
            }))
        } else {
            value
        };
        let obj = NfListObject::Element(Element {
            family: NfFamily::INet,
            table: self.config.table.clone().into(),
            name: set.to_owned().into(),
            elem: vec![elem].into(),
        });
        if add {
            NfCmd::Add(obj)
        } else {
            NfCmd::Delete(obj)
        }
    }

    // ------------------------------------------------------------------ firewall

    /// The sets of an address's family and the state of the address in them.
    async fn block_state(&self, input: &Value) -> Result<(BlockTarget, BlockState), ActionError> {
        let target = BlockTarget::parse(self, input)?;
        let mut entries = Vec::new();
        let mut found = None;
        for (set, hashed) in [(&target.sets.addrs, true), (&target.sets.nets, false)] {
            let listed = if hashed {
                self.list_hashed(set).await?
            } else {
                self.list(set).await?
            };
            if found.is_none()
                && let Some(e) = listed.iter().find(|e| e.net() == Some(target.net))
            {
                found = Some((e.clone(), set.clone()));
            }
            entries.extend(listed);
        }
        let covering = entries
            .iter()
            .filter(|e| e.net().is_some_and(|n| n.contains(&target.net)))
            .min_by_key(|e| std::cmp::Reverse(e.net().map_or(0, |n| n.prefix_len())))
            .cloned();
        let covered = entries
            .iter()
            .filter_map(Entry::net)
            .filter(|n| target.net.contains(n) && *n != target.net)
            .collect();
        let (exact, holder) = match found {
            Some((e, set)) => (Some(e), set),
            None => (None, target.sets.home(&target.net).to_owned()),
        };
        Ok((
            target,
            BlockState {
                exact,
                holder,
                covering,
                covered,
            },
        ))
    }

    async fn block(&self, input: &Value) -> Result<Value, ActionError> {
        let timeout = match input.get("timeout").and_then(Value::as_str) {
            Some(t) => Some(parse_timeout(t)?),
            None => None,
        };
        let comment = input.get("reason").and_then(Value::as_str).map(comment_of);
        let _guard = self.lock.lock().await;
        let (target, state) = self.block_state(input).await?;
        let mut out = json!({ "address": net_str(target.net), "set": target.set });
        if let Some(e) = state.exact.as_ref().or(state.covering.as_ref()) {
            if let Some(exp) = e.expires_at() {
                out["expires"] = json!(exp);
            }
            out["changed"] = json!(false);
            return Ok(out);
        }
        if !state.covered.is_empty() {
            return Err(ActionError::permanent(format!(
                "{} contains elements already in set `{}` ({}); unblock them first",
                net_str(target.net),
                target.set,
                state
                    .covered
                    .iter()
                    .map(|n| net_str(*n))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let cmd = self.element_cmd(true, &state.holder, net_expr(target.net), timeout, comment);
        self.apply(vec![cmd]).await?;
        if let Some(secs) = timeout {
            out["expires"] = json!(rfc3339_in(secs));
        }
        out["changed"] = json!(true);
        Ok(out)
    }

    async fn unblock(&self, input: &Value) -> Result<Value, ActionError> {
        let _guard = self.lock.lock().await;
        let (target, state) = self.block_state(input).await?;
        let changed = state.exact.is_some();
        if let Some(e) = &state.exact {
            check_ours(e, &state.holder)?;
            let cmd = self.element_cmd(false, &state.holder, net_expr(target.net), None, None);
            self.apply(vec![cmd]).await?;
        }
        Ok(json!({ "address": net_str(target.net), "set": target.set, "changed": changed }))
    }

    async fn block_status(&self, input: &Value) -> Result<Value, ActionError> {
        let (_, state) = self.block_state(input).await?;
        let mut out = json!({ "blocked": false });
        if let Some(e) = state.exact.as_ref().or(state.covering.as_ref()) {
            out["blocked"] = json!(true);
            out["matched"] = json!(e.value);
            if let Some(exp) = e.expires_at() {
                out["expires"] = json!(exp);
            }
        }
        Ok(out)
    }

    async fn block_read_state(&self, input: &Value) -> Result<Value, ActionError> {
        let (target, state) = self.block_state(input).await?;
        let mut out = Map::new();
        out.insert("present".into(), json!(state.exact.is_some()));
        out.insert("element".into(), json!(net_str(target.net)));
        out.insert("nft_set".into(), json!(state.holder));
        if let Some(e) = &state.exact {
            if let Some(t) = e.timeout {
                out.insert("timeout".into(), json!(t));
            }
            if let Some(r) = e.expires {
                // In the `timeout` input's form, so an undo can restore what was left of it.
                out.insert("remaining".into(), json!(duration_input(r)));
            }
            if let Some(c) = &e.comment {
                out.insert("comment".into(), json!(c));
            }
        }
        if let Some(c) = state.covering.filter(|c| Some(c) != state.exact.as_ref()) {
            out.insert("covered_by".into(), json!(c.value));
        }
        Ok(Value::Object(out))
    }

    // ------------------------------------------------------------------ nac

    async fn device_state(&self, input: &Value) -> Result<(Device, Option<Entry>), ActionError> {
        let device = Device::parse(input_str(input, "device")?, &self.config.quarantine)?;
        let entry = self
            .list_hashed(&device.nft_set)
            .await?
            .into_iter()
            .find(|e| e.value.eq_ignore_ascii_case(&device.value));
        Ok((device, entry))
    }

    async fn quarantine(&self, input: &Value, on: bool) -> Result<Value, ActionError> {
        let reason = input.get("reason").and_then(Value::as_str);
        let _guard = self.lock.lock().await;
        let (device, entry) = self.device_state(input).await?;
        let changed = entry.is_some() != on;
        if changed {
            let value = Expression::String(device.value.clone().into());
            let cmd = if on {
                // The comment records when, then why: `since` is read back from it.
                let since = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                let comment = comment_of(&match reason {
                    Some(r) => format!("{since} {r}"),
                    None => since,
                });
                self.element_cmd(true, &device.nft_set, value, None, Some(comment))
            } else {
                if let Some(e) = &entry {
                    check_ours(e, &device.nft_set)?;
                }
                self.element_cmd(false, &device.nft_set, value, None, None)
            };
            self.apply(vec![cmd]).await?;
        }
        Ok(json!({ "device": device.value, "changed": changed }))
    }

    async fn device_read_state(&self, input: &Value) -> Result<Value, ActionError> {
        let (device, entry) = self.device_state(input).await?;
        let mut out = json!({
            "quarantined": entry.is_some(),
            "element": device.value,
            "nft_set": device.nft_set,
        });
        if let Some(e) = entry {
            let (since, reason) = split_since(e.comment.as_deref());
            if let Some(s) = since {
                out["since"] = json!(s);
            }
            if let Some(r) = reason {
                out["reason"] = json!(r);
            }
        }
        Ok(out)
    }
}

/// Refuses to delete an element the connector did not add (its comment lacks the mark).
fn check_ours(entry: &Entry, set: &str) -> Result<(), ActionError> {
    if entry.ours {
        return Ok(());
    }
    let comment = entry
        .comment
        .as_ref()
        .map(|c| format!(" (its comment: {c})"))
        .unwrap_or_default();
    Err(ActionError::permanent(format!(
        "{} in nft set `{set}` was not added by belay{comment}: belay removes only what it \
         added; remove it with nft if it must go",
        entry.value
    )))
}

#[async_trait]
impl Connector for Nftables {
    fn family(&self) -> &str {
        match self.config.family {
            Role::Firewall => "firewall",
            Role::Nac => "nac",
        }
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        match (self.config.family, call.action) {
            (Role::Firewall, "firewall.block_ip") => self.block(call.input).await,
            (Role::Firewall, "firewall.unblock_ip") => self.unblock(call.input).await,
            (Role::Firewall, "firewall.status") => self.block_status(call.input).await,
            (Role::Firewall, "firewall.block_many") => {
                self.block_many(call.input, call.before).await
            }
            (Role::Firewall, "firewall.unblock_many") => self.unblock_many(call.input).await,
            (Role::Nac, "nac.quarantine") => self.quarantine(call.input, true).await,
            (Role::Nac, "nac.release") => self.quarantine(call.input, false).await,
            (Role::Nac, "nac.status") => {
                let state = self.device_read_state(call.input).await?;
                let mut out = json!({ "quarantined": state["quarantined"] });
                if let Some(s) = state.get("since") {
                    out["since"] = s.clone();
                }
                Ok(out)
            }
            (_, other) => Err(ActionError::no_action(
                &format!("the nftables connector for `{}`", self.family()),
                other,
            )),
        }
    }

    async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        match self.config.family {
            Role::Firewall if action.ends_with("_many") => {
                self.many_read_state(action, input).await
            }
            Role::Firewall if action.starts_with("firewall.") => self.block_read_state(input).await,
            Role::Nac if action.starts_with("nac.") => self.device_read_state(input).await,
            _ => Ok(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::elements::{marked, parse_net};
    use super::*;

    #[test]
    fn parses_a_listing_with_prefixes_timeouts_and_comments() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "egress_v4", "table": "belay", "type": "ipv4_addr", "handle": 1, "flags": ["interval", "timeout"], "elem": [{"elem": {"val": {"prefix": {"addr": "10.0.0.0", "len": 8}}, "comment": "x"}}, {"elem": {"val": "192.0.2.1", "timeout": 3600, "expires": 3599, "comment": "y"}}, "198.51.100.7", {"range": ["10.9.0.1", "10.9.0.9"]}, {"elem": {"val": {"prefix": {"addr": "172.16.0.0", "len": 12}}, "counter": {"packets": 0, "bytes": 0}, "comment": "belay: C2"}}]}}]}"#;
        let entries = parse_set_listing(json).expect("parses");
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[3].value, "10.9.0.1-10.9.0.9");
        assert_eq!(
            (
                entries[4].value.as_str(),
                entries[4].ours,
                entries[4].comment.as_deref()
            ),
            ("172.16.0.0/12", true, Some("C2"))
        );
        assert!(
            parse_set_listing(r#"{"nftables": [{"set": {"elem": [{"concat": ["a", "b"]}]}}]}"#)
                .is_err(),
            "an element of another kind is an error, not skipped"
        );
        assert_eq!(entries[0].value, "10.0.0.0/8");
        assert_eq!(entries[0].comment.as_deref(), Some("x"));
        assert_eq!(entries[1].value, "192.0.2.1");
        assert_eq!(entries[1].expires, Some(3599));
        assert_eq!(entries[2].value, "198.51.100.7");
        assert!(
            entries[..4].iter().all(|e| !e.ours),
            "an administrator's elements"
        );
    }

    #[test]
    fn the_connectors_elements_carry_its_mark() {
        let elem = |comment: &str| {
            let json = format!(
                r#"{{"nftables": [{{"set": {{"family": "inet", "name": "s", "table": "belay", "type": "ipv4_addr", "handle": 1, "elem": [{{"elem": {{"val": "192.0.2.1", "comment": "{comment}"}}}}]}}}}]}}"#
            );
            let e = parse_set_listing(&json).expect("parses").remove(0);
            (e.ours, e.comment)
        };
        assert_eq!(marked(Some("C2 server")), "belay: C2 server");
        assert_eq!(marked(None), "belay");
        let fw = Nftables::new("fw", NftablesConfig::default()).expect("config");
        let ip = || net_expr(parse_net("192.0.2.1").expect("ip"));
        let add = |comment: Option<&str>| {
            let cmd = fw.element_cmd(true, "s", ip(), None, comment.map(Into::into));
            serde_json::to_value(with_mark(cmd)).expect("json")
        };
        assert_eq!(
            add(Some("C2"))["add"]["element"]["elem"][0]["elem"]["comment"],
            "belay: C2"
        );
        assert_eq!(
            add(None)["add"]["element"]["elem"][0]["elem"]["comment"],
            "belay"
        );
        let delete = serde_json::to_value(with_mark(fw.element_cmd(false, "s", ip(), None, None)))
            .expect("json");
        assert_eq!(delete["delete"]["element"]["elem"][0], "192.0.2.1");
        assert_eq!(elem("belay: C2 server"), (true, Some("C2 server".into())));
        assert_eq!(elem("belay"), (true, None));
        assert_eq!(elem("belayed"), (false, Some("belayed".into())));
        assert_eq!(elem("static block"), (false, Some("static block".into())));
        assert_eq!(marked(Some(&"x".repeat(200))).len(), 128);
    }

    /// The number of commands in a batch.
    fn commands(batch: Batch<'static>) -> usize {
        batch.to_nftables().objects.len()
    }

    #[test]
    fn declares_only_what_is_missing() {
        let fw = Nftables::new("fw", NftablesConfig::default()).expect("config");
        // Table, 4 sets, 2 chains, 4 rules in each.
        assert_eq!(commands(fw.missing_from(None)), 15);
        // A table as an earlier version declared it (interval sets only, rules without
        // comments), plus an administrator's chain and rule: the address sets and their drop
        // rules are missing, nothing else.
        let r = |chain: &str, set: &str, proto: &str| {
            format!(
                r#"{{"rule": {{"family": "inet", "table": "belay", "chain": "{chain}", "handle": 9, "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "{proto}", "field": "daddr"}}}}, "right": "@{set}"}}}}, {{"drop": null}}]}}}}"#
            )
        };
        let c = |name: &str, hook: &str| {
            format!(
                r#"{{"chain": {{"family": "inet", "table": "belay", "name": "{name}", "handle": 2, "type": "filter", "hook": "{hook}", "prio": 0, "policy": "accept"}}}}"#
            )
        };
        let s = |name: &str, ty: &str| {
            format!(
                r#"{{"set": {{"family": "inet", "name": "{name}", "table": "belay", "type": "{ty}", "handle": 1, "flags": ["interval", "timeout"]}}}}"#
            )
        };
        let mut objects = vec![
            r#"{"table": {"family": "inet", "name": "belay", "handle": 1}}"#.to_owned(),
            s("egress_v4", "ipv4_addr"),
            s("egress_v6", "ipv6_addr"),
            c("firewall_output", "output"),
            c("firewall_forward", "forward"),
            c("admin", "input"),
            r#"{"rule": {"family": "inet", "table": "belay", "chain": "admin", "handle": 7, "comment": "admin", "expr": [{"accept": null}]}}"#.to_owned(),
        ];
        for chain in ["firewall_output", "firewall_forward"] {
            objects.push(r(chain, "egress_v4", "ip"));
            objects.push(r(chain, "egress_v6", "ip6"));
        }
        let listing = |objects: &[String]| -> Vec<Value> {
            // Another table, with an iptables-nft rule, is listed too and ignored.
            let other = r#"{"table": {"family": "ip", "name": "filter", "handle": 2}}, {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 3, "expr": [{"xt": {"type": "target", "name": "NFQUEUE"}}]}}"#;
            let json = format!(r#"{{"nftables": [{other}, {}]}}"#, objects.join(","));
            table_objects(&json, "belay")
                .expect("a listing")
                .expect("the table")
        };
        let upgrade = fw.missing_from(Some(&listing(&objects))).to_nftables();
        let json = serde_json::to_string(&upgrade).expect("json");
        assert_eq!(upgrade.objects.len(), 6, "{json}");
        assert!(
            json.contains(r#""name":"egress_a4""#)
                && json.contains(r#""name":"egress_a6""#)
                && json.matches("belay: ip daddr @egress_a4 drop").count() == 2
                && json.matches("belay: ip6 daddr @egress_a6 drop").count() == 2,
            "{json}"
        );
        objects.insert(1, s("egress_a4", "ipv4_addr"));
        objects.insert(1, s("egress_a6", "ipv6_addr"));
        for chain in ["firewall_output", "firewall_forward"] {
            objects.push(r(chain, "egress_a4", "ip"));
            objects.push(r(chain, "egress_a6", "ip6"));
        }
        assert_eq!(commands(fw.missing_from(Some(&listing(&objects)))), 0);
        // Without one chain's v6 rule, only that rule is declared again.
        objects.pop();
        let batch = fw.missing_from(Some(&listing(&objects)));
        let doc = batch.to_nftables();
        let json = serde_json::to_string(&doc).expect("json");
        assert_eq!(doc.objects.len(), 1);
        assert!(
            json.contains("belay: ip6 daddr @egress_a6 drop") && json.contains("firewall_forward"),
            "{json}"
        );
    }

    #[test]
    fn timeouts_and_devices_are_checked() {
        assert_eq!(parse_timeout("24h").ok(), Some(86_400));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("999999d").is_err());
        assert_eq!(duration_input(3599), "3599s");
        assert_eq!(duration_input(2_000_000), "33334m");
        let d = Device::parse("02-AB-cd-00-00-01", "q").expect("mac");
        assert_eq!(
            (d.value.as_str(), d.nft_set.as_str()),
            ("02:ab:cd:00:00:01", "q_mac")
        );
        assert!(Device::parse("02:ab-cd:00:00:01", "q").is_err());
        assert!(Device::parse("not a device", "q").is_err());
        assert_eq!(
            parse_net("10.1.2.3/8").expect("net").to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_net("10.0.0.256").is_err());
    }
}
