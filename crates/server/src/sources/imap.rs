//! A mailbox of reported messages read over IMAP: each message becomes its
//! `phishing.reported` event (`belay_mail::batch`), and leaves the folder only once its event
//! is committed.

use crate::state::AppState;
use belay_mail::source::{Imap, ImapConfig, Source};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Messages read and committed together.
const BATCH: usize = 64;

pub(super) fn start(
    state: Arc<AppState>,
    name: String,
    config: ImapConfig,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let address = format!("{} {}", config.url, config.folder);
    state.sources.register(
        &name,
        "imap",
        &address,
        Some(humantime::format_duration(poll).to_string()),
    );
    tokio::spawn(async move {
        let mut source = match Imap::new(config) {
            Ok(s) => s,
            Err(e) => {
                state.sources.error(&name, &e.to_string());
                return;
            }
        };
        state.sources.running(&name, true);
        let origin = source.name();
        let options = belay_mail::ParseOptions::default();
        let mut skipped: HashSet<String> = HashSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            let fetched = match source.fetch(BATCH + skipped.len()).await {
                Ok(f) => f,
                Err(e) => {
                    state.sources.error(&name, &format!("cannot read: {e}"));
                    if super::sleep_or_stop(poll, &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            let prepared = belay_mail::batch::prepare(fetched, &options, &origin, &mut skipped);
            for (where_, why) in &prepared.rejected {
                tracing::warn!(source = %name, "{where_}: {why}; left in place");
            }
            if prepared.events.is_empty() {
                state.sources.success(&name, 0, None);
                if super::sleep_or_stop(poll, &mut stop).await {
                    break;
                }
                continue;
            }
            let ticket = state.queue.wait(prepared.events.len()).await;
            let events = prepared.events.into_iter().map(|e| (e, None)).collect();
            match state.ingest_from_source(&name, events, ticket).await {
                Ok(accepted) => {
                    let new = accepted
                        .iter()
                        .filter(|a| a.accepted == belay_store::Accepted::New)
                        .count();
                    // Durable first; only then may the messages leave their folder.
                    let ids: Vec<String> =
                        prepared.messages.iter().map(|(id, _)| id.clone()).collect();
                    match source.handled(&ids).await {
                        Ok(()) => state.sources.success(&name, new as u64, None),
                        Err(e) => state
                            .sources
                            .error(&name, &format!("cannot move handled messages: {e}")),
                    }
                }
                Err(e) => {
                    state.sources.error(&name, &format!("cannot store: {e}"));
                    if super::sleep_or_stop(poll, &mut stop).await {
                        break;
                    }
                }
            }
        }
        source.close().await;
        state.sources.running(&name, false);
    })
}
