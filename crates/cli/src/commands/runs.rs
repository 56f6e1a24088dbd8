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
        /// Only runs of this playbook.
        #[arg(long)]
        playbook: Option<String>,
        /// At most this many runs, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One run with its steps.
    Show(ShowArgs),
    /// Finish what is left unfinished: runs whose approval was decided or expired, and runs a
    /// stopped or crashed belay left behind; each with the playbook version it started with.
    /// Runs still waiting for a person are listed with the approval they wait for.
    #[command(
        after_help = "Examples:\n  belay runs resume\n  belay runs resume --playbooks playbooks/   # runs from before versions were stored"
    )]
    Resume {
        /// Playbook directory, only for runs recorded before playbook versions were stored
        /// (default: `playbooks` in belay.toml).
        #[arg(long)]
        playbooks: Option<std::path::PathBuf>,
    },
}

/// Runs `belay runs …`.
pub async fn run(ctx: &Ctx, command: RunsCommand) -> Result<ExitCode> {
    if let RunsCommand::Resume { playbooks } = command {
        return resume(ctx, playbooks).await;
    }
    let store = ctx.store().await?;
    match command {
        RunsCommand::Resume { .. } => unreachable!("handled above"),
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
            let id = crate::ids::resolve(&*store, belay_store::IdKind::Run, &id).await?;
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

/// `belay runs resume`: decided and stranded runs are finished here and now, each reported with
/// the status it ends in; runs still waiting name their approval.
async fn resume(ctx: &Ctx, playbooks: Option<std::path::PathBuf>) -> Result<ExitCode> {
    let set = match crate::paths::playbook_dir(ctx, playbooks) {
        Some(dir) if dir.exists() => ctx.load_playbooks(&[dir])?,
        _ => belay_playbook::PlaybookSet::default(),
    };
    let engine = ctx.engine(set).await?;
    let mut open = Vec::new();
    for status in [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::WaitingApproval,
    ] {
        open.extend(
            engine
                .store
                .list_runs(&RunFilter {
                    status: Some(status),
                    ..Default::default()
                })
                .await?,
        );
    }
    open.retain(|r| r.parent_run.is_none());
    let decided = engine.pick_up_decisions().await?;
    let stranded = engine.resume(&mut |_| {}).await?;
    let (mut failed, mut waiting) = (false, 0);
    for r in &open {
        let Some(now) = engine.store.get_run(&r.id).await? else {
            continue;
        };
        if now.status == RunStatus::WaitingApproval {
            let pending = engine
                .store
                .approvals(&belay_store::ApprovalFilter {
                    run_id: Some(now.id.clone()),
                    status: Some(belay_model::ApprovalStatus::Pending),
                })
                .await?;
            let ids: Vec<&str> = pending.iter().map(|a| a.id.as_str()).collect();
            waiting += 1;
            println!(
                "run {} ({}) still waits for approval {}",
                now.id,
                now.playbook,
                if ids.is_empty() {
                    "-".to_owned()
                } else {
                    ids.join(", ")
                }
            );
            continue;
        }
        failed |= matches!(now.status, RunStatus::Failed | RunStatus::Denied);
        println!(
            "run {} ({}) {}{}",
            now.id,
            now.playbook,
            now.status.as_str(),
            now.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    println!(
        "{decided} run(s) resumed after a decision, {stranded} stranded run(s) resumed; {waiting} still waiting for a person"
    );
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
