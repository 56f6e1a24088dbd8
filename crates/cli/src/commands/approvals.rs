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
use belay_model::{ApprovalRecord, ApprovalStatus, ms_to_rfc3339};
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
    /// Who decides (a user of [[users]] in belay.toml).
    #[arg(long = "as", value_name = "USER")]
    user: String,
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

/// What triggered the run an approval belongs to (the top run's event): its kind, source,
/// severity, time, non-empty observables and the alert's signature when the payload names one.
/// Shown as data, never interpreted.
async fn trigger_of(store: &dyn Store, run_id: &str) -> Result<Option<Value>> {
    let mut run = store.get_run(run_id).await?;
    while let Some(parent) = run.as_ref().and_then(|r| r.parent_run.clone()) {
        run = store.get_run(&parent).await?;
    }
    let Some(run) = run else { return Ok(None) };
    let Some(e) = store.get_event(&run.event_id).await? else {
        return Ok(None);
    };
    let observables: serde_json::Map<String, Value> = serde_json::to_value(&e.observables)?
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let signature = ["signature", "alert.signature", "rule", "name", "subject"]
        .iter()
        .find_map(|path| {
            path.split('.')
                .try_fold(&e.data, |v, k| v.get(k))
                .and_then(Value::as_str)
        });
    // What the run's intel lookups said, when it made any.
    let intel: Vec<Value> = store
        .steps(run_id)
        .await?
        .into_iter()
        .filter(|s| s.action == "intel.lookup")
        .map(|s| json!({ "value": s.output["value"], "score": s.output["score"] }))
        .collect();
    Ok(Some(json!({
        "event_id": e.id, "kind": e.kind, "source": e.source, "severity": e.severity,
        "time": e.time.to_rfc3339(), "observables": observables, "signature": signature,
        "intel": intel,
    })))
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
            history(&*store, &mut list).await?;
            let empty = format!("no approvals {}", if all { "" } else { "waiting" });
            print_list(&list, format, &empty, approval_json, |a| {
                format!(
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
                )
            })?;
            if !expired.is_empty() {
                eprintln!(
                    "{} approval(s) expired; their runs resume with the step's on_timeout",
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
            let alert = trigger_of(&*store, &a.run_id).await?;
            let mut one = [a];
            history(&*store, &mut one).await?;
            let mut v = approval_json(&one[0]);
            v["trigger"] = alert.clone().unwrap_or(Value::Null);
            if format == Format::Json {
                print_json(&v)?;
            } else {
                let a = &one[0];
                println!("approval {} ({})", a.id, a.status);
                println!("  run       {} ({}/{})", a.run_id, a.playbook, a.key);
                match (&a.with, a.key.ends_with("#batch")) {
                    (Value::Array(items), true) => {
                        println!(
                            "  change    {} on {} item(s) (approve --without ITEM leaves some out):",
                            a.action,
                            items.len()
                        );
                        for i in items {
                            println!("    {:<12} {}", i["key"].as_str().unwrap_or("?"), i["with"]);
                        }
                    }
                    _ => println!("  change    {} {}", a.action, a.with),
                }
                if let Some(t) = &alert {
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
                println!("  target    {} now {}", a.target, a.current_state);
                println!("  hash      {}", a.change_hash);
                println!("  why       {}", a.reason);
                println!("  verdicts  {}", a.guardrails);
                println!(
                    "  needs     {} of {} ({}){}; expires {} (then {})",
                    a.approvals(),
                    a.terms.quorum,
                    joined_or(&a.terms.approvers, "responder or admin"),
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
                        if vote.without.is_empty() {
                            vote.user.clone()
                        } else {
                            format!("{} without {}", vote.user, vote.without.join(", "))
                        },
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

async fn decide(
    ctx: &Ctx,
    store: &dyn Store,
    mut args: DecideArgs,
    approve: bool,
) -> Result<ExitCode> {
    valid_actor(&args.user)?;
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
        &args.user,
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
                args.user,
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
                args.user,
                without.as_deref().unwrap_or_default().join(", "),
                args.user
            );
        }
        s => println!("approval {} {s} by {}", a.id, args.user),
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
