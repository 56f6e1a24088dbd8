//! `belay replay`: one playbook run in shadow over past events, reporting the changes,
//! approvals and guardrail holds it would have produced.
//!
//! It never applies a change: every run it starts is a dry run.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use crate::paths::parent_dir;
use anyhow::{Context, Result, anyhow};
use belay_engine::replay::ReplayReport;
use belay_model::Event;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay replay PLAYBOOK --events FILE`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  belay replay playbooks/block-malicious-ip.yaml --events last-week.jsonl"
)]
pub struct Args {
    playbook: PathBuf,
    /// Past events, as JSON lines (one event per line).
    #[arg(long)]
    events: PathBuf,
    /// Output: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Runs one playbook in shadow over past events and reports what it would have done.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let (playbook, events, format) = (args.playbook.as_path(), args.events.as_path(), args.format);
    let dir = parent_dir(playbook);
    let (set, pb) = ctx.load_playbook_in(playbook, dir)?;
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
        print_json(&report)?;
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
