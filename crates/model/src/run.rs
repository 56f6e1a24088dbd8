use serde::{Deserialize, Serialize};
use serde_json::Value;

string_enum! {
    /// How much a change step may do on its own, from least to most autonomous.
    /// The declared level is a ceiling: the engine may demote, never promote.
    TrustLevel {
        Shadow => "shadow",
        Approve => "approve",
        Log => "log",
        Guarded => "guarded",
    }
}

string_enum! {
    /// Where a run is in its life.
    RunStatus {
        Pending => "pending",
        Running => "running",
        WaitingApproval => "waiting_approval",
        Succeeded => "succeeded",
        Failed => "failed",
    }
}

impl RunStatus {
    /// A finished run is never resumed.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed)
    }
}

string_enum! {
    /// Where one step (or one `for_each` item) is.
    StepStatus {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        Planned => "planned",
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
        Read => "read",
        Apply => "apply",
        Shadow => "shadow",
        DryRun => "dry_run",
        AwaitApproval => "await_approval",
        Denied => "denied",
        GuardrailHold => "guardrail_hold",
        GuardrailDeny => "guardrail_deny",
        Skip => "skip",
        SubPlaybook => "sub_playbook",
    }
}

string_enum! {
    /// The state of a journaled change.
    ChangeStatus {
        Pending => "pending",
        Applied => "applied",
        Failed => "failed",
        Reverted => "reverted",
        Drifted => "drifted",
    }
}

/// One execution of one playbook for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub event_id: String,
    pub playbook: String,
    /// SHA-256 of the playbook source the run was planned with.
    pub playbook_hash: String,
    pub parent_run: Option<String>,
    pub status: RunStatus,
    pub dry_run: bool,
    /// Inputs given by a parent playbook (`with:` of a `playbook:` step); null otherwise.
    pub inputs: Value,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The record of one step, or one item of a `for_each` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub run_id: String,
    /// `step` or `step[i]` for `for_each` items; unique within a run.
    pub key: String,
    pub step: String,
    /// Position in the playbook, so records list in execution order.
    pub seq: i64,
    pub item: Option<i64>,
    /// The action called, or `playbook:NAME` for a sub-playbook.
    pub action: String,
    /// Resolved inputs.
    pub with: Value,
    pub decision: Decision,
    pub trust: Option<TrustLevel>,
    pub guardrails: Vec<String>,
    pub status: StepStatus,
    pub output: Value,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// The journal entry of one state change, written before the change is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: String,
    pub run_id: String,
    pub step_key: String,
    /// `run/step-key`: a change with this key is applied at most once.
    pub idempotency_key: String,
    pub action: String,
    /// What the change acts on (an address, a domain, a list entry...).
    pub target: String,
    pub with: Value,
    /// The target's state read before applying.
    pub before: Value,
    /// The target's state read after applying; null until then.
    pub after: Value,
    /// The action and inputs that undo this change; null if it cannot be undone.
    pub inverse: Value,
    pub trust: TrustLevel,
    pub guardrails: Vec<String>,
    /// Who or what allowed it: `trust:log`, `approval:ID`...
    pub allowed_by: String,
    pub status: ChangeStatus,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
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
