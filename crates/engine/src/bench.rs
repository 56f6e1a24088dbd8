//! `belay bench`: synthetic events through a three-step playbook (one read, two changes on a
//! no-op connector) on a durable store, measuring runs per second, event-to-completion
//! latency and peak memory.

use crate::{Engine, EngineConfig, EngineError, Result};
use async_trait::async_trait;
use belay_connector_api::{ActionError, Call, Connector, Registry};
use belay_model::{Event, RunStatus};
use belay_playbook::{
    ActionKind, ActionSpec, Catalog, InverseSpec, PlaybookSet, TargetSpec, TargetType,
};
use belay_store::{Store, WRITER_THREAD};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const PLAYBOOK: &str = r#"name: bench
description: Benchmark playbook - one read, two changes.
on:
  event: bench.event
trust: log
steps:
  - id: lookup
    action: bench.lookup
    with: { value: "${{ event.observables.ips[0] }}" }
  - id: block
    action: bench.block
    with: { target: "${{ event.observables.ips[0] }}", reason: "score ${{ steps.lookup.output.score }}" }
  - id: tag
    action: bench.block
    with: { target: "${{ event.observables.ips[0] }}", reason: "tagged" }
"#;

/// Events accepted per commit.
const BATCH: usize = 256;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub runs: usize,
    /// Runs in flight at once.
    pub concurrency: usize,
}

/// Benchmark figures (the JSON keys are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub runs: usize,
    pub runs_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss_mb: f64,
    pub store: String,
    pub seconds: f64,
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
}

struct Noop;

#[async_trait]
impl Connector for Noop {
    fn family(&self) -> &str {
        "bench"
    }

    async fn call(&self, call: Call<'_>) -> std::result::Result<Value, ActionError> {
        Ok(match call.action {
            "bench.lookup" => json!({ "score": 2 }),
            _ => json!({ "changed": true }),
        })
    }

    async fn read_state(
        &self,
        _action: &str,
        _input: &Value,
    ) -> std::result::Result<Value, ActionError> {
        Ok(json!({ "present": false }))
    }
}

fn props(names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| (n.to_string(), json!({ "type": "string", "required": true })))
        .collect()
}

fn bench_catalog() -> std::result::Result<Catalog, String> {
    let mut c = Catalog::builtin();
    c.insert(ActionSpec::new(
        "bench.lookup",
        ActionKind::Read,
        "Benchmark read.",
        props(&["value"]),
        None,
        None,
    )?);
    let target = Some(TargetSpec {
        field: "target".into(),
        kind: TargetType::Ip,
    });
    let inverse = |a: &str| {
        Some(InverseSpec {
            action: a.into(),
            with: vec!["target".into(), "reason".into()],
            set: Map::new(),
            from_state: Default::default(),
        })
    };
    c.insert(ActionSpec::new(
        "bench.block",
        ActionKind::Change,
        "Benchmark change.",
        props(&["target", "reason"]),
        target.clone(),
        inverse("bench.unblock"),
    )?);
    c.insert(ActionSpec::new(
        "bench.unblock",
        ActionKind::Change,
        "Benchmark inverse.",
        props(&["target", "reason"]),
        target,
        inverse("bench.block"),
    )?);
    Ok(c)
}

/// Processor time this process has used so far (user and system, all threads), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The number after `key` in one of this process's `/proc/self` files (Linux).
fn proc_figure(file: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Bytes this process has written so far (Linux `wchar`: every write call, cached or not).
pub fn written_bytes() -> f64 {
    proc_figure("io", "wchar:").unwrap_or(0.0)
}

/// Processor time used so far by this process's threads named `name` (Linux), in seconds.
pub fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesized name: state is field 3, utime 14, stime 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .sum()
}

/// Peak resident memory of this process, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    proc_figure("status", "VmHWM:").map_or(0.0, |kb| kb / 1024.0)
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
    std::fs::write(&path, PLAYBOOK).map_err(|e| EngineError::Other(e.to_string()))?;
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
                let ip = format!("198.18.{}.{}", (i / 256) % 256, i % 256);
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
    })
}
