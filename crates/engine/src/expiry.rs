//! Time-boxed changes: a change step's `expires:` gives each of its changes an expiry time in
//! the journal; when it is due, the engine reverts the change through the normal rollback path
//! (drift check, verification, a journaled undo), as the system's own rollback (`engine:expiry`).
//! The expiry lives in the store, so it survives restarts: whichever belay process runs the
//! scheduler next reverts what came due while none was running.
//!
//! A change whose target already went back to its before-state by itself (the system's own
//! expiry, e.g. an nftables element `timeout` set from the same `expires:`) is recorded as
//! reverted without calling anything; a target that drifted since is left alone and marked
//! `drifted`, so it is never retried in a loop.

use crate::rollback::{self, Outcome, RollbackOptions, Selection};
use crate::{Engine, Result};
use belay_model::{ChangeRecord, ChangeStatus, now_ms};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The actor every expiry is recorded under.
pub const ACTOR: &str = "engine:expiry";

/// What the scheduler did with one due change.
#[derive(Debug, Clone, Serialize)]
pub struct Expired {
    /// The change.
    pub change_id: String,
    /// Its action and target, as journaled.
    pub action: String,
    /// Its target, as journaled.
    pub target: String,
    /// When it was due (Unix ms).
    pub due_at: i64,
    /// What the rollback did (`reverted`, `drifted`, `failed`, …).
    pub outcome: Outcome,
    /// Why, in words.
    pub detail: String,
}

/// Reverts every applied change whose expiry is due now, soonest first.
pub async fn revert_due(engine: &Arc<Engine>) -> Result<Vec<Expired>> {
    let due = engine
        .store
        .expiring_changes(Some(now_ms()), usize::MAX)
        .await?;
    let mut out = Vec::with_capacity(due.len());
    for c in due {
        out.push(revert_one(engine, c).await?);
    }
    Ok(out)
}

/// How long until the next expiry is due (zero when one is due now), if any is pending.
pub async fn next_due_in(engine: &Engine) -> Result<Option<Duration>> {
    // The soonest one only: the scheduler asks at every poll.
    let soonest = engine.store.expiring_changes(None, 1).await?;
    Ok(soonest
        .iter()
        .filter_map(|c| c.expires_at)
        .next()
        .map(|at| Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))))
}

async fn revert_one(engine: &Arc<Engine>, c: ChangeRecord) -> Result<Expired> {
    let due_at = c.expires_at.unwrap_or_default();
    let expired = |outcome, detail: String| Expired {
        change_id: c.id.clone(),
        action: c.action.clone(),
        target: c.target.clone(),
        due_at,
        outcome,
        detail,
    };
    // The system's own expiry may have undone it already: then there is nothing to call.
    if let (Some(conn), Some(spec)) = (
        engine.connectors.resolve(&c.action),
        engine.catalog.get(&c.action),
    ) && let Ok(now) = conn.read_state(&c.action, &c.with).await
        && !c.before.is_null()
        && spec.significant_state(&now) == spec.significant_state(&c.before)
        && spec.significant_state(&now) != spec.significant_state(&c.after)
    {
        let note = "expired: the system's own expiry had already restored the before-state";
        engine
            .store
            .set_change_status(&c.id, ChangeStatus::Reverted, Some(note), ACTOR)
            .await?;
        return Ok(expired(Outcome::Reverted, note.into()));
    }
    let report = rollback::rollback(
        engine,
        Selection::Change(c.id.clone()),
        RollbackOptions {
            dry_run: false,
            force: false,
            actor: ACTOR.into(),
        },
    )
    .await?;
    let Some(item) = report.items.into_iter().next() else {
        return Ok(expired(
            Outcome::Unchanged,
            "already reverted by an earlier rollback".into(),
        ));
    };
    if item.outcome == Outcome::Drifted {
        // Someone changed the target since: never forced, never retried in a loop.
        let note = format!("expiry refused: {}", item.detail);
        engine
            .store
            .set_change_status(&c.id, ChangeStatus::Drifted, Some(&note), ACTOR)
            .await?;
    }
    Ok(expired(item.outcome, item.detail))
}

/// Runs the scheduler until `stop` resolves: reverts what is due, then sleeps until the next
/// expiry (at most `poll`, so changes journaled by other processes are seen). A pass that
/// fails (the store busy with another process, a connector down) is reported to `on_error`
/// and tried again at the next poll: the scheduler never stops on its own.
pub async fn run(
    engine: Arc<Engine>,
    poll: Duration,
    stop: impl std::future::Future<Output = ()>,
    mut on_expired: impl FnMut(&Expired),
    mut on_error: impl FnMut(&crate::EngineError),
) -> Result<()> {
    tokio::pin!(stop);
    loop {
        match revert_due(&engine).await {
            Ok(done) => done.iter().for_each(&mut on_expired),
            Err(e) => on_error(&e),
        }
        let next = next_due_in(&engine).await.unwrap_or_else(|e| {
            on_error(&e);
            None
        });
        let wait = next
            .map_or(poll, |d| d.min(poll))
            .max(Duration::from_millis(50));
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
