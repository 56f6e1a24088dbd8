//! `belay bench`: synthetic events through a three-step playbook (one read, two changes on a
//! no-op connector) on a durable store, measuring runs per second, event-to-completion
//! latency and peak memory; and ([`feed`]) a feed of many addresses imported, blocked, checked
//! against a large never-list and rolled back, with figures per stage.
//!
//! It owns the benchmark harness and nothing the engine needs: it drives the public engine API
//! as an ingest source would and never changes how a run executes.

pub mod feed;
mod process;
mod workload;

pub use process::{cpu_seconds, peak_rss_mb, thread_cpu_seconds, written_bytes};

use belay_connector_api::Registry;
use belay_connectors::Blocklist;
use belay_engine::{Engine, EngineConfig, EngineError, Result};
use belay_model::{Event, RunStatus};
use belay_playbook::PlaybookSet;
use belay_store::{Store, WRITER_THREAD};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use workload::{LIST_PLAYBOOK, Noop, PLAYBOOK, bench_catalog};

/// Events accepted per commit.
const BATCH: usize = 256;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Runs to execute in total (one synthetic event each).
    pub runs: usize,
    /// Runs in flight at once.
    pub concurrency: usize,
    /// Each run adds its own address to one file list (`blocklist.add`, the real connector,
    /// in a temporary directory) instead of the three no-op steps.
    pub list: bool,
}

/// Benchmark figures (the JSON keys are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Runs executed (all succeeded, or the benchmark errors instead).
    pub runs: usize,
    /// `runs` over the wall-clock `seconds`.
    pub runs_per_sec: f64,
    /// Median latency in milliseconds, from the event's batch being accepted to its run
    /// completing.
    pub p50_ms: f64,
    /// 99th-percentile latency in milliseconds, measured as `p50_ms`.
    pub p99_ms: f64,
    /// Peak resident memory of the whole process in MiB (Linux `VmHWM`; 0 elsewhere).
    pub peak_rss_mb: f64,
    /// The caller's label for the store benchmarked (e.g. its kind), echoed as given.
    pub store: String,
    /// Wall-clock duration of the whole workload, in seconds.
    pub seconds: f64,
    /// Runs in flight at once as applied (`BenchOptions::concurrency`, at least 1).
    pub concurrency: usize,
    /// Processor time (user and system, all threads) per run: steadier than runs/s on a
    /// machine shared with other work.
    pub cpu_us_per_run: f64,
    /// Bytes this process wrote per run (the store's log, database and checkpoints): the
    /// store's write amplification, independent of the machine's speed.
    pub written_kb_per_run: f64,
    /// Of `cpu_us_per_run`, the part spent on the embedded store's writer thread (0 for a
    /// store without one): the one serial stage, so it bounds runs per second.
    pub writer_cpu_us_per_run: f64,
    /// Runs per second over each quarter of the runs, in the order they completed: a
    /// workload whose cost grows with what earlier runs left (a list) slows down quarter by
    /// quarter.
    pub runs_per_sec_by_quarter: Vec<f64>,
    /// The workload: `noop` (three steps on a no-op connector) or `list` (one
    /// `blocklist.add` per run).
    pub workload: &'static str,
}

/// Runs the benchmark on `store` and checks that every run succeeded.
pub async fn run(
    store: Arc<dyn Store>,
    store_label: String,
    opts: BenchOptions,
) -> Result<BenchResult> {
    // The driver runs on the runtime's workers like any ingest source, not on the caller's
    // thread: completions then wake a task, not a parked thread.
    tokio::spawn(drive(store, store_label, opts))
        .await
        .map_err(|e| EngineError::Other(e.to_string()))?
}

