//! The trust report: per playbook step, what its record says about the autonomy it has earned;
//! and a step's definition hash, which demotions follow through renames of the step or its
//! playbook. It reads records and suggests; it never changes a step's level itself.

use crate::{Engine, Result};
use belay_model::{Demotion, TrustLevel, now_ms};
use belay_playbook::expr::Part;
use belay_playbook::template::Template;
use belay_playbook::{ActionKind, Call, Playbook, Step};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// SHA-256 of a step's canonical definition: what it calls, its input templates, its trust
/// level, the guardrails it names and the values of the `vars` it reads. Its id, its place in
/// the file and its playbook's name are left out, so renaming either keeps the hash.
pub fn step_definition(pb: &Playbook, step: &Step) -> String {
    let call = match &step.call {
        Call::Action(a) => json!({ "action": a }),
        Call::Playbook(p) => json!({ "playbook": p }),
    };
    let mut guardrails: Vec<&str> = step.guardrails.iter().map(|(g, _)| g.as_str()).collect();
    guardrails.sort_unstable();
    guardrails.dedup();
    let vars: BTreeMap<&str, Value> = step
        .with
        .exprs()
        .iter()
        .flat_map(|e| vars_read(&e.source))
        .map(|v| (v, pb.vars.get(v).cloned().unwrap_or(Value::Null)))
        .collect();
    let definition = json!({
        "call": call,
        "with": template_json(&step.with),
        "trust": step.trust.unwrap_or(pb.trust),
        "guardrails": guardrails,
        "vars": vars,
    });
    belay_model::sha256_hex(belay_model::audit::canonical_json(&definition).as_bytes())
}

/// A template as data, without positions: literals, expression sources and their structure.
fn template_json(t: &Template) -> Value {
    match t {
        Template::Literal(v) => json!({ "literal": v }),
        Template::Whole(e) => json!({ "expr": e.source }),
        Template::Text(parts) => Value::Array(
            parts
                .iter()
                .map(|p| match p {
                    Part::Text(s) => json!({ "text": s }),
                    Part::Expr(e) => json!({ "expr": e.source }),
                })
                .collect(),
        ),
        Template::Array(items) => {
            json!({ "array": items.iter().map(template_json).collect::<Vec<_>>() })
        }
        Template::Object(entries) => {
            let m: BTreeMap<&str, Value> = entries
                .iter()
                .map(|(k, _, t)| (k.as_str(), template_json(t)))
                .collect();
            json!({ "object": m })
        }
    }
}

/// The names `vars.NAME` an expression reads.
fn vars_read(source: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("vars.") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + 5..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') && end > 0 {
            out.push(&after[..end]);
        }
        rest = after;
    }
    out
}

/// The demotion that holds `step` of `pb`: one recorded for the same definition, else (rows
/// from before definitions were recorded) one recorded under the same playbook and step names.
pub fn demotion_of<'a>(
    demotions: &'a [Demotion],
    pb: &Playbook,
    step: &Step,
    definition: &str,
) -> Option<&'a Demotion> {
    demotions
        .iter()
        .filter(|d| {
            d.definition.as_deref() == Some(definition)
                || (d.playbook == pb.name && d.step == step.id)
        })
        .min_by_key(|d| d.level)
}

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
    /// The playbook's name.
    pub playbook: String,
    /// The step's id.
    pub step: String,
    /// The change action it calls.
    pub action: String,
    /// The level the playbook gives it (the step's `trust`, else the playbook's).
    pub declared: TrustLevel,
    /// The level it runs at: `declared`, lowered to a recorded demotion's level.
    pub effective: TrustLevel,
    /// The step is `pinned`: never suggested for promotion.
    pub pinned: bool,
    /// The demotion in force for the step, if any.
    pub demotion: Option<Demotion>,
    /// Step records (one per `for_each` item).
    pub runs: u64,
    /// Changes journaled (applied, drifted or since reverted).
    pub changes: u64,
    /// Its approvals that were approved.
    pub approvals_granted: u64,
    /// Its approvals that were denied.
    pub approvals_denied: u64,
    /// Its approvals that expired unanswered.
    pub approvals_expired: u64,
    /// Step records a guardrail held.
    pub guardrail_holds: u64,
    /// Its changes since reverted.
    pub rollbacks: u64,
    /// Step records that failed.
    pub failures: u64,
    /// Figures learned by the baseline guardrails governing the step.
    pub baselines: HashMap<String, crate::guard::BaselineFigures>,
    /// `promote to log`, `promote to guarded`, `keep` or `demote`.
    pub recommendation: String,
    /// Why, in words: the record behind it, or the demotion and how to lift it.
    pub reason: String,
}

