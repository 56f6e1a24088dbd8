//! Loading guardrails from YAML files: the file format (unknown fields rejected), lists of
//! protected targets read from files, and every check that a guardrail is well formed. A
//! guardrail that does not load stops the whole set from loading; none is silently skipped.

use super::never::normalize_domain;
use super::{Baseline, Guardrail, Guardrails, Never, OnViolation, RangeSet, parse_net};
use belay_playbook::yaml;
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