async fn drive(
    store: Arc<dyn Store>,
    store_label: String,
    opts: BenchOptions,
) -> Result<BenchResult> {
    let catalog = Arc::new(bench_catalog().map_err(EngineError::Other)?);
    let dir = tempfile::tempdir().map_err(|e| EngineError::Other(e.to_string()))?;
    let path = dir.path().join("bench.yaml");
    let playbook = if opts.list { LIST_PLAYBOOK } else { PLAYBOOK };
    std::fs::write(&path, playbook).map_err(|e| EngineError::Other(e.to_string()))?;
    let set = PlaybookSet::load(&[path], &catalog).map_err(|e| {
        EngineError::Other(
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let mut registry = Registry::new();
    registry.register(Arc::new(Noop));
    let lists = dir.path().join("lists");
    registry.register(Arc::new(Blocklist::new(&lists, HashMap::new())));
    let concurrency = opts.concurrency.max(1);
    let engine = Engine::new(
        store,
        Arc::new(set),
        catalog,
        registry,
        EngineConfig {
            max_concurrent_runs: concurrency,
            ..Default::default()
        },
    );
    let prefix = belay_model::new_id();
    let mut latencies: Vec<Duration> = Vec::with_capacity(opts.runs);
    let mut completed: Vec<Duration> = Vec::with_capacity(opts.runs);
    let mut tasks: JoinSet<Result<(RunStatus, Duration)>> = JoinSet::new();
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let written_started = written_bytes();
    let writer_started = thread_cpu_seconds(WRITER_THREAD);
    let mut next = 0usize;
    let mut failed = 0usize;
    while next < opts.runs || !tasks.is_empty() {
        // Refill in whole batches, as ingest does: one commit acknowledges many events.
        let batch_size = BATCH.min(concurrency);
        while next < opts.runs && tasks.len() + batch_size.min(opts.runs - next) <= concurrency {
            let k = (opts.runs - next).min(batch_size);
            let mut batch = Vec::with_capacity(k);
            for i in next..next + k {
                let ip =
                    std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32)).to_string();
                let ev = Event::from_json(json!({
                    "id": format!("{prefix}-{i}"), "kind": "bench.event", "source": "bench",
                    "severity": "high", "observables": { "ips": [ip] }
                }))
                .map_err(|e| EngineError::Other(e.to_string()))?;
                batch.push((ev, None));
            }
            next += k;
            let t0 = Instant::now();
            for acc in engine.accept_batch(batch).await? {
                for run in acc.runs {
                    let engine = engine.clone();
                    let event = acc.event.clone();
                    tasks.spawn(async move {
                        let report = engine.execute_new(run, event).await?;
                        Ok((report.status, t0.elapsed()))
                    });
                }
            }
        }
        match tasks.join_next().await {
            Some(Ok(Ok((status, lat)))) => {
                if status != RunStatus::Succeeded {
                    failed += 1;
                }
                latencies.push(lat);
                completed.push(started.elapsed());
            }
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => return Err(EngineError::Other(e.to_string())),
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    let written = written_bytes() - written_started;
    let writer = thread_cpu_seconds(WRITER_THREAD) - writer_started;
    if failed > 0 {
        return Err(EngineError::Other(format!(
            "{failed} benchmark runs did not succeed"
        )));
    }
    if opts.list {
        let text = match std::fs::read_to_string(lists.join("bench.txt")) {
            Ok(text) => text,
            // No run, no list.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(EngineError::Other(format!(
                    "cannot read the benchmark's list: {e}"
                )));
            }
        };
        let entries = text.lines().filter(|l| !l.is_empty()).count();
        if entries != opts.runs {
            return Err(EngineError::Other(format!(
                "the list holds {entries} entries after {} runs",
                opts.runs
            )));
        }
    }
    // Completions k..m of the runs, for each quarter that has any.
    let bound = |q: usize| opts.runs * q / 4;
    let done_at = |k: usize| match k {
        0 => Some(0.0),
        k => completed.get(k - 1).map(Duration::as_secs_f64),
    };
    let runs_per_sec_by_quarter = (1..=4)
        .filter(|&q| bound(q) > bound(q - 1))
        .filter_map(|q| {
            let (start, end) = (done_at(bound(q - 1))?, done_at(bound(q))?);
            let n = bound(q) - bound(q - 1);
            Some(n as f64 / (end - start).max(f64::MIN_POSITIVE))
        })
        .collect();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[idx].as_secs_f64() * 1000.0
    };
    Ok(BenchResult {
        runs: opts.runs,
        runs_per_sec: opts.runs as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        peak_rss_mb: peak_rss_mb(),
        store: store_label,
        seconds,
        concurrency,
        cpu_us_per_run: cpu / opts.runs.max(1) as f64 * 1e6,
        written_kb_per_run: written / opts.runs.max(1) as f64 / 1024.0,
        writer_cpu_us_per_run: writer / opts.runs.max(1) as f64 * 1e6,
        runs_per_sec_by_quarter,
        workload: if opts.list { "list" } else { "noop" },
    })
}
