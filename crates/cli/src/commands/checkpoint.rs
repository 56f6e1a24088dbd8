//! `belay checkpoint create|list`: named points in the change journal ("known good") that
//! `belay rollback --to` returns to.
//!
//! It names points only; it never changes or undoes a change.

use crate::actor::may_change;
use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Result, bail};
use clap::Subcommand;
use std::process::ExitCode;

/// `belay checkpoint …`.
#[derive(Subcommand)]
pub enum CheckpointCommand {
    Create {
        name: String,
        /// Who creates it (a user with the responder or admin role).
        #[arg(long = "as", value_name = "USER")]
        actor: String,
    },
    List {
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// Runs `belay checkpoint …`.
pub async fn run(ctx: &Ctx, command: CheckpointCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        CheckpointCommand::Create { name, actor } => {
            may_change(ctx, &actor, "create a checkpoint")?;
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                bail!("a checkpoint name is 1 to 128 printable characters");
            }
            let cp = store.create_checkpoint(&name, &actor).await?;
            println!(
                "checkpoint {} after change {}",
                cp.name,
                cp.last_change_id.as_deref().unwrap_or("(none)")
            );
        }
        CheckpointCommand::List { format } => {
            let cps = store.checkpoints().await?;
            if format == Format::Json {
                print_json(&cps)?;
            } else {
                for c in cps {
                    println!(
                        "{:<24} {} by {} after change {}",
                        c.name,
                        belay_model::ms_to_rfc3339(c.created_at),
                        c.actor,
                        c.last_change_id.as_deref().unwrap_or("(none)")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
