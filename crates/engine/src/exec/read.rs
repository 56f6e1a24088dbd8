//! A read action: called with retries and recorded, with no journal entry: a read changes
//! nothing, and a change action never goes this way.

use super::{ItemResult, RunState};
use belay_connector_api::Call as ConnectorCall;
use belay_model::{Decision, StepRecord, StepStatus};
use belay_playbook::{ActionSpec, Step};

impl RunState {
    /// Calls a read action and records its output.
    pub(super) async fn read(
        &self,
        step: &Step,
        spec: &ActionSpec,
        mut rec: StepRecord,
    ) -> ItemResult {
        rec.decision = Decision::Read;
        let conn = match self.connector(&spec.name) {
            Ok(c) => c,
            Err(m) => return self.fail(rec, m).await,
        };
        let call = ConnectorCall {
            action: &spec.name,
            input: &rec.with,
            idempotency_key: None,
            before: None,
        };
        let (result, attempts) = self.call_with_retry(&conn, call, step).await;
        rec.attempts = attempts;
        match result {
            Ok(out) => {
                rec.status = StepStatus::Succeeded;
                rec.output = out;
            }
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(e.message);
            }
        }
        self.finish(rec).await
    }
}
