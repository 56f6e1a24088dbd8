//! A change item: its trust decides (dry run, shadow, approval gate), then the change protocol
//! under the target's lock: read before-state → journal → apply → read after-state → record.
//! A change action is never called without its journal entry durable first, and never called
//! again for an idempotency key whose outcome is journaled.

use super::approval_gate::Gate;
use super::{ItemResult, Outcome, RunState};
use crate::EngineError;
use belay_connector_api::Call as ConnectorCall;
use belay_model::{
    ChangeRecord, ChangeStatus, Decision, StepRecord, StepStatus, TrustLevel, now_ms,
};
use belay_playbook::{ActionSpec, Step, Verified};
use belay_store::{FinishedChange, Write, Written};
use serde_json::{Value, json};

impl RunState {
    /// Decides, journals and applies one planned change, and records its outcome.
    pub(super) async fn change(
        &self,
        step: &Step,
        spec: &ActionSpec,
        mut rec: StepRecord,
    ) -> ItemResult {
        let (trust, pause) = self.trust_now(step).await?;
        rec.trust = Some(trust);
        if let Some(p) = &pause {
            rec.output = json!({ "paused": p });
        }
        if self.run.dry_run {
            // What would happen: applied, asked of a person, or stopped by a guardrail.
            rec.decision = match trust {
                TrustLevel::Shadow => Decision::Shadow,
                TrustLevel::Approve => Decision::AwaitApproval,
                TrustLevel::Log | TrustLevel::Guarded => Decision::DryRun,
            };
            if let Some((decision, reason)) = self
                .dry_holds
                .get(&rec.key)
                .or_else(|| self.dry_holds.get(&step.id))
            {
                rec.decision = *decision;
                rec.error = Some(format!(
                    "would be {}: {reason}",
                    decision.as_str().replace('_', " ")
                ));
            }
            rec.status = StepStatus::Planned;
            return self.finish(rec).await;
        }
        if trust == TrustLevel::Shadow {
            rec.decision = Decision::Shadow;
            rec.status = StepStatus::Planned;
            return self.finish(rec).await;
        }
        let conn = match self.connector(&spec.name) {
            Ok(c) => c,
            Err(m) => return self.fail(rec, m).await,
        };
        rec.decision = Decision::Apply;
        let allowed = self
            .batch_allowed
            .get(&rec.key)
            .or_else(|| self.batch_allowed.get(&step.id));
        let mut allowed_by = match allowed {
            Some(by) => by.clone(),
            None => format!("trust:{trust}"),
        };
        if trust == TrustLevel::Approve {
            match self.approval_gate(step, spec, &conn, &rec).await? {
                Gate::Proceed(by) => allowed_by = by,
                Gate::Wait(id) => {
                    rec.decision = Decision::AwaitApproval;
                    rec.status = StepStatus::Held;
                    rec.output = json!({ "approval_id": id });
                    return self.finish(rec).await;
                }
                Gate::Deny(message) => {
                    rec.decision = Decision::Denied;
                    rec.status = StepStatus::Failed;
                    rec.error = Some(message);
                    return self.finish(rec).await;
                }
                Gate::Skip(reason) => {
                    rec.decision = Decision::Skip;
                    rec.status = StepStatus::Skipped;
                    rec.output = json!({ "reason": reason });
                    return self.finish(rec).await;
                }
            }
        }
        let key = format!("{}/{}", self.run.id, rec.key);
        let family = spec
            .name
            .split_once('.')
            .map_or(spec.name.as_str(), |(f, _)| f);
        // After a crash, the journal may already hold this change; its inputs are the ones
        // that were approved and journaled, whatever a repeated read gives now.
        let existing = if self.resumed {
            self.engine.store.change_by_key(&key).await?
        } else {
            None
        };
        if let Some(c) = &existing {
            rec.with = c.with.clone();
        }
        let _target = self
            .engine
            .target_lock(family, &spec.target_of(&rec.with))
            .lock()
            .await;
        let resumed_journal = existing.is_some();
        // The state just read under the lock, for the connector's first attempt.
        let mut before_read = None;
        let journaled = match existing {
            Some(c) => c,
            None => {
                let before = match conn.read_state(&spec.name, &rec.with).await {
                    Ok(v) => v,
                    Err(e) => {
                        rec.status = StepStatus::Failed;
                        rec.error = Some(format!(
                            "cannot read the target's state before the change: {}",
                            e.message
                        ));
                        return self.finish(rec).await;
                    }
                };
                let now = now_ms();
                let inverse = spec
                    .inverse
                    .as_ref()
                    .map_or(Value::Null, |i| i.resolve(&rec.with, &before));
                let items = spec.target_count(&rec.with) as u64;
                let change = ChangeRecord {
                    id: belay_model::new_id(),
                    run_id: self.run.id.clone(),
                    step_key: rec.key.clone(),
                    idempotency_key: key.clone(),
                    action: spec.name.clone(),
                    target: spec.target_of(&rec.with),
                    // Moved, not copied (a set-level change's inputs may hold 200,000
                    // targets); the journaled record gives them back below.
                    with: std::mem::take(&mut rec.with),
                    before,
                    after: Value::Null,
                    inverse,
                    trust,
                    guardrails: rec.guardrails.clone(),
                    allowed_by,
                    status: ChangeStatus::Pending,
                    error: None,
                    created_at: now,
                    updated_at: now,
                    expires_at: step
                        .expires
                        .map(|(d, _)| now.saturating_add(d.as_millis() as i64)),
                    items,
                };
                // The journal entry is durable before the connector is called.
                match self.flush(Some(Write::BeginChange(change))).await?.pop() {
                    Some(Written::Change(mut c)) => {
                        // Only its inputs, id and status are needed from here on (and the
                        // before-state, by the call); both are in the journal.
                        rec.with = std::mem::take(&mut c.with);
                        before_read = Some(std::mem::take(&mut c.before));
                        c.inverse = Value::Null;
                        *c
                    }
                    _ => {
                        return Err(EngineError::Other(
                            "the store did not journal the change".into(),
                        ));
                    }
                }
            }
        };
        if !matches!(
            journaled.status,
            ChangeStatus::Pending | ChangeStatus::Unknown
        ) {
            // Journaled by an earlier attempt whose outcome is known: never apply again.
            rec.status = if journaled.status == ChangeStatus::Applied {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            };
            rec.error = journaled.error.clone();
            rec.output = json!({ "change_id": journaled.id, "resumed": true });
            return self.finish(rec).await;
        }
        if resumed_journal {
            // The call was in flight when the process stopped: what the target shows decides,
            // before anything else happens to the change.
            let (verdict, after) = self.verify_unknown(spec, &conn, &journaled, &rec).await?;
            match verdict {
                Verified::Applied => {
                    rec.status = StepStatus::Succeeded;
                    rec.output =
                        json!({ "change_id": journaled.id, "outcome_verified": "applied" });
                    rec.finished_at = Some(now_ms());
                    self.queue(Write::FinishChange(FinishedChange {
                        step: rec.clone(),
                        change_id: journaled.id.clone(),
                        status: ChangeStatus::Applied,
                        after,
                        error: None,
                    }));
                    let output = rec.output.clone();
                    return Ok((
                        Outcome::Done {
                            status: StepStatus::Succeeded,
                            output,
                        },
                        vec![rec],
                    ));
                }
                Verified::NotApplied => {} // applied now, once, under the same idempotency key
                Verified::Neither => {
                    rec.status = StepStatus::Failed;
                    rec.error = Some(format!(
                        "change {} ({} {}) has an unknown outcome: its call was in flight when belay stopped, and the target now shows neither the state before the change nor the state it makes; a person must look (`belay changes list` shows it as unknown)",
                        journaled.id, spec.name, journaled.target
                    ));
                    return self.finish(rec).await;
                }
            }
        }
        let call = ConnectorCall {
            action: &spec.name,
            input: &rec.with,
            idempotency_key: Some(&key),
            before: before_read.as_ref(),
        };
        let (result, attempts) = self.call_with_retry(&conn, call, step).await;
        drop(before_read);
        rec.attempts = attempts;
        let after = conn
            .read_state(&spec.name, &rec.with)
            .await
            .unwrap_or(Value::Null);
        let (status, error) = match result {
            Ok(out) => {
                rec.status = StepStatus::Succeeded;
                rec.output = out;
                (ChangeStatus::Applied, None)
            }
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(e.message.clone());
                (ChangeStatus::Failed, Some(e.message))
            }
        };
        rec.finished_at = Some(now_ms());
        self.queue(Write::FinishChange(FinishedChange {
            step: rec.clone(),
            change_id: journaled.id.clone(),
            status,
            after,
            error,
        }));
        if journaled.items > 1 {
            // A set-level change's record is large: written now rather than held in the
            // queue beside the next change.
            self.flush(None).await?;
        }
        let outcome = match rec.status {
            StepStatus::Failed => Outcome::Failed(rec.error.clone().unwrap_or_default()),
            s => Outcome::Done {
                status: s,
                output: rec.output.clone(),
            },
        };
        Ok((outcome, vec![rec]))
    }
}

