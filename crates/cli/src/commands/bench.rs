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
    /// Durable runs to execute.
    #[arg(long, default_value_t = 20_000)]
    runs: usize,
    /// Runs in flight at once (512 keep the single writer's batches full; more only add
    /// queueing latency and memory).
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// SQLite synchronous mode for this measurement.
    #[arg(long, value_enum, default_value = "full")]
    synchronous: SyncArg,
    /// Output: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Each run adds its own address to one file list (`blocklist.add`) instead of the three
    /// no-op steps: the list grows by --runs entries, and the rate per quarter shows whether
    /// it slows down as it grows.
    #[arg(long, conflicts_with = "feed")]
    list: bool,
    /// Instead of runs: import a feed of this many new addresses, block them all in a file
    /// list (and, with --netns, in nftables) in one guarded run, then roll it back.
    #[arg(long)]
    feed: Option<usize>,
    /// With --feed: networks in the never-list every address is checked against.
    #[arg(long, default_value_t = 1_000_000)]
    never: usize,
    /// With --feed: the network namespace whose nftables the feed is blocked in.
    #[arg(long)]
    netns: Option<String>,
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
        feed,
        never,
        netns,
        list,
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
        secrets: belay_connectors::SecretSource::env(),
        remote: None,
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
    if let Some(addresses) = feed {
        let opts = belay_bench::feed::FeedOptions {
            addresses,
            never_networks: never,
            netns,
        };
        let r = belay_bench::feed::run(store, tmp.path(), opts).await?;
        if format == Format::Json {
            print_json(&r)?;
        } else {
            println!(
                "feed:         {} addresses, never-list of {} networks{}",
                r.addresses,
                r.never_networks,
                if r.firewall {
                    ", list and nftables"
                } else {
                    ", list"
                }
            );
            println!("guardrails:   {:.2}s to load", r.guardrails_load);
            println!("parse:        {:.2}s", r.parse);
            println!("store:        {:.2}s", r.store);
            println!("guardrails:   {:.2}s (every address checked)", r.guardrails);
            println!(
                "run:          {:.2}s (state reads {:.2}s, apply {:.2}s, journal and engine {:.2}s)",
                r.run, r.read_state, r.apply, r.journal_and_engine
            );
            println!("end to end:   {:.2}s", r.end_to_end);
            println!("rollback:     {:.2}s", r.rollback);
            println!("peak RSS:     {:.1} MB", r.peak_rss_mb);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = belay_bench::run(
        store,
        label,
        belay_bench::BenchOptions {
            runs,
            concurrency,
            list,
        },
    )
    .await?;
    if format == Format::Json {
        print_json(&r)?;
    } else {
        println!("store:        {}", r.store);
        println!("workload:     {}", r.workload);
        println!(
            "runs:         {} in {:.2}s ({} in flight)",
            r.runs, r.seconds, r.concurrency
        );
        println!("runs/s:       {:.0}", r.runs_per_sec);
        println!(
            "by quarter:   {}",
            r.runs_per_sec_by_quarter
                .iter()
                .map(|q| format!("{q:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
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
