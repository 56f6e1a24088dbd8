//! The trust report: per playbook step, what its record says about the autonomy it has earned.

use crate::{Engine, Result};
use belay_model::{Demotion, TrustLevel, now_ms};
use belay_playbook::{ActionKind, Call};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// When a step has earned a promotion.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// How far back the record is read.
    pub window: Duration,
    /// Approvals without a denial or rollback before `approve` → `log` is suggested.
    pub promote_to_log: u64,
    /// Changes without a rollback before `log` → `guarded` is suggested.
    pub promote_to_guarded: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            window: Duration::from_secs(30 * 86_400),
            promote_to_log: 20,
            promote_to_guarded: 50,
        }
    }
}

/// One change step's record and the suggestion drawn from it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepTrust {
    pub playbook: String,
    pub step: String,
    pub action: String,
    pub declared: TrustLevel,
    pub effective: TrustLevel,
    pub pinned: bool,
    pub demotion: Option<Demotion>,
    /// Step records (one per `for_each` item).
    pub runs: u64,
    pub changes: u64,
    pub approvals_granted: u64,
    pub approvals_denied: u64,
    pub approvals_expired: u64,
    pub guardrail_holds: u64,
    pub rollbacks: u64,
    pub failures: u64,
    /// Figures learned by the baseline guardrails governing the step.
    pub baselines: HashMap<String, crate::guard::BaselineFigures>,
    /// `promote to log`, `promote to guarded`, `keep` or `demote`.
    pub recommendation: String,
    pub reason: String,
}

/// The report over every change step of the loaded playbooks.
pub async fn report(engine: &Engine, t: &Thresholds) -> Result<Vec<StepTrust>> {
    let since = now_ms() - t.window.as_millis() as i64;
    let stats = engine.store.trust_stats(since).await?;
    let demotions: HashMap<(String, String), Demotion> = engine
        .store
        .demotions()
        .await?
        .into_iter()
        .map(|d| ((d.playbook.clone(), d.step.clone()), d))
        .collect();
    let days = t.window.as_secs() / 86_400;
    let mut out = Vec::new();
    let mut playbooks: Vec<_> = engine.playbooks.iter().collect();
    playbooks.sort_by(|a, b| a.name.cmp(&b.name));
    for pb in playbooks {
        for step in &pb.steps {
            let Call::Action(action) = &step.call else {
                continue;
            };
            if engine.catalog.get(action).map(|a| a.kind) != Some(ActionKind::Change) {
                continue;
            }
            let declared = step.trust.unwrap_or(pb.trust);
            let demotion = demotions.get(&(pb.name.clone(), step.id.clone())).cloned();
            let effective = demotion
                .as_ref()
                .map_or(declared, |d| declared.min(d.level));
            let mut r = StepTrust {
                playbook: pb.name.clone(),
                step: step.id.clone(),
                action: action.clone(),
                declared,
                effective,
                pinned: step.pinned,
                demotion,
                runs: 0,
                changes: 0,
                approvals_granted: 0,
                approvals_denied: 0,
                approvals_expired: 0,
                guardrail_holds: 0,
                rollbacks: 0,
                failures: 0,
                baselines: HashMap::new(),
                recommendation: String::new(),
                reason: String::new(),
            };
            for s in stats
                .iter()
                .filter(|s| s.playbook == pb.name && s.step == step.id)
            {
                match (s.kind, s.status.as_str()) {
                    ("step", status) => {
                        r.runs += s.count;
                        if status == "failed" {
                            r.failures += s.count;
                        }
                        if s.decision.as_deref() == Some("guardrail_hold") {
                            r.guardrail_holds += s.count;
                        }
                    }
                    ("change", "applied" | "drifted") => r.changes += s.count,
                    ("change", "reverted") => {
                        r.changes += s.count;
                        r.rollbacks += s.count;
                    }
                    ("approval", "approved") => r.approvals_granted += s.count,
                    ("approval", "denied") => r.approvals_denied += s.count,
                    ("approval", "expired") => r.approvals_expired += s.count,
                    _ => {}
                }
            }
            let named: Vec<String> = step.guardrails.iter().map(|(g, _)| g.clone()).collect();
            for g in engine.guardrails.governing(action, &named) {
                if g.baseline.is_some() {
                    r.baselines
                        .insert(g.name.clone(), engine.baseline(g).await?);
                }
            }
            let ready_baseline = engine
                .guardrails
                .governing(action, &named)
                .iter()
                .filter_map(|g| g.baseline.map(|b| (g.name.clone(), b)))
                .any(|(name, b)| {
                    r.baselines
                        .get(&name)
                        .is_some_and(|f| f.history_ms >= b.min_history.as_millis() as i64)
                });
            (r.recommendation, r.reason) = recommend(&r, t, days, ready_baseline);
            out.push(r);
        }
    }
    Ok(out)
}

fn recommend(r: &StepTrust, t: &Thresholds, days: u64, ready_baseline: bool) -> (String, String) {
    let record = format!(
        "{} approvals, {} denials, {} rollbacks in {days} days",
        r.approvals_granted, r.approvals_denied, r.rollbacks
    );
    let say = |rec: &str, why: String| (rec.to_owned(), why);
    if let Some(d) = &r.demotion {
        return say(
            "demote",
            format!(
                "demoted to {} on {}: {}; `belay trust reset {} {}` lifts it",
                d.level,
                belay_model::ms_to_rfc3339(d.at),
                d.reason,
                r.playbook,
                r.step
            ),
        );
    }
    if r.pinned {
        return say("keep", format!("pinned at approve; {record}"));
    }
    match r.effective {
        TrustLevel::Shadow => say(
            "keep",
            format!(
                "runs in shadow ({} planned changes); replay past events with `belay replay`, then set `approve`",
                r.runs
            ),
        ),
        TrustLevel::Approve => {
            if r.approvals_denied > 0 || r.rollbacks > 0 {
                say("keep", format!("{record}: people still correct it"))
            } else if r.approvals_granted >= t.promote_to_log {
                say("promote to log", record)
            } else {
                say(
                    "keep",
                    format!(
                        "{record}; {} approvals without a denial or rollback are needed to promote",
                        t.promote_to_log
                    ),
                )
            }
        }
        TrustLevel::Log | TrustLevel::Guarded => {
            let failure_rate = if r.runs == 0 {
                0.0
            } else {
                r.failures as f64 / r.runs as f64
            };
            let record = format!(
                "{} changes, {} rollbacks, {} failures, {} guardrail holds in {days} days",
                r.changes, r.rollbacks, r.failures, r.guardrail_holds
            );
            if r.rollbacks > 0 || (r.runs >= 10 && failure_rate > 0.2) {
                say("demote", format!("{record}: return it to approval"))
            } else if r.effective == TrustLevel::Log {
                if r.changes >= t.promote_to_guarded && ready_baseline {
                    say(
                        "promote to guarded",
                        format!("{record}; its baseline has enough history"),
                    )
                } else if r.changes >= t.promote_to_guarded {
                    say(
                        "keep",
                        format!(
                            "{record}; add a baseline guardrail with enough history to promote"
                        ),
                    )
                } else {
                    say(
                        "keep",
                        format!(
                            "{record}; {} changes without a rollback are needed to promote",
                            t.promote_to_guarded
                        ),
                    )
                }
            } else {
                say("keep", format!("{record}; at the highest level"))
            }
        }
    }
}
