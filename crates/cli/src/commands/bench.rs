//! `belay bench`: measures durable runs per second on the store.
//!
//! Glue only: the load is driven by `belay_bench`. Unless `--data` or a database is
//! given it measures on a fresh temporary store, never on the configured data.

use crate::config::Config;
use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result};
use belay_store::Synchronous;
use clap::ValueEnum;
use std::process::ExitCode;

/// `belay bench`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 20_000)]
    runs: usize,
    /// Runs in flight at once (512 keep the single writer's batches full; more only add
    /// queueing latency and memory).
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// SQLite synchronous mode for this measurement.
    #[arg(long, value_enum, default_value = "full")]
    synchronous: SyncArg,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// `bench --synchronous`: the SQLite synchronous mode measured.
#[derive(Clone, Copy, ValueEnum)]
pub enum SyncArg {
    Full,
    Normal,
}

/// Runs `belay bench`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let Args {
        runs,
        concurrency,
        synchronous: sync,
        format,
    } = args;
    let synchronous = match sync {
        SyncArg::Full => Synchronous::Full,
        SyncArg::Normal => Synchronous::Normal,
    };
    // A fresh embedded store unless --data or a database is given explicitly.
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let explicit = std::env::args().any(|a| a == "--data" || a.starts_with("--data="))
        || std::env::var_os("BELAY_DATA").is_some();
    let data = if explicit {
        ctx.data.clone()
    } else {
        tmp.path().to_path_buf()
    };
    let bench_ctx = Ctx {
        config: Config::default(),
        guardrails_path: ctx.guardrails_path.clone(),
        data,
        database_url: ctx.database_url.clone(),
        catalog: ctx.catalog.clone(),
        connectors: Vec::new(),
        auto_sign: None,
    };
    let store = bench_ctx.store_with(synchronous).await?;
    let label = match store.kind() {
        "sqlite" => format!(
            "sqlite (WAL, synchronous={})",
            if synchronous == Synchronous::Full {
                "FULL"
            } else {
                "NORMAL"
            }
        ),
        other => other.to_string(),
    };
    let r = belay_bench::run(
        store,
        label,
        belay_bench::BenchOptions { runs, concurrency },
    )
    .await?;
    if format == Format::Json {
        print_json(&r)?;
    } else {
        println!("store:        {}", r.store);
        println!(
            "runs:         {} in {:.2}s ({} in flight)",
            r.runs, r.seconds, r.concurrency
        );
        println!("runs/s:       {:.0}", r.runs_per_sec);
        println!("latency p50:  {:.2} ms", r.p50_ms);
        println!("latency p99:  {:.2} ms", r.p99_ms);
        println!("peak RSS:     {:.1} MB", r.peak_rss_mb);
        println!(
            "CPU per run:  {:.0} µs ({:.0} µs on the store's writer)",
            r.cpu_us_per_run, r.writer_cpu_us_per_run
        );
        println!("written/run:  {:.1} KB", r.written_kb_per_run);
    }
    Ok(ExitCode::SUCCESS)
}
