//! `belay events rerun`: stored events run again through trigger matching, for events that
//! started nothing (no playbook was loaded, or the wrong folder) or that a new playbook should
//! now handle. A playbook that already ran on an event does not run on it again.
//!
//! Glue only: matching and execution are the engine's.

use crate::context::Ctx;
use crate::paths::playbook_dir;
use anyhow::{Result, anyhow, bail};
use belay_model::now_ms;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `belay events …`.
#[derive(Subcommand)]
pub enum EventsCommand {
    /// Run stored events again through the loaded playbooks' triggers.
    #[command(
        after_help = "Examples:\n  belay events rerun 7f3c…            # one event, by id\n  belay events rerun --since 2h       # every event of the last two hours that started no run\n  belay events rerun --since 1d --all # also those that ran (new playbooks only)"
    )]
    Rerun {
        /// Events by id.
        ids: Vec<String>,
        /// The source the events came from: ids are unique per source, so the same id from
        /// two sources is two events (default: the first event accepted under each id).
        #[arg(long, requires = "ids")]
        source: Option<String>,
        /// Events received within this long (e.g. `2h`, `1d`); only those that started no run
        /// unless `--all`.
        #[arg(long, value_parser = duration_arg)]
        since: Option<Duration>,
        /// With `--since`: every event received, not only those that started no run (a
        /// playbook runs on an event at most once either way).
        #[arg(long, requires = "since")]
        all: bool,
        /// Playbook directory (default: `playbooks` in belay.toml).
        #[arg(long)]
        playbooks: Option<PathBuf>,
    },
}

fn duration_arg(text: &str) -> std::result::Result<Duration, String> {
    belay_model::parse_duration(text).map_err(|e| e.to_string())
}

/// Most events one `--since` rerun reads.
const RERUN_BATCH: usize = 100_000;

/// Runs `belay events …`.
pub async fn run(ctx: &Ctx, command: EventsCommand) -> Result<ExitCode> {
    let EventsCommand::Rerun {
        ids,
        source,
        since,
        all,
        playbooks,
    } = command;
    if ids.is_empty() == since.is_none() {
        bail!("name events by id, or give --since DURATION (not both)");
    }
    let dir = playbook_dir(ctx, playbooks).ok_or_else(|| {
        anyhow!("give the playbook directory with --playbooks DIR (or `playbooks` in belay.toml)")
    })?;
    let set = ctx.load_playbooks(std::slice::from_ref(&dir))?;
    if set.is_empty() {
        bail!(
            "no playbooks in {}: nothing would run (give the folder that holds them with --playbooks)",
            dir.display()
        );
    }
    let engine = ctx.engine(set).await?;
    let events = match since {
        Some(d) => {
            let from = now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            engine.store.events_since(from, !all, RERUN_BATCH).await?
        }
        None => {
            let mut out = Vec::new();
            for id in &ids {
                out.push(
                    engine
                        .store
                        .get_event(source.as_deref(), id)
                        .await?
                        .ok_or_else(|| match &source {
                            Some(s) => anyhow!("no event `{id}` from source `{s}`"),
                            None => anyhow!("no event `{id}`"),
                        })?,
                );
            }
            out
        }
    };
    let (mut started, mut failed) = (0, 0);
    for event in &events {
        let id = event.id.clone();
        let reports = engine.rerun(event.clone()).await?;
        if reports.is_empty() {
            println!(
                "event {id}: no new run (no loaded playbook matches it, or each already ran on it)"
            );
        }
        for r in reports {
            started += 1;
            failed += usize::from(matches!(
                r.status,
                belay_model::RunStatus::Failed | belay_model::RunStatus::Denied
            ));
            println!(
                "event {id}: run {} of `{}` {}",
                r.run_id,
                r.playbook,
                r.status.as_str()
            );
        }
    }
    println!("{} event(s) rerun, {started} run(s) started", events.len());
    if since.is_some() && events.len() == RERUN_BATCH {
        println!(
            "at most {RERUN_BATCH} events are rerun at once: run the same command again for the \
             rest (a playbook runs on an event at most once, so none runs twice)"
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
