//! Pauses of automation: an admin pauses all automation or one playbook, and while a pause is
//! in force its change steps are recorded as shadow (planned, not applied). The pause is kept in
//! the store so every process running playbooks honours it; both switches are audited.

use crate::Result;
use async_trait::async_trait;
use belay_model::AuditDraft;
use serde::Serialize;
use serde_json::json;

/// The stored scope of a pause of all automation.
pub(crate) const ALL: &str = "*";

/// One pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PauseRecord {
    /// The paused playbook; `None`: all automation.
    pub playbook: Option<String>,
    /// Who paused it.
    pub paused_by: String,
    /// Why.
    pub reason: String,
    /// Unix ms.
    pub paused_at: i64,
}

impl PauseRecord {
    pub(crate) fn scope(&self) -> &str {
        self.playbook.as_deref().unwrap_or(ALL)
    }

    pub(crate) fn from_scope(scope: String, paused_by: String, reason: String, at: i64) -> Self {
        PauseRecord {
            playbook: (scope != ALL).then_some(scope),
            paused_by,
            reason,
            paused_at: at,
        }
    }
}

/// The stored pauses. Every [`crate::Store`] is one.
#[async_trait]
pub trait Pauses: Send + Sync {
    /// Pauses all automation (`playbook` `None`) or one playbook, audited `automation.paused`
    /// as `actor` with `reason`. Pausing what is paused replaces who and why.
    async fn pause(&self, pause: &PauseRecord) -> Result<()>;
    /// Lifts the pause of all automation (`None`) or of one playbook, audited
    /// `automation.resumed` as `actor`; false (and nothing audited) if there was none.
    async fn unpause(&self, playbook: Option<&str>, actor: &str, reason: &str) -> Result<bool>;
    /// The pauses in force, all automation's first.
    async fn pauses(&self) -> Result<Vec<PauseRecord>>;

    /// The pause that governs `playbook` now: all automation's, else its own.
    async fn pause_of(&self, playbook: &str) -> Result<Option<PauseRecord>> {
        let all = self.pauses().await?;
        Ok(all
            .iter()
            .find(|p| p.playbook.is_none())
            .or_else(|| all.iter().find(|p| p.playbook.as_deref() == Some(playbook)))
            .cloned())
    }
}

pub(crate) fn paused(p: &PauseRecord) -> AuditDraft {
    AuditDraft {
        kind: "automation.paused".into(),
        actor: p.paused_by.clone(),
        subject: p.scope().into(),
        detail: json!({ "playbook": p.playbook, "reason": p.reason }),
    }
}

pub(crate) fn resumed(playbook: Option<&str>, actor: &str, reason: &str) -> AuditDraft {
    AuditDraft {
        kind: "automation.resumed".into(),
        actor: actor.into(),
        subject: playbook.unwrap_or(ALL).into(),
        detail: json!({ "playbook": playbook, "reason": reason }),
    }
}