impl RunState {
    /// Verifies a change journaled by an earlier process whose outcome was never recorded: it
    /// is marked `unknown` (durably, audited), the target's state is read and compared with
    /// the before-state and the state the change makes, and the verdict is audited as
    /// `change.outcome_verified`.
    async fn verify_unknown(
        &self,
        spec: &ActionSpec,
        conn: &std::sync::Arc<dyn belay_connector_api::Connector>,
        change: &ChangeRecord,
        rec: &StepRecord,
    ) -> Result<(Verified, Value), EngineError> {
        const ACTOR: &str = "engine:resume";
        if change.status == ChangeStatus::Pending {
            self.flush(None).await?;
            self.engine
                .store
                .set_change_status(
                    &change.id,
                    ChangeStatus::Unknown,
                    Some("its connector call was in flight when the process stopped"),
                    ACTOR,
                )
                .await?;
        }
        let (now, read_error) = match conn.read_state(&spec.name, &rec.with).await {
            Ok(v) => (v, None),
            Err(e) => (Value::Null, Some(e.message)),
        };
        let verdict = spec.verify_outcome(&change.with, &change.before, &now);
        let word = match verdict {
            Verified::Applied => "applied",
            Verified::NotApplied => "not_applied",
            Verified::Neither => "drift",
        };
        self.engine
            .store
            .append_audit(vec![belay_model::AuditDraft {
                kind: "change.outcome_verified".into(),
                actor: ACTOR.into(),
                subject: change.id.clone(),
                detail: json!({
                    "run_id": change.run_id, "step": change.step_key, "action": change.action,
                    "target": change.target, "verdict": word,
                    "state_sha256": belay_model::sha256_hex(now.to_string().as_bytes()),
                    "read_error": read_error,
                }),
            }])
            .await?;
        Ok((verdict, now))
    }
}
