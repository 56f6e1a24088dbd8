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
    #[arg(long = "as", value_name = "USER", required_unless_present = "list")]
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
    /// Who resumes (an admin when users are configured).
    #[arg(long = "as", value_name = "USER")]
    pub actor: String,
    /// Why (recorded in the audit trail).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
}

/// Checks that `user` may switch automation: when users are configured (in `belay.toml` or
/// the store's directory), they must hold the `admin` role.
async fn may_switch(ctx: &Ctx, store: &dyn Store, user: &str) -> Result<()> {
    crate::actor::valid_actor(user)?;
    let configured = ctx.config.users.iter().find(|u| u.name == user);
    let stored = store.get_user(user).await?;
    let roles: Option<Vec<String>> = configured
        .map(|u| u.roles.clone())
        .or_else(|| stored.as_ref().map(|u| u.roles.clone()));
    let directory = !ctx.config.users.is_empty() || !store.users().await?.is_empty();
    match roles {
        None if directory => bail!("unknown user `{user}`"),
        Some(r) if !r.iter().any(|r| r == "admin") => bail!(
            "{user} may not pause or resume automation: it needs the admin role (their roles: {})",
            if r.is_empty() {
                "none".into()
            } else {
                r.join(", ")
            }
        ),
        _ => Ok(()),
    }
}

fn scope(playbook: &Option<String>) -> String {
    match playbook {
        Some(p) => format!("playbook `{p}`"),
        None => "all automation".into(),
    }
}

/// Runs `belay pause`.
pub async fn pause(ctx: &Ctx, args: PauseArgs) -> Result<ExitCode> {
    let store = ctx.store().await?;
    if args.list {
        let pauses = store.pauses().await?;
        if args.format == Format::Json {
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
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(actor), Some(reason)) = (args.actor, args.reason) else {
        bail!("belay pause needs --as USER and --reason TEXT");
    };
    if reason.trim().is_empty() {
        bail!("--reason needs a few words saying why");
    }
    if args.playbook.as_deref().is_some_and(|p| p == "*") {
        bail!("name a playbook, or leave it out to pause all automation");
    }
    may_switch(ctx, &*store, &actor).await?;
    let record = PauseRecord {
        playbook: args.playbook,
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
    let store = ctx.store().await?;
    may_switch(ctx, &*store, &args.actor).await?;
    let lifted = store
        .unpause(args.playbook.as_deref(), &args.actor, &args.reason)
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
