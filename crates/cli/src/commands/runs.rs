//! `belay runs list|show`: recent runs, and one run with its steps.
//!
//! Read-only: it never starts, resumes or changes a run.

use crate::context::Ctx;
use crate::output::{Format, ShowArgs, print_json, print_report_text, report_json};
use anyhow::{Result, anyhow};
use belay_engine::RunReport;
use belay_model::{RunRecord, RunStatus, StepRecord};
use belay_store::RunFilter;
use clap::Subcommand;
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
    match command {
        RunsCommand::Resume { playbooks } => resume(ctx, playbooks).await,
        RunsCommand::List {
            status,
            playbook,
            limit,
            format,
        } => {
            let runs = match &ctx.remote {
                Some(remote) => list_remote(remote, status, playbook, limit).await?,
                None => {
                    let status = status
                        .map(|s| s.parse::<RunStatus>().map_err(|e| anyhow!(e)))
                        .transpose()?;
                    ctx.store()
                        .await?
                        .list_runs(&RunFilter {
                            status,
                            playbook,
                            event_id: None,
                            limit: Some(limit),
                            before: None,
                        })
                        .await?
                }
            };
            print_runs(&runs, format)?;
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show(ShowArgs { id, format }) => {
            let (run, steps, version) = match &ctx.remote {
                Some(remote) => {
                    let v = remote.get(&format!("/api/v1/runs/{id}"), &[]).await?;
                    (
                        serde_json::from_value::<RunRecord>(v["run"].clone())?,
                        serde_json::from_value::<Vec<StepRecord>>(v["steps"].clone())?,
                        v["playbook_version"].clone(),
                    )
                }
                None => {
                    let store = ctx.store().await?;
                    let id = crate::ids::resolve(&*store, belay_store::IdKind::Run, &id).await?;
                    let run = store
                        .get_run(&id)
                        .await?
                        .ok_or_else(|| anyhow!("no run `{id}`"))?;
                    let steps = store.steps(&id).await?;
                    let version = belay_engine::version_info(&*store, &run).await?;
                    (run, steps, version)
                }
            };
            let report = RunReport::from_records(&run, &steps);
            if format == Format::Json {
                let mut out = report_json(&report);
                out["playbook_version"] = version;
                print_json(&out)?;
            } else {
                print_report_text(&report);
                let stored = version["stored"] == true;
                println!(
                    "  playbook version {} ({})",
                    run.playbook_hash,
                    if stored {
                        "stored: resumes with exactly this version"
                    } else {
                        "not stored: recorded before versions were kept, resumes only where this version is loaded"
                    }
                );
                if let Some(set) = version["guardrail_set"].as_str() {
                    let files: Vec<&str> = version["guardrail_files"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f[0].as_str())
                        .collect();
                    println!(
                        "  guardrail set {set} ({}; stored with the version)",
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

/// Runs from the server, newest first, page after page until `limit`.
async fn list_remote(
    remote: &crate::remote::Remote,
    status: Option<String>,
    playbook: Option<String>,
    limit: usize,
) -> Result<Vec<RunRecord>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    while out.len() < limit {
        let mut q = vec![("limit", (limit - out.len()).min(500).to_string())];
        if let Some(s) = &status {
            q.push(("status", s.clone()));
        }
        if let Some(p) = &playbook {
            q.push(("playbook", p.clone()));
        }
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = remote.get("/api/v1/runs", &q).await?;
        out.extend(serde_json::from_value::<Vec<RunRecord>>(
            page["runs"].clone(),
        )?);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    Ok(out)
}

fn print_runs(runs: &[RunRecord], format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(&runs);
    }
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
    let waiting = runs
        .iter()
        .filter(|r| r.status == RunStatus::WaitingApproval)
        .count();
    if waiting > 0 {
        eprintln!(
            "{waiting} run(s) wait for a decision (`belay approvals list`); once \
             decided or expired they finish in `belay serve`, `belay ingest` or \
             `belay runs resume`"
        );
    }
    Ok(())
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
