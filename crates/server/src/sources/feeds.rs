//! Threat-intel feeds imported on a schedule (`belay_intel::import`, as `belay intel import`
//! does): each import replaces the feed's set, and its `intel.update` event goes to the engine
//! like any event, starting the playbooks it triggers. The schedule survives restarts: the
//! first import waits until `every` has passed since the feed's last import.

use super::config::FeedSpec;
use crate::state::AppState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(super) fn start(
    state: Arc<AppState>,
    feed: FeedSpec,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let name = feed.name.clone();
    state.sources.register(
        &name,
        "feed",
        &without_credentials(&feed.source),
        Some(humantime::format_duration(feed.every).to_string()),
    );
    state.sources.running(&name, true);
    tokio::spawn(async move {
        let first = until_due(&state, &feed).await;
        if !first.is_zero() && super::sleep_or_stop(first, &mut stop).await {
            state.sources.running(&name, false);
            return;
        }
        loop {
            match import(&state, &feed).await {
                Ok(summary) => state.sources.success(&name, 1, Some(summary)),
                Err(e) => state.sources.error(&name, &e),
            }
            if super::sleep_or_stop(feed.every, &mut stop).await {
                break;
            }
        }
        state.sources.running(&name, false);
    })
}

/// How long until the feed is due: `every` after its last import (none: now).
async fn until_due(state: &AppState, feed: &FeedSpec) -> Duration {
    let data = state.config.ops.data_dir.clone();
    let name = feed.name.clone();
    let last = tokio::task::spawn_blocking(move || {
        if !belay_intel::IntelStore::exists(&data) {
            return None;
        }
        let store = belay_intel::IntelStore::open(&data).ok()?;
        let feeds = store.feeds().ok()?;
        feeds
            .into_iter()
            .find(|(_, f)| f.name == name)
            .map(|(_, f)| f.last_import)
    })
    .await
    .ok()
    .flatten();
    let Some(last) = last else {
        return Duration::ZERO;
    };
    let since = Duration::from_millis(u64::try_from(belay_model::now_ms() - last).unwrap_or(0));
    feed.every.saturating_sub(since)
}

/// One import and its event; what the import said.
async fn import(state: &Arc<AppState>, feed: &FeedSpec) -> Result<String, String> {
    let data = state.config.ops.data_dir.clone();
    let (source, options) = (feed.source.clone(), feed.options.clone());
    let report = tokio::task::spawn_blocking(move || {
        belay_intel::import(&data, &source, &options, &mut belay_intel::NoProgress)
    })
    .await
    .map_err(|e| format!("the import task ended abnormally: {e}"))?
    .map_err(|e| format!("import failed: {e}"))?;
    let summary = report.summary();
    tracing::info!(feed = %feed.name, "{summary}");
    let ticket = state.queue.wait(1).await;
    state
        .ingest_from_source(&feed.name, vec![(report.event(), None)], ticket)
        .await
        .map_err(|e| format!("imported, but its intel.update event could not be stored: {e}"))?;
    Ok(summary)
}

/// A source as shown: a URL without its user and password.
fn without_credentials(source: &str) -> String {
    match source.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => source.to_owned(),
            }
        }
        None => source.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(
            super::without_credentials("https://u:p@feeds.example/x@y"),
            "https://feeds.example/x@y"
        );
        assert_eq!(super::without_credentials("feed.txt"), "feed.txt");
    }
}
