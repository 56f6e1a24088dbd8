//! Sending what is pending: every second, each pending approval not yet delivered is posted
//! to each chat target with `approvals = true` and mailed to each approver with an address who
//! may decide on it. A delivery is recorded with its `approval.delivered` audit entry; a failed
//! send is retried with backoff (five tries) and each failure is logged.

use super::{Channels, email};
use crate::state::AppState;
use belay_model::{ApprovalRecord, ApprovalStatus, now_ms};
use belay_store::{ApprovalFilter, Delivery};
use std::sync::Arc;
use std::time::Duration;

/// Tries before a delivery is given up.
const MAX_TRIES: u32 = 5;

/// Starts the delivery loop; `None` when no channel is configured.
pub(crate) fn spawn(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    if state.config.channels.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = deliver(&state).await {
                tracing::error!("delivering approvals failed: {e}");
            }
        }
    }))
}

/// One pass: delivers every pending approval where it has not been delivered yet.
async fn deliver(state: &Arc<AppState>) -> Result<(), belay_store::StoreError> {
    let channels = state.config.channels.clone();
    let store = state.engine().store.clone();
    let pending = store
        .approvals(&ApprovalFilter {
            status: Some(ApprovalStatus::Pending),
            ..Default::default()
        })
        .await?;
    if pending.is_empty() {
        return Ok(());
    }
    let dir = match &channels.email {
        Some(_) => Some(crate::auth::directory(&*store, state.config.config_users.clone()).await?),
        None => None,
    };
    for a in pending.iter().filter(|a| a.expires_at > now_ms()) {
        let done = store.deliveries(&a.id).await?;
        let sent = |channel: &str, target: &str, recipient: &str| {
            done.iter()
                .any(|d| d.channel == channel && d.target == target && d.recipient == recipient)
        };
        for chat in &channels.chat {
            if sent("chat", &chat.name, &chat.channel) {
                continue;
            }
            let key = format!("{}/chat/{}", a.id, chat.name);
            if !due(&channels, &key) {
                continue;
            }
            let (text, blocks) = super::chat::message(a);
            let posted = chat.client.post(&chat.channel, &text, Some(&blocks)).await;
            let reference = posted.as_ref().ok().map(|p| p.ts.clone());
            record(
                state,
                &channels,
                &key,
                a,
                "chat",
                &chat.name,
                &chat.channel,
                reference,
                posted.err().map(|e| e.message),
            )
            .await?;
        }
        if let (Some(mail), Some(dir)) = (&channels.email, &dir) {
            for (user, address) in &mail.recipients {
                if sent("email", "email", user) {
                    continue;
                }
                let roles = dir.roles(user).map(<[String]>::to_vec).unwrap_or_default();
                if dir.roles(user).is_none()
                    || belay_engine::approvals::may_decide(a, user, &roles).is_err()
                {
                    continue;
                }
                let key = format!("{}/email/{user}", a.id);
                if !due(&channels, &key) {
                    continue;
                }
                let base = channels.link_base();
                let result = email::send(mail, &base, a, user, address).await;
                let reference = result.as_ref().ok().cloned();
                record(
                    state,
                    &channels,
                    &key,
                    a,
                    "email",
                    "email",
                    user,
                    reference,
                    result.err(),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Whether a send under `key` may be tried now (never failed, or its backoff passed).
fn due(channels: &Channels, key: &str) -> bool {
    let retries = channels.retries.lock().unwrap_or_else(|p| p.into_inner());
    retries
        .get(key)
        .is_none_or(|(tries, next)| *tries < MAX_TRIES && now_ms() >= *next)
}

/// Records a successful send (and its audit entry), or counts a failed one.
#[allow(clippy::too_many_arguments)]
async fn record(
    state: &AppState,
    channels: &Channels,
    key: &str,
    a: &ApprovalRecord,
    channel: &str,
    target: &str,
    recipient: &str,
    reference: Option<String>,
    error: Option<String>,
) -> Result<(), belay_store::StoreError> {
    if let Some(e) = error {
        let mut retries = channels.retries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = retries.entry(key.to_owned()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = now_ms() + 2_000 * (1 << entry.0.min(8));
        tracing::warn!(
            "approval {} could not be delivered by {channel} to {recipient} (try {} of {MAX_TRIES}): {e}",
            a.id,
            entry.0
        );
        return Ok(());
    }
    let d = Delivery {
        approval_id: a.id.clone(),
        channel: channel.into(),
        target: target.into(),
        recipient: recipient.into(),
        reference,
        delivered_at: now_ms(),
    };
    let audit = d.audit(&format!("engine:{}", state.engine().store.worker_id()));
    state
        .engine()
        .store
        .record_delivery(&d, audit)
        .await
        .map(|_| ())
}
