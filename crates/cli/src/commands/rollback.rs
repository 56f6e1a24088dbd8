//! `belay rollback`: undoes changes, newest first, each target read again and verified.
//!
//! Glue only: what is undone and how is `belay_engine::rollback`; this chooses the selection
//! from the flags and prints the outcome.

use crate::actor::{known_user, may_change};
use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result, bail};
use belay_playbook::PlaybookSet;
use serde_json::Value;
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
    /// Who is rolling back (recorded in the journal and the audit trail); the local CLI only —
    /// through --server the actor is the token's principal.
    #[arg(long = "as", value_name = "USER")]
    actor: Option<String>,
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
    let report = match &ctx.remote {
        Some(remote) => {
            crate::remote::refuse_as(&actor)?;
            remote
                .post(
                    "/api/v1/rollback",
                    &serde_json::json!({ "change": s.change, "run": s.run, "to": s.to,
                        "since": s.since, "dry_run": dry_run, "force": force }),
                )
                .await?
        }
        None => serde_json::to_value(local(ctx, s, dry_run, force, actor).await?)?,
    };
    print_report(&report, dry_run, format)
}

/// Rolls back with the local store, as `--as`.
async fn local(
    ctx: &Ctx,
    s: RollbackSelect,
    dry_run: bool,
    force: bool,
    actor: Option<String>,
) -> Result<belay_engine::rollback::Report> {
    use belay_engine::rollback::{RollbackOptions, Selection};
    let actor = crate::remote::local_actor(actor, "rolls back")?;
    if dry_run {
        known_user(ctx, &actor)?; // a preview changes nothing: anyone known may look
    } else {
        may_change(ctx, &actor, "roll back")?;
    }
    if force {
        may_force(ctx, &actor)?;
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
    Ok(belay_engine::rollback::rollback(
        &engine,
        selection,
        RollbackOptions {
            dry_run,
            force,
            actor,
        },
    )
    .await?)
}

/// `--force` undoes targets that drifted: when users are configured, only an admin may.
fn may_force(ctx: &Ctx, actor: &str) -> Result<()> {
    match ctx.config.users.iter().find(|u| u.name == actor) {
        Some(u) if !u.roles.iter().any(|r| r == "admin") => {
            bail!("{actor} may not force a rollback over drift: it needs the admin role")
        }
        _ => Ok(()),
    }
}

/// Prints a rollback report (its JSON form); exit 1 when a change drifted or failed.
fn print_report(report: &Value, dry_run: bool, format: Format) -> Result<ExitCode> {
    let items = report["items"].as_array().cloned().unwrap_or_default();
    let count = |o: &str| items.iter().filter(|i| i["outcome"] == o).count();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let already = report["already_reverted"].as_u64().unwrap_or(0);
    if format == Format::Json {
        print_json(report)?;
    } else if items.is_empty() && already > 0 {
        println!(
            "nothing to roll back: the {already} selected change(s) were already reverted \
             (`belay changes list` shows by which rollback)"
        );
    } else {
        for i in &items {
            println!(
                "{:<13} {} {} {}  ({})",
                s(&i["outcome"]),
                s(&i["action"]),
                s(&i["target"]),
                s(&i["change_id"]),
                s(&i["detail"])
            );
        }
        println!(
            "{} reverted, {} unchanged, {} kept (irreversible), {} drifted, {} failed{}",
            count("reverted"),
            count("unchanged"),
            count("irreversible"),
            count("drifted"),
            count("failed"),
            if dry_run {
                format!(", {} would be reverted (dry run)", count("would_revert"))
            } else {
                String::new()
            }
        );
        if let Some(r) = report["rollback_run"].as_str() {
            println!("rollback run {r} (roll it back to redo)");
        }
        for d in report["demoted"].as_array().into_iter().flatten() {
            let (playbook, step) = (s(&d[0]), s(&d[1]));
            println!(
                "step `{step}` of playbook `{playbook}` is demoted to `approve`: its changes wait for a person until `belay trust reset {playbook} {step} --as USER`"
            );
        }
    }
    Ok(if count("failed") + count("drifted") > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
