//! Latency histograms and counters recorded anywhere in the process (the engine's steps and
//! connector calls, guardrail holds, store commits, runs by status) through the `metrics`
//! facade, rendered by a Prometheus recorder; and the gauges read when `/metrics` is scraped
//! (queue depth, approvals pending and the oldest one's age, each source's last success).

use crate::state::AppState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// Latency buckets, in seconds.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Events per commit.
const SIZES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once); `None` if another one was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("belay_store_commit_batch_size".into()),
                    SIZES,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_histogram!(
        "belay_step_duration_seconds",
        metrics::Unit::Seconds,
        "Time one step took, by action and status."
    );
    describe_histogram!(
        "belay_action_duration_seconds",
        metrics::Unit::Seconds,
        "Time one connector call (one attempt) took, by action and outcome."
    );
    describe_histogram!(
        "belay_store_commit_seconds",
        metrics::Unit::Seconds,
        "Time to commit a batch of incoming events with their runs."
    );
    describe_histogram!(
        "belay_store_commit_batch_size",
        "Events committed together."
    );
    describe_counter!(
        "belay_runs_finished_total",
        "Runs this process executed, by the status they ended in (waiting_approval: parked for a person)."
    );
    describe_counter!(
        "belay_guardrail_holds_total",
        "Changes held for a person by a guardrail, by guardrail."
    );
}

/// The recorded series, then the gauges read now.
pub async fn render(state: &AppState) -> String {
    let mut out = String::new();
    if let Some(h) = install() {
        h.run_upkeep();
        out.push_str(&h.render());
    }
    let _ = writeln!(
        out,
        "# HELP belay_ingest_queue_depth Events taken in and not yet done (committed, runs unfinished).\n# TYPE belay_ingest_queue_depth gauge\nbelay_ingest_queue_depth {}",
        state.queue.depth()
    );
    let _ = writeln!(
        out,
        "# HELP belay_ingest_queue_capacity Most events the ingest queue holds before refusing with 429.\n# TYPE belay_ingest_queue_capacity gauge\nbelay_ingest_queue_capacity {}",
        state.queue.capacity()
    );
    let pending = state
        .engine()
        .store
        .approvals(&belay_store::ApprovalFilter {
            status: Some(belay_model::ApprovalStatus::Pending),
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let now = belay_model::now_ms();
    let oldest = pending
        .iter()
        .map(|a| now.saturating_sub(a.created_at))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP belay_approvals_oldest_pending_age_seconds Age of the oldest approval waiting for a decision (0: none).\n# TYPE belay_approvals_oldest_pending_age_seconds gauge\nbelay_approvals_oldest_pending_age_seconds {}",
        oldest as f64 / 1000.0
    );
    let sources = state.sources.snapshot();
    out.push_str("# HELP belay_source_last_success_timestamp_seconds When each source or feed last read or imported successfully (Unix time; absent: never).\n# TYPE belay_source_last_success_timestamp_seconds gauge\n");
    for s in &sources {
        if let Some(t) = s.last_success_unix {
            let _ = writeln!(
                out,
                "belay_source_last_success_timestamp_seconds{{source=\"{}\",kind=\"{}\"}} {t}",
                esc(&s.name),
                esc(&s.kind)
            );
        }
    }
    out.push_str("# HELP belay_source_errors_total Failed reads or imports of each source or feed.\n# TYPE belay_source_errors_total counter\n");
    for s in &sources {
        let _ = writeln!(
            out,
            "belay_source_errors_total{{source=\"{}\",kind=\"{}\"}} {}",
            esc(&s.name),
            esc(&s.kind),
            s.errors
        );
    }
    out.push_str("# HELP belay_source_up Whether each source is running (1) or stopped (0).\n# TYPE belay_source_up gauge\n");
    for s in &sources {
        let _ = writeln!(
            out,
            "belay_source_up{{source=\"{}\",kind=\"{}\"}} {}",
            esc(&s.name),
            esc(&s.kind),
            u8::from(s.running)
        );
    }
    out
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
