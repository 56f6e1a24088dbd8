//! `belay runs list|show`: recent runs, and one run with its steps.
//!
//! Read-only: it never starts, resumes or changes a run.

use crate::context::Ctx;
use crate::output::{Format, ShowArgs, print_json, print_report_text, report_json};
use anyhow::{Result, anyhow};
use belay_engine::RunReport;
use belay_model::RunStatus;
use belay_store::RunFilter;
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;

/// `belay runs …`.
#[derive(Subcommand)]
pub enum RunsCommand {
    /// Recent runs, newest first.
    List {
        /// Only runs in this status.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
            RunStatus::ALL.iter().map(|s| s.as_str())
        ))]
        status: Option<String>,
        #[arg(long)]
        playbook: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One run with its steps.
    Show(ShowArgs),
}

/// Runs `belay runs …`.
pub async fn run(ctx: &Ctx, command: RunsCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        RunsCommand::List {
            status,
            playbook,
            limit,
            format,
        } => {
            let status = status
                .map(|s| s.parse::<RunStatus>().map_err(|e| anyhow!(e)))
                .transpose()?;
            let runs = store
                .list_runs(&RunFilter {
                    status,
                    playbook,
                    event_id: None,
                    limit: Some(limit),
                    before: None,
                })
                .await?;
            if format == Format::Json {
                print_json(&runs)?;
            } else {
                println!(
                    "{:<38} {:<24} {:<17} {:<24} EVENT",
                    "RUN", "PLAYBOOK", "STATUS", "CREATED"
                );
                for r in runs {
                    // A dry run applied nothing: its status says what would have happened.
                    let status = if r.event_id.starts_with(belay_engine::replay::REPLAY_PREFIX) {
                        format!("{} (replay)", r.status.as_str())
                    } else if r.dry_run {
                        format!("{} (dry run)", r.status.as_str())
                    } else {
                        r.status.as_str().to_owned()
                    };
                    println!(
                        "{:<38} {:<24} {:<17} {:<24} {}",
                        r.id,
                        r.playbook,
                        status,
                        belay_model::ms_to_rfc3339(r.created_at),
                        r.event_id
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show(ShowArgs { id, format }) => {
            let run = store
                .get_run(&id)
                .await?
                .ok_or_else(|| anyhow!("no run `{id}`"))?;
            let steps = store.steps(&id).await?;
            let report = RunReport::from_records(&run, &steps);
            // The playbook version it runs with: a resumed run uses exactly the stored one.
            let stored = if run.playbook.starts_with("belay:") {
                None
            } else {
                store.playbook_version(&run.playbook_hash).await?
            };
            let guardrails = match stored.as_ref().map(|v| &v.guardrails_hash) {
                Some(h) if !h.is_empty() => store.guardrail_set(h).await?,
                _ => None,
            };
            let files: Vec<&str> = guardrails
                .iter()
                .flat_map(|g| g.files.iter().map(|(name, _)| name.as_str()))
                .collect();
            let version = json!({
                "hash": run.playbook_hash,
                "stored": stored.is_some(),
                "guardrails_hash": stored.as_ref().map(|v| v.guardrails_hash.clone()),
                "guardrail_files": guardrails.as_ref().map(|g| json!(g.files)),
                "calls": stored.as_ref().map(|v| json!(v.calls)),
            });
            if format == Format::Json {
                let mut out = report_json(&report);
                out["playbook_version"] = version;
                print_json(&out)?;
            } else {
                print_report_text(&report);
                println!(
                    "  playbook version {} ({})",
                    run.playbook_hash,
                    if stored.is_some() {
                        "stored: resumes with exactly this version"
                    } else {
                        "not stored: recorded before versions were kept, resumes only where this version is loaded"
                    }
                );
                if let Some(g) = &guardrails {
                    println!(
                        "  guardrail set {} ({}; stored with the version)",
                        g.hash,
                        if files.is_empty() {
                            "no files".to_owned()
                        } else {
                            files.join(", ")
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
