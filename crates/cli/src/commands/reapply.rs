//! `belay reapply`: puts a system that lost its state (e.g. Unbound after a restart) back
//! into the state the journal says, issuing every applied change of a family again in order.
//!
//! Glue only: `belay_engine::reapply` re-issues; this checks who asks and prints the outcome.

use crate::actor::{may_change, valid_actor};
use crate::context::Ctx;
use anyhow::Result;
use belay_playbook::PlaybookSet;
use std::process::ExitCode;

/// `belay reapply FAMILY --as USER`.
#[derive(clap::Args)]
pub struct Args {
    /// The action family, e.g. `dns`.
    family: String,
    /// Who asks (recorded in the audit trail).
    #[arg(long = "as", value_name = "USER")]
    actor: String,
}

/// Runs `belay reapply`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let Args { family, actor } = args;
    valid_actor(&actor)?;
    may_change(ctx, &actor, "re-apply the journal")?;
    let engine = ctx.engine(PlaybookSet::default()).await?;
    let done = belay_engine::reapply::reapply(&engine, &family, &actor).await?;
    let restored = done.iter().filter(|r| r.restored).count();
    let failed = done.iter().filter(|r| r.error.is_some()).count();
    for r in &done {
        let what = match (&r.error, r.restored) {
            (Some(e), _) => format!("failed: {e}"),
            (None, true) => "restored".into(),
            (None, false) => "already in place".into(),
        };
        println!("{:<24} {:<40} {what}", r.action, r.target);
    }
    println!(
        "{} change(s) re-issued: {restored} restored, {} already in place, {failed} failed",
        done.len(),
        done.len() - restored - failed
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
