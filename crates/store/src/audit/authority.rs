//! Whether the trail vouches for every applied change: read in order, each change the trail
//! records as applied must be preceded by the authority its journal entry claims — a run the
//! trail started, the trust level it ran at, the decision entries of the approval it names
//! (requested, voted, granted or expired into `approve`, bound to the same run, step and
//! inputs) and no guardrail verdict that held or denied its step without a decision.
//!
//! It reads entries only; whether the entries themselves were edited is the chain's job
//! ([`belay_model::audit::verify_chain`]).

use belay_model::AuditEntry;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// An applied change the trail does not vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingAuthority {
    /// The entry recording the change as applied.
    pub seq: i64,
    /// The change's id.
    pub change_id: String,
    /// What it is (run, step, action, target) and which authority is missing.
    pub reason: String,
}

impl std::fmt::Display for MissingAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "change {} was applied without its authority in the trail (entry {}): {}",
            self.change_id, self.seq, self.reason
        )
    }
}

/// What the trail says about one approval so far.
#[derive(Default)]
struct ApprovalTrail {
    /// The `approval.requested` entry's detail.
    requested: Option<Value>,
    /// Votes recorded by `approval.vote` entries, as `(user, at)`.
    votes: HashSet<(String, i64)>,
    /// The deciding entry: `(seq, kind, actor, detail)`.
    decision: Option<(i64, String, String, Value)>,
}

/// A guardrail verdict that held or denied a step (or only some of its items).
struct Violation {
    seq: i64,
    guardrail: String,
    deny: bool,
    /// The keys of the items it concerns (a never-list hit held item by item); `None`: the
    /// whole step.
    items: Option<HashSet<String>>,
}

/// A journaled change and, when it lacks one, what authority is missing.
struct Journaled {
    summary: String,
    missing: Option<String>,
}

/// Reads the trail in order and reports the first applied change without its authority.
#[derive(Default)]
pub struct AuthorityCheck {
    /// Runs the trail started, with whether each is a dry run.
    runs: HashMap<String, bool>,
    approvals: HashMap<String, ApprovalTrail>,
    /// Holds and denials by `(run, step id)`.
    violations: HashMap<(String, String), Vec<Violation>>,
    journaled: HashMap<String, Journaled>,
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The step id of a record key: `block[3]` (a `for_each` item) or `block[192.0.2.7]` (a
/// target held apart from a set-level change) → `block`. Step ids are identifiers.
fn step_id(key: &str) -> &str {
    key.split_once('[').map_or(key, |(id, _)| id)
}

impl AuthorityCheck {
    /// Takes the next entry of the trail; returns the change it shows applied without its
    /// authority, if any.
    pub fn observe(&mut self, e: &AuditEntry) -> Option<MissingAuthority> {
        let d = &e.detail;
        match e.kind.as_str() {
            "event.accepted" => {
                for r in d
                    .get("runs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let dry = r.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
                    self.runs.insert(text(r, "run_id").to_owned(), dry);
                }
            }
            "run.started" => {
                let dry = d.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
                self.runs.insert(e.subject.clone(), dry);
            }
            "approval.requested" => {
                let t = self.approvals.entry(e.subject.clone()).or_default();
                t.requested = Some(d.clone());
            }
            "approval.vote" => {
                let t = self.approvals.entry(e.subject.clone()).or_default();
                for v in d
                    .get("votes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let at = v.get("at").and_then(Value::as_i64).unwrap_or(0);
                    t.votes.insert((text(v, "user").to_owned(), at));
                }
            }
            "approval.granted" | "approval.denied" | "approval.expired" | "approval.superseded" => {
                if e.kind == "approval.superseded" {
                    // A superseded batch decision voids the hold it answered: the step is
                    // checked again.
                    if let Some(step) = text(d, "step").strip_suffix("#batch") {
                        self.violations
                            .remove(&(text(d, "run_id").to_owned(), step.to_owned()));
                    }
                }
                let t = self.approvals.entry(e.subject.clone()).or_default();
                t.decision = Some((e.seq, e.kind.clone(), e.actor.clone(), d.clone()));
            }
            "guardrail.violation" => {
                let key = (e.subject.clone(), text(d, "step").to_owned());
                let items = d.get("items").and_then(Value::as_array).map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                });
                self.violations.entry(key).or_default().push(Violation {
                    seq: e.seq,
                    guardrail: text(d, "guardrail").to_owned(),
                    deny: text(d, "on_violation") == "deny",
                    items,
                });
            }
            "change.journaled" => {
                let summary = format!(
                    "run {}, step {}, {} {}",
                    text(d, "run_id"),
                    text(d, "step"),
                    text(d, "action"),
                    text(d, "target")
                );
                let missing = self.missing(d).err();
                self.journaled
                    .insert(e.subject.clone(), Journaled { summary, missing });
            }
            "change.applied" => {
                let missing = match self.journaled.get(&e.subject) {
                    None => Some(
                        "no journal entry precedes it, so nothing in the trail allowed it".into(),
                    ),
                    Some(j) => j.missing.as_ref().map(|m| format!("{} — {m}", j.summary)),
                };
                return missing.map(|reason| MissingAuthority {
                    seq: e.seq,
                    change_id: e.subject.clone(),
                    reason,
                });
            }
            _ => {}
        }
        None
    }

