//! Guardrails: policies over change actions, checked at execution time, right before a
//! change would be journaled and applied. They hold (ask a person) or deny a change that
//! touches a protected target, or a batch or a rate above its limit; a held batch is held
//! whole. They apply to every change their `applies_to` matches, whether or not a step names
//! them, so no playbook can opt out.

use belay_playbook::{ActionSpec, Catalog, TargetType, yaml};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a violation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    #[default]
    Hold,
    Deny,
}

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
    alert: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNever {
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    device_classes: Vec<String>,
    /// Files of addresses, networks or domains, one per line (`#` comments).
    #[serde(default)]
    lists: Vec<PathBuf>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    max: u64,
}

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
    fn build(nets: impl IntoIterator<Item = ipnet::IpNet>) -> RangeSet {
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

fn normalize_domain(d: &str) -> String {
    d.trim()
        .trim_end_matches('.')
        .trim_start_matches("*.")
        .to_ascii_lowercase()
}

/// Targets that must never be changed.
#[derive(Debug, Default)]
pub struct Never {
    pub nets: RangeSet,
    domains: HashSet<String>,
    hosts: HashSet<String>,
    users: HashSet<String>,
    device_classes: HashSet<String>,
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

/// One guardrail.
#[derive(Debug)]
pub struct Guardrail {
    pub name: String,
    pub applies_to: Vec<String>,
    matcher: GlobSet,
    pub never: Option<Never>,
    pub rate: Option<(u64, Duration)>,
    pub batch: Option<u64>,
    pub baseline: Option<Baseline>,
    pub on_violation: OnViolation,
    pub alert: Option<String>,
}

/// A limit learned from the changes recorded under `log` and `guarded`: a window or a run's
/// batch above `factor` times the observed 99th percentile is a violation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub per: Duration,
    pub factor: f64,
    pub min_history: Duration,
}

impl Baseline {
    /// How far back the history is read: at least 30 days, and at least `min_history`.
    pub fn lookback(&self) -> Duration {
        self.min_history.max(Duration::from_secs(30 * 86_400))
    }

    /// The learned figures from the recorded history, as of `now` (ms).
    pub fn learn(&self, history: &belay_store::ChangeHistory, now: i64) -> BaselineFigures {
        let per = (self.per.as_millis() as i64).max(1);
        let since = now - self.lookback().as_millis() as i64;
        let history_ms = history.first_at.map_or(0, |f| (now - f).max(0));
        // Windows from the first recorded change (or the lookback's start) up to the current one.
        let start = history.first_at.unwrap_or(now).max(since);
        let windows = ((now - start) / per).max(0) as usize;
        let mut counts = vec![0u64; windows];
        let mut sizes = Vec::with_capacity(history.batches.len());
        for &(at, n) in &history.batches {
            sizes.push(n);
            let w = (at - start) / per;
            if w >= 0 && (w as usize) < windows {
                counts[w as usize] += n;
            }
        }
        BaselineFigures {
            history_ms,
            runs: sizes.len() as u64,
            p99_batch: p99(&mut sizes),
            windows: windows as u64,
            p99_window: p99(&mut counts),
        }
    }
}

/// The 99th percentile (nearest rank) of counts; 0 when empty.
fn p99(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((v.len() as f64) * 0.99).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What a baseline guardrail learned.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaselineFigures {
    /// Age of the oldest recorded change, in ms.
    pub history_ms: i64,
    /// Runs that made changes within the lookback.
    pub runs: u64,
    /// 99th percentile of changes per run.
    pub p99_batch: u64,
    /// Complete windows observed within the lookback.
    pub windows: u64,
    /// 99th percentile of changes per window.
    pub p99_window: u64,
}

impl Guardrail {
    pub fn applies(&self, action: &str) -> bool {
        self.matcher.is_match(action)
    }
}

/// The outcome of one guardrail for one planned change (or batch).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub guardrail: String,
    pub pass: bool,
    pub reason: String,
    pub on_violation: OnViolation,
    pub alert: Option<String>,
}

/// What the executor knows when it asks.
pub struct Context<'a> {
    pub action: &'a ActionSpec,
    /// Targets of every item of the step, checked together.
    pub targets: &'a [String],
    /// Changes of the matching actions already made (or in flight) within each rate window,
    /// by guardrail name.
    pub recent: &'a std::collections::HashMap<String, u64>,
    /// Learned figures of baseline guardrails, by guardrail name.
    pub baselines: &'a std::collections::HashMap<String, BaselineFigures>,
}

