//! Runs, their steps and the changes they journal: trust levels, statuses and the records the
//! store keeps.

use serde::{Deserialize, Serialize};
use serde_json::Value;

string_enum! {
    /// How much a change step may do on its own, from least to most autonomous.
    /// The declared level is a ceiling: the engine may demote, never promote.
    TrustLevel {
        /// Recorded, never applied.
        Shadow => "shadow",
        /// A person decides on each exact change before it is applied.
        Approve => "approve",
        /// Applied alone; everything journaled.
        Log => "log",
        /// Applied alone inside the guardrails.
        Guarded => "guarded",
    }
}

string_enum! {
    /// Where a run is in its life.
    RunStatus {
        /// Accepted, not started.
        Pending => "pending",
        /// Being executed (or interrupted while executing, and resumed on restart).
        Running => "running",
        /// Parked on an approval or guardrail hold; resumed when it is decided.
        WaitingApproval => "waiting_approval",
        /// Every step finished without failing (final).
        Succeeded => "succeeded",
        /// A step failed or the run could not go on; `error` says why (final).
        Failed => "failed",
        /// A change the run needed was denied (by a person, or by its approval's timeout);
        /// `error` says by whom (final).
        Denied => "denied",
    }
}

impl RunStatus {
    /// A finished run is never resumed.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Denied
        )
    }
}

string_enum! {
    /// Where one step (or one `for_each` item) is.
    StepStatus {
        /// Started, not finished; executed again on resume.
        Running => "running",
        /// The action returned; `output` holds its result.
        Succeeded => "succeeded",
        /// The action or a gate failed; `error` says why.
        Failed => "failed",
        /// Not executed (e.g. its `when:` was false).
        Skipped => "skipped",
        /// Recorded but not applied: a shadow step or a dry run.
        Planned => "planned",
        /// Waiting for an approval or a guardrail decision.
        Held => "held",
    }
}

impl StepStatus {
    /// A step in a final status is not executed again on resume.
    pub fn is_final(self) -> bool {
        !matches!(self, StepStatus::Running | StepStatus::Held)
    }
}

string_enum! {
    /// What the engine decided to do with one planned action, and why it is allowed.
    Decision {
        /// A read action, called without gates.
        Read => "read",
        /// A change applied (by its trust level or an approval).
        Apply => "apply",
        /// A change at `shadow`: recorded, not called.
        Shadow => "shadow",
        /// A change that a dry run would apply.
        DryRun => "dry_run",
        /// A change waiting for a person's approval.
        AwaitApproval => "await_approval",
        /// A change refused by a person or by an approval's timeout.
        Denied => "denied",
        /// A change held by a guardrail until a person decides.
        GuardrailHold => "guardrail_hold",
        /// A change refused by a guardrail.
        GuardrailDeny => "guardrail_deny",
        /// Not executed: its condition was false, or a decision said to skip it.
        Skip => "skip",
        /// A `playbook:` step, running a child run.
        SubPlaybook => "sub_playbook",
    }
}

string_enum! {
    /// The state of a journaled change.
    ChangeStatus {
        /// Journaled, not yet known to be applied: checked before retrying after a crash.
        Pending => "pending",
        /// Applied; `after` holds the target's state.
        Applied => "applied",
        /// The action failed; `error` says why.
        Failed => "failed",
        /// Undone by a rollback.
        Reverted => "reverted",
        /// The target changed since the change was applied, so it is not reverted blindly.
        Drifted => "drifted",
        /// The connector call was in flight when the process stopped: the outcome is verified
        /// against the target (read-state) before anything else happens to the change.
        Unknown => "unknown",
    }
}

/// One execution of one playbook for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRecord {
    /// Unique id (UUIDv7, so ids sort by creation time).
    pub id: String,
    /// The event that triggered it (the parent's event for a child run).
    pub event_id: String,
    /// That event's source: event ids are unique per source, so the pair names the event.
    #[serde(default)]
    pub event_source: String,
    /// Name of the playbook.
    pub playbook: String,
    /// SHA-256 of the playbook source the run was planned with.
    pub playbook_hash: String,
    /// The run whose `playbook:` step started this one.
    pub parent_run: Option<String>,
    /// Where it is in its life.
    pub status: RunStatus,
    /// Nothing is applied: change steps only record what they would do.
    pub dry_run: bool,
    /// Inputs given by a parent playbook (`with:` of a `playbook:` step); null otherwise.
    pub inputs: Value,
    /// Why it failed, for a failed run.
    pub error: Option<String>,
    /// When accepted, in Unix milliseconds.
    pub created_at: i64,
    /// Last status change, in Unix milliseconds.
    pub updated_at: i64,
}

impl RunRecord {
    /// The source of the triggering event, when known (runs stored before sources were
    /// recorded have none).
    pub fn trigger_source(&self) -> Option<&str> {
        (!self.event_source.is_empty()).then_some(self.event_source.as_str())
    }
}

