//! Guardrails: policies over change actions, checked at execution time, right before a
//! change would be journaled and applied. They hold (ask a person) or deny a change that
//! touches a protected target, or a batch or a rate above its limit; a held batch is held
//! whole. They apply to every change their `applies_to` matches, whether or not a step names
//! them, so no playbook can opt out.
//!
//! Each kind of limit has its module: `never` (protected targets), `baseline` (learned
//! limits); `batch` and `rate` are plain counts checked here. `load` reads and validates the
//! files; `canon` puts every target and entry in the one form downstream systems act on.
//! Guardrails decide verdicts only: they never apply, hold or record a change themselves.

mod baseline;
pub mod canon;
mod explain;
mod load;
mod never;
pub mod resolve;

pub use baseline::{Baseline, BaselineFigures, Learning, WhileLearning};
pub use explain::{CheckError, check_planned};
pub use never::{Never, NeverBench, Overlap, RangeSet, bench_never, parse_net};
pub use resolve::{Identities, Resolution};

use belay_playbook::{ActionSpec, Catalog, TargetType};
use globset::GlobSet;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a violation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// The change waits for a person's approval (the default).
    #[default]
    Hold,
    /// The change is refused and its step fails.
    Deny,
}

/// What a never-list violation holds (or denies): only the items of a batch that touch a
/// protected target (the default; the rest of the batch goes ahead), or the whole batch.
/// Batch, rate and baseline violations always concern the whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HoldScope {
    /// Only the violating items.
    #[default]
    Items,
    /// Every item of the batch.
    Batch,
}

/// One guardrail.
#[derive(Debug)]
pub struct Guardrail {
    /// Its name, unique among the loaded guardrails; steps name it in `guardrails:`.
    pub name: String,
    /// Action names or globs (`firewall.*`) it governs; never empty.
    pub applies_to: Vec<String>,
    matcher: GlobSet,
    /// Protected targets: a change touching one violates it.
    pub never: Option<Never>,
    /// At most this many changes within this window (counting those already made).
    pub rate: Option<(u64, Duration)>,
    /// At most this many changes per run, the runs of its sub-playbooks included.
    pub batch: Option<u64>,
    /// A limit learned from the recorded changes.
    pub baseline: Option<Baseline>,
    /// What a violation does.
    pub on_violation: OnViolation,
    /// What a never-list violation concerns: the violating items, or the whole batch.
    pub hold: HoldScope,
    /// Where a violation is reported (a `notify.send` target), if anywhere.
    pub alert: Option<String>,
}

impl Guardrail {
    /// Whether `action` matches one of its `applies_to` patterns.
    pub fn applies(&self, action: &str) -> bool {
        self.matcher.is_match(action)
    }
}

/// The outcome of one guardrail for one planned change (or batch).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// The guardrail's name.
    pub guardrail: String,
    /// Whether the change passes; when not, `on_violation` says what happens.
    pub pass: bool,
    /// `ok` when it passes, else every problem found, joined with `; `.
    pub reason: String,
    /// The guardrail's `on_violation`.
    pub on_violation: OnViolation,
    /// The guardrail's `alert` target.
    pub alert: Option<String>,
    /// Set while a baseline guardrail is still learning (its history is shorter than
    /// `min_history`): how much history it has and needs. A learning verdict passes unless the
    /// baseline says `while_learning: hold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning: Option<Learning>,
    /// A violation that concerns only some items (never-list hits under `hold: items`): their
    /// indices among the checked targets. Empty when it concerns the whole batch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<usize>,
}

/// What the executor knows when it asks.
pub struct Context<'a> {
    /// The step's action (its target type decides how targets are read).
    pub action: &'a ActionSpec,
    /// Targets of every item of the step, checked together.
    pub targets: &'a [String],
    /// Changes of the matching actions already made (or in flight) within each rate window,
    /// by guardrail name.
    pub recent: &'a std::collections::HashMap<String, u64>,
    /// Learned figures of baseline guardrails, by guardrail name.
    pub baselines: &'a std::collections::HashMap<String, BaselineFigures>,
    /// What each never-list's `resolve` action said of each target (none asked: empty).
    pub identities: &'a Identities,
}

/// Every guardrail, loaded from YAML files.
#[derive(Debug, Default)]
pub struct Guardrails {
    /// The guardrails in load order (files sorted by name, then as written).
    pub list: Vec<Guardrail>,
}

