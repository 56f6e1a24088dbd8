//! Committing events and running what they start, for every way events come in (the API,
//! webhooks, and the configured sources): the commit is timed and counted, and each run
//! executes in the background with its run and event ids on every log line, holding its
//! event's place in the ingest queue until it ends.

use crate::queue::Ticket;
use crate::state::AppState;
use belay_engine::{Acceptance, EngineError};
use belay_model::{Event, RunRecord};
use belay_store::{Accepted, Cursor};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

impl AppState {
    /// Stores `events` durably with the runs they start; returns after the commit.
    pub async fn commit(
        &self,
        events: Vec<(Event, Option<Cursor>)>,
    ) -> Result<Vec<Acceptance>, EngineError> {
        let n = events.len();
        let started = Instant::now();
        let r = self.engine().accept_batch(events).await;
        metrics::histogram!("belay_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("belay_store_commit_batch_size").record(n as f64);
        r
    }

    /// Starts the runs of one accepted event; `place` (its place in the ingest queue) is
    /// given back when the last of them ends.
    pub fn start_runs(self: &Arc<Self>, acc: &Acceptance, place: Ticket) {
        let place = Arc::new(place);
        for run in &acc.runs {
            self.spawn_run(run.clone(), acc.event.clone(), place.clone());
        }
    }

    fn spawn_run(self: &Arc<Self>, run: RunRecord, event: Arc<Event>, place: Arc<Ticket>) {
        let engine = self.engine();
        let span = tracing::info_span!("run", run_id = %run.id, event_id = %event.id,
            playbook = %run.playbook);
        self.runs.spawn(
            async move {
                let _place = place;
                match engine.execute_new(run, event).await {
                    Ok(r) => {
                        metrics::counter!("belay_runs_finished_total", "status" => r.status.as_str())
                            .increment(1);
                        match &r.error {
                            Some(e) => tracing::warn!(status = %r.status, "run ended: {e}"),
                            None => tracing::info!(status = %r.status, "run ended"),
                        }
                    }
                    Err(e) => {
                        metrics::counter!("belay_runs_finished_total", "status" => "error")
                            .increment(1);
                        tracing::error!("the run could not be executed: {e}");
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Stores the events of a configured source (they keep their own `source`) and starts
    /// their runs; `ticket` holds their places in the queue. Counts them under `label`.
    /// Returns how many were new.
    pub async fn ingest_from_source(
        self: &Arc<Self>,
        label: &str,
        events: Vec<(Event, Option<Cursor>)>,
        mut ticket: Ticket,
    ) -> Result<Vec<Acceptance>, EngineError> {
        let accepted = self.commit(events).await?;
        for acc in &accepted {
            let new = acc.accepted == Accepted::New;
            self.metrics
                .event_accepted(label, if new { "new" } else { "duplicate" });
            tracing::debug!(event_id = %acc.event_id, source = label, runs = acc.runs.len(),
                "event accepted");
            for (pb, msg) in &acc.trigger_errors {
                tracing::warn!(event_id = %acc.event_id, "trigger of `{pb}` not evaluated: {msg}");
            }
            self.start_runs(acc, ticket.split_one());
        }
        Ok(accepted)
    }
}