    /// Checks the authority a `change.journaled` entry claims against the entries so far.
    fn missing(&self, d: &Value) -> Result<(), String> {
        let run = text(d, "run_id");
        let key = text(d, "step");
        let trust = text(d, "trust");
        let allowed_by = text(d, "allowed_by");
        match self.runs.get(run) {
            None => return Err(format!("its run {run} was never started in the trail")),
            Some(true) => return Err(format!("its run {run} is a dry run")),
            Some(false) => {}
        }
        let by_approval = if let Some(rest) = allowed_by.strip_prefix("approval:") {
            let id = rest.split_whitespace().next().unwrap_or("");
            self.approval_vouches(id, run, key, text(d, "with_sha256"))?;
            true
        } else if let Some(level) = allowed_by.strip_prefix("trust:") {
            if level != trust {
                return Err(format!(
                    "it claims trust level `{level}` but was journaled at `{trust}`"
                ));
            }
            if !matches!(level, "log" | "guarded") {
                return Err(format!(
                    "at trust level `{level}` a change needs an approval, and it claims none"
                ));
            }
            false
        } else if allowed_by.starts_with("rollback:") {
            false
        } else {
            return Err(format!("it claims an unknown authority `{allowed_by}`"));
        };
        let held = self
            .violations
            .get(&(run.to_owned(), step_id(key).to_owned()))
            .into_iter()
            .flatten()
            .filter(|v| v.items.as_ref().is_none_or(|items| items.contains(key)));
        for v in held {
            if v.deny {
                return Err(format!(
                    "guardrail {} denied step {} (entry {})",
                    v.guardrail,
                    step_id(key),
                    v.seq
                ));
            }
            if !by_approval {
                return Err(format!(
                    "guardrail {} held step {} (entry {}) and no approval in the trail decided it",
                    v.guardrail,
                    step_id(key),
                    v.seq
                ));
            }
        }
        Ok(())
    }

    /// Whether approval `id`'s entries allow the change `key` of `run` with inputs hashed
    /// `with_sha256`: decided into `approve` ([`Self::decision`]) for that run and step and
    /// those inputs (a batch's decision: one of its items).
    fn approval_vouches(
        &self,
        id: &str,
        run: &str,
        key: &str,
        with_sha256: &str,
    ) -> Result<(), String> {
        let (seq, d) = self.decision(id)?;
        if text(d, "run_id") != run {
            return Err(format!(
                "approval {id} (entry {seq}) decided on run {}, not {run}",
                text(d, "run_id")
            ));
        }
        let step = text(d, "step");
        if let Some(batch_step) = step.strip_suffix("#batch") {
            if batch_step != step_id(key) {
                return Err(format!(
                    "approval {id} (entry {seq}) decided on step {batch_step}, not {key}"
                ));
            }
            if let Some(items) = d.get("items").and_then(Value::as_array)
                && !items
                    .iter()
                    .any(|i| text(i, "key") == key && text(i, "with_sha256") == with_sha256)
            {
                return Err(format!(
                    "approval {id} (entry {seq}) decided on a batch without this change's inputs"
                ));
            }
            if let Some(v) = approving_votes(d).find(|v| {
                v.get("without")
                    .and_then(Value::as_array)
                    .is_some_and(|w| w.iter().any(|k| k.as_str() == Some(key)))
            }) {
                return Err(format!(
                    "approval {id} (entry {seq}) was granted by {} without this item",
                    text(v, "user")
                ));
            }
        } else {
            if step != key {
                return Err(format!(
                    "approval {id} (entry {seq}) decided on step {step}, not {key}"
                ));
            }
            if text(d, "with_sha256") != with_sha256 {
                return Err(format!(
                    "approval {id} (entry {seq}) decided on other inputs than the change's"
                ));
            }
        }
        Ok(())
    }

