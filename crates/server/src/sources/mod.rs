//! Every configured source in the server's process: syslog/CEF listeners, mailboxes polled
//! over IMAP, JSON-lines files tailed with a durable cursor, and threat-intel feeds (files,
//! URLs, TAXII collections) imported on a schedule. Each hands its events to the same commit
//! path as the API ([`crate::state::AppState::ingest_from_source`]), waits for room in the
//! ingest queue, records its last success and error in [`SourcesStatus`], and stops when the
//! server shuts down.
//!
//! One file per kind: `config` (the `belay.toml` sections and their check), `syslog`,
//! `imap`, `files`, `feeds`, and `status`.

pub mod config;
mod feeds;
mod files;
mod imap;
pub mod status;
mod syslog;

pub use config::{FeedSection, FeedSpec, SourceSection, SourceSpec, check};
pub use status::{SourceStatus, SourcesStatus};

use crate::state::AppState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The server's operational settings.
#[derive(Debug, Clone)]
pub struct Ops {
    /// Events the ingest queue holds (taken in, runs unfinished) before the API answers 429.
    pub queue_capacity: usize,
    /// The configured event sources.
    pub sources: Vec<SourceSpec>,
    /// The configured feeds.
    pub feeds: Vec<FeedSpec>,
    /// The data directory: the intel store, and the file of rejected lines.
    pub data_dir: PathBuf,
    /// Certificate and key files: serve HTTPS.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            queue_capacity: 10_000,
            sources: Vec::new(),
            feeds: Vec::new(),
            data_dir: PathBuf::from("belay-data"),
            tls: None,
        }
    }
}

/// The running sources.
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Tells every source to stop taking in more, then waits for each to hand over what it
    /// holds.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts every configured source and feed. Listeners bind now, so an address in use fails
/// the start, naming the source.
pub async fn start(state: &Arc<AppState>) -> Result<Running, String> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for spec in state.config.ops.sources.clone() {
        match spec {
            SourceSpec::Syslog { name, config } => {
                tasks.push(syslog::start(state.clone(), name, config, stopped.clone()).await?);
            }
            SourceSpec::Imap { name, config, poll } => {
                tasks.push(imap::start(
                    state.clone(),
                    name,
                    config,
                    poll,
                    stopped.clone(),
                ));
            }
            SourceSpec::File { name, path, poll } => {
                tasks.push(files::start(
                    state.clone(),
                    name,
                    path,
                    poll,
                    stopped.clone(),
                ));
            }
        }
    }
    for feed in state.config.ops.feeds.clone() {
        tasks.push(feeds::start(state.clone(), feed, stopped.clone()));
    }
    Ok(Running { stop, tasks })
}

/// Waits `d`, or until the server stops; true when it stops.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}
