//! Replay: one playbook run as a dry run over past events, and the count of what it would
//! have done: changes applied, approvals needed, guardrail holds and denials. It owns the
//! classification and the counting; printing is the caller's. A replay never applies a change
//! and never requests an approval: every run it starts is a dry run.

use crate::{Engine, Result};
use belay_model::{Decision, Event, RunStatus};
use belay_playbook::Playbook;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use std::sync::Arc;

/// What a planned change would have met.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Would {
    /// Applied: its trust level (or an approval already given) lets it through.
    #[serde(rename = "apply")]
    Apply,
    /// Held for a person's approval by its trust level.
    #[serde(rename = "needs approval")]
    NeedApproval,
    /// Held by a guardrail until a person decides.
    #[serde(rename = "held by guardrail")]
    BeHeld,
    /// Refused by a guardrail.
    #[serde(rename = "denied by guardrail")]
    BeDenied,
    /// Recorded only: the step runs at trust `shadow` (not counted in the totals).
    #[serde(rename = "shadow")]
    Shadow,
}

impl Would {
    /// The words `belay replay` prints after "would".
    pub fn as_str(self) -> &'static str {
        match self {
            Would::Apply => "apply",
            Would::NeedApproval => "need approval",
            Would::BeHeld => "be held by a guardrail",
            Would::BeDenied => "be denied by a guardrail",
            Would::Shadow => "only be recorded (shadow)",
        }
    }

    /// The outcome a dry run's decision stands for; `None` for steps that change nothing.
    fn of(decision: Decision) -> Option<Would> {
        match decision {
            Decision::DryRun => Some(Would::Apply),
            Decision::AwaitApproval => Some(Would::NeedApproval),
            Decision::GuardrailHold => Some(Would::BeHeld),
            Decision::GuardrailDeny => Some(Would::BeDenied),
            Decision::Shadow => Some(Would::Shadow),
            _ => None,
        }
    }
}

/// One change a replayed run planned (a step, or one item of a `for_each`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WouldChange {
    /// The step's record key (`block`, `block[2]`).
    pub step: String,
    /// The change action.
    pub action: String,
    /// Its resolved inputs.
    pub with: Value,
    /// What it would have met.
    pub would: Would,
    /// Why, when a guardrail would have held or denied it.
    pub reason: Option<String>,
}

/// The dry run one event triggered.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedRun {
    /// The dry run's id (it is stored like any dry run).
    pub run_id: String,
    /// How the dry run ended.
    pub status: RunStatus,
    /// Its planned changes in execution order; reads and skipped steps are left out.
    pub changes: Vec<WouldChange>,
}

/// One past event and what the playbook would have done with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedEvent {
    /// The past event's id.
    pub event_id: String,
    /// `None` when the event did not trigger the playbook.
    pub run: Option<ReplayedRun>,
}

impl Serialize for ReplayedEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event_id", &self.event_id)?;
        m.serialize_entry("triggered", &self.run.is_some())?;
        if let Some(run) = &self.run {
            m.serialize_entry("run_id", &run.run_id)?;
            m.serialize_entry("status", &run.status)?;
            m.serialize_entry("changes", &run.changes)?;
        }
        m.end()
    }
}

/// The counts over every replayed event (the JSON keys are a contract).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReplayTotals {
    /// Events replayed.
    pub events: usize,
    /// Events that did not trigger the playbook.
    pub not_triggered: usize,
    /// Changes that would have been applied ([`Would::Apply`]).
    pub changes: usize,
    /// Changes that would have needed an approval ([`Would::NeedApproval`]).
    pub approvals: usize,
    /// Changes a guardrail would have held ([`Would::BeHeld`]).
    pub guardrail_holds: usize,
    /// Changes a guardrail would have denied ([`Would::BeDenied`]).
    pub guardrail_denials: usize,
}

