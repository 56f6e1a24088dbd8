//! `belay approvals`, `belay trust` and `belay replay`: the commands people use to hand work
//! to the machine one step at a time.

use crate::{Ctx, Format};
use anyhow::{Context, Result, anyhow, bail};
use belay_engine::approvals::{self, Directory};
use belay_engine::replay::ReplayReport;
use belay_engine::trust::Thresholds;
use belay_model::{ApprovalRecord, ApprovalStatus, Event, ms_to_rfc3339};
use belay_store::{ApprovalFilter, Store};
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Approvals waiting for a decision (all of them with --all).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One approval: the planned change, the target's state, guardrail verdicts, the record.
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Approve a planned change; the run resumes at once once the quorum is reached.
    Approve(DecideArgs),
    /// Deny a planned change; the run resumes and the step fails.
    Deny(DecideArgs),
}

#[derive(clap::Args)]
pub struct DecideArgs {
    id: String,
    /// Who decides (a user of [[users]] in belay.toml).
    #[arg(long = "as", value_name = "USER")]
    user: String,
    #[arg(long)]
    comment: Option<String>,
    /// Playbook directory for resuming the run (default: `playbooks` in belay.toml).
    #[arg(long)]
    playbooks: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Per playbook step: levels, record, and a recommendation with its reason.
    Report {
        /// Playbook directory (default: `playbooks` in belay.toml).
        #[arg(long)]
        playbooks: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Lift a step's demotion.
    Reset {
        playbook: String,
        step: String,
        #[arg(long = "as", value_name = "USER")]
        user: String,
    },
}

fn directory(ctx: &Ctx) -> Directory {
    Directory::new(
        ctx.config
            .users
            .iter()
            .map(|u| (u.name.clone(), u.roles.clone())),
    )
}

/// Checks a person named with `--as`: when users are configured, it must be one of them.
pub fn known_user(ctx: &Ctx, user: &str) -> Result<()> {
    crate::valid_actor(user)?;
    if !ctx.config.users.is_empty() && !ctx.config.users.iter().any(|u| u.name == user) {
        bail!("unknown user `{user}`; users come from [[users]] in belay.toml");
    }
    Ok(())
}

fn playbook_dir(ctx: &Ctx, given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| ctx.config.playbooks.clone())
}

/// The approval as `approvals list --format json` shows it.
fn approval_json(a: &ApprovalRecord) -> Value {
    json!({
        "id": a.id, "run_id": a.run_id, "playbook": a.playbook, "step": a.key, "action": a.action,
        "with": a.with, "target": a.target, "change_hash": a.change_hash,
        "current_state": a.current_state, "guardrails": a.guardrails, "reason": a.reason,
        "status": a.status, "approvers": a.terms.approvers, "quorum": a.terms.quorum,
        "approvals": a.approvals(), "separation": a.terms.separation,
        "on_timeout": a.terms.on_timeout, "triggered_by": a.triggered_by,
        "votes": a.votes, "history": a.history,
        "created_at": ms_to_rfc3339(a.created_at), "expires_at": ms_to_rfc3339(a.expires_at),
    })
}

/// The step's record, attached to approvals when shown.
async fn history(store: &dyn Store, approvals: &mut [ApprovalRecord]) -> Result<()> {
    if approvals.is_empty() {
        return Ok(());
    }
    let since = belay_model::now_ms() - 30 * 86_400_000;
    let stats = store.trust_stats(since).await?;
    for a in approvals {
        let mut h = json!({ "window": "30d", "runs": 0, "changes": 0, "approvals_granted": 0,
            "approvals_denied": 0, "approvals_expired": 0, "rollbacks": 0, "failures": 0 });
        for s in stats
            .iter()
            .filter(|s| s.playbook == a.playbook && s.step == a.step)
        {
            let key = match (s.kind, s.status.as_str()) {
                ("step", "failed") => Some("failures"),
                ("change", "applied" | "drifted") => Some("changes"),
                ("change", "reverted") => Some("rollbacks"),
                ("approval", "approved") => Some("approvals_granted"),
                ("approval", "denied") => Some("approvals_denied"),
                ("approval", "expired") => Some("approvals_expired"),
                _ => None,
            };
            if s.kind == "step" {
                h["runs"] = json!(h["runs"].as_u64().unwrap_or(0) + s.count);
            }
            if let Some(k) = key {
                h[k] = json!(h[k].as_u64().unwrap_or(0) + s.count);
            }
        }
        a.history = h;
    }
    Ok(())
}

