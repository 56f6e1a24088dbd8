//! `belay guardrails check|bench`: every governing guardrail's verdict on one planned change,
//! and a measurement of `never` look-ups.
//!
//! It only asks: it never plans, holds or applies a change.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::process::ExitCode;

/// `belay guardrails …`.
#[derive(Subcommand)]
pub enum GuardrailsCommand {
    /// The verdict of every governing guardrail on one change, e.g.
    /// `belay guardrails check blocklist.add --with '{"list":"egress","entry":"203.0.113.9"}'`.
    Check {
        action: String,
        /// The planned change's inputs, as JSON (e.g. '{"list":"egress","entry":"192.0.2.1"}').
        #[arg(long = "with", value_name = "JSON")]
        with: String,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Measure `never` lookups on a generated list of N networks.
    Bench {
        /// How many networks the generated never-list holds.
        #[arg(long, default_value_t = 1_000_000)]
        cidrs: usize,
    },
}

/// Runs `belay guardrails …`.
pub async fn run(ctx: &Ctx, command: GuardrailsCommand) -> Result<ExitCode> {
    match command {
        GuardrailsCommand::Check {
            action,
            with,
            format,
        } => {
            let input: serde_json::Value =
                serde_json::from_str(&with).context("--with is not JSON")?;
            let guardrails = ctx.guardrails()?;
            for w in guardrails.learning_warnings(&ctx.catalog) {
                eprintln!("{}: warning: {w}", ctx.guardrails_path.display());
            }
            let store = ctx.store().await?;
            let verdicts = belay_engine::guard::check_planned(
                &*store,
                &guardrails,
                &ctx.catalog,
                &action,
                &input,
            )
            .await?;
            if format == Format::Json {
                print_json(&verdicts)?;
            } else if verdicts.is_empty() {
                println!(
                    "no guardrail governs `{action}` (loaded from {})",
                    ctx.guardrails_path.display()
                );
            } else {
                for v in &verdicts {
                    let what = if v.pass {
                        "pass".to_string()
                    } else {
                        format!("{:?}", v.on_violation).to_lowercase()
                    };
                    println!("{:<28} {:<5} {}", v.guardrail, what, v.reason);
                }
            }
            Ok(if verdicts.iter().all(|v| v.pass) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        GuardrailsCommand::Bench { cidrs } => {
            let r = belay_engine::guard::bench_never(cidrs);
            println!(
                "never list: {} networks loaded in {:.2}s ({} ranges after merging)",
                cidrs, r.load_secs, r.ranges
            );
            println!(
                "lookup: {:.0} ns per address ({} lookups, {} hits)",
                r.ns_per_lookup, r.lookups, r.hits
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
