//! `belay trust report|reset`: the trust each playbook step has earned, and lifting a
//! demotion.
//!
//! Glue only: the record and the recommendations come from `belay_engine::trust`.

use crate::actor::may_change;
use crate::context::Ctx;
use crate::output::{Format, print_json};
use crate::paths::playbook_dir;
use anyhow::{Context, Result};
use belay_engine::trust::Thresholds;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay trust …`.
#[derive(Subcommand)]
pub enum TrustCommand {
    /// Per playbook step: levels, record, and a recommendation with its reason.
    Report {
        /// Playbook directory (default: `playbooks` in belay.toml, else the newest stored
        /// version of each playbook runs used).
        #[arg(long)]
        playbooks: Option<PathBuf>,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Lift a step's demotion.
    Reset {
        playbook: String,
        step: String,
        /// Who lifts it (a user with the admin role).
        #[arg(long = "as", value_name = "USER")]
        user: String,
    },
}

/// Runs `belay trust …`.
pub async fn run(ctx: &Ctx, command: TrustCommand) -> Result<ExitCode> {
    match command {
        TrustCommand::Report { playbooks, format } if ctx.remote.is_some() => {
            if playbooks.is_some() {
                anyhow::bail!(
                    "--playbooks is for the local CLI: through --server the report covers the server's playbooks"
                );
            }
            let report = match &ctx.remote {
                Some(remote) => remote.get("/api/v1/trust", &[]).await?,
                None => serde_json::Value::Null,
            };
            print_report(&report, format)?;
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::Report { playbooks, format } => {
            // The folder's playbooks when there is one, else the newest stored versions.
            let dir = playbook_dir(ctx, playbooks);
            let set = match &dir {
                Some(dir) => ctx.load_playbooks(std::slice::from_ref(dir))?,
                None => belay_playbook::PlaybookSet::default(),
            };
            let engine = ctx.engine(set).await?;
            let playbooks: Vec<_> = match dir {
                Some(_) => engine.playbooks.iter().cloned().collect(),
                None => engine.stored_playbooks().await?,
            };
            let mut t = Thresholds::default();
            if let Some(w) = &ctx.config.trust.window {
                t.window = belay_model::parse_duration(w)
                    .with_context(|| format!("[trust] window `{w}`"))?;
            }
            if let Some(n) = ctx.config.trust.promote_to_log_after {
                t.promote_to_log = n;
            }
            if let Some(n) = ctx.config.trust.promote_to_guarded_after {
                t.promote_to_guarded = n;
            }
            let report = belay_engine::trust::report_on(&engine, &playbooks, &t).await?;
            print_report(&serde_json::to_value(&report)?, format)?;
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::Reset {
            playbook,
            step,
            user,
        } => {
            may_change(ctx, &user, "reset a trust record")?;
            let store = ctx.store().await?;
            if store.reset_trust(&playbook, &step, &user).await? {
                println!(
                    "{playbook}/{step}: demotion lifted by {user}; it runs at its declared level again"
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: {playbook}/{step} is not demoted");
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// The trust report (its JSON form), one line per step or as JSON.
fn print_report(report: &serde_json::Value, format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(report);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    for r in report.as_array().into_iter().flatten() {
        println!(
            "{}/{} ({}): declared {}, effective {} — {}: {}",
            s(&r["playbook"]),
            s(&r["step"]),
            s(&r["action"]),
            s(&r["declared"]),
            s(&r["effective"]),
            s(&r["recommendation"]),
            s(&r["reason"])
        );
    }
    Ok(())
}
