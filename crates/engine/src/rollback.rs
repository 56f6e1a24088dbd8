//! Rollback: undo journaled changes in reverse order, refuse targets that drifted, verify.
//!
//! Every undo is itself a journaled change (with its own before-state and inverse) made by a
//! rollback run, so a rollback is audited and can be rolled back. A change is marked
//! `reverted` only after the target was read again and equals the recorded before-state.
//!
//! A dry run walks the same changes in the same order and simulates each undo: a change whose
//! object an earlier undo of the same rollback restored is compared with the state that undo
//! leaves (its change's before-state), not with what the object holds now, so the preview
//! predicts the rollback change by change. It never calls a change action.

use crate::{Engine, EngineError, Result};
use belay_connector_api::Call;
use belay_model::{ChangeRecord, ChangeStatus, Event, RunRecord, RunStatus, TrustLevel, now_ms};
use belay_store::{FinishedChange, Write, Written};
use serde::Serialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Which changes to undo.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One change, by id.
    Change(String),
    /// Every change of a run, by id, and of the sub-playbook runs it started.
    Run(String),
    /// Every change after a named checkpoint.
    Checkpoint(String),
    /// Every change journaled at or after this time (epoch ms).
    Since(i64),
}

/// How to undo.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// Report what would be undone; change nothing.
    pub dry_run: bool,
    /// Undo even targets that changed since (drift).
    pub force: bool,
    /// The person asking.
    pub actor: String,
}

/// What happened to one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Undone, and the target read back equal to the change's before-state.
    Reverted,
    /// The target is no longer in the state the change left; refused without `--force`.
    Drifted,
    /// Not undone, or not verified: no connector or inverse, the target unreadable, the undo
    /// failed, or the target read back differs from the before-state.
    Failed,
    /// `--dry-run`: would be reverted.
    WouldRevert,
    /// The change left the target as it found it; nothing to undo.
    Unchanged,
    /// The action cannot be undone by its nature (a message sent, evidence recorded); kept.
    Irreversible,
}

/// One selected change and what the rollback did with it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The change's id.
    pub change_id: String,
    /// The run that made the change.
    pub run_id: String,
    /// The change action.
    pub action: String,
    /// The change's target, as journaled.
    pub target: String,
    /// What happened to it.
    pub outcome: Outcome,
    /// Why, in words: the error, the drift, what was verified or would be called.
    pub detail: String,
    /// The journaled undo, when one was made.
    pub undo_change_id: Option<String>,
}

/// The result of a rollback.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run that journaled the undos; none for a dry run or when nothing was undone.
    pub rollback_run: Option<String>,
    /// The selected applied changes, newest first.
    pub items: Vec<Item>,
    /// Selected changes that an earlier rollback already reverted (not selected again).
    pub already_reverted: usize,
    /// Steps this rollback demoted to `approve` (`(playbook, step)`, each once): a person
    /// undid what they did on their own.
    pub demoted: Vec<(String, String)>,
}

impl Report {
    /// How many items had outcome `o`.
    pub fn count(&self, o: Outcome) -> usize {
        self.items.iter().filter(|i| i.outcome == o).count()
    }
}

