//! `belay changes list|expire`: the change journal (all of it, one run's, or the changes still
//! waiting for their expiry), and the scheduler that reverts time-boxed changes when they are due.
//!
//! Undoing changes on request is `belay rollback`; what an expiry does is
//! `belay_engine::expiry`, never decided here.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::Result;
use belay_model::ms_to_rfc3339;
use belay_playbook::PlaybookSet;
use clap::Subcommand;
use std::process::ExitCode;
use std::time::Duration;

/// `belay changes …`.
#[derive(Subcommand)]
pub enum ChangesCommand {
    /// The change journal, oldest first.
    #[command(
        after_help = "Examples:\n  belay changes list\n  belay changes list --run RUN_ID --format json\n  belay changes list --expiring"
    )]
    List {
        /// Only the changes of this run.
        #[arg(long)]
        run: Option<String>,
        /// Only applied changes with an expiry (a step's `expires:`), soonest first, with when
        /// each is reverted.
        #[arg(long, conflicts_with = "run")]
        expiring: bool,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Revert the time-boxed changes that are due, through the rollback path (drift check,
    /// verification), as `engine:expiry`.
    #[command(
        after_help = "Examples:\n  belay changes expire            # once (from cron or a timer)\n  belay changes expire --watch    # keep running; revert each change when its time comes"
    )]
    Expire {
        /// Keep running: revert each change when it comes due (changes journaled meanwhile by
        /// other belay processes included) until interrupted.
        #[arg(long)]
        watch: bool,
        /// How often, at most, `--watch` looks for changes journaled by other processes.
        #[arg(long, default_value = "1s", value_parser = duration_arg)]
        poll: Duration,
    },
}

/// Runs `belay changes …`.
pub async fn run(ctx: &Ctx, command: ChangesCommand) -> Result<ExitCode> {
    match command {
        ChangesCommand::List {
            run,
            expiring,
            format,
        } => list(ctx, run, expiring, format).await,
        ChangesCommand::Expire { watch, poll } => expire(ctx, watch, poll).await,
    }
}

async fn list(ctx: &Ctx, run: Option<String>, expiring: bool, format: Format) -> Result<ExitCode> {
    let changes: Vec<belay_model::ChangeRecord> = match &ctx.remote {
        Some(remote) => {
            let mut q = Vec::new();
            if let Some(r) = &run {
                q.push(("run_id", r.clone()));
            }
            if expiring {
                q.push(("expiring", "true".to_owned()));
            }
            serde_json::from_value(remote.get("/api/v1/changes", &q).await?)?
        }
        None => {
            let store = ctx.store().await?;
            if expiring {
                store.expiring_changes(None, usize::MAX).await?
            } else {
                store.changes(run.as_deref()).await?
            }
        }
    };
    if format == Format::Json {
        print_json(&changes)?;
    } else if expiring {
        if changes.is_empty() {
            println!("no change is waiting for its expiry");
        }
        for c in changes {
            println!(
                "{}  {} {}  reverted at {}  (run {}, step {})",
                c.id,
                c.action,
                c.target,
                c.expires_at.map(ms_to_rfc3339).unwrap_or_default(),
                c.run_id,
                c.step_key
            );
        }
    } else {
        println!(
            "{:<38} {:<18} {:<22} {:<20} {:<9} ALLOWED BY",
            "CHANGE", "ACTION", "TARGET", "STEP", "STATUS"
        );
        for c in changes {
            println!(
                "{:<38} {:<18} {:<22} {:<20} {:<9} {}",
                c.id,
                c.action,
                c.target,
                c.step_key,
                c.status.as_str(),
                c.allowed_by
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_expired(e: &belay_engine::expiry::Expired) {
    println!(
        "expired {} {} {} (due {}): {:?} — {}",
        e.change_id,
        e.action,
        e.target,
        ms_to_rfc3339(e.due_at),
        e.outcome,
        e.detail
    );
}

async fn expire(ctx: &Ctx, watch: bool, poll: Duration) -> Result<ExitCode> {
    let engine = ctx.engine(PlaybookSet::default()).await?;
    if watch {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        belay_engine::expiry::run(engine, poll, stop, print_expired, |e| {
            eprintln!("expiry pass failed (tried again at the next poll): {e}")
        })
        .await?;
        return Ok(ExitCode::SUCCESS);
    }
    let done = belay_engine::expiry::revert_due(&engine).await?;
    if done.is_empty() {
        println!("no change is due for expiry");
    }
    for e in &done {
        print_expired(e);
    }
    let failed = done.iter().any(|e| {
        !matches!(
            e.outcome,
            belay_engine::rollback::Outcome::Reverted | belay_engine::rollback::Outcome::Unchanged
        )
    });
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn duration_arg(text: &str) -> std::result::Result<Duration, String> {
    belay_model::parse_duration(text).map_err(|e| e.to_string())
}