/// Every guardrail, loaded from YAML files.
#[derive(Debug, Default)]
pub struct Guardrails {
    pub list: Vec<Guardrail>,
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
            let node = yaml::parse(&text).map_err(|d| format!("{}:{d}", f.display()))?;
            let raw: RawFile = serde_json::from_value(node.to_json())
                .map_err(|e| format!("{}: {e}", f.display()))?;
            let base = f.parent().unwrap_or(Path::new("."));
            for g in raw.guardrails {
                let g = build(g, base).map_err(|e| format!("{}: {e}", f.display()))?;
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

    pub fn get(&self, name: &str) -> Option<&Guardrail> {
        self.list.iter().find(|g| g.name == name)
    }

    /// Names a step lists that no guardrail has.
    pub fn unknown<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        names
            .into_iter()
            .filter(|n| self.get(n).is_none())
            .collect()
    }

    /// The guardrails that govern a change: those whose `applies_to` matches the action, and
    /// those the step names.
    pub fn governing<'a>(&'a self, action: &str, named: &[String]) -> Vec<&'a Guardrail> {
        self.list
            .iter()
            .filter(|g| g.applies(action) || named.contains(&g.name))
            .collect()
    }

    /// Verdicts of the governing guardrails on a step's planned changes (all items at once).
    pub fn check(&self, named: &[String], ctx: &Context<'_>) -> Vec<Verdict> {
        let mut out = Vec::new();
        let kind = ctx
            .action
            .target
            .as_ref()
            .map_or(TargetType::Generic, |t| t.kind);
        for g in self.governing(&ctx.action.name, named) {
            let verdict = |pass: bool, reason: String| Verdict {
                guardrail: g.name.clone(),
                pass,
                reason,
                on_violation: g.on_violation,
                alert: g.alert.clone(),
            };
            let mut problems = Vec::new();
            if let Some(never) = &g.never {
                problems.extend(ctx.targets.iter().filter_map(|t| never.violation(kind, t)));
            }
            if let Some(max) = g.batch {
                let n = ctx.targets.len() as u64;
                if n > max {
                    problems.push(format!(
                        "batch of {n} changes is above the limit of {max} per run"
                    ));
                }
            }
            if let Some((max, per)) = g.rate {
                let recent = ctx.recent.get(&g.name).copied().unwrap_or(0);
                let n = ctx.targets.len() as u64;
                if recent + n > max {
                    problems.push(format!(
                        "{} change(s) within {} would exceed the limit of {max} ({recent} already made)",
                        recent + n,
                        humantime::format_duration(per)
                    ));
                }
            }
            if let Some(b) = &g.baseline {
                let n = ctx.targets.len() as u64;
                match ctx.baselines.get(&g.name) {
                    None => problems.push("no recorded history was available".into()),
                    Some(f) if f.history_ms < b.min_history.as_millis() as i64 => {
                        problems.push(format!(
                            "baseline is still learning: {} of recorded history, {} needed",
                            humantime::format_duration(Duration::from_secs(
                                (f.history_ms / 1000) as u64
                            )),
                            humantime::format_duration(b.min_history)
                        ))
                    }
                    Some(f) => {
                        let batch_limit = (b.factor * f.p99_batch.max(1) as f64).floor() as u64;
                        if n > batch_limit {
                            problems.push(format!(
                                "batch of {n} changes is above {} × the learned p99 of {} per run ({} runs)",
                                b.factor, f.p99_batch, f.runs
                            ));
                        }
                        // Windows are compared only once whole windows were observed.
                        let recent = ctx.recent.get(&g.name).copied().unwrap_or(0);
                        let window_limit = (b.factor * f.p99_window.max(1) as f64).floor() as u64;
                        if f.windows > 0 && recent + n > window_limit {
                            problems.push(format!(
                                "{} change(s) within {} would be above {} × the learned p99 of {} per window ({} windows)",
                                recent + n,
                                humantime::format_duration(b.per),
                                b.factor,
                                f.p99_window,
                                f.windows
                            ));
                        }
                    }
                }
            }
            out.push(if problems.is_empty() {
                verdict(true, "ok".into())
            } else {
                verdict(false, problems.join("; "))
            });
        }
        out
    }

    /// The actions of the catalog a guardrail applies to (for counting recent changes).
    pub fn actions_of(&self, g: &Guardrail, catalog: &Catalog) -> Vec<String> {
        catalog
            .iter()
            .filter(|a| g.applies(&a.name))
            .map(|a| a.name.clone())
            .collect()
    }
}