/// Resumes the runs that decisions made resumable, when the playbooks are at hand.
async fn resume(ctx: &Ctx, playbooks: Option<PathBuf>) -> Result<Option<Vec<String>>> {
    let Some(dir) = playbook_dir(ctx, playbooks) else {
        return Ok(None);
    };
    let set = ctx.load_playbooks(&[dir])?;
    let engine = ctx.engine(set).await?;
    let before = engine
        .store
        .list_runs(&belay_store::RunFilter {
            status: Some(belay_model::RunStatus::Pending),
            ..Default::default()
        })
        .await?;
    engine.pick_up_decisions().await?;
    let mut resumed = Vec::new();
    for r in before.iter().filter(|r| r.parent_run.is_none()) {
        if let Some(now) = engine.store.get_run(&r.id).await? {
            resumed.push(format!("run {} {}", now.id, now.status));
        }
    }
    Ok(Some(resumed))
}

pub async fn approvals_cmd(ctx: &Ctx, command: ApprovalsCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    // Deadlines pass whether or not anyone is looking: settle them first.
    let expired = approvals::expire_due(&*store).await?;
    match command {
        ApprovalsCommand::List { all, format } => {
            let mut list = store
                .approvals(&ApprovalFilter {
                    status: (!all).then_some(ApprovalStatus::Pending),
                    ..Default::default()
                })
                .await?;
            history(&*store, &mut list).await?;
            if format == Format::Json {
                let v: Vec<Value> = list.iter().map(approval_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if list.is_empty() {
                println!("no approvals {}", if all { "" } else { "waiting" });
            } else {
                for a in &list {
                    println!(
                        "{}  {:<9} {}/{}  {} {}  ({} of {} approvals; expires {})\n    why: {}",
                        a.id,
                        a.status,
                        a.playbook,
                        a.key,
                        a.action,
                        a.target,
                        a.approvals(),
                        a.terms.quorum,
                        ms_to_rfc3339(a.expires_at),
                        a.reason
                    );
                }
            }
            if !expired.is_empty() {
                eprintln!(
                    "{} approval(s) expired; their runs resume with the step's on_timeout",
                    expired.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, format } => {
            let a = store
                .get_approval(&id)
                .await?
                .ok_or_else(|| anyhow!("no approval `{id}`"))?;
            let mut one = [a];
            history(&*store, &mut one).await?;
            let v = approval_json(&one[0]);
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let a = &one[0];
                println!("approval {} ({})", a.id, a.status);
                println!("  run       {} ({}/{})", a.run_id, a.playbook, a.key);
                println!("  change    {} {}", a.action, a.with);
                println!("  target    {} now {}", a.target, a.current_state);
                println!("  hash      {}", a.change_hash);
                println!("  why       {}", a.reason);
                println!("  verdicts  {}", a.guardrails);
                println!(
                    "  needs     {} of {} ({}){}; expires {} (then {})",
                    a.approvals(),
                    a.terms.quorum,
                    if a.terms.approvers.is_empty() {
                        "responder or admin".to_owned()
                    } else {
                        a.terms.approvers.join(", ")
                    },
                    if a.terms.separation {
                        ", separation of duties"
                    } else {
                        ""
                    },
                    ms_to_rfc3339(a.expires_at),
                    a.terms.on_timeout
                );
                println!("  record    {}", a.history);
                for vote in &a.votes {
                    println!(
                        "  {} {} at {}{}",
                        if vote.approve {
                            "approved by"
                        } else {
                            "denied by"
                        },
                        vote.user,
                        ms_to_rfc3339(vote.at),
                        vote.comment
                            .as_deref()
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve(args) => decide(ctx, &*store, args, true).await,
        ApprovalsCommand::Deny(args) => decide(ctx, &*store, args, false).await,
    }
}

async fn decide(ctx: &Ctx, store: &dyn Store, args: DecideArgs, approve: bool) -> Result<ExitCode> {
    crate::valid_actor(&args.user)?;
    let dir = directory(ctx);
    if dir.is_empty() {
        bail!(
            "no users are configured: add [[users]] tables with `name` and `roles` to belay.toml"
        );
    }
    let a = match approvals::decide(store, &dir, &args.id, &args.user, approve, args.comment).await
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    match a.status {
        ApprovalStatus::Pending => {
            println!(
                "approval {} recorded for {}: {} of {} approvals; waiting for more",
                a.id,
                args.user,
                a.approvals(),
                a.terms.quorum
            );
            return Ok(ExitCode::SUCCESS);
        }
        s => println!("approval {} {s} by {}", a.id, args.user),
    }
    match resume(ctx, args.playbooks).await? {
        Some(runs) => {
            for r in runs {
                println!("resumed {r}");
            }
        }
        None => println!(
            "run {} resumes with the next `belay ingest` (give --playbooks DIR to resume it now)",
            a.run_id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn trust_cmd(ctx: &Ctx, command: TrustCommand) -> Result<ExitCode> {
    match command {
        TrustCommand::Report { playbooks, format } => {
            let dir = playbook_dir(ctx, playbooks).ok_or_else(|| {
                anyhow!("give the playbook directory with --playbooks DIR (or `playbooks` in belay.toml)")
            })?;
            let set = ctx.load_playbooks(&[dir])?;
            let engine = ctx.engine(set).await?;
            let mut t = Thresholds::default();
            if let Some(w) = &ctx.config.trust.window {
                t.window = humantime::parse_duration(w)
                    .with_context(|| format!("[trust] window `{w}`"))?;
            }
            if let Some(n) = ctx.config.trust.promote_to_log_after {
                t.promote_to_log = n;
            }
            if let Some(n) = ctx.config.trust.promote_to_guarded_after {
                t.promote_to_guarded = n;
            }
            let report = belay_engine::trust::report(&engine, &t).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
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
            known_user(ctx, &user)?;
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

/// Runs one playbook in shadow over past events and reports what it would have done.
pub async fn replay(ctx: &Ctx, playbook: &Path, events: &Path, format: Format) -> Result<ExitCode> {
    let dir = crate::parent_dir(playbook);
    let mut paths = vec![dir];
    if playbook.is_file() {
        paths.push(playbook.to_owned());
    }
    let parsed = belay_playbook::Playbook::load(playbook).map_err(|d| {
        anyhow!(
            "{}",
            d.iter()
                .map(|d| format!("{}:{d}", playbook.display()))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let set = ctx.load_playbooks(&crate::dedup_paths(paths))?;
    let pb = set
        .get(&parsed.name)
        .ok_or_else(|| anyhow!("playbook `{}` did not load", parsed.name))?;
    let text = std::fs::read_to_string(events)
        .with_context(|| format!("cannot read {}", events.display()))?;
    let engine = ctx.engine(set).await?;
    let mut report = ReplayReport::new(&pb.name);
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", events.display(), n + 1))?;
        let event =
            Event::from_json(value).map_err(|e| anyhow!("{}:{}: {e}", events.display(), n + 1))?;
        report.push(engine.replay(&pb, event).await?);
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for e in &report.events {
            let Some(run) = &e.run else {
                println!("{}: not triggered", e.event_id);
                continue;
            };
            println!("{}:", e.event_id);
            for c in &run.changes {
                println!(
                    "  {} {} {} — would {}{}",
                    c.step,
                    c.action,
                    c.with,
                    c.would.as_str(),
                    c.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
        }
        let t = &report.total;
        println!(
            "replay of {} over {} event(s): {} change(s) would apply, {} would need approval, {} would be held and {} denied by guardrails; {} event(s) did not trigger it",
            report.playbook,
            t.events,
            t.changes,
            t.approvals,
            t.guardrail_holds,
            t.guardrail_denials,
            t.not_triggered
        );
    }
    Ok(ExitCode::SUCCESS)
}
