//! `belay ingest`: JSON-lines events from a file or standard input, stored durably and run,
//! while unfinished runs resume and approval decisions are picked up. Lines that are not
//! events are kept in a dead-letter file with the reason, and make the exit status 1.
//!
//! Glue only: validation, de-duplication and the file cursor live in `belay_engine::ingest`.

use crate::context::{Ctx, resume_in_background};
use anyhow::{Context, Result, anyhow};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `belay ingest [FILE|-]`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  belay ingest events.jsonl --playbooks playbooks/      # a file: its cursor is kept, a restart continues\n  tail -F alerts.jsonl | belay ingest - --quiet"
)]
pub struct Args {
    /// A file of JSON lines, or `-` for standard input.
    #[arg(default_value = "-")]
    input: String,
    /// Playbook directory (default: `playbooks` in belay.toml).
    #[arg(long)]
    playbooks: Option<PathBuf>,
    /// Do not print an acknowledgement line per event.
    #[arg(long)]
    quiet: bool,
    /// Where lines that are not events are kept, one JSON object each with the reason
    /// (default: `rejected.jsonl` in the data directory).
    #[arg(long, value_name = "FILE")]
    rejected: Option<PathBuf>,
}

/// Runs `belay ingest`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let Args {
        input,
        playbooks,
        quiet,
        rejected,
    } = args;
    let rejected_path = rejected.unwrap_or_else(|| ctx.data.join("rejected.jsonl"));
    if let Some(parent) = rejected_path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut rejected_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&rejected_path)
        .with_context(|| format!("cannot open {}", rejected_path.display()))?;
    let input = input.as_str();
    if let Some(remote) = &ctx.remote {
        if playbooks.is_some() {
            anyhow::bail!(
                "--playbooks is for the local CLI: through --server the server's playbooks run"
            );
        }
        return ingest_remote(remote, input, quiet, &mut rejected_file, &rejected_path).await;
    }
    let dir = playbooks
        .or_else(|| ctx.config.playbooks.clone())
        .ok_or_else(|| {
            anyhow!(
                "give the playbook directory with --playbooks DIR (or `playbooks` in belay.toml)"
            )
        })?;
    let set = ctx.load_playbooks(std::slice::from_ref(&dir))?;
    if set.is_empty() {
        // Accepting events with nothing to run would use them up: a re-sent event would be a
        // duplicate and the file cursor would move past it.
        anyhow::bail!(
            "no playbooks in {}: nothing would run, and the events would be used up; give the \
             folder that holds them with --playbooks DIR (events already stored without a run: \
             `belay events rerun --since 1d`)",
            dir.display()
        );
    }
    let engine = ctx.engine(set).await?;
    // Runs whose approval was decided or expired since the last process finish first, so
    // even an ingest with nothing new (`belay ingest /dev/null`) leaves none of them waiting.
    let mut decided = engine.pick_up_decisions().await?;
    // Unfinished runs resume alongside new events, sharing the engine's execution slots.
    let resuming = resume_in_background(&engine);
    // Decisions made while ingesting (from `belay approvals`) and deadlines that pass are
    // picked up every second.
    let decided_meanwhile = Arc::new(AtomicUsize::new(0));
    let decisions = {
        let (engine, count) = (engine.clone(), decided_meanwhile.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.tick().await; // the first tick is now: decisions were just picked up
            loop {
                tick.tick().await;
                match engine.pick_up_decisions().await {
                    Ok(n) => {
                        count.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!("picking up approval decisions failed: {e}"),
                }
            }
        })
    };
    let mut acks: Box<dyn Write + Send> = if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout())
    };
    let mut errors = std::io::stderr();
    let stats = if input == "-" {
        let source = belay_engine::ingest::Source {
            name: "stdin".into(),
            start: 0,
            durable_cursor: false,
        };
        let reader = tokio::io::BufReader::new(tokio::io::stdin());
        belay_engine::ingest::ingest(
            &engine,
            reader,
            source,
            &mut *acks,
            &mut errors,
            Some(&mut rejected_file),
        )
        .await?
    } else {
        let path = std::fs::canonicalize(input).with_context(|| format!("cannot open {input}"))?;
        let name = format!("file:{}", path.display());
        let start = engine.store.cursor(&name).await?.unwrap_or(0);
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("cannot open {input}"))?;
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .context("cannot seek to the stored cursor")?;
        let source = belay_engine::ingest::Source {
            name,
            start,
            durable_cursor: true,
        };
        belay_engine::ingest::ingest(
            &engine,
            tokio::io::BufReader::new(file),
            source,
            &mut *acks,
            &mut errors,
            Some(&mut rejected_file),
        )
        .await?
    };
    let resumed = resuming
        .await
        .context("the resume task ended abnormally")??;
    decisions.abort();
    // What was decided while ingesting, and not yet picked up by the loop.
    decided += decided_meanwhile.load(Ordering::Relaxed) + engine.pick_up_decisions().await?;
    eprintln!(
        "ingest: {} accepted, {} duplicate, {} conflict, {} rejected; runs: {} started ({} succeeded, {} failed, {} waiting); {} unfinished and {} decided run(s) resumed",
        stats.accepted,
        stats.duplicates,
        stats.conflicts,
        stats.rejected,
        stats.runs_started,
        stats.runs_succeeded,
        stats.runs_failed,
        stats.runs_waiting,
        resumed,
        decided,
    );
    if stats.unmatched > 0 {
        eprintln!(
            "ingest: warning: {} accepted event(s) started no run (no loaded playbook matches \
             them); once the right playbooks are loaded, `belay events rerun --since 1d` runs them",
            stats.unmatched
        );
    }
    if stats.rejected > 0 {
        eprintln!(
            "ingest: {} line(s) rejected, kept with the reason in {}",
            stats.rejected,
            rejected_path.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines sent to the server in one request.
const BATCH: usize = 500;

/// `belay ingest --server URL`: the lines are sent as NDJSON batches, each acknowledged by the
/// server only once committed with the runs it starts; a line the server refuses is kept in
/// the dead-letter file with its reason and the rest of its batch is sent again. Sending the
/// same file again is safe: an event id seen before is answered `duplicate`, nothing runs twice.
async fn ingest_remote(
    remote: &crate::remote::Remote,
    input: &str,
    quiet: bool,
    rejected_file: &mut std::fs::File,
    rejected_path: &std::path::Path,
) -> Result<ExitCode> {
    let text = if input == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .context("cannot read standard input")?;
        t
    } else {
        std::fs::read_to_string(input).with_context(|| format!("cannot read {input}"))?
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    let (mut accepted, mut duplicates, mut rejected, mut runs) = (0, 0, 0, 0);
    let mut stdout = std::io::stdout();
    for chunk in lines.chunks(BATCH) {
        let mut batch: Vec<(usize, &str)> = chunk.to_vec();
        while !batch.is_empty() {
            let body: Vec<u8> = batch
                .iter()
                .flat_map(|(_, l)| l.bytes().chain(std::iter::once(b'\n')))
                .collect();
            match remote.post_ndjson("/api/v1/events", body).await {
                Ok(answer) => {
                    for e in answer["events"].as_array().into_iter().flatten() {
                        let new = e["status"] == "new";
                        if new {
                            accepted += 1;
                        } else {
                            duplicates += 1;
                        }
                        let started = e["run_ids"].as_array().map_or(0, Vec::len);
                        runs += started;
                        if !quiet {
                            let ack = serde_json::json!({ "event": e["event_id"],
                                "accepted": e["status"], "runs": e["run_ids"] });
                            writeln!(stdout, "{ack}")?;
                        }
                    }
                    break;
                }
                Err(e) => {
                    // The server names the refused line of the batch (`line N: …`).
                    let text = e.to_string();
                    let Some(k) = text
                        .strip_prefix("line ")
                        .and_then(|r| r.split(':').next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|k| (1..=batch.len()).contains(k))
                    else {
                        return Err(e);
                    };
                    let (line, bad) = batch.remove(k - 1);
                    rejected += 1;
                    let record = serde_json::json!({ "source": format!("server:{input}"),
                        "line": line, "at": belay_model::now_ms(), "reason": text,
                        "text": bad });
                    writeln!(rejected_file, "{record}")?;
                    eprintln!("{input}:{line}: rejected: {text}");
                }
            }
        }
    }
    eprintln!(
        "ingest: {accepted} accepted, {duplicates} duplicate, {rejected} rejected; runs: {runs} started on the server"
    );
    if rejected > 0 {
        eprintln!(
            "ingest: {rejected} line(s) rejected, kept with the reason in {}",
            rejected_path.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
