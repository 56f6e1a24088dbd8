//! What every handler shares: the engine, the server's settings, the runs it executes in the
//! background, and its counters.

use crate::auth::Principal;
use crate::hooks::HookSource;
use crate::metrics::Metrics;
use crate::problem::Problem;
use belay_engine::{Acceptance, Engine};
use belay_model::{AuditDraft, Event};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// How the server is set up (from `belay.toml` and the command line).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body, in bytes (413 past it).
    pub body_limit: usize,
    /// People from `[[users]]` in the configuration, with their roles; they join the users
    /// stored with `belay users add` in one directory.
    pub config_users: Vec<(String, Vec<String>)>,
    /// Webhook sources, by name (`POST /hooks/{name}`).
    pub hooks: Vec<HookSource>,
    /// When the trust report suggests a promotion.
    pub trust: belay_engine::trust::Thresholds,
    /// Loads the playbooks and guardrails again for a reload; `None`: reloads are refused.
    pub reload: Option<crate::reload::Reloader>,
    /// The data directory (the intel store lives there); `None`: intel routes answer 409.
    pub data: Option<std::path::PathBuf>,
    /// Operations: the ingest queue's size, the configured sources and feeds, TLS.
    pub ops: crate::sources::Ops,
    /// Console sign-in: sessions, lockout, trusted proxies.
    pub console: crate::console::ConsoleSettings,
    /// Seals secrets set through the API; `None`: setting one is refused (409).
    pub secrets_key: Option<belay_store::Keyring>,
    /// Where held changes are delivered besides the API (chat, e-mail).
    pub channels: Arc<crate::channels::Channels>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit: 1 << 20,
            config_users: Vec::new(),
            hooks: Vec::new(),
            trust: belay_engine::trust::Thresholds::default(),
            reload: None,
            data: None,
            ops: crate::sources::Ops::default(),
            console: crate::console::ConsoleSettings::default(),
            secrets_key: None,
            channels: Arc::default(),
        }
    }
}

/// The state shared by every handler.
pub struct AppState {
    /// The engine new runs are executed by (replaced by a reload); its store is the one the
    /// API reads.
    engine: std::sync::RwLock<Arc<Engine>>,
    /// Serializes reloads.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    /// The action catalog the playbooks were checked against.
    pub catalog: Arc<belay_playbook::Catalog>,
    /// The server's settings.
    pub config: ServerConfig,
    /// Runs started or resumed by this process, waited for at shutdown.
    pub runs: TaskTracker,
    /// Prometheus counters.
    pub metrics: Metrics,
    /// The OpenAPI document with each route's role, made with the router.
    pub openapi: std::sync::OnceLock<serde_json::Value>,
    /// Events taken in and not yet done; full, the API answers 429.
    pub queue: crate::queue::IngestQueue,
    /// What each configured source and feed did last.
    pub sources: crate::sources::SourcesStatus,
}

/// What an accepted event answers: its id and the runs it started (the first answer again for
/// a duplicate).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EventAccepted {
    /// The event's id.
    pub event_id: String,
    /// `new`, or `duplicate` when an event with this id was accepted before.
    pub status: String,
    /// The runs the event started.
    pub run_ids: Vec<String>,
}

impl AppState {
    /// A new shared state.
    pub fn new(
        engine: Arc<Engine>,
        catalog: Arc<belay_playbook::Catalog>,
        config: ServerConfig,
    ) -> Arc<AppState> {
        crate::telemetry::install();
        Arc::new(AppState {
            queue: crate::queue::IngestQueue::new(config.ops.queue_capacity),
            sources: Default::default(),
            engine: std::sync::RwLock::new(engine),
            reloading: tokio::sync::Mutex::new(()),
            catalog,
            config,
            runs: TaskTracker::new(),
            metrics: Metrics::default(),
            openapi: std::sync::OnceLock::new(),
        })
    }

    /// The engine new runs are executed by.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `engine` in place for new runs; runs already started keep theirs.
    pub(crate) fn swap_engine(&self, engine: Arc<Engine>) {
        *self.engine.write().unwrap_or_else(|p| p.into_inner()) = engine;
    }

    /// Stores events sent by `sender` durably with the runs they start, then starts those
    /// runs in the background. The sender is the run's trigger: each event's `source` is set
    /// to `user:<sender>` whatever the body said, so separation of duties holds against the
    /// authenticated sender. Answers once the events are committed; `429` when the ingest
    /// queue has no room for them (nothing stored).
    pub async fn accept(
        self: &Arc<Self>,
        events: Vec<Event>,
        sender: &str,
        source_label: &str,
    ) -> Result<Vec<EventAccepted>, Problem> {
        let mut ticket = match self.queue.admit(events.len()) {
            Ok(t) => t,
            Err(p) => {
                self.metrics.event_rejected(source_label, "queue_full");
                return Err(p);
            }
        };
        let events: Vec<(Event, Option<belay_store::Cursor>)> = events
            .into_iter()
            .map(|mut e| {
                e.source = format!("user:{sender}");
                (e, None)
            })
            .collect();
        let accepted = self.commit(events).await?;
        let mut out = Vec::with_capacity(accepted.len());
        for acc in accepted {
            let place = ticket.split_one();
            out.push(self.answer(acc, source_label, place).await?);
        }
        Ok(out)
    }

    async fn answer(
        self: &Arc<Self>,
        acc: Acceptance,
        source_label: &str,
        place: crate::queue::Ticket,
    ) -> Result<EventAccepted, Problem> {
        let new = acc.accepted == belay_store::Accepted::New;
        self.metrics
            .event_accepted(source_label, if new { "new" } else { "duplicate" });
        let run_ids = if new {
            let ids = acc.runs.iter().map(|r| r.id.clone()).collect();
            tracing::info!(event_id = %acc.event_id, source = source_label,
                runs = acc.runs.len(), "event accepted");
            self.start_runs(&acc, place);
            ids
        } else {
            // The first answer again: the runs the event started when it was accepted.
            self.engine()
                .store
                .list_runs(&belay_store::RunFilter {
                    event_id: Some(acc.event_id.clone()),
                    ..Default::default()
                })
                .await?
                .into_iter()
                .filter(|r| {
                    r.parent_run.is_none()
                        && r.trigger_source().is_none_or(|s| s == acc.event.source)
                })
                .rev()
                .map(|r| r.id)
                .collect()
        };
        Ok(EventAccepted {
            event_id: acc.event_id,
            status: if new { "new" } else { "duplicate" }.into(),
            run_ids,
        })
    }

    /// Executes, in the background, the runs people's decisions made resumable.
    pub fn pick_up_decisions(self: &Arc<Self>) {
        let engine = self.engine().clone();
        self.runs.spawn(async move {
            if let Err(e) = engine.pick_up_decisions().await {
                tracing::error!("picking up approval decisions failed: {e}");
            }
        });
    }

    /// Records in the audit trail that `p` made a state-changing request through the API, with
    /// the token and the client address.
    pub async fn audit_request(&self, p: &Principal, what: &str, subject: &str, outcome: &str) {
        let draft = AuditDraft {
            kind: "api.request".into(),
            actor: p.name.clone(),
            subject: subject.into(),
            detail: serde_json::json!({ "request": what, "outcome": outcome,
                "token_id": p.token_id, "session_id": p.session_id, "client": p.client }),
        };
        if let Err(e) = self.engine().store.append_audit(vec![draft]).await {
            tracing::error!("recording an API request in the audit trail: {e}");
        }
    }
}
