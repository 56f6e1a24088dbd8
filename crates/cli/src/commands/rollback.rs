//! `belay rollback`: undoes changes, newest first, each target read again and verified.
//!
//! Glue only: what is undone and how is `belay_engine::rollback`; this chooses the selection
//! from the flags and prints the outcome.

use crate::actor::{known_user, may_change};
use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result, bail};
use belay_playbook::PlaybookSet;
use std::process::ExitCode;

/// `belay rollback (--change ID | --run ID | --to CHECKPOINT | --since TIME) --as USER`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  belay rollback --run RUN_ID --dry-run --as alice      # the preview: what would be reverted\n  belay rollback --run RUN_ID --as alice\n  belay rollback --to known-good --as alice             # everything after a checkpoint"
)]
pub struct Args {
    #[command(flatten)]
    select: RollbackSelect,
    /// Report what would be undone; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Undo targets that changed since the change (drift) too.
    #[arg(long)]
    force: bool,
    /// Who is rolling back (recorded in the journal and the audit trail).
    #[arg(long = "as", value_name = "USER")]
    actor: String,
    /// Output: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct RollbackSelect {
    /// One change.
    #[arg(long)]
    change: Option<String>,
    /// Every change of a run (and its sub-playbook runs).
    #[arg(long)]
    run: Option<String>,
    /// Every change after a checkpoint.
    #[arg(long = "to", value_name = "CHECKPOINT")]
    to: Option<String>,
    /// Every change at or after an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
}

/// Runs `belay rollback`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let Args {
        select: s,
        dry_run,
        force,
        actor,
        format,
    } = args;
    use belay_engine::rollback::{Outcome, RollbackOptions, Selection};
    if dry_run {
        known_user(ctx, &actor)?; // a preview changes nothing: anyone known may look
    } else {
        may_change(ctx, &actor, "roll back")?;
    }
    let store = ctx.store().await?;
    let selection = match (s.change, s.run, s.to, s.since) {
        (Some(c), ..) => {
            Selection::Change(crate::ids::resolve(&*store, belay_store::IdKind::Change, &c).await?)
        }
        (_, Some(r), ..) => {
            Selection::Run(crate::ids::resolve(&*store, belay_store::IdKind::Run, &r).await?)
        }
        (_, _, Some(t), _) => Selection::Checkpoint(t),
        (_, _, _, Some(t)) => Selection::Since(
            chrono::DateTime::parse_from_rfc3339(&t)
                .with_context(|| format!("--since `{t}` is not an RFC 3339 time"))?
                .timestamp_millis(),
        ),
        _ => bail!("choose what to roll back: --change, --run, --to or --since"),
    };
    let engine = ctx.engine(PlaybookSet::default()).await?;
    let report = belay_engine::rollback::rollback(
        &engine,
        selection,
        RollbackOptions {
            dry_run,
            force,
            actor,
        },
    )
    .await?;
    if format == Format::Json {
        print_json(&report)?;
    } else if report.items.is_empty() && report.already_reverted > 0 {
        println!(
            "nothing to roll back: the {} selected change(s) were already reverted \
             (`belay changes list` shows by which rollback)",
            report.already_reverted
        );
    } else {
        for i in &report.items {
            let o = serde_json::to_value(i.outcome)?
                .as_str()
                .unwrap_or_default()
                .to_owned();
            println!(
                "{o:<13} {} {} {}  ({})",
                i.action, i.target, i.change_id, i.detail
            );
        }
        println!(
            "{} reverted, {} unchanged, {} kept (irreversible), {} drifted, {} failed{}",
            report.count(Outcome::Reverted),
            report.count(Outcome::Unchanged),
            report.count(Outcome::Irreversible),
            report.count(Outcome::Drifted),
            report.count(Outcome::Failed),
            if dry_run {
                format!(
                    ", {} would be reverted (dry run)",
                    report.count(Outcome::WouldRevert)
                )
            } else {
                String::new()
            }
        );
        if let Some(r) = &report.rollback_run {
            println!("rollback run {r} (roll it back to redo)");
        }
        for (playbook, step) in &report.demoted {
            println!(
                "step `{step}` of playbook `{playbook}` is demoted to `approve`: its changes wait                  for a person until `belay trust reset {playbook} {step} --as USER`"
            );
        }
    }
    let bad = report.count(Outcome::Failed) + report.count(Outcome::Drifted);
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