/// Applied changes selected, newest first, and how many of the selection were reverted
/// before. One change chosen by its id is read whole; a run's, a checkpoint's or a period's
/// are heads (without inputs, states and inverse: each is read back whole by [`whole`] only
/// when its turn comes).
async fn select(engine: &Engine, sel: &Selection) -> Result<(Vec<ChangeRecord>, usize)> {
    let chosen: Vec<ChangeRecord> = match sel {
        Selection::Change(id) => vec![
            engine
                .store
                .get_change(id)
                .await?
                .ok_or_else(|| EngineError::Other(format!("no change `{id}`")))?,
        ],
        Selection::Run(id) => {
            if engine.store.get_run(id).await?.is_none() {
                return Err(EngineError::Other(format!("no run `{id}`")));
            }
            let all = engine.store.change_heads().await?;
            all.into_iter()
                .filter(|c| &c.run_id == id || c.run_id.starts_with(&format!("{id}.")))
                .collect()
        }
        Selection::Checkpoint(name) => {
            let cps = engine.store.checkpoints().await?;
            let cp = cps
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| EngineError::Other(format!("no checkpoint `{name}`")))?;
            let all = engine.store.change_heads().await?;
            let start = match &cp.last_change_id {
                Some(last) => all
                    .iter()
                    .position(|c| &c.id == last)
                    .map_or(all.len(), |p| p + 1),
                None => 0,
            };
            all.into_iter().skip(start).collect()
        }
        Selection::Since(ms) => {
            let all = engine.store.change_heads().await?;
            all.into_iter().filter(|c| c.created_at >= *ms).collect()
        }
    };
    let window: std::collections::HashSet<String> = chosen.iter().map(|c| c.id.clone()).collect();
    let by_time = matches!(sel, Selection::Checkpoint(_) | Selection::Since(_));
    let already_reverted = chosen
        .iter()
        .filter(|c| c.status == ChangeStatus::Reverted)
        .count();
    let mut applied: Vec<ChangeRecord> = chosen
        .into_iter()
        .filter(|c| c.status == ChangeStatus::Applied)
        // An undo of a change inside the same window cancels it: together they changed nothing.
        .filter(|c| !(by_time && undone_original(c).is_some_and(|o| window.contains(o))))
        .collect();
    applied.reverse();
    Ok((applied, already_reverted))
}

/// `c` as journaled, whole: its inputs, states and inverse, which [`select`] left out.
async fn whole(engine: &Engine, c: ChangeRecord) -> Result<ChangeRecord> {
    engine
        .store
        .change_by_key(&c.idempotency_key)
        .await?
        .ok_or_else(|| EngineError::Other(format!("change `{}` is no longer journaled", c.id)))
}

/// The object a change acted on, as its undo sees it: the action's family and the inputs its
/// inverse copies (`list` and `entry` of a list change), so an add, a remove and their undos of
/// one entry are one object. Without an inverse spec, the change's target.
fn object_of(c: &ChangeRecord, spec: Option<&belay_playbook::ActionSpec>) -> String {
    let family = c.action.split('.').next().unwrap_or(&c.action);
    match spec.and_then(|s| s.inverse.as_ref()) {
        Some(inv) if !inv.with.is_empty() => {
            let fields: Vec<String> = inv
                .with
                .iter()
                .map(|f| c.with.get(f).map_or(String::new(), Value::to_string))
                .collect();
            format!("{family}\u{0}{}", fields.join("\u{0}"))
        }
        _ => format!("{family}\u{0}{}", c.target),
    }
}

/// The part of `state` that says whether the target of a change of `spec` changed.
fn sig<'a>(spec: Option<&belay_playbook::ActionSpec>, state: &'a Value) -> Cow<'a, Value> {
    spec.map_or(Cow::Borrowed(state), |s| s.significant_state(state))
}

/// For an undo made by a rollback, the change it undid.
fn undone_original(c: &ChangeRecord) -> Option<&str> {
    if !c.allowed_by.starts_with("rollback:") {
        return None;
    }
    c.step_key.strip_prefix("undo[")?.strip_suffix(']')
}

