//! `belay replay`: one playbook run in shadow over past events, reporting the changes,
//! approvals and guardrail holds it would have produced.
//!
//! It never applies a change: every run it starts is a dry run.

use crate::context::Ctx;
use crate::output::Format;
use crate::paths::{dedup_paths, parent_dir};
use anyhow::{Context, Result, anyhow};
use belay_model::{Decision, Event};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay replay PLAYBOOK --events FILE`.
#[derive(clap::Args)]
pub struct Args {
    playbook: PathBuf,
    #[arg(long)]
    events: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Runs one playbook in shadow over past events and reports what it would have done.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let (playbook, events, format) = (args.playbook.as_path(), args.events.as_path(), args.format);
    let dir = parent_dir(playbook);
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
    let set = ctx.load_playbooks(&dedup_paths(paths))?;
    let pb = set
        .get(&parsed.name)
        .ok_or_else(|| anyhow!("playbook `{}` did not load", parsed.name))?;
    let text = std::fs::read_to_string(events)
        .with_context(|| format!("cannot read {}", events.display()))?;
    let engine = ctx.engine(set).await?;
    let mut per_event = Vec::new();
    let (mut changes, mut approvals, mut holds, mut denials, mut skipped) = (0, 0, 0, 0, 0);
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", events.display(), n + 1))?;
        let event =
            Event::from_json(value).map_err(|e| anyhow!("{}:{}: {e}", events.display(), n + 1))?;
        let (runs, _) = engine.plan_runs(&event);
        if !runs.iter().any(|r| r.playbook == pb.name) {
            skipped += 1;
            per_event.push(json!({ "event_id": event.id, "triggered": false }));
            continue;
        }
        let report = engine.run_once(&pb, event.clone(), true).await?;
        let mut would = Vec::new();
        for s in &report.steps {
            let what = match s.decision {
                Decision::DryRun => {
                    changes += 1;
                    "apply"
                }
                Decision::AwaitApproval => {
                    approvals += 1;
                    "needs approval"
                }
                Decision::GuardrailHold => {
                    holds += 1;
                    "held by guardrail"
                }
                Decision::GuardrailDeny => {
                    denials += 1;
                    "denied by guardrail"
                }
                Decision::Shadow => "shadow",
                _ => continue,
            };
            would.push(json!({ "step": s.key, "action": s.action, "with": s.with, "would": what, "reason": s.error }));
        }
        per_event.push(json!({ "event_id": event.id, "triggered": true, "run_id": report.run_id, "status": report.status, "changes": would }));
    }
    let total = json!({ "events": per_event.len(), "not_triggered": skipped, "changes": changes,
        "approvals": approvals, "guardrail_holds": holds, "guardrail_denials": denials });
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "playbook": pb.name, "events": per_event, "total": total })
            )?
        );
    } else {
        for e in &per_event {
            if e["triggered"] == json!(false) {
                println!("{}: not triggered", e["event_id"].as_str().unwrap_or(""));
                continue;
            }
            println!("{}:", e["event_id"].as_str().unwrap_or(""));
            for c in e["changes"].as_array().into_iter().flatten() {
                println!(
                    "  {} {} {} — would {}{}",
                    c["step"].as_str().unwrap_or(""),
                    c["action"].as_str().unwrap_or(""),
                    c["with"],
                    c["would"].as_str().unwrap_or(""),
                    c["reason"]
                        .as_str()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
        }
        println!(
            "replay of {} over {} event(s): {changes} change(s) would apply, {approvals} would need approval, {holds} would be held and {denials} denied by guardrails; {skipped} event(s) did not trigger it",
            pb.name,
            per_event.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