/// The report over every change step of the loaded playbooks.
pub async fn report(engine: &Engine, t: &Thresholds) -> Result<Vec<StepTrust>> {
    let playbooks: Vec<_> = engine.playbooks.iter().cloned().collect();
    report_on(engine, &playbooks, t).await
}

/// The report over every change step of `playbooks` (e.g. the newest stored versions, see
/// [`Engine::stored_playbooks`], when no playbook folder is at hand).
pub async fn report_on(
    engine: &Engine,
    playbooks: &[std::sync::Arc<belay_playbook::Playbook>],
    t: &Thresholds,
) -> Result<Vec<StepTrust>> {
    let since = now_ms() - t.window.as_millis() as i64;
    let stats = engine.store.trust_stats(since).await?;
    let demotions = engine.store.demotions().await?;
    let definitions = record_definitions(engine, &stats).await?;
    let days = t.window.as_secs() / 86_400;
    let mut out = Vec::new();
    let mut playbooks: Vec<_> = playbooks.iter().collect();
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
            let definition = step_definition(pb, step);
            let demotion = demotion_of(&demotions, pb, step, &definition).cloned();
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
            // A record counts for the step whose definition made it: editing another step
            // (or renaming this one) keeps it; editing this step starts a new record.
            let of_this_step = |s: &&belay_store::StatRow| match definitions
                .get(&(s.playbook_hash.clone(), s.step.clone()))
            {
                Some(d) => *d == definition,
                None => s.playbook == pb.name && s.step == step.id,
            };
            for s in stats.iter().filter(of_this_step) {
                match (s.kind, s.status.as_str()) {
                    ("step", status) => {
                        r.runs += s.count;
                        if status == "failed" {
                            r.failures += s.count;
                        }
                        if s.decision.as_deref() == Some("guardrail_hold") {
                            r.guardrail_holds += s.count;
                        }
                        // Items an approver left out of an approved batch: denied by them.
                        if status == "skipped" && s.decision.as_deref() == Some("denied") {
                            r.approvals_denied += s.count;
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

/// The definition hash of the step behind each `(playbook version, step id)` the records name,
/// for the versions the engine can read (stored, or loaded with the same text). Records of a
/// version it cannot read are matched by playbook and step name instead.
async fn record_definitions(
    engine: &Engine,
    stats: &[belay_store::StatRow],
) -> Result<HashMap<(String, String), String>> {
    let mut versions: BTreeMap<&str, &str> = BTreeMap::new();
    for s in stats.iter().filter(|s| !s.playbook_hash.is_empty()) {
        versions.insert(&s.playbook_hash, &s.playbook);
    }
    let mut out = HashMap::new();
    for (hash, name) in versions {
        if let Ok(v) = engine.playbook_version(name, hash, true).await? {
            for step in &v.playbook.steps {
                out.insert(
                    (hash.to_owned(), step.id.clone()),
                    step_definition(&v.playbook, step),
                );
            }
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
                "demoted to {} on {}: {}; `belay trust reset {} {} --as USER` lifts it",
                d.level,
                belay_model::ms_to_rfc3339(d.at),
                d.reason,
                d.playbook,
                d.step
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_read_finds_whole_names_only() {
        assert_eq!(
            vars_read("vars.list ~ myvars.x ~ event.vars.y ~ vars.ttl_s"),
            ["list", "ttl_s"]
        );
        assert!(vars_read("vars.").is_empty());
    }
}
