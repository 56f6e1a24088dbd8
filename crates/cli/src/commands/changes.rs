//! `belay changes list`: the change journal, all of it or one run's.
//!
//! Read-only: undoing changes is `belay rollback`.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

/// `belay changes …`.
#[derive(Subcommand)]
pub enum ChangesCommand {
    List {
        #[arg(long)]
        run: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// Runs `belay changes …`.
pub async fn run(ctx: &Ctx, command: ChangesCommand) -> Result<ExitCode> {
    let ChangesCommand::List { run, format } = command;
    list(ctx, run, format).await
}

async fn list(ctx: &Ctx, run: Option<String>, format: Format) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let changes = store.changes(run.as_deref()).await?;
    if format == Format::Json {
        print_json(&changes)?;
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
