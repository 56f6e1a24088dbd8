//! `belay pause [PLAYBOOK]` and `belay unpause [PLAYBOOK]`: an admin pauses all automation or
//! one playbook. While paused, change steps are recorded as shadow (planned, not applied) by
//! every process sharing the store; both switches are audited with who and why.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Result, bail};
use belay_model::ms_to_rfc3339;
use belay_store::{PauseRecord, Store};
use clap::Args as ClapArgs;
use std::process::ExitCode;

/// `belay pause`.
#[derive(ClapArgs)]
pub struct PauseArgs {
    /// The playbook to pause; without it, all automation.
    pub playbook: Option<String>,
    /// Who pauses (an admin when users are configured); the local CLI only — through a server
    /// the actor is the token's principal.
    #[arg(long = "as", value_name = "USER")]
    pub actor: Option<String>,
    /// Why (recorded in the audit trail).
    #[arg(long, value_name = "TEXT", required_unless_present = "list")]
    pub reason: Option<String>,
    /// Only list the pauses in force.
    #[arg(long, conflicts_with_all = ["playbook", "actor", "reason"])]
    pub list: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `belay unpause` (alias `resume-automation`).
#[derive(ClapArgs)]
pub struct UnpauseArgs {
    /// The playbook whose pause to lift; without it, the pause of all automation.
    pub playbook: Option<String>,
    /// Who resumes (an admin when users are configured); the local CLI only — through a
    /// server the actor is the token's principal.
    #[arg(long = "as", value_name = "USER")]
    pub actor: Option<String>,
    /// Why (recorded in the audit trail).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
}

fn scope(playbook: &Option<String>) -> String {
    match playbook {
        Some(p) => format!("playbook `{p}`"),
        None => "all automation".into(),
    }
}

/// `belay pause` / `belay unpause` through a server, as the token's principal.
async fn switch_remote(
    remote: &crate::remote::Remote,
    pause: bool,
    playbook: Option<String>,
    reason: Option<String>,
) -> Result<ExitCode> {
    let path = if pause {
        "/api/v1/pause"
    } else {
        "/api/v1/unpause"
    };
    let v = remote
        .post(
            path,
            &serde_json::json!({ "playbook": playbook, "reason": reason }),
        )
        .await?;
    if pause {
        println!(
            "{} paused by {}: change steps are recorded as shadow, not applied, until `belay unpause{}`",
            scope(&playbook),
            v["paused"]["paused_by"].as_str().unwrap_or("?"),
            playbook
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if v["lifted"] == true {
        println!("{} resumed", scope(&playbook));
    } else {
        println!("{} was not paused", scope(&playbook));
    }
    for p in v["pauses"].as_array().into_iter().flatten() {
        println!(
            "still paused: {} (by {}: {})",
            scope(&p["playbook"].as_str().map(str::to_owned)),
            p["paused_by"].as_str().unwrap_or("?"),
            p["reason"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `belay pause`.
pub async fn pause(ctx: &Ctx, args: PauseArgs) -> Result<ExitCode> {
    if let Some(remote) = &ctx.remote {
        crate::remote::refuse_as(&args.actor)?;
        if !args.list {
            return switch_remote(remote, true, args.playbook, args.reason).await;
        }
        let v = remote.get("/api/v1/pauses", &[]).await?;
        let pauses: Vec<PauseRecord> = serde_json::from_value(v["pauses"].clone())?;
        return print_pauses(&pauses, args.format);
    }
    let store = ctx.store().await?;
    if args.list {
        let pauses = store.pauses().await?;
        return print_pauses(&pauses, args.format);
    }
    let (Some(actor), Some(reason)) = (args.actor, args.reason) else {
        bail!("belay pause needs --as USER and --reason TEXT (or --server URL with a token)");
    };
    pause_local(ctx, &*store, args.playbook, actor, reason).await
}

fn print_pauses(pauses: &[PauseRecord], format: Format) -> Result<ExitCode> {
    if format == Format::Json {
        print_json(&pauses)?;
    } else if pauses.is_empty() {
        println!("automation is not paused");
    } else {
        for p in pauses {
            println!(
                "{} paused by {} at {}: {}",
                scope(&p.playbook),
                p.paused_by,
                ms_to_rfc3339(p.paused_at),
                p.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn pause_local(
    ctx: &Ctx,
    store: &dyn Store,
    playbook: Option<String>,
    actor: String,
    reason: String,
) -> Result<ExitCode> {
    if reason.trim().is_empty() {
        bail!("--reason needs a few words saying why");
    }
    if playbook.as_deref().is_some_and(|p| p == "*") {
        bail!("name a playbook, or leave it out to pause all automation");
    }
    crate::actor::require_admin(ctx, store, &actor, "pause or resume automation").await?;
    let record = PauseRecord {
        playbook,
        paused_by: actor,
        reason,
        paused_at: belay_model::now_ms(),
    };
    store.pause(&record).await?;
    println!(
        "{} paused: change steps are recorded as shadow, not applied, until `belay unpause{}`",
        scope(&record.playbook),
        record
            .playbook
            .as_deref()
            .map(|p| format!(" {p}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `belay unpause`.
pub async fn unpause(ctx: &Ctx, args: UnpauseArgs) -> Result<ExitCode> {
    if let Some(remote) = &ctx.remote {
        crate::remote::refuse_as(&args.actor)?;
        return switch_remote(remote, false, args.playbook, Some(args.reason)).await;
    }
    let actor = crate::remote::local_actor(args.actor, "resumes automation")?;
    let store = ctx.store().await?;
    crate::actor::require_admin(ctx, &*store, &actor, "pause or resume automation").await?;
    let lifted = store
        .unpause(args.playbook.as_deref(), &actor, &args.reason)
        .await?;
    if lifted {
        println!("{} resumed", scope(&args.playbook));
    } else {
        println!("{} was not paused", scope(&args.playbook));
    }
    for p in store.pauses().await? {
        println!(
            "still paused: {} (by {}: {})",
            scope(&p.playbook),
            p.paused_by,
            p.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