    /// The entry that decided approval `id` into `approve`, with its detail: requested, then
    /// granted by its quorum's votes, each recorded in the trail (the deciding one by its
    /// voter), or expired with `on_timeout: approve`; bound to the run, step and change hash
    /// it was requested for.
    fn decision(&self, id: &str) -> Result<(i64, &Value), String> {
        let Some(t) = self.approvals.get(id) else {
            return Err(format!("approval {id} is not in the trail"));
        };
        let Some(req) = &t.requested else {
            return Err(format!("approval {id} was never requested in the trail"));
        };
        let Some((seq, kind, actor, d)) = &t.decision else {
            return Err(format!(
                "approval {id} has no decision in the trail (it was only requested)"
            ));
        };
        let seq = *seq;
        for (what, requested, decided) in [
            ("run", text(req, "run_id"), text(d, "run_id")),
            ("step", text(req, "step"), text(d, "step")),
            (
                "change hash",
                text(req, "change_hash"),
                text(d, "change_hash"),
            ),
        ] {
            if requested != decided {
                return Err(format!(
                    "approval {id}'s decision (entry {seq}) is bound to another {what} than its request"
                ));
            }
        }
        match kind.as_str() {
            "approval.granted" => {
                let quorum = d.get("quorum").and_then(Value::as_u64).unwrap_or(1);
                let votes: Vec<(&str, i64, bool)> = d
                    .get("votes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        (
                            text(v, "user"),
                            v.get("at").and_then(Value::as_i64).unwrap_or(0),
                            v.get("approve").and_then(Value::as_bool).unwrap_or(false),
                        )
                    })
                    .collect();
                let approving = votes.iter().filter(|v| v.2).count() as u64;
                if approving < quorum {
                    return Err(format!(
                        "approval {id} was granted (entry {seq}) with {approving} of {quorum} approving votes"
                    ));
                }
                let Some((last, earlier)) = votes.split_last() else {
                    return Err(format!(
                        "approval {id} was granted (entry {seq}) without votes"
                    ));
                };
                if last.0 != actor {
                    return Err(format!(
                        "approval {id} was granted (entry {seq}) by {actor}, who did not cast its deciding vote"
                    ));
                }
                if let Some(v) = earlier
                    .iter()
                    .find(|v| !t.votes.contains(&(v.0.to_owned(), v.1)))
                {
                    return Err(format!(
                        "approval {id}'s vote by {} is not in the trail before its grant (entry {seq})",
                        v.0
                    ));
                }
                Ok((seq, d))
            }
            "approval.expired" if matches!(text(d, "on_timeout"), "approve" | "") => Ok((seq, d)),
            "approval.expired" => Err(format!(
                "approval {id} expired (entry {seq}) with on_timeout: {}",
                text(d, "on_timeout")
            )),
            other => Err(format!(
                "approval {id} was {} (entry {seq})",
                other.trim_start_matches("approval.")
            )),
        }
    }
}

/// Whether approval `id`'s entries in the trail (as [`crate::Store::approval_trail`] returns
/// them) allow acting on the change hashed `change_hash`: every entry intact (its hash
/// recomputes over the previous row's), and a decision into `approve` recorded as
/// [`AuthorityCheck`] requires, bound to that change. The engine calls it before it acts on an
/// approval it read from the database. `approved`: the [`belay_model::subset_hash`] of the
/// items the engine is about to apply when approvers left some out of a batch (`None`: all of
/// them); every approving vote in the trail must be bound to exactly that subset.
pub fn approval_allows(
    entries: &[AuditEntry],
    id: &str,
    change_hash: &str,
    approved: Option<&str>,
) -> Result<(), String> {
    let mut check = AuthorityCheck::default();
    for e in entries {
        if e.subject != id || !e.kind.starts_with("approval.") {
            continue;
        }
        if e.compute_hash() != e.hash {
            return Err(format!(
                "audit entry {} of approval {id} does not match its hash: the trail was edited",
                e.seq
            ));
        }
        check.observe(e);
    }
    let (seq, d) = check.decision(id)?;
    if text(d, "change_hash") != change_hash {
        return Err(format!(
            "approval {id} (entry {seq}) decided on another change than the one planned"
        ));
    }
    if let Some(v) =
        approving_votes(d).find(|v| v.get("approved_hash").and_then(Value::as_str) != approved)
    {
        return Err(format!(
            "approval {id} (entry {seq}): {}'s vote approved other items of the batch than the ones about to be applied",
            text(v, "user")
        ));
    }
    Ok(())
}

/// The approving votes of a decision entry's detail.
fn approving_votes(d: &Value) -> impl Iterator<Item = &Value> {
    d.get("votes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("approve").and_then(Value::as_bool) == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_drop_the_item_index_only() {
        assert_eq!(step_id("block[12]"), "block");
        assert_eq!(step_id("block"), "block");
        assert_eq!(step_id("list[192.0.2.7]"), "list");
    }
}
