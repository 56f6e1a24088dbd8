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
            if format == Format::Json {
                print_json(&report)?;
            } else {
                for r in &report {
                    println!(
                        "{}/{} ({}): declared {}, effective {} — {}: {}",
                        r.playbook,
                        r.step,
                        r.action,
                        r.declared,
                        r.effective,
                        r.recommendation,
                        r.reason
                    );
                }
            }
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
