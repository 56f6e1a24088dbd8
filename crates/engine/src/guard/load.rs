//! Loading guardrails from YAML files: the file format (unknown fields rejected), lists of
//! protected targets read from files, and every check that a guardrail is well formed. A
//! guardrail that does not load stops the whole set from loading; none is silently skipped.

use super::canon;
use super::never::ProtectedHost;
use super::{
    Baseline, Guardrail, Guardrails, HoldScope, Never, OnViolation, RangeSet, WhileLearning,
};
use belay_playbook::yaml::{self, Node, NodeKind};
use globset::{Glob, GlobSetBuilder};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    guardrails: Vec<RawGuardrail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrail {
    name: String,
    #[serde(default)]
    applies_to: Vec<String>,
    never: Option<RawNever>,
    rate: Option<RawRate>,
    batch: Option<RawBatch>,
    baseline: Option<RawBaseline>,
    #[serde(default)]
    on_violation: OnViolation,
    #[serde(default)]
    hold: HoldScope,
    alert: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNever {
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    /// Host names, each alone or with the addresses known for it.
    #[serde(default)]
    hosts: Vec<RawHost>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    macs: Vec<String>,
    #[serde(default)]
    device_classes: Vec<String>,
    /// Files of addresses, networks or domains, one per line (`#` comments).
    #[serde(default)]
    lists: Vec<PathBuf>,
    /// A read action (`cmdb.lookup_device`) that names a device's other identities.
    resolve: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHost {
    Name(String),
    WithAddresses(RawHostEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostEntry {
    name: String,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    max: u64,
    per: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    per: String,
    factor: f64,
    min_history: String,
    #[serde(default)]
    while_learning: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    max: u64,
}

impl Guardrails {
    /// Loads `*.yaml` files of a directory (or one file). A missing directory means none.
    pub fn load(path: &Path) -> Result<Guardrails, String> {
        if !path.exists() {
            return Ok(Guardrails::default());
        }
        let files = if path.is_dir() {
            let mut f: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            f.sort();
            f
        } else {
            vec![path.to_owned()]
        };
        let mut list = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let node = yaml::parse(text).map_err(|d| format!("{}:{d}", f.display()))?;
            let raw: RawFile = serde_json::from_value(node.to_json())
                .map_err(|e| format!("{}: {e}", f.display()))?;
            let base = f.parent().unwrap_or(Path::new("."));
            for (i, g) in raw.guardrails.into_iter().enumerate() {
                let g = build(g, base).map_err(|e| {
                    format!("{}:{}: {}", f.display(), locate(&node, i, e.at), e.message)
                })?;
                if list.iter().any(|o: &Guardrail| o.name == g.name) {
                    return Err(format!(
                        "{}: guardrail `{}` is defined twice",
                        f.display(),
                        g.name
                    ));
                }
                list.push(g);
            }
        }
        Ok(Guardrails { list })
    }
}

/// Why a guardrail does not load, and which `never` entry (list name, index) when one does.
struct BuildError {
    message: String,
    at: Option<(&'static str, usize)>,
}

impl From<String> for BuildError {
    fn from(message: String) -> Self {
        BuildError { message, at: None }
    }
}

/// The line of guardrail `index` of a file, or of one of its `never` entries.
fn locate(root: &Node, index: usize, at: Option<(&'static str, usize)>) -> usize {
    let field = |n: &Node, name: &str| match &n.kind {
        NodeKind::Map(m) => m
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    let item = |n: &Node, i: usize| match &n.kind {
        NodeKind::Seq(s) => s.get(i).cloned(),
        _ => None,
    };
    let Some(g) = field(root, "guardrails").and_then(|s| item(&s, index)) else {
        return root.pos.line;
    };
    at.and_then(|(list, i)| {
        let l = field(&g, "never").and_then(|n| field(&n, list))?;
        Some(item(&l, i).map_or(l.pos.line, |e| e.pos.line))
    })
    .unwrap_or(g.pos.line)
}

/// A protected domain in canonical form; an entry that could never match is an error.
fn domain_entry(d: &str) -> Result<String, String> {
    let t = d.trim();
    if let Some(rest) = t.strip_prefix('.') {
        return Err(format!(
            "domain `{d}` starts with a dot and would never match; write `{rest}` (its \
             subdomains are always protected too)"
        ));
    }
    canon::domain(t)
}

/// A protected network; notations other systems read differently are refused.
fn net_entry(c: &str) -> Result<ipnet::IpNet, String> {
    match canon::net(c) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(format!(
            "`{c}` is not an address or network (e.g. 203.0.113.0/24 or 2001:db8::/32)"
        )),
        Err(e) => Err(e),
    }
}

fn build_never(n: RawNever, name: &str, base: &Path) -> Result<Never, BuildError> {
    let entry = |list: &'static str, i: usize| {
        move |e: String| BuildError {
            message: format!("guardrail `{name}`: never.{list}[{i}]: {e}"),
            at: Some((list, i)),
        }
    };
    let nonempty = |list: &'static str, i: usize, s: &str| {
        if s.trim().is_empty() {
            Err(entry(list, i)("an empty entry protects nothing".into()))
        } else {
            Ok(())
        }
    };
    let mut nets = Vec::with_capacity(n.cidrs.len());
    for (i, c) in n.cidrs.iter().enumerate() {
        nets.push(net_entry(c).map_err(entry("cidrs", i))?);
    }
    let mut domains = HashSet::new();
    for (i, d) in n.domains.iter().enumerate() {
        nonempty("domains", i, d)?;
        domains.insert(domain_entry(d).map_err(entry("domains", i))?);
    }
    for l in &n.lists {
        let path = if l.is_absolute() {
            l.clone()
        } else {
            base.join(l)
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("guardrail `{name}`: list {}: {e}", path.display()))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        for (no, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |e: String| format!("{}:{}: {e}", path.display(), no + 1);
            match canon::net(line) {
                Ok(Some(net)) => nets.push(net),
                Err(e) => return Err(at(e).into()),
                Ok(None) => {
                    domains.insert(domain_entry(line).map_err(at)?);
                }
            }
        }
    }
    let has_cidrs = !nets.is_empty();
    let mut hosts = Vec::with_capacity(n.hosts.len());
    for (i, h) in n.hosts.iter().enumerate() {
        let (host, addresses) = match h {
            RawHost::Name(s) => (s, &[][..]),
            RawHost::WithAddresses(e) => (&e.name, &e.addresses[..]),
        };
        nonempty("hosts", i, host)?;
        if canon::net(host).map_or(true, |n| n.is_some()) {
            return Err(entry("hosts", i)(format!(
                "`{host}` is an address: protect it under `cidrs`, or as `{{name: HOST, \
                 addresses: [{host}]}}`"
            )));
        }
        let (full, short) = canon::host_name(host).map_err(entry("hosts", i))?;
        let mut addrs = Vec::with_capacity(addresses.len());
        for a in addresses {
            addrs.push(net_entry(a).map_err(entry("hosts", i))?);
        }
        nets.extend(addrs.iter().copied());
        hosts.push(ProtectedHost {
            full,
            short,
            addresses: addrs,
        });
    }
    let mut users = HashSet::new();
    for (i, u) in n.users.iter().enumerate() {
        nonempty("users", i, u)?;
        let c = canon::user(u);
        if c.is_empty() {
            return Err(entry("users", i)(format!("`{u}` names no user")));
        }
        users.insert(c);
    }
    let mut macs = HashSet::new();
    for (i, m) in n.macs.iter().enumerate() {
        macs.insert(canon::mac(m).ok_or_else(|| {
            entry("macs", i)(format!(
                "`{m}` is not a MAC address (six hex bytes, e.g. aa:bb:cc:00:11:22)"
            ))
        })?);
    }
    let mut device_classes = HashSet::new();
    for (i, d) in n.device_classes.iter().enumerate() {
        nonempty("device_classes", i, d)?;
        device_classes.insert(d.trim().to_lowercase());
    }
    let resolve = match n.resolve {
        Some(a)
            if a.split_once('.')
                .is_none_or(|(f, x)| f.is_empty() || x.is_empty()) =>
        {
            return Err(format!(
                "guardrail `{name}`: never.resolve: `{a}` is not an action (`family.action`, \
                 e.g. cmdb.lookup_device)"
            )
            .into());
        }
        other => other,
    };
    Ok(Never {
        nets: RangeSet::build(nets),
        has_cidrs,
        domains,
        hosts,
        users,
        macs,
        device_classes,
        resolve,
    })
}

fn build(raw: RawGuardrail, base: &Path) -> Result<Guardrail, BuildError> {
    let mut gs = GlobSetBuilder::new();
    for p in &raw.applies_to {
        gs.add(
            Glob::new(p)
                .map_err(|e| format!("guardrail `{}`: bad action pattern `{p}`: {e}", raw.name))?,
        );
    }
    let matcher = gs.build().map_err(|e| e.to_string())?;
    let never = match raw.never {
        None => None,
        Some(n) => Some(build_never(n, &raw.name, base)?),
    };
    let rate = match raw.rate {
        None => None,
        Some(r) => Some((
            r.max,
            belay_model::parse_duration(&r.per)
                .map_err(|e| format!("guardrail `{}`: rate per `{}`: {e}", raw.name, r.per))?,
        )),
    };
    let dur = |what: &str, text: &str| {
        belay_model::parse_duration(text)
            .map_err(|e| format!("guardrail `{}`: {what} `{text}`: {e}", raw.name))
    };
    let baseline = match &raw.baseline {
        None => None,
        Some(b) => {
            if !(b.factor.is_finite() && b.factor >= 1.0) {
                return Err(BuildError::from(format!(
                    "guardrail `{}`: baseline factor must be a number of at least 1",
                    raw.name
                )));
            }
            let per = dur("baseline per", &b.per)?;
            if per.is_zero() {
                return Err(BuildError::from(format!(
                    "guardrail `{}`: baseline per must be above 0",
                    raw.name
                )));
            }
            let while_learning = match b.while_learning.as_deref() {
                None | Some("proceed") => WhileLearning::Proceed,
                Some("hold") => WhileLearning::Hold,
                Some(other) => {
                    return Err(BuildError::from(format!(
                        "guardrail `{}`: baseline while_learning must be `proceed` (the default) or `hold`, not `{other}`",
                        raw.name
                    )));
                }
            };
            Some(Baseline {
                per,
                factor: b.factor,
                min_history: dur("baseline min_history", &b.min_history)?,
                while_learning,
            })
        }
    };
    if never.is_none() && rate.is_none() && raw.batch.is_none() && baseline.is_none() {
        return Err(BuildError::from(format!(
            "guardrail `{}` sets no limit (never, rate, batch or baseline)",
            raw.name
        )));
    }
    if raw.applies_to.is_empty() {
        return Err(BuildError::from(format!(
            "guardrail `{}` needs `applies_to` (action names or globs such as `firewall.*`)",
            raw.name
        )));
    }
    Ok(Guardrail {
        name: raw.name,
        applies_to: raw.applies_to,
        matcher,
        never,
        rate,
        batch: raw.batch.map(|b| b.max),
        baseline,
        on_violation: raw.on_violation,
        hold: raw.hold,
        alert: raw.alert,
    })
}
