//! `belay run`: one playbook on one event, now, with its report.
//!
//! Glue only: the engine plans, guards and applies; this reads the files and prints.

use crate::actor::known_user;
use crate::context::Ctx;
use crate::output::{Format, print_report};
use crate::paths::parent_dir;
use anyhow::{Context, Result};
use belay_model::{Event, RunStatus};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `belay run PLAYBOOK --event FILE`.
#[derive(clap::Args)]
pub struct Args {
    playbook: PathBuf,
    #[arg(long)]
    event: PathBuf,
    /// Apply nothing; report what would happen.
    #[arg(long)]
    dry_run: bool,
    /// Other playbooks it may start (default: the playbook's directory).
    #[arg(long)]
    playbooks: Option<PathBuf>,
    /// The person running it, recorded as the event's source `user:USER` (with
    /// `approval.separation`, they may not approve its changes).
    #[arg(long = "as", value_name = "USER")]
    actor: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

fn read_event(path: &Path) -> Result<Event> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read event {}", path.display()))?;
    Event::from_json_str(&text).with_context(|| format!("{}", path.display()))
}

/// Runs `belay run`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let Args {
        playbook,
        event,
        dry_run,
        playbooks,
        actor,
        format,
    } = args;
    let (playbook, event) = (playbook.as_path(), event.as_path());
    if let Some(a) = &actor {
        known_user(ctx, a)?;
    }
    let dir = playbooks.unwrap_or_else(|| parent_dir(playbook));
    let (set, pb) = ctx.load_playbook_in(playbook, dir)?;
    let mut event = read_event(event)?;
    if let Some(a) = actor {
        event.source = format!("user:{a}");
    }
    let engine = ctx.engine(set).await?;
    let report = engine.run_once(&pb, event, dry_run).await?;
    print_report(&report, format)?;
    Ok(if report.status == RunStatus::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
