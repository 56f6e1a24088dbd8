//! `belay cases list|show`: the incident case files playbooks keep with `case.*`.
//!
//! Read-only: it never opens, edits or closes a case (playbooks do, through `case.*`).

use crate::context::Ctx;
use crate::output::{Format, ListArgs, ShowArgs, print_json, print_list};
use anyhow::{Result, bail};
use belay_model::{CaseStatus, ms_to_rfc3339};
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `belay cases …`.
#[derive(Subcommand)]
pub enum CasesCommand {
    /// Cases, the most recently updated first (open ones only unless --all).
    List(ListArgs),
    /// One case file: its events, runs, changes, evidence and notes.
    Show(ShowArgs),
}

/// Runs `belay cases …`.
pub async fn run(ctx: &Ctx, command: CasesCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        CasesCommand::List(ListArgs { all, format }) => {
            let list = store.cases((!all).then_some(CaseStatus::Open)).await?;
            let empty = format!("no {}cases", if all { "" } else { "open " });
            print_list(
                &list,
                format,
                &empty,
                |c| json!(c),
                |c| {
                    format!(
                        "{:<32} {:<6} {:<8} {}  (updated {})",
                        c.id,
                        c.status,
                        c.severity,
                        c.title,
                        ms_to_rfc3339(c.updated_at)
                    )
                },
            )?;
        }
        CasesCommand::Show(ShowArgs { id, format }) => {
            let Some(file) = store.case_file(&id).await? else {
                bail!("no case `{id}` (see `belay cases list --all`)");
            };
            let full = belay_engine::case_file::case_view(&*store, &file).await?;
            if format == Format::Json {
                print_json(&full)?;
            } else {
                print_case(&full);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_case(v: &Value) {
    let c = &v["case"];
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!(
        "case {}  [{}]  severity {}",
        s(&c["id"]),
        s(&c["status"]),
        s(&c["severity"])
    );
    println!("  {}", s(&c["title"]));
    if let Some(r) = c["resolution"].as_str() {
        println!("  resolution: {r}");
    }
    if let Some(obs) = c["observables"].as_array().filter(|a| !a.is_empty()) {
        let o: Vec<String> = obs.iter().map(s).collect();
        println!("  observables: {}", o.join(", "));
    }
    println!("runs:");
    for r in v["runs"].as_array().into_iter().flatten() {
        println!(
            "  {}  {} [{}]  event {} ({})",
            s(&r["id"]),
            s(&r["playbook"]),
            s(&r["status"]),
            s(&r["event"]["id"]),
            s(&r["event"]["kind"])
        );
        for ch in r["changes"].as_array().into_iter().flatten() {
            println!(
                "      change {} {} [{}]",
                s(&ch["action"]),
                s(&ch["target"]),
                s(&ch["status"])
            );
        }
    }
    println!("evidence:");
    for e in v["evidence"].as_array().into_iter().flatten() {
        println!(
            "  {}  {} ({})  sha256 {}  {}",
            s(&e["at"]),
            s(&e["name"]),
            s(&e["kind"]),
            s(&e["sha256"]),
            s(&e["location"])
        );
    }
    println!("notes:");
    for n in v["notes"].as_array().into_iter().flatten() {
        println!("  {}  {}", s(&n["at"]), s(&n["note"]));
    }
}