/// Undoes the selected changes, newest first.
pub async fn rollback(
    engine: &Arc<Engine>,
    sel: Selection,
    opts: RollbackOptions,
) -> Result<Report> {
    let (changes, already_reverted) = select(engine, &sel).await?;
    let mut items = Vec::new();
    let mut demoted: Vec<(String, String)> = Vec::new();
    let mut run: Option<RunRecord> = None;
    // Dry run: the significant state each simulated undo leaves, by object.
    let mut simulated: HashMap<String, Value> = HashMap::new();
    for c in changes {
        let c = match sel {
            Selection::Change(_) => c,
            _ => whole(engine, c).await?,
        };
        let item = |outcome, detail: String, undo: Option<String>| Item {
            change_id: c.id.clone(),
            run_id: c.run_id.clone(),
            action: c.action.clone(),
            target: c.target.clone(),
            outcome,
            detail,
            undo_change_id: undo,
        };
        let Some(conn) = engine.connectors.resolve(&c.action) else {
            items.push(item(
                Outcome::Failed,
                format!("no connector is configured for `{}`", c.action),
                None,
            ));
            continue;
        };
        let orig = engine.catalog.get(&c.action);
        if sig(orig, &c.before) == sig(orig, &c.after) && !c.before.is_null() {
            if !opts.dry_run {
                engine
                    .store
                    .set_change_status(
                        &c.id,
                        ChangeStatus::Reverted,
                        Some("left the target unchanged"),
                        &opts.actor,
                    )
                    .await?;
            }
            items.push(item(
                Outcome::Unchanged,
                "the change left the target as it found it".into(),
                None,
            ));
            continue;
        }
        if let Some(why) = orig.and_then(|o| o.irreversible.as_deref()) {
            items.push(item(Outcome::Irreversible, format!("kept: {why}"), None));
            continue;
        }
        let (Some(inv_action), Some(inv_with)) =
            (c.inverse["action"].as_str(), c.inverse.get("with"))
        else {
            items.push(item(
                Outcome::Failed,
                "the change has no inverse (irreversible)".into(),
                None,
            ));
            continue;
        };
        let Some(spec) = engine.catalog.get(inv_action) else {
            items.push(item(
                Outcome::Failed,
                format!("inverse action `{inv_action}` is unknown"),
                None,
            ));
            continue;
        };
        let object = object_of(&c, orig);
        let current = match simulated.get(&object) {
            Some(v) if opts.dry_run => Ok(v.clone()),
            _ => conn.read_state(&c.action, &c.with).await,
        };
        let current = match current {
            Ok(v) => v,
            Err(e) => {
                items.push(item(
                    Outcome::Failed,
                    format!("cannot read the target: {}", e.message),
                    None,
                ));
                continue;
            }
        };
        let drifted = sig(orig, &current) != sig(orig, &c.after);
        if drifted && !opts.force {
            items.push(item(
                Outcome::Drifted,
                format!(
                    "target is {}, the change left it {}; use --force to undo anyway",
                    brief(&current),
                    brief(&c.after)
                ),
                None,
            ));
            continue;
        }
        if opts.dry_run {
            let note = if drifted {
                " (drifted; --force given)"
            } else {
                ""
            };
            items.push(item(
                Outcome::WouldRevert,
                format!("would call {inv_action} with {inv_with}{note}"),
                None,
            ));
            // The undo is verified against the before-state: that is what it leaves.
            simulated.insert(object, sig(orig, &c.before).into_owned());
            continue;
        }
        let run = match &run {
            Some(r) => r.clone(),
            None => {
                let r = start_rollback_run(engine, &sel, &opts).await?;
                run = Some(r.clone());
                r
            }
        };
        let _target = engine
            .target_lock(c.action.split('.').next().unwrap_or(""), &c.target)
            .lock()
            .await;
        let now = now_ms();
        let inverse = spec
            .inverse
            .as_ref()
            .map_or(Value::Null, |i| i.resolve(inv_with, &current));
        let undo = ChangeRecord {
            id: belay_model::new_id(),
            run_id: run.id.clone(),
            step_key: format!("undo[{}]", c.id),
            idempotency_key: format!("{}/undo/{}", run.id, c.id),
            action: inv_action.to_owned(),
            target: spec.target_of(inv_with),
            with: inv_with.clone(),
            before: current,
            after: Value::Null,
            inverse,
            trust: TrustLevel::Log,
            guardrails: Vec::new(),
            allowed_by: format!(
                "rollback:{}{}",
                opts.actor,
                if drifted { " (forced over drift)" } else { "" }
            ),
            status: ChangeStatus::Pending,
            error: None,
            created_at: now,
            updated_at: now,
            items: c.items,
            expires_at: None,
        };
        let undo = match engine
            .store
            .write(vec![Write::BeginChange(undo)])
            .await?
            .pop()
        {
            Some(Written::Change(mut u)) => {
                // Journaled: the undo's inputs (`inv_with`), before-state and inverse are not
                // needed from this copy again.
                u.with = Value::Null;
                u.before = Value::Null;
                u.inverse = Value::Null;
                *u
            }
            _ => {
                return Err(EngineError::Other(
                    "the store did not journal the undo".into(),
                ));
            }
        };
        let call = Call {
            action: inv_action,
            input: inv_with,
            idempotency_key: Some(&undo.idempotency_key),
            before: None,
        };
        let result = conn.call(call).await;
        let after = conn
            .read_state(&c.action, &c.with)
            .await
            .unwrap_or(Value::Null);
        let (status, error) = match &result {
            Ok(_) => (ChangeStatus::Applied, None),
            Err(e) => (ChangeStatus::Failed, Some(e.message.clone())),
        };
        let verified = sig(orig, &after) == sig(orig, &c.before);
        let shown = brief(&after);
        let step = undo_step(
            &run,
            &undo,
            inv_with,
            status,
            result.unwrap_or(Value::Null),
            error.clone(),
        );
        engine
            .store
            .write(vec![Write::FinishChange(FinishedChange {
                step,
                change_id: undo.id.clone(),
                status,
                after,
                error: error.clone(),
            })])
            .await?;
        if let Some(e) = error {
            items.push(item(
                Outcome::Failed,
                format!("{inv_action} failed: {e}"),
                Some(undo.id),
            ));
        } else if verified {
            engine
                .store
                .set_change_status(
                    &c.id,
                    ChangeStatus::Reverted,
                    Some(&format!("undone by {}", undo.id)),
                    &opts.actor,
                )
                .await?;
            if let Some(original) = undone_original(&c) {
                // Undoing an undo puts the original change back in effect.
                let note = format!("re-applied by {}", undo.id);
                engine
                    .store
                    .set_change_status(original, ChangeStatus::Applied, Some(&note), &opts.actor)
                    .await?;
            }
            items.push(item(
                Outcome::Reverted,
                format!("verified: target is back to {shown}"),
                Some(undo.id),
            ));
            if let Some(d) = demote_after_rollback(engine, &c, &opts.actor).await?
                && !demoted.contains(&d)
            {
                demoted.push(d);
            }
        } else {
            items.push(item(
                Outcome::Failed,
                format!(
                    "verification failed: target is {shown}, expected {}",
                    brief(&c.before)
                ),
                Some(undo.id),
            ));
        }
    }
    if let Some(r) = &run {
        let failed = items.iter().any(|i| i.outcome == Outcome::Failed);
        let status = if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        engine
            .store
            .set_run_status(
                &r.id,
                status,
                failed.then_some("some changes could not be undone"),
            )
            .await?;
    }
    Ok(Report {
        rollback_run: run.map(|r| r.id),
        items,
        already_reverted,
        demoted,
    })
}

