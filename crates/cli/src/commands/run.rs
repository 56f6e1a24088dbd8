//! `belay run`: one playbook on one event, now, with its report.
//!
//! Glue only: the engine plans, guards and applies; this reads the files and prints.

use crate::actor::may_change;
use crate::context::Ctx;
use crate::output::{Format, print_report};
use crate::paths::parent_dir;
use anyhow::{Context, Result};
use belay_model::{ApprovalStatus, Event, RunStatus};
use belay_store::{ApprovalFilter, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `belay run PLAYBOOK --event FILE`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  belay run playbooks/block-malicious-ip.yaml --event alert.json\n  belay run pb.yaml --event alert.json --dry-run          # what it would do; nothing applied\n  belay run pb.yaml --event alert.json --as alice         # recorded as triggered by alice"
)]
pub struct Args {
    playbook: PathBuf,
    /// The event, as a JSON file.
    #[arg(long)]
    event: PathBuf,
    /// Apply nothing; report what would happen.
    #[arg(long)]
    dry_run: bool,
    /// Run even when the event does not match the playbook's trigger (`on.event`, `on.if`).
    #[arg(long)]
    ignore_trigger: bool,
    /// Other playbooks it may start (default: the playbook's directory).
    #[arg(long)]
    playbooks: Option<PathBuf>,
    /// The person running it, recorded as the event's source `user:USER` (with
    /// `approval.separation`, they may not approve its changes).
    #[arg(long = "as", value_name = "USER")]
    actor: Option<String>,
    /// Output: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// The commands that decide what a run waits for (its own approvals and its sub-playbooks').
async fn print_decisions(store: &dyn Store, run_id: &str) -> Result<()> {
    let pending = store
        .approvals(&ApprovalFilter {
            status: Some(ApprovalStatus::Pending),
            run_id: None,
        })
        .await?;
    let child_prefix = format!("{run_id}.");
    for a in pending
        .iter()
        .filter(|a| a.run_id == run_id || a.run_id.starts_with(&child_prefix))
    {
        println!(
            "waiting for approval {id} ({step}: {action} {target}): decide with\n  \
             belay approvals approve {id} --as USER   (or `deny`; `belay approvals show {id}` for the details)",
            id = a.id,
            step = a.key,
            action = a.action,
            target = a.target,
        );
    }
    Ok(())
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
        ignore_trigger,
        playbooks,
        actor,
        format,
    } = args;
    let (playbook, event) = (playbook.as_path(), event.as_path());
    if let Some(a) = &actor {
        may_change(ctx, a, "run a playbook")?;
    }
    let dir = playbooks.unwrap_or_else(|| parent_dir(playbook));
    let (set, pb) = ctx.load_playbook_in(playbook, dir)?;
    let mut event = read_event(event)?;
    if let Some(a) = actor {
        event.source = format!("user:{a}");
    }
    if !ignore_trigger && let Some(why) = belay_engine::Engine::trigger_mismatch(&pb, &event) {
        eprintln!(
            "nothing ran: {why}; `belay run --ignore-trigger` runs it anyway (ingest would not)"
        );
        return Ok(ExitCode::from(1));
    }
    let engine = ctx.engine(set).await?;
    let report = engine.run_once(&pb, event, dry_run).await?;
    print_report(&report, format)?;
    if format == Format::Text && report.status == RunStatus::WaitingApproval {
        print_decisions(&*engine.store, &report.run_id).await?;
    }
    Ok(
        if matches!(report.status, RunStatus::Failed | RunStatus::Denied) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}