impl Guardrails {
    /// The guardrail named `name`.
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
        self.check_at(named, ctx, false)
    }

    /// As [`Guardrails::check`]; when `guarded` (the step runs at trust `guarded`), a target
    /// that cannot be resolved to every identity a never-list protects is a violation too.
    pub fn check_at(&self, named: &[String], ctx: &Context<'_>, guarded: bool) -> Vec<Verdict> {
        let mut out = Vec::new();
        let kind = ctx
            .action
            .target
            .as_ref()
            .map_or(TargetType::Generic, |t| t.kind);
        for g in self.governing(&ctx.action.name, named) {
            let verdict = |pass: bool, reason: String, learning: Option<Learning>| Verdict {
                guardrail: g.name.clone(),
                pass,
                reason,
                on_violation: g.on_violation,
                alert: g.alert.clone(),
                learning,
                items: Vec::new(),
            };
            // Never-list hits, by item; the other limits' problems concern the whole batch.
            let mut hits: Vec<(usize, String)> = Vec::new();
            let mut problems = Vec::new();
            let mut learning = None;
            if let Some(never) = &g.never {
                hits.extend(ctx.targets.iter().enumerate().filter_map(|(i, t)| {
                    let resolved = ctx.identities.get(&(g.name.clone(), t.clone()));
                    never
                        .violation(kind, t)
                        .or_else(|| resolved.and_then(|r| never.violation_of_identities(t, r)))
                        .or_else(|| {
                            guarded
                                .then(|| never.unresolved_after(kind, t, resolved))
                                .flatten()
                                .map(|u| format!("{u}; at guarded an unresolved target is held"))
                        })
                        .map(|p| (i, p))
                }));
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
                match ctx.baselines.get(&g.name).map(|f| (f, b.learning(f))) {
                    None => problems.push("no recorded history was available".into()),
                    Some((_, Some(l))) => {
                        if l.while_learning == WhileLearning::Hold {
                            problems.push(format!(
                                "baseline is still learning: {} (while_learning: hold)",
                                l.describe()
                            ));
                        }
                        learning = Some(l);
                    }
                    Some((f, None)) => {
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
            let by_item = g.hold == HoldScope::Items && problems.is_empty() && !hits.is_empty();
            let items: Vec<usize> = if by_item {
                hits.iter().map(|(i, _)| *i).collect()
            } else {
                Vec::new()
            };
            let mut all: Vec<String> = hits.into_iter().map(|(_, p)| p).collect();
            all.append(&mut problems);
            out.push(match (all.is_empty(), learning) {
                (true, Some(l)) => {
                    let reason = format!("learning: {}; not enforced until then", l.describe());
                    verdict(true, reason, Some(l))
                }
                (true, None) => verdict(true, "ok".into(), None),
                (false, l) => Verdict {
                    items,
                    ..verdict(false, all.join("; "), l)
                },
            });
        }
        out
    }

    /// Baseline guardrails that nothing caps while they learn (`while_learning: proceed`),
    /// each with the actions it governs that no `batch` or `rate` limit (its own or another
    /// guardrail's) governs too. Actions are those of the catalog its `applies_to` matches, or
    /// its patterns as written when none does.
    pub fn uncapped_while_learning(&self, catalog: &Catalog) -> Vec<(&Guardrail, Vec<String>)> {
        let capped = |action: &str| {
            self.list
                .iter()
                .any(|c| (c.batch.is_some() || c.rate.is_some()) && c.applies(action))
        };
        self.list
            .iter()
            .filter(|g| {
                g.baseline
                    .is_some_and(|b| b.while_learning == WhileLearning::Proceed)
            })
            .filter_map(|g| {
                let mut actions = self.actions_of(g, catalog);
                if actions.is_empty() {
                    actions = g.applies_to.clone();
                }
                actions.retain(|a| !capped(a));
                (!actions.is_empty()).then_some((g, actions))
            })
            .collect()
    }

    /// A warning for each baseline guardrail that nothing caps while it learns (see
    /// [`Guardrails::uncapped_while_learning`]).
    pub fn learning_warnings(&self, catalog: &Catalog) -> Vec<String> {
        self.uncapped_while_learning(catalog)
            .into_iter()
            .map(|(g, actions)| {
                let min = g
                    .baseline
                    .map(|b| humantime::format_duration(b.min_history).to_string())
                    .unwrap_or_default();
                format!(
                    "baseline guardrail `{}` has no `batch` or `rate` companion over {}: until it \
                     has {min} of history it does not hold, and nothing caps those changes \
                     (add a batch or rate guardrail over the same actions, or `while_learning: hold`)",
                    g.name,
                    actions.join(", ")
                )
            })
            .collect()
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