fn build(raw: RawGuardrail, base: &Path) -> Result<Guardrail, String> {
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
        Some(n) => {
            let mut nets = Vec::with_capacity(n.cidrs.len());
            for c in &n.cidrs {
                nets.push(parse_net(c).ok_or_else(|| {
                    format!(
                        "guardrail `{}`: `{c}` is not an address or network",
                        raw.name
                    )
                })?);
            }
            let mut domains: HashSet<String> =
                n.domains.iter().map(|d| normalize_domain(d)).collect();
            for l in &n.lists {
                let path = if l.is_absolute() {
                    l.clone()
                } else {
                    base.join(l)
                };
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("guardrail `{}`: list {}: {e}", raw.name, path.display())
                })?;
                for line in text.lines() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.is_empty() {
                        continue;
                    }
                    match parse_net(line) {
                        Some(net) => nets.push(net),
                        None => {
                            domains.insert(normalize_domain(line));
                        }
                    }
                }
            }
            let lower = |v: &[String]| {
                v.iter()
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect::<HashSet<_>>()
            };
            Some(Never {
                nets: RangeSet::build(nets),
                domains,
                hosts: lower(&n.hosts),
                users: lower(&n.users),
                device_classes: lower(&n.device_classes),
            })
        }
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
                return Err(format!(
                    "guardrail `{}`: baseline factor must be a number of at least 1",
                    raw.name
                ));
            }
            let per = dur("baseline per", &b.per)?;
            if per.is_zero() {
                return Err(format!(
                    "guardrail `{}`: baseline per must be above 0",
                    raw.name
                ));
            }
            Some(Baseline {
                per,
                factor: b.factor,
                min_history: dur("baseline min_history", &b.min_history)?,
            })
        }
    };
    if never.is_none() && rate.is_none() && raw.batch.is_none() && baseline.is_none() {
        return Err(format!(
            "guardrail `{}` sets no limit (never, rate, batch or baseline)",
            raw.name
        ));
    }
    if raw.applies_to.is_empty() {
        return Err(format!(
            "guardrail `{}` needs `applies_to` (action names or globs such as `firewall.*`)",
            raw.name
        ));
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
        alert: raw.alert,
    })
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

    #[test]
    fn a_baseline_learns_the_p99_of_batches_and_windows() {
        let b = Baseline {
            per: Duration::from_secs(3600),
            factor: 3.0,
            min_history: Duration::from_secs(86_400),
        };
        let hour = 3_600_000i64;
        let now = 100 * hour;
        // 48 hourly feed updates of 4 changes each, and one of 9.
        let mut batches: Vec<(i64, u64)> = (0..48).map(|h| (now - (48 - h) * hour, 4)).collect();
        batches.push((now - 10 * hour + 5, 9));
        let history = belay_store::ChangeHistory {
            first_at: Some(now - 48 * hour),
            batches,
        };
        let f = b.learn(&history, now);
        assert_eq!(f.history_ms, 48 * hour);
        assert_eq!(f.runs, 49);
        assert_eq!(f.windows, 48);
        assert_eq!(
            f.p99_batch, 9,
            "the 99th percentile of 49 batches is the largest"
        );
        assert_eq!(f.p99_window, 13, "one window held 4 + 9 changes");
        // No history at all: nothing learned, and the guardrail says it is still learning.
        let empty = b.learn(&belay_store::ChangeHistory::default(), now);
        assert_eq!((empty.history_ms, empty.runs, empty.windows), (0, 0, 0));
    }
}