/// The record of one step, or one item of a `for_each` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepRecord {
    /// The run it belongs to.
    pub run_id: String,
    /// `step` or `step[i]` for `for_each` items; unique within a run.
    pub key: String,
    /// The step's id in the playbook (`key` without the item index).
    pub step: String,
    /// Position in the playbook, so records list in execution order.
    pub seq: i64,
    /// The `for_each` item's index, from 0; none for a plain step.
    pub item: Option<i64>,
    /// The action called, or `playbook:NAME` for a sub-playbook.
    pub action: String,
    /// Resolved inputs.
    pub with: Value,
    /// What the engine did with it.
    pub decision: Decision,
    /// The effective trust level of a change step (after demotions); none for reads.
    pub trust: Option<TrustLevel>,
    /// Names of the guardrails that gave a verdict on it.
    pub guardrails: Vec<String>,
    /// Where it is.
    pub status: StepStatus,
    /// The action's result (or, for a held step, what it waits on); null otherwise.
    pub output: Value,
    /// Why it failed, was denied or would be held.
    pub error: Option<String>,
    /// Calls of the action, retries included (0 if it was never called).
    pub attempts: i64,
    /// In Unix milliseconds.
    pub started_at: i64,
    /// In Unix milliseconds; none while running or held.
    pub finished_at: Option<i64>,
}

/// The journal entry of one state change, written before the change is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeRecord {
    /// Unique id (UUIDv7), used to roll it back.
    pub id: String,
    /// The run that made it.
    pub run_id: String,
    /// [`StepRecord::key`] of the step that made it.
    pub step_key: String,
    /// `run/step-key`: a change with this key is applied at most once.
    pub idempotency_key: String,
    /// The change action called (`connector.action`).
    pub action: String,
    /// What the change acts on (an address, a domain, a list entry...).
    pub target: String,
    /// Resolved inputs of the action.
    pub with: Value,
    /// The target's state read before applying.
    pub before: Value,
    /// The target's state read after applying; null until then.
    pub after: Value,
    /// The action and inputs that undo this change; null if it cannot be undone.
    pub inverse: Value,
    /// The effective trust level it was made at.
    pub trust: TrustLevel,
    /// Names of the guardrails that gave a verdict on it.
    pub guardrails: Vec<String>,
    /// Who or what allowed it: `trust:log`, `approval:ID`...
    pub allowed_by: String,
    /// Where it stands.
    pub status: ChangeStatus,
    /// Why applying or reverting it failed.
    pub error: Option<String>,
    /// When journaled, in Unix milliseconds.
    pub created_at: i64,
    /// Last status change, in Unix milliseconds.
    pub updated_at: i64,
    /// When the engine reverts it (a step's `expires:`), in Unix milliseconds; `None`: it
    /// lasts until someone rolls it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// How many targets it changes: the items of a set-level change (`*_many`), else 1. Rate
    /// and baseline guardrails count each of them as one change.
    #[serde(default = "one_item")]
    pub items: u64,
}

fn one_item() -> u64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for t in TrustLevel::ALL {
            assert_eq!(t.as_str().parse::<TrustLevel>().unwrap(), *t);
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for d in Decision::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        let err = "trusted".parse::<TrustLevel>().unwrap_err();
        assert!(err.contains("shadow, approve, log, guarded"), "{err}");
    }

    #[test]
    fn trust_levels_are_ordered_by_autonomy() {
        assert!(TrustLevel::Shadow < TrustLevel::Approve);
        assert!(TrustLevel::Approve < TrustLevel::Log);
        assert!(TrustLevel::Log < TrustLevel::Guarded);
    }
}

/// One version of a playbook a run used, kept by the store under the SHA-256 of its source
/// (the `playbook_hash` runs record), so a resumed run executes exactly what it was planned
/// with, whatever the playbook folder holds by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookVersion {
    /// SHA-256 of `source`, hex: the key.
    pub hash: String,
    /// The playbook's name in this version.
    pub name: String,
    /// The playbook file's text, exactly as hashed.
    pub source: String,
    /// The sub-playbooks it calls, name → hash of the version loaded with it when this
    /// version was first stored (each stored as a version of its own).
    #[serde(default)]
    pub calls: std::collections::BTreeMap<String, String>,
    /// SHA-256 over the guardrail files in force when this version was first stored (empty
    /// when the engine was given none).
    #[serde(default)]
    pub guardrails_hash: String,
    /// When first stored, in Unix milliseconds.
    pub created_at: i64,
}

/// The guardrail files in force, kept by the store under their hash (the `guardrails_hash` of
/// the playbook versions stored with them), so what guarded a run can be read back later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardrailSet {
    /// SHA-256 over the files' names and hashes (see `guardrails_hash` in the CLI): the key.
    pub hash: String,
    /// Each file's name and text, in load order.
    pub files: Vec<(String, String)>,
    /// When first stored, in Unix milliseconds.
    pub created_at: i64,
}

impl PlaybookVersion {
    /// Whether `source` hashes to `hash` (a stored version is used only then).
    pub fn verify(&self) -> bool {
        crate::sha256_hex(self.source.as_bytes()) == self.hash
    }
}
