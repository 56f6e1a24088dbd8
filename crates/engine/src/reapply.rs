//! Re-applying the journal to a system that lost its state: a component whose changes live only
//! in memory (Unbound's runtime local zones, a rebooted firewall without a saved ruleset) is put
//! back into the state the journal says it should be in. Every applied change of the family that
//! was not reverted is issued again, in journal order (undo changes included, so the net state
//! is the journal's); the connectors are idempotent, so what survived reports `changed: false`.
//! Each re-issue is audited.

use crate::{Engine, EngineError, Result};
use belay_connector_api::Call;
use belay_model::{AuditDraft, ChangeStatus, now_ms};
use serde::Serialize;
use serde_json::json;

/// What re-applying one change did.
#[derive(Debug, Clone, Serialize)]
pub struct Reapplied {
    /// The journaled change re-issued.
    pub change_id: String,
    /// Its action.
    pub action: String,
    /// Its target, as journaled.
    pub target: String,
    /// The system had lost it and has it again.
    pub restored: bool,
    /// The connector's error when the call failed; none when it succeeded.
    pub error: Option<String>,
}

/// Re-issues every applied, unreverted change of the action family `family`, as `actor`.
pub async fn reapply(engine: &Engine, family: &str, actor: &str) -> Result<Vec<Reapplied>> {
    let prefix = format!("{family}.");
    let Some(conn) = engine.connectors.resolve(&prefix) else {
        return Err(EngineError::Other(format!(
            "no connector serves the `{family}` family"
        )));
    };
    let mut changes = engine.store.changes(None).await?;
    changes.retain(|c| c.action.starts_with(&prefix) && c.status == ChangeStatus::Applied);
    changes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let stamp = now_ms();
    let mut out = Vec::with_capacity(changes.len());
    let mut audit = Vec::with_capacity(changes.len());
    for c in changes {
        // A fresh key: the original one may be remembered as done by the system itself.
        let key = format!("{}/reapply/{stamp}", c.idempotency_key);
        let result = conn
            .call(Call {
                action: &c.action,
                input: &c.with,
                idempotency_key: Some(&key),
                before: None,
            })
            .await;
        let (restored, error) = match result {
            Ok(v) => (v["changed"] == true, None),
            Err(e) => (false, Some(e.message)),
        };
        audit.push(AuditDraft {
            kind: "change.reapplied".into(),
            actor: actor.into(),
            subject: c.id.clone(),
            detail: json!({ "action": c.action, "target": c.target, "restored": restored,
                            "error": error }),
        });
        out.push(Reapplied {
            change_id: c.id,
            action: c.action,
            target: c.target,
            restored,
            error,
        });
    }
    if !audit.is_empty() {
        engine.store.append_audit(audit).await?;
    }
    Ok(out)
}
