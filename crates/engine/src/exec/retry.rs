//! One connector call with the step's timeout and retries: transient failures are retried
//! with exponential backoff, permanent ones at once returned. It never decides whether a call
//! may be made; its caller has journaled a change before calling.

use super::RunState;
use belay_connector_api::{ActionError, Call as ConnectorCall, Connector, ErrorKind};
use belay_playbook::Step;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

impl RunState {
    /// Calls `call` until it succeeds, fails permanently or runs out of attempts; returns
    /// the result and the number of attempts made.
    pub(super) async fn call_with_retry(
        &self,
        conn: &Arc<dyn Connector>,
        call: ConnectorCall<'_>,
        step: &Step,
    ) -> (std::result::Result<Value, ActionError>, i64) {
        let timeout = step.timeout.unwrap_or(self.engine.config.action_timeout);
        let attempts = step.retry.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A retry reads the target afresh: the state read before the first attempt may be
            // what made it fail.
            let call = if attempt == 1 {
                call
            } else {
                ConnectorCall {
                    before: None,
                    ..call
                }
            };
            let started = std::time::Instant::now();
            let r = match tokio::time::timeout(timeout, conn.call(call)).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::transient(format!(
                    "timed out after {}",
                    humanize(timeout)
                ))),
            };
            let outcome = match &r {
                Ok(_) => "ok",
                Err(e) if e.kind == ErrorKind::Transient => "transient",
                Err(_) => "error",
            };
            metrics::histogram!("belay_action_duration_seconds",
                "action" => call.action.to_owned(), "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
            match r {
                Err(e) if e.kind == ErrorKind::Transient && attempt < attempts => {
                    let backoff = step
                        .retry
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(10));
                    tracing::warn!(
                        "{} attempt {attempt} failed ({}); retrying in {}",
                        call.action,
                        e.message,
                        humanize(backoff)
                    );
                    tokio::time::sleep(backoff).await;
                }
                Err(mut e) if attempt > 1 => {
                    e.message = format!("{} (after {attempt} attempts)", e.message);
                    return (Err(e), attempt as i64);
                }
                other => return (other, attempt as i64),
            }
        }
    }
}

/// A duration as the retry messages print it (`30s`, `250ms`).
fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
