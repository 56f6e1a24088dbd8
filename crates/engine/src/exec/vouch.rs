//! The trail vouches for every decision the engine acts on: an approval read from the store
//! as approved (or expired into `on_timeout: approve`) is honoured only if its decision
//! entries are in the audit trail, intact and bound to the same approval and change. One
//! marked approved directly in the database is refused, and the refusal is audited.

use super::RunState;
use super::approval_gate::Gate;
use crate::Result;
use belay_model::{ApprovalRecord, AuditDraft};
use belay_store::Write;
use serde_json::json;

impl RunState {
    /// `gate` if the audit trail vouches for approval `a`'s decision; otherwise a denial
    /// saying why, with an `approval.unvouched` entry in the trail.
    /// `approved`: the hash of the items about to be applied when approvers left some out.
    pub(super) async fn vouched(
        &self,
        a: &ApprovalRecord,
        gate: Gate,
        approved: Option<&str>,
    ) -> Result<Gate> {
        let entries = self.engine.store.approval_trail(&a.id).await?;
        let why = match belay_store::approval_allows(&entries, &a.id, &a.change_hash, approved) {
            Ok(()) => return Ok(gate),
            Err(why) => why,
        };
        self.unvouched
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.queue(Write::Audit(AuditDraft {
            kind: "approval.unvouched".into(),
            actor: format!("engine:{}", self.engine.store.worker_id()),
            subject: a.id.clone(),
            detail: json!({
                "run_id": a.run_id, "step": a.key, "change_hash": a.change_hash,
                "status": a.status, "reason": why,
            }),
        }));
        Ok(Gate::Deny(format!(
            "approval {} is {} in the database but the audit trail does not vouch for it ({why}); \
             nothing was applied",
            a.id, a.status
        )))
    }
}