/// A state as a report shows it: its JSON, cut after [`BRIEF`] bytes (a set-level change's
/// state lists every item of its batch, which a one-line report must not copy whole).
fn brief(state: &Value) -> String {
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = BRIEF + 1 - self.0.len();
            self.0.extend_from_slice(&buf[..buf.len().min(room)]);
            if self.0.len() > BRIEF {
                return Err(std::io::Error::other("enough"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new());
    let whole = serde_json::to_writer(&mut out, state).is_ok();
    let mut bytes = out.0;
    if whole {
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    // Cut at the last whole character within the cap.
    bytes.truncate(BRIEF);
    let valid = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), str::len);
    bytes.truncate(valid);
    format!("{}…", String::from_utf8_lossy(&bytes))
}

/// Bytes of a state a report shows.
const BRIEF: usize = 300;

fn undo_step(
    run: &RunRecord,
    undo: &ChangeRecord,
    with: &Value,
    status: ChangeStatus,
    output: Value,
    error: Option<String>,
) -> belay_model::StepRecord {
    belay_model::StepRecord {
        run_id: run.id.clone(),
        key: undo.step_key.clone(),
        step: "undo".into(),
        seq: 0,
        item: None,
        action: undo.action.clone(),
        with: with.clone(),
        decision: belay_model::Decision::Apply,
        trust: Some(TrustLevel::Log),
        guardrails: Vec::new(),
        status: if status == ChangeStatus::Applied {
            belay_model::StepStatus::Succeeded
        } else {
            belay_model::StepStatus::Failed
        },
        output,
        error,
        attempts: 1,
        started_at: undo.created_at,
        finished_at: Some(now_ms()),
    }
}

/// A run (with an event of its own) that owns the undo changes of one rollback.
async fn start_rollback_run(
    engine: &Engine,
    sel: &Selection,
    opts: &RollbackOptions,
) -> Result<RunRecord> {
    let what = match sel {
        Selection::Change(id) => json!({ "change": id }),
        Selection::Run(id) => json!({ "run": id }),
        Selection::Checkpoint(n) => json!({ "checkpoint": n }),
        Selection::Since(ms) => json!({ "since": belay_model::ms_to_rfc3339(*ms) }),
    };
    let event = Event::from_json(json!({
        "kind": "belay.rollback", "source": format!("user:{}", opts.actor), "severity": "medium",
        "data": { "selection": what, "force": opts.force, "actor": opts.actor },
    }))
    .map_err(|e| EngineError::Other(e.to_string()))?;
    let now = now_ms();
    let run = RunRecord {
        id: belay_model::new_id(),
        event_id: event.id.clone(),
        event_source: event.source.clone(),
        playbook: "belay:rollback".into(),
        playbook_hash: String::new(),
        parent_run: None,
        // Final from the start: a crash mid-rollback leaves pending undo changes, never a run
        // that another worker would try to resume as a playbook.
        status: RunStatus::Succeeded,
        dry_run: false,
        inputs: what,
        error: None,
        created_at: now,
        updated_at: now,
    };
    engine
        .store
        .accept_event(&event, std::slice::from_ref(&run), None)
        .await?;
    Ok(run)
}

/// A person rolling back a change that a step made on its own (`log` or `guarded`) demotes
/// that step to `approve` until someone resets its trust.
/// Returns the demoted `(playbook, step)`, if it demoted one.
async fn demote_after_rollback(
    engine: &Engine,
    c: &ChangeRecord,
    actor: &str,
) -> Result<Option<(String, String)>> {
    if actor.starts_with("engine:")
        || !matches!(
            c.trust,
            belay_model::TrustLevel::Log | belay_model::TrustLevel::Guarded
        )
    {
        return Ok(None);
    }
    let Some(run) = engine.store.get_run(&c.run_id).await? else {
        return Ok(None);
    };
    if run.playbook.starts_with("belay:") {
        return Ok(None);
    }
    let step = c.step_key.split('[').next().unwrap_or(&c.step_key);
    // The step of the version that ran (stored, or loaded if it is the same): the demotion
    // follows its definition through later renames.
    let definition = engine
        .playbook_version(&run.playbook, &run.playbook_hash, true)
        .await?
        .ok()
        .map(|v| v.playbook)
        .and_then(|pb| {
            pb.steps
                .iter()
                .find(|s| s.id == step)
                .map(|s| crate::trust::step_definition(&pb, s))
        });
    engine
        .demote(&belay_model::Demotion {
            playbook: run.playbook.clone(),
            step: step.to_owned(),
            level: belay_model::TrustLevel::Approve,
            reason: format!(
                "{actor} rolled back change {} ({} {}) made at `{}`",
                c.id, c.action, c.target, c.trust
            ),
            change_id: Some(c.id.clone()),
            by: actor.to_owned(),
            at: belay_model::now_ms(),
            definition,
        })
        .await?;
    Ok(Some((run.playbook, step.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_shows_a_small_state_whole_and_a_batch_s_state_cut() {
        assert_eq!(
            brief(&json!({"present": true, "line": 3})),
            r#"{"present":true,"line":3}"#
        );
        let batch: Vec<String> = (0..200_000)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let shown = brief(&json!({ "absent": batch }));
        assert!(
            shown.starts_with(r#"{"absent":["10.0.0.0","10.0.0.1""#),
            "{shown}"
        );
        assert!(
            shown.ends_with('…') && shown.len() <= BRIEF + '…'.len_utf8(),
            "{shown}"
        );
        // Never cut inside a character.
        let shown = brief(&json!({ "names": vec!["é"; 400] }));
        assert!(
            shown.ends_with('…') && shown.len() <= BRIEF + '…'.len_utf8(),
            "{shown}"
        );
    }
}
