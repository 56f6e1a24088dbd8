//! `belay actions list|show`: the action catalog, with each action's inputs, target, state
//! and inverse.
//!
//! Read-only: it describes actions, never calls them.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Result, anyhow};
use clap::Subcommand;
use std::process::ExitCode;

/// `belay actions …`.
#[derive(Subcommand)]
pub enum ActionsCommand {
    List {
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    Show {
        name: String,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// Runs `belay actions …`.
pub fn run(ctx: &Ctx, command: ActionsCommand) -> Result<ExitCode> {
    match command {
        ActionsCommand::List { format } => {
            let all: Vec<_> = ctx.catalog.iter().collect();
            if format == Format::Json {
                print_json(&all)?;
            } else {
                for a in all {
                    let inverse = a
                        .inverse
                        .as_ref()
                        .map(|i| format!(" (inverse: {})", i.action))
                        .unwrap_or_default();
                    println!(
                        "{:<28} {:<7} {}{inverse}",
                        a.name,
                        a.kind.to_string(),
                        a.description
                    );
                }
            }
        }
        ActionsCommand::Show { name, format } => {
            let a = ctx
                .catalog
                .get(&name)
                .ok_or_else(|| match ctx.catalog.suggest(&name) {
                    Some(s) => anyhow!("no action `{name}`; did you mean `{s}`?"),
                    None => anyhow!("no action `{name}`"),
                })?;
            if format == Format::Json {
                print_json(a)?;
            } else {
                println!("{} ({})\n  {}", a.name, a.kind, a.description);
                if let Some(t) = &a.target {
                    println!("  target: input `{}` ({:?})", t.field, t.kind);
                }
                if let Some(s) = &a.state {
                    println!("  state:  {s}");
                }
                if let Some(i) = &a.inverse {
                    println!("  inverse: {} with {:?}", i.action, i.with);
                }
                if let Some(r) = &a.irreversible {
                    println!("  irreversible: {r}");
                }
                println!("  inputs:  {}", serde_json::to_string_pretty(&a.inputs)?);
                println!("  outputs: {}", serde_json::to_string_pretty(&a.outputs)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
