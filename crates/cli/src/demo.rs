//! `belay demo`: the example playbooks end to end on a throw-away embedded store.
//! Needs nothing but the binary: the examples are compiled in.

use crate::Ctx;
use anyhow::{Context, Result};
use belay_connectors::{Blocklist, Core, Registry};
use belay_engine::{Engine, EngineConfig};
use belay_playbook::PlaybookSet;
use belay_store::{RunFilter, SqliteOptions, SqliteStore, Store};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

const PLAYBOOKS: &[(&str, &str)] = &[
    (
        "block-malicious-ip.yaml",
        include_str!("../../../examples/playbooks/block-malicious-ip.yaml"),
    ),
    (
        "quarantine-approval.yaml",
        include_str!("../../../examples/playbooks/quarantine-approval.yaml"),
    ),
];
const EVENTS: &str = include_str!("../../../examples/events/demo.jsonl");

pub async fn run(ctx: &Ctx) -> Result<ExitCode> {
    let started = Instant::now();
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data = tmp.path().join("data");
    let pb_dir = tmp.path().join("playbooks");
    std::fs::create_dir_all(&pb_dir)?;
    for (name, text) in PLAYBOOKS {
        std::fs::write(pb_dir.join(name), text)?;
    }
    println!(
        "belay demo: embedded store in {} (SQLite, WAL, synchronous=FULL)\n",
        data.display()
    );
    let set = PlaybookSet::load_paths(&[pb_dir], &ctx.catalog).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    for pb in set.iter() {
        println!(
            "playbook {:<26} on {:<16} trust {:<8} {} step(s)  sha256 {}",
            pb.name,
            pb.trigger.event.as_deref().unwrap_or("-"),
            pb.trust.as_str(),
            pb.steps.len(),
            &pb.hash[..12]
        );
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&data, SqliteOptions::default())?);
    const DEMO_USER: &str = "demo-analyst";
    let mut registry = Registry::new();
    registry.register(Arc::new(Core));
    let lists = data.join("lists");
    registry.register(Arc::new(Blocklist::new(&lists, HashMap::new())));
    let engine = Engine::new(
        store.clone(),
        Arc::new(set),
        ctx.catalog.clone(),
        registry,
        EngineConfig::default(),
    );

    println!(
        "\n── ingest: {} events (one of them re-sent) ──",
        EVENTS.lines().count()
    );
    let mut acks = Vec::new();
    let mut errors = Vec::new();
    let source = belay_engine::ingest::Source {
        name: "demo".into(),
        start: 0,
        durable_cursor: false,
    };
    let reader = tokio::io::BufReader::new(EVENTS.as_bytes());
    let stats =
        belay_engine::ingest::ingest(&engine, reader, source, &mut acks, &mut errors).await?;
    for line in String::from_utf8_lossy(&acks).lines() {
        println!("  ack {line}");
    }
    for line in String::from_utf8_lossy(&errors).lines() {
        println!("  ! {line}");
    }

    // The containment change waits for a person: approve it visibly, as the demo's analyst.
    let waiting = store
        .approvals(&belay_store::ApprovalFilter {
            status: Some(belay_model::ApprovalStatus::Pending),
            ..Default::default()
        })
        .await?;
    if !waiting.is_empty() {
        println!(
            "\n── approvals: {} change(s) wait for a person ──",
            waiting.len()
        );
        let people = belay_engine::approvals::Directory::new([(
            DEMO_USER.to_owned(),
            vec!["responder".to_owned()],
        )]);
        for a in &waiting {
            println!(
                "  {} {}/{}: {} {} (change {}…, why: {})",
                &a.id[..13],
                a.playbook,
                a.key,
                a.action,
                a.with,
                &a.change_hash[..12],
                a.reason
            );
            let decided = belay_engine::approvals::decide(
                store.as_ref(),
                &people,
                &a.id,
                DEMO_USER,
                true,
                Some("demo: confirmed with the EDR console".into()),
            )
            .await?;
            println!("    approved by {DEMO_USER} → {}", decided.status);
        }
        let resumed = engine.pick_up_decisions().await?;
        println!("  {resumed} run(s) resumed and applied the approved change(s)");
    }

    println!("\n── runs ──");
    let mut runs = store.list_runs(&RunFilter::default()).await?;
    runs.reverse();
    for run in &runs {
        println!(
            "run {} playbook {} event {} → {}",
            &run.id[..13],
            run.playbook,
            run.event_id,
            run.status
        );
        for s in store.steps(&run.id).await? {
            let trust = s.trust.map(|t| format!(" (trust {t})")).unwrap_or_default();
            println!(
                "    {:<18} {:<16} {:<15} {:<10} {}{trust}",
                s.key,
                s.action,
                s.decision.as_str(),
                s.status.as_str(),
                s.with
            );
        }
    }

    println!("\n── real state: the blocklist files ──");
    let mut files: Vec<_> = std::fs::read_dir(&lists)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        println!(
            "  {}: {}",
            f.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            text.lines().collect::<Vec<_>>().join(", ")
        );
    }

    let changes = store.changes(None).await?;
    println!(
        "\n── change journal: {} change(s), each with its before-state and inverse ──",
        changes.len()
    );
    for c in &changes {
        println!(
            "  {} {} → {}  before {}  after {}  undo {}",
            c.action, c.target, c.status, c.before, c.after, c.inverse["action"]
        );
    }

    // Roll the critical alert's run back, as a person would after a false positive, and verify.
    if let Some(first) = runs.iter().find(|r| r.event_id == "demo-ids-3") {
        println!("\n── rollback of run {} by user `demo` ──", &first.id[..13]);
        let opts = belay_engine::rollback::RollbackOptions {
            dry_run: false,
            force: false,
            actor: "demo".into(),
        };
        let report = belay_engine::rollback::rollback(
            &engine,
            belay_engine::rollback::Selection::Run(first.id.clone()),
            opts,
        )
        .await?;
        for i in &report.items {
            println!("  {:?} {} {}: {}", i.outcome, i.action, i.target, i.detail);
        }
        let text = std::fs::read_to_string(lists.join("egress.txt")).unwrap_or_default();
        println!(
            "  egress.txt now: {}",
            text.lines().collect::<Vec<_>>().join(", ")
        );
        for d in store.demotions().await? {
            println!(
                "  {}/{} now needs approval again: {} (`belay trust reset` lifts it)",
                d.playbook, d.step, d.reason
            );
        }
    }
    match belay_store::verify_audit(store.as_ref()).await? {
        Ok(n) => println!("\naudit chain intact: {n} entries"),
        Err(b) => anyhow::bail!("audit chain broken at entry {}: {}", b.seq, b.reason),
    }

    println!(
        "\nsummary: {} events accepted, {} duplicate acknowledged without a second run, {} runs: {} succeeded, {} waited for approval, {} failed; {:.2}s",
        stats.accepted,
        stats.duplicates,
        stats.runs_started,
        stats.runs_succeeded,
        stats.runs_waiting,
        stats.runs_failed,
        started.elapsed().as_secs_f64()
    );
    println!(
        "The low-severity alert matched no trigger condition; the containment change waited for {DEMO_USER}'s approval (trust: approve) and was applied once approved."
    );
    Ok(if stats.runs_failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
