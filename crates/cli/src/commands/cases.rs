//! `belay cases list|show`: the incident case files playbooks keep with `case.*`.
//!
//! Read-only: it never opens, edits or closes a case (playbooks do, through `case.*`).

use crate::context::Ctx;
use crate::output::{Format, ListArgs, ShowArgs, print_json, print_list};
use anyhow::{Result, bail};
use belay_model::{CaseEntryKind, CaseFile, CaseStatus, ms_to_rfc3339};
use belay_store::Store;
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
            let full = case_json(&*store, &file).await?;
            if format == Format::Json {
                print_json(&full)?;
            } else {
                print_case(&full);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A case with what its linked runs did: their events and journaled changes.
pub async fn case_json(store: &dyn Store, file: &CaseFile) -> Result<Value> {
    let mut runs = Vec::new();
    for e in file.entries.iter().filter(|e| e.kind == CaseEntryKind::Run) {
        let Some(run_id) = &e.run_id else { continue };
        let Some(run) = store.get_run(run_id).await? else {
            continue;
        };
        let event = store.get_event(run.trigger_source(), &run.event_id).await?;
        let changes: Vec<Value> = store
            .changes(Some(run_id))
            .await?
            .iter()
            .map(|c| {
                json!({ "id": c.id, "action": c.action, "target": c.target, "status": c.status,
                        "at": ms_to_rfc3339(c.created_at) })
            })
            .collect();
        runs.push(json!({
            "id": run.id, "playbook": run.playbook, "status": run.status,
            "event": event.map(|ev| json!({ "id": ev.id, "kind": ev.kind, "severity": ev.severity })),
            "changes": changes,
        }));
    }
    let entries = |kind: CaseEntryKind| -> Vec<Value> {
        file.entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| {
                let mut b = e.to_json();
                b["run"] = json!(e.run_id);
                b
            })
            .collect()
    };
    Ok(json!({
        "case": file.case,
        "runs": runs,
        "notes": entries(CaseEntryKind::Note),
        "evidence": entries(CaseEntryKind::Evidence),
        "history": entries(CaseEntryKind::Status),
    }))
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
