//! Approvals: a person's decision on one exact planned change, and step demotions.

use crate::TrustLevel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

string_enum! {
    /// Where an approval stands.
    ApprovalStatus {
        /// Waiting for votes until `expires_at`.
        Pending => "pending",
        /// Reached its quorum of distinct eligible approvers.
        Approved => "approved",
        /// An eligible person voted no.
        Denied => "denied",
        /// Unanswered at `expires_at`; the terms' `on_timeout` decides what follows.
        Expired => "expired",
        /// Replaced: the planned change no longer matches `change_hash`, so a new approval
        /// is requested.
        Superseded => "superseded",
    }
}

string_enum! {
    /// What an unanswered approval turns into.
    OnTimeout {
        /// The change is denied and its step fails.
        Deny => "deny",
        /// The change is applied as if approved.
        Approve => "approve",
        /// The step is skipped and the run goes on.
        Skip => "skip",
    }
}

/// The step's approval options, as they were when the approval was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTerms {
    /// Roles or user names allowed to decide; empty means `responder` or `admin`.
    pub approvers: Vec<String>,
    /// Distinct eligible people who must approve (at least 1).
    pub quorum: u32,
    /// How long the approval waits, in milliseconds, before `on_timeout` applies.
    pub timeout_ms: i64,
    /// What happens when nobody decided in time.
    pub on_timeout: OnTimeout,
    /// The person who triggered the run or authored the playbook may not approve.
    pub separation: bool,
}

/// One person's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Vote {
    /// Who voted (the authenticated user name).
    pub user: String,
    /// True to approve, false to deny.
    pub approve: bool,
    /// Free text given with the vote.
    pub comment: Option<String>,
    /// When, in Unix milliseconds.
    pub at: i64,
    /// Items of a held batch (their step keys, `step[i]`) the voter approved the batch
    /// without: they are denied by this voter, the rest may go ahead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<String>,
    /// With `without`: the [`subset_hash`] of exactly the items approved, which the engine
    /// recomputes before it applies any of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_hash: Option<String>,
    /// Where the vote came from: `api`, `cli`, `chat`, `email` (none for votes recorded
    /// before channels were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A request for a person's decision on one planned change (or one held batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Unique id (UUIDv7), used to decide it (`belay approvals approve ID`).
    pub id: String,
    /// The run waiting on it.
    pub run_id: String,
    /// Name of the run's playbook.
    pub playbook: String,
    /// The step's id.
    pub step: String,
    /// The step record it decides: `step`, `step[i]`, or `step#batch` for a held batch.
    pub key: String,
    /// The change action to be called (`connector.action`).
    pub action: String,
    /// Resolved inputs; for a batch, a list of `{key, with}`.
    pub with: Value,
    /// What the change acts on (an address, a domain, a host...).
    pub target: String,
    /// SHA-256 of the canonical planned change; the approval applies to that change only.
    pub change_hash: String,
    /// The target's state when the approval was requested, where the connector can read it.
    pub current_state: Value,
    /// Guardrail verdicts at request time.
    pub guardrails: Value,
    /// Why a person is asked.
    pub reason: String,
    /// The step's effective trust level when the approval was requested.
    pub trust: TrustLevel,
    /// Who may decide and what happens on timeout, frozen at request time.
    pub terms: ApprovalTerms,
    /// Who triggered the run, when a person did.
    pub triggered_by: Option<String>,
    /// The playbook's author, when it names one.
    pub author: Option<String>,
    /// The step's record so far: runs, approvals, denials, rollbacks.
    pub history: Value,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Votes in the order cast; one user's repeated approvals count once.
    pub votes: Vec<Vote>,
    /// When requested, in Unix milliseconds.
    pub created_at: i64,
    /// `created_at` plus the terms' timeout, in Unix milliseconds.
    pub expires_at: i64,
    /// When it left `pending`, in Unix milliseconds.
    pub decided_at: Option<i64>,
    /// Incremented on every update; decisions compare and swap on it.
    pub version: i64,
}

impl ApprovalRecord {
    /// Distinct users who approved.
    pub fn approvals(&self) -> usize {
        let mut users: Vec<&str> = self
            .votes
            .iter()
            .filter(|v| v.approve)
            .map(|v| v.user.as_str())
            .collect();
        users.sort_unstable();
        users.dedup();
        users.len()
    }
}

/// A step held below its declared trust level because a person rolled back one of its changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demotion {
    /// Name of the playbook.
    pub playbook: String,
    /// The step's id within it.
    pub step: String,
    /// The highest level the step may run at until reset.
    pub level: TrustLevel,
    /// Why, as shown to people (e.g. who rolled back which change).
    pub reason: String,
    /// The rolled-back change that caused it.
    pub change_id: Option<String>,
    /// Who demoted the step (the user who rolled back, or set the demotion).
    pub by: String,
    /// When, in Unix milliseconds.
    pub at: i64,
    /// SHA-256 of the step's definition when it was demoted (see the engine's
    /// `trust::step_definition`): the demotion follows the step through renames. Rows written
    /// before it existed have none and match by playbook and step name only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

/// SHA-256 of a planned change's canonical JSON: what an approval is bound to.
pub fn change_hash(
    run_id: &str,
    playbook_hash: &str,
    key: &str,
    action: &str,
    with: &Value,
) -> String {
    let canonical = crate::audit::canonical_json(&serde_json::json!({
        "run_id": run_id, "playbook_hash": playbook_hash, "key": key, "action": action, "with": with,
    }));
    crate::sha256_hex(canonical.as_bytes())
}

/// The hash a partial decision on a held batch binds to: the batch's change hash (which covers
/// every item's inputs) and the keys of exactly the items approved, sorted.
pub fn subset_hash(change_hash: &str, approved_keys: &[&str]) -> String {
    let mut keys = approved_keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    let canonical = crate::audit::canonical_json(&serde_json::json!({
        "change_hash": change_hash, "approved": keys,
    }));
    crate::sha256_hex(canonical.as_bytes())
}
