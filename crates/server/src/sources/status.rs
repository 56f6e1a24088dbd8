//! What each source and feed did last: shown by `GET /api/v1/sources` and in `/metrics`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use utoipa::ToSchema;

/// One source's or feed's record.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SourceStatus {
    /// Its name in `belay.toml`.
    pub name: String,
    /// `syslog`, `imap`, `file`, or `feed`.
    pub kind: String,
    /// Where it reads or listens (addresses, a path, a URL without credentials).
    pub address: String,
    /// Whether it is running (listening, or polling on schedule).
    pub running: bool,
    /// Events it handed over and that were stored as new.
    pub events: u64,
    /// When it last read or imported successfully (RFC 3339), if ever.
    pub last_success: Option<String>,
    /// The same, in Unix seconds (for metrics).
    #[serde(skip)]
    pub last_success_unix: Option<i64>,
    /// Its last error (RFC 3339 time, and the message), if the last attempt failed.
    pub last_error: Option<String>,
    /// Errors since the server started.
    pub errors: u64,
    /// For feeds: how often they are imported (`1h`); for polled sources, how often they poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// For feeds: what the last import said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_summary: Option<String>,
}

/// Every source's record, by name.
#[derive(Debug, Default)]
pub struct SourcesStatus {
    by_name: Mutex<BTreeMap<String, SourceStatus>>,
}

impl SourcesStatus {
    /// Registers a source before it starts.
    pub fn register(&self, name: &str, kind: &str, address: &str, every: Option<String>) {
        self.lock().insert(
            name.to_owned(),
            SourceStatus {
                name: name.to_owned(),
                kind: kind.to_owned(),
                address: address.to_owned(),
                every,
                ..Default::default()
            },
        );
    }

    /// Marks a source running or stopped.
    pub fn running(&self, name: &str, running: bool) {
        self.update(name, |s| s.running = running);
    }

    /// Records a success that handed over `events` new events (and what it said).
    pub fn success(&self, name: &str, events: u64, summary: Option<String>) {
        let now = chrono::Utc::now();
        self.update(name, |s| {
            s.events += events;
            s.last_success = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            s.last_success_unix = Some(now.timestamp());
            s.last_error = None;
            if summary.is_some() {
                s.last_summary = summary;
            }
        });
    }

    /// Records a failure, with its message.
    pub fn error(&self, name: &str, message: &str) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        tracing::warn!(source = name, "source error: {message}");
        self.update(name, |s| {
            s.errors += 1;
            s.last_error = Some(format!("{now}: {message}"));
        });
    }

    /// A copy of every record, by name.
    pub fn snapshot(&self) -> Vec<SourceStatus> {
        self.lock().values().cloned().collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SourceStatus)) {
        if let Some(s) = self.lock().get_mut(name) {
            f(s);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceStatus>> {
        self.by_name.lock().unwrap_or_else(|p| p.into_inner())
    }
}