/// What `belay replay` reports: every event in order, and the totals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayReport {
    /// The replayed playbook's name.
    pub playbook: String,
    /// Every replayed event, in the order pushed.
    pub events: Vec<ReplayedEvent>,
    /// The counts over `events`.
    pub total: ReplayTotals,
}

impl ReplayReport {
    /// An empty report for `playbook`.
    pub fn new(playbook: &str) -> ReplayReport {
        ReplayReport {
            playbook: playbook.to_owned(),
            events: Vec::new(),
            total: ReplayTotals::default(),
        }
    }

    /// Adds one replayed event and counts what it would have done.
    pub fn push(&mut self, e: ReplayedEvent) {
        let t = &mut self.total;
        t.events += 1;
        match &e.run {
            None => t.not_triggered += 1,
            Some(run) => {
                for c in &run.changes {
                    match c.would {
                        Would::Apply => t.changes += 1,
                        Would::NeedApproval => t.approvals += 1,
                        Would::BeHeld => t.guardrail_holds += 1,
                        Would::BeDenied => t.guardrail_denials += 1,
                        Would::Shadow => {}
                    }
                }
            }
        }
        self.events.push(e);
    }
}

/// How the ids of replayed events begin: they never enter live de-duplication.
pub const REPLAY_PREFIX: &str = "replay:";

impl Engine {
    /// Runs `pb` as a dry run on `event` if its trigger matches; the run and the event are
    /// stored like any `belay run --dry-run`, the event under an id of its own
    /// (`replay:UUID:ID`, see [`REPLAY_PREFIX`]), so that replaying never makes the live event
    /// a duplicate: ingesting it later still runs it.
    pub async fn replay(
        self: &Arc<Self>,
        pb: &Playbook,
        mut event: Event,
    ) -> Result<ReplayedEvent> {
        let (runs, _) = self.plan_runs(&event);
        if !runs.iter().any(|r| r.playbook == pb.name) {
            return Ok(ReplayedEvent {
                event_id: event.id,
                run: None,
            });
        }
        let event_id = event.id.clone();
        event.id = format!("{REPLAY_PREFIX}{}:{event_id}", belay_model::new_id());
        let report = self.run_once(pb, event, true).await?;
        let changes = report
            .steps
            .into_iter()
            .filter_map(|s| {
                Some(WouldChange {
                    would: Would::of(s.decision)?,
                    step: s.key,
                    action: s.action,
                    with: s.with,
                    reason: s.error,
                })
            })
            .collect();
        Ok(ReplayedEvent {
            event_id,
            run: Some(ReplayedRun {
                run_id: report.run_id,
                status: report.status,
                changes,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(would: Would) -> WouldChange {
        WouldChange {
            step: "block".into(),
            action: "blocklist.add".into(),
            with: Value::Null,
            would,
            reason: None,
        }
    }

    #[test]
    fn totals_count_each_outcome_and_untriggered_events_but_not_shadow_steps() {
        let mut r = ReplayReport::new("block-ip");
        r.push(ReplayedEvent {
            event_id: "e1".into(),
            run: Some(ReplayedRun {
                run_id: "r1".into(),
                status: RunStatus::Succeeded,
                changes: [
                    Would::Apply,
                    Would::Apply,
                    Would::NeedApproval,
                    Would::BeHeld,
                    Would::BeDenied,
                    Would::Shadow,
                ]
                .into_iter()
                .map(change)
                .collect(),
            }),
        });
        r.push(ReplayedEvent {
            event_id: "e2".into(),
            run: None,
        });
        assert_eq!(
            r.total,
            ReplayTotals {
                events: 2,
                not_triggered: 1,
                changes: 2,
                approvals: 1,
                guardrail_holds: 1,
                guardrail_denials: 1,
            }
        );
    }

    #[test]
    fn an_untriggered_event_serializes_without_a_run() {
        let e = ReplayedEvent {
            event_id: "e2".into(),
            run: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event_id":"e2","triggered":false}"#
        );
    }
}
