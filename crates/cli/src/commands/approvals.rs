//! `belay approvals list|show|approve|deny`: the planned changes waiting for a person, and
//! their decisions.
//!
//! Glue only: quorum, roles and separation of duties are decided in `belay_engine::approvals`,
//! never here.

use crate::actor::valid_actor;
use crate::context::Ctx;
use crate::output::{Format, ListArgs, ShowArgs, joined_or, print_json, print_list};
use crate::paths::playbook_dir;
use anyhow::{Result, anyhow, bail};
use belay_engine::approvals::{self, Directory};
use belay_model::{ApprovalStatus, ms_to_rfc3339};
use belay_playbook::PlaybookSet;
use belay_store::{ApprovalFilter, Store};
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay approvals …`.
#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Approvals waiting for a decision (all of them with --all).
    List(ListArgs),
    /// One approval: the planned change, the target's state, guardrail verdicts, the record.
    Show(ShowArgs),
    /// Approve a planned change; the run resumes at once once the quorum is reached.
    #[command(
        after_help = "Examples:\n  belay approvals approve 01a24865 --as alice --comment \"known bad\"\n  belay approvals approve 01a24865 --as alice --without block[3],block[7]   # a held batch without two items"
    )]
    Approve(DecideArgs),
    /// Deny a planned change; the run resumes and the step fails.
    Deny(DecideArgs),
}

/// `approvals approve|deny ID --as USER`.
#[derive(clap::Args)]
pub struct DecideArgs {
    id: String,
    /// Who decides (a user of [[users]] in belay.toml, or stored with `belay users add`); the
    /// local CLI only — through --server the decider is the token's principal.
    #[arg(long = "as", value_name = "USER")]
    user: Option<String>,
    /// Why, in words; kept with the vote in the audit trail.
    #[arg(long)]
    comment: Option<String>,
    /// Approve a held batch without these items (their keys, `block[3]`, or indices, `3`;
    /// repeat or separate with commas): they are denied by you, the rest go ahead.
    /// `belay approvals show ID` lists the items.
    #[arg(long, value_name = "ITEM", value_delimiter = ',')]
    without: Vec<String>,
    /// Playbook directory, only for runs recorded before playbook versions were stored
    /// (default: `playbooks` in belay.toml); a run resumes with its own stored version.
    #[arg(long)]
    playbooks: Option<PathBuf>,
}

/// `[[users]]` of belay.toml and the users stored with `belay users add`: one directory.
async fn directory(ctx: &Ctx, store: &dyn Store) -> Result<Directory> {
    let configured = ctx
        .config
        .users
        .iter()
        .map(|u| (u.name.clone(), u.roles.clone()));
    Ok(belay_server::auth::directory(store, configured).await?)
}

/// Resumes the runs that decisions made resumable, each with the playbook version it was
/// planned with, as stored with it. The playbook folder (given, or configured) is loaded when
/// there is one: for runs recorded before versions were stored, and for sub-playbooks a run
/// has not started yet. `Err` lists the runs that cannot resume here (they stay pending).
async fn resume(
    ctx: &Ctx,
    playbooks: Option<PathBuf>,
) -> Result<std::result::Result<Vec<String>, Vec<String>>> {
    let set = match playbook_dir(ctx, playbooks) {
        Some(dir) => ctx.load_playbooks(&[dir])?,
        None => PlaybookSet::default(),
    };
    let engine = ctx.engine(set).await?;
    let before = engine
        .store
        .list_runs(&belay_store::RunFilter {
            status: Some(belay_model::RunStatus::Pending),
            ..Default::default()
        })
        .await?;
    let before: Vec<_> = before.iter().filter(|r| r.parent_run.is_none()).collect();
    let mut versions = Vec::new();
    let mut missing = Vec::new();
    for r in &before {
        match engine.version_of(r, true).await? {
            Ok(v) => versions.push(format!(
                "playbook `{}` version {}{}",
                r.playbook,
                &r.playbook_hash[..r.playbook_hash.len().min(12)],
                if v.stored { ", stored" } else { ", loaded" }
            )),
            Err(why) => missing.push(why),
        }
    }
    if !missing.is_empty() {
        return Ok(Err(missing));
    }
    engine.pick_up_decisions().await?;
    let mut resumed = Vec::new();
    for (r, version) in before.iter().zip(versions) {
        if let Some(now) = engine.store.get_run(&r.id).await? {
            resumed.push(format!("run {} {} ({version})", now.id, now.status));
        }
    }
    Ok(Ok(resumed))
}

/// Runs `belay approvals …`.
pub async fn run(ctx: &Ctx, command: ApprovalsCommand) -> Result<ExitCode> {
    if let Some(remote) = &ctx.remote {
        return run_remote(remote, command).await;
    }
    let store = ctx.store().await?;
    // Deadlines pass whether or not anyone is looking: settle them first.
    let expired = approvals::expire_due(&*store).await?;
    match command {
        ApprovalsCommand::List(ListArgs { all, format }) => {
            let mut list = store
                .approvals(&ApprovalFilter {
                    status: (!all).then_some(ApprovalStatus::Pending),
                    ..Default::default()
                })
                .await?;
            approvals::attach_history(&*store, &mut list).await?;
            let views: Vec<Value> = list.iter().map(approvals::approval_view).collect();
            print_approvals(&views, all, format)?;
            if !expired.is_empty() {
                eprintln!(
                    "{} approval(s) expired; their runs finish with the step's on_timeout in \
                     `belay serve`, or at the next `belay ingest` or `belay runs resume`",
                    expired.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show(ShowArgs { id, format }) => {
            let id = crate::ids::resolve(&*store, belay_store::IdKind::Approval, &id).await?;
            let a = store
                .get_approval(&id)
                .await?
                .ok_or_else(|| anyhow!("no approval `{id}`"))?;
            let alert = approvals::trigger_of(&*store, &a.run_id).await?;
            let mut one = [a];
            approvals::attach_history(&*store, &mut one).await?;
            let mut v = approvals::approval_view(&one[0]);
            v["trigger"] = alert.unwrap_or(Value::Null);
            print_approval(&v, format)?;
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve(args) => decide(ctx, &*store, args, true).await,
        ApprovalsCommand::Deny(args) => decide(ctx, &*store, args, false).await,
    }
}

/// `belay approvals …` through a server: the decider is the token's principal, and the server
/// resumes the run itself.
async fn run_remote(remote: &crate::remote::Remote, command: ApprovalsCommand) -> Result<ExitCode> {
    match command {
        ApprovalsCommand::List(ListArgs { all, format }) => {
            let q = if all {
                vec![("all", "true".to_owned())]
            } else {
                Vec::new()
            };
            let list = remote.get("/api/v1/approvals", &q).await?;
            let views = list.as_array().cloned().unwrap_or_default();
            print_approvals(&views, all, format)?;
        }
        ApprovalsCommand::Show(ShowArgs { id, format }) => {
            let v = remote.get(&format!("/api/v1/approvals/{id}"), &[]).await?;
            print_approval(&v, format)?;
        }
        ApprovalsCommand::Approve(args) => return decide_remote(remote, args, true).await,
        ApprovalsCommand::Deny(args) => return decide_remote(remote, args, false).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide_remote(
    remote: &crate::remote::Remote,
    args: DecideArgs,
    approve: bool,
) -> Result<ExitCode> {
    crate::remote::refuse_as(&args.user)?;
    if args.playbooks.is_some() {
        bail!("--playbooks is for the local CLI: through --server the server resumes the run");
    }
    let verb = if approve { "approve" } else { "deny" };
    let a = remote
        .post(
            &format!("/api/v1/approvals/{}/{verb}", args.id),
            &json!({ "comment": args.comment, "without": args.without }),
        )
        .await?;
    let by = a["votes"]
        .as_array()
        .and_then(|v| v.last())
        .and_then(|v| v["user"].as_str())
        .unwrap_or("you")
        .to_owned();
    let id = a["id"].as_str().unwrap_or_default();
    match a["status"].as_str() {
        Some("pending") => println!(
            "approval {id} recorded for {by}: {} of {} approvals; waiting for more",
            a["approvals"], a["quorum"]
        ),
        Some(status) => println!(
            "approval {id} {status} by {by}; the server resumes run {}",
            a["run_id"].as_str().unwrap_or_default()
        ),
        None => println!("approval {id}: {a}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Approvals (as [`approvals::approval_view`] gives them), one paragraph each or as JSON.
fn print_approvals(views: &[Value], all: bool, format: Format) -> Result<()> {
    let empty = format!("no approvals {}", if all { "" } else { "waiting" });
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    print_list(views, format, &empty, Value::clone, |a| {
        format!(
            "{}  {:<9} {}/{}  {} {}  ({} of {} approvals; expires {})\n    why: {}",
            s(&a["id"]),
            s(&a["status"]),
            s(&a["playbook"]),
            s(&a["step"]),
            s(&a["action"]),
            s(&a["target"]),
            a["approvals"],
            a["quorum"],
            s(&a["expires_at"]),
            s(&a["reason"])
        )
    })
}

/// One approval with its trigger, for people or as JSON.
fn print_approval(v: &Value, format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(v);
    }
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    println!("approval {} ({})", s(&v["id"]), s(&v["status"]));
    println!(
        "  run       {} ({}/{})",
        s(&v["run_id"]),
        s(&v["playbook"]),
        s(&v["step"])
    );
    match (&v["with"], s(&v["step"]).ends_with("#batch")) {
        (Value::Array(items), true) => {
            println!(
                "  change    {} on {} item(s) (approve --without ITEM leaves some out):",
                s(&v["action"]),
                items.len()
            );
            for i in items {
                println!("    {:<12} {}", i["key"].as_str().unwrap_or("?"), i["with"]);
            }
        }
        (with, _) => println!("  change    {} {with}", s(&v["action"])),
    }
    let t = &v["trigger"];
    if t.is_object() {
        println!(
            "  alert     {} from {} ({}) at {}{}{}",
            t["kind"].as_str().unwrap_or("?"),
            t["source"].as_str().unwrap_or("?"),
            t["severity"].as_str().unwrap_or("?"),
            t["time"].as_str().unwrap_or("?"),
            t.get("signature")
                .and_then(Value::as_str)
                .map(|s| format!(": {s}"))
                .unwrap_or_default(),
            if t["observables"].as_object().is_some_and(|o| !o.is_empty()) {
                format!("; observables {}", t["observables"])
            } else {
                String::new()
            }
        );
        for i in t["intel"].as_array().into_iter().flatten() {
            println!("  intel     {} scored {}", i["value"], i["score"]);
        }
    }
    println!("  target    {} now {}", s(&v["target"]), v["current_state"]);
    println!("  hash      {}", s(&v["change_hash"]));
    println!("  why       {}", s(&v["reason"]));
    println!("  verdicts  {}", v["guardrails"]);
    let approvers: Vec<String> = v["approvers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    println!(
        "  needs     {} of {} ({}){}; expires {} (then {})",
        v["approvals"],
        v["quorum"],
        joined_or(&approvers, "responder or admin"),
        if v["separation"] == true {
            ", separation of duties"
        } else {
            ""
        },
        s(&v["expires_at"]),
        s(&v["on_timeout"])
    );
    println!("  record    {}", v["history"]);
    for vote in v["votes"].as_array().into_iter().flatten() {
        let without: Vec<String> = vote["without"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        println!(
            "  {} {} at {}{}",
            if vote["approve"] == true {
                "approved by"
            } else {
                "denied by"
            },
            if without.is_empty() {
                s(&vote["user"])
            } else {
                format!("{} without {}", s(&vote["user"]), without.join(", "))
            },
            vote["at"].as_i64().map(ms_to_rfc3339).unwrap_or_default(),
            vote["comment"]
                .as_str()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn decide(
    ctx: &Ctx,
    store: &dyn Store,
    mut args: DecideArgs,
    approve: bool,
) -> Result<ExitCode> {
    let user = crate::remote::local_actor(args.user.take(), "decides")?;
    valid_actor(&user)?;
    args.id = crate::ids::resolve(store, belay_store::IdKind::Approval, &args.id).await?;
    let dir = directory(ctx, store).await?;
    if dir.is_empty() {
        bail!(
            "no users are configured: add [[users]] tables with `name` and `roles` to belay.toml, \
             or users with `belay users add`"
        );
    }
    if !approve && !args.without.is_empty() {
        bail!("--without applies to `approvals approve`: a denial already applies to every item");
    }
    let ballot = approvals::Ballot {
        channel: Some("cli"),
        change_hash: None,
    };
    let decided = approvals::cast(
        store,
        &dir,
        &args.id,
        &user,
        approve,
        args.comment,
        &args.without,
        ballot,
    )
    .await;
    let a = match decided {
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
                user,
                a.approvals(),
                a.terms.quorum
            );
            return Ok(ExitCode::SUCCESS);
        }
        ApprovalStatus::Approved if a.votes.iter().any(|v| !v.without.is_empty()) => {
            let without = &a
                .votes
                .iter()
                .rev()
                .find(|v| v.approve)
                .map(|v| v.without.clone());
            println!(
                "approval {} approved by {} without {} (denied by {})",
                a.id,
                user,
                without.as_deref().unwrap_or_default().join(", "),
                user
            );
        }
        s => println!("approval {} {s} by {}", a.id, user),
    }
    match resume(ctx, args.playbooks).await? {
        Ok(runs) => {
            for r in runs {
                println!("resumed {r}");
            }
        }
        Err(missing) => {
            for m in missing {
                eprintln!("{m}");
            }
            println!(
                "run {} resumes with the next `belay ingest` given its playbooks (or give --playbooks DIR)",
                a.run_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
