//! What the runs of one run tree (a root run and the sub-playbooks it calls, however deep and
//! however fanned out) share: the level their caller allows and the changes planned so far
//! under each `batch` guardrail, so a limit "per run" holds for the whole tree. It counts and
//! compares; it never holds, denies or applies anything itself.

use crate::guard::{Guardrails, Verdict};
use belay_model::{Decision, StepRecord, StepStatus, TrustLevel};
use belay_playbook::{ActionKind, Catalog};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Changes planned in one run tree, by `batch` guardrail name.
#[derive(Debug, Default)]
pub(super) struct TreeCounts(Mutex<HashMap<String, u64>>);

impl TreeCounts {
    /// Adds `n` planned changes under each of `limits` at once and returns the counts each had
    /// before them (concurrent items of a fan-out each see the others' reservations).
    pub(super) fn reserve(&self, limits: &[(String, u64)], n: u64) -> HashMap<String, u64> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        limits
            .iter()
            .map(|(g, _)| {
                let c = counts.entry(g.clone()).or_default();
                let before = *c;
                *c += n;
                (g.clone(), before)
            })
            .collect()
    }

    /// The changes planned so far under one guardrail.
    pub(super) fn peek(&self, guardrail: &str) -> u64 {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(guardrail).copied().unwrap_or(0)
    }

    /// Counts the changes that finished records (from before a crash, or of a finished child)
    /// made or would make, under the `batch` guardrails that govern them.
    pub(super) fn seed<'a>(
        &self,
        records: impl IntoIterator<Item = &'a StepRecord>,
        guardrails: &Guardrails,
        catalog: &Catalog,
    ) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            let counted = r.status == StepStatus::Succeeded
                || (r.status == StepStatus::Planned && r.decision == Decision::DryRun);
            if !counted || catalog.get(&r.action).map(|a| a.kind) != Some(ActionKind::Change) {
                continue;
            }
            for g in guardrails.governing(&r.action, &r.guardrails) {
                if g.batch.is_some() {
                    *counts.entry(g.name.clone()).or_default() += 1;
                }
            }
        }
    }
}

/// What a run inherits from the run that called it.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    /// The caller's effective level at the calling step: the most the child may act at.
    pub(super) ceiling: TrustLevel,
    pub(super) counts: Arc<TreeCounts>,
    /// Who approved a held fan-out that includes this run: its `batch` counts are covered.
    pub(super) allowed: Option<String>,
}

/// The `batch` limits among a step's governing guardrails, by name.
pub(super) fn batch_limits(
    guardrails: &Guardrails,
    action: &str,
    named: &[String],
) -> Vec<(String, u64)> {
    guardrails
        .governing(action, named)
        .iter()
        .filter_map(|g| g.batch.map(|max| (g.name.clone(), max)))
        .collect()
}

/// Fails the verdicts of `batch` guardrails whose limit the tree goes over with `n` more
/// changes on top of `before` (a step's own items alone are already checked by the guardrail).
pub(super) fn check_tree(
    verdicts: &mut [Verdict],
    limits: &[(String, u64)],
    before: &HashMap<String, u64>,
    n: u64,
) {
    for (name, max) in limits {
        let earlier = before.get(name).copied().unwrap_or(0);
        if earlier == 0 || earlier + n <= *max {
            continue;
        }
        let problem = format!(
            "{} changes across this run and the sub-playbooks of its run tree ({earlier} planned before this step) are above the limit of {max} per run",
            earlier + n
        );
        for v in verdicts.iter_mut().filter(|v| &v.guardrail == name) {
            if v.pass {
                v.pass = false;
                v.reason = problem.clone();
            } else {
                v.reason = format!("{}; {problem}", v.reason);
            }
        }
    }
}
