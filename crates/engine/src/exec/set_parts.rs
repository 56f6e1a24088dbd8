//! Set-level changes (`*_many`) a never-list hit in part: each hit target becomes an item of
//! its own, `STEP[target]`, held (or denied) apart like a `for_each` item, while the step's
//! change goes ahead at once without them. One approval decides the held targets (`--without`
//! leaves some out); each approved one is then applied as the one-target change of the same
//! action that was approved. Nothing held or denied here is ever applied.

use super::guard_gate::Planned;
use super::{Outcome, RunState};
use crate::Result;
use crate::guard::Verdict;
use belay_model::StepStatus;
use belay_playbook::{ActionSpec, Call, Step};
use minijinja::Value as MjValue;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The part of a set-level step's targets one of its changes takes.
pub(super) enum SetPart {
    /// Every target but these (by their text): the step's change, without what was set apart.
    Without(HashSet<String>),
    /// Exactly these inputs (not rendered again): a target held apart, as it was approved.
    Exact(Value),
}

impl RunState {
    /// Turns a step's planned changes into the items guardrails decide on one by one: each
    /// item of one target as it is, and each hit target of a set-level change (any index
    /// in `verdicts`' items) as its own item `KEY[target]`, those of one change sorted by key;
    /// the set-level change goes ahead without them. `verdicts`' items become indices into
    /// the returned items, which come with their targets.
    pub(super) fn split_set(
        &mut self,
        spec: &ActionSpec,
        planned: Vec<Planned>,
        targets: &[String],
        verdicts: &mut [Verdict],
    ) -> (Vec<Planned>, Vec<String>) {
        let hit: BTreeSet<usize> = verdicts
            .iter()
            .flat_map(|v| v.items.iter().copied())
            .collect();
        let mut units: Vec<Planned> = Vec::new();
        let mut unit_targets: Vec<String> = Vec::new();
        let mut unit_of: HashMap<usize, usize> = HashMap::new();
        let mut start = 0;
        for (key, item, with) in planned {
            let count = spec.target_count(&with);
            let range = start..start + count;
            start += count;
            if !spec.is_set_level(&with) {
                unit_of.insert(range.start, units.len());
                unit_targets.push(targets.get(range.start).cloned().unwrap_or_default());
                units.push((key, item, with));
                continue;
            }
            let values = spec
                .target
                .as_ref()
                .and_then(|t| with.get(&t.field))
                .and_then(Value::as_array);
            // One item per hit target, however often the set lists it.
            let mut parts: BTreeMap<String, (String, Value, Vec<usize>)> = BTreeMap::new();
            for t in hit.range(range.clone()) {
                let (Some(text), Some(value)) =
                    (targets.get(*t), values.and_then(|v| v.get(t - range.start)))
                else {
                    continue;
                };
                parts
                    .entry(format!("{key}[{text}]"))
                    .or_insert_with(|| (text.clone(), value.clone(), Vec::new()))
                    .2
                    .push(*t);
            }
            let mut left_out = HashSet::new();
            for (part_key, (text, value, indices)) in parts {
                for t in indices {
                    unit_of.insert(t, units.len());
                }
                units.push((part_key, None, spec.with_targets(&with, vec![value])));
                unit_targets.push(text.clone());
                left_out.insert(text);
            }
            self.set_parts.insert(key, SetPart::Without(left_out));
        }
        for v in verdicts.iter_mut() {
            let mut items: Vec<usize> = v
                .items
                .iter()
                .filter_map(|t| unit_of.get(t))
                .copied()
                .collect();
            items.sort_unstable();
            items.dedup();
            v.items = items;
        }
        (units, unit_targets)
    }

    /// The targets of set-level step `step` held apart by an earlier attempt and not decided
    /// yet (their records held), sorted by key as they were held.
    pub(super) fn prior_parts(&self, step: &Step) -> Vec<Planned> {
        let prefix = format!("{}[", step.id);
        let mut parts: Vec<Planned> = self
            .prior
            .values()
            .filter(|r| r.step == step.id && r.item.is_none() && r.key.starts_with(&prefix))
            .filter(|r| !r.status.is_final())
            .map(|r| (r.key.clone(), None, r.with.clone()))
            .collect();
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        parts
    }

    /// `with` of the change `key` narrowed to its part of a set-level step's targets.
    pub(super) fn narrow(&self, spec: &ActionSpec, key: &str, with: Value) -> Value {
        match self.set_parts.get(key) {
            None => with,
            Some(SetPart::Without(left_out)) => {
                spec.retain_targets(with, |t| !left_out.contains(t))
            }
            Some(SetPart::Exact(_)) => with,
        }
    }

    /// Runs a step of one action (no `for_each`): its change (or its record from before),
    /// then, for a set-level change, each approved target held apart, and reports the held
    /// ones still waiting.
    pub(super) async fn run_single(
        &mut self,
        step: &Step,
        seq: i64,
        ctx: MjValue,
    ) -> Result<Outcome> {
        let main = match self.reuse(&step.id) {
            Some(o) => o,
            None => {
                self.run_item(step, seq, step.id.clone(), None, ctx.clone())
                    .await?
            }
        };
        let Call::Action(_) = &step.call else {
            return Ok(main);
        };
        let prefix = format!("{}[", step.id);
        let mut approved: Vec<(String, String)> = self
            .batch_allowed
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, by)| (k.clone(), by.clone()))
            .collect();
        approved.sort();
        // Each approved target is applied as the change a person approved: its own inputs,
        // bound to the approval's hash of them.
        let mut outcome = main;
        for (key, _) in approved {
            let Some(with) = self.prior.get(&key).map(|r| r.with.clone()) else {
                continue;
            };
            self.set_parts.insert(key.clone(), SetPart::Exact(with));
            let o = self.run_item(step, seq, key, None, ctx.clone()).await?;
            outcome = match (o, outcome) {
                (_, failed @ Outcome::Failed(_)) => failed,
                (Outcome::Done { .. }, main) => main,
                (other, _) => other,
            };
        }
        // Targets held apart and still waiting keep the run waiting; denied ones do not.
        let parts: Vec<String> = self
            .set_aside
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        let mut waiting = false;
        for k in parts {
            if let Some(rec) = self.set_aside.remove(&k) {
                waiting |= rec.status == StepStatus::Held;
            }
        }
        if waiting && !matches!(outcome, Outcome::Failed(_)) {
            return Ok(Outcome::Waiting);
        }
        Ok(outcome)
    }

    /// Whether targets of set-level step `step` were held apart and are not decided yet.
    pub(super) fn has_open_parts(&self, step: &Step) -> bool {
        step.for_each.is_none() && !self.prior_parts(step).is_empty()
    }
}
