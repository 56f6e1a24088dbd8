//! The long-running ingest loop: JSON-lines events from a file or stdin, stored durably in
//! batches (each acknowledged only after its commit), matched and run.
//!
//! For a file, the byte offset after each accepted line is committed with it, so a restart
//! continues exactly where the last commit stopped: nothing lost, nothing accepted twice.
//!
//! An event whose id was accepted before is a duplicate only when it says the same thing. One
//! that differs (same id, another body) is a conflict: it is never dropped in silence, but
//! acknowledged as `conflict`, reported, and stored as an [`CONFLICT_KIND`] event holding
//! both versions, for a person (or a playbook) to look at.

use crate::{Engine, Result};
use belay_model::{Event, Observables, Severity};
use belay_store::{Accepted, Cursor};
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinSet;

/// Longest accepted line.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most events committed together.
const BATCH: usize = 256;
/// The kind of the event that keeps a conflicting duplicate (same id, another body).
pub const CONFLICT_KIND: &str = "ingest.conflict";

/// What an ingest pass did.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct IngestStats {
    /// Events stored as new, the [`CONFLICT_KIND`] events made here included.
    pub accepted: u64,
    /// Events already stored with the same id and body (acknowledged, not run again).
    pub duplicates: u64,
    /// Events re-sent with an accepted id but another body (kept as [`CONFLICT_KIND`] events).
    pub conflicts: u64,
    /// Lines that are not events: too long, or not a valid event's JSON (blank lines aside).
    pub rejected: u64,
    /// Runs the accepted events started.
    pub runs_started: u64,
    /// New events that started no run (no loaded playbook matches them).
    pub unmatched: u64,
    /// Always 0: [`ingest`] resumes no run (the caller counts the runs it resumes).
    pub runs_resumed: u64,
    /// Started runs that succeeded.
    pub runs_succeeded: u64,
    /// Started runs that failed, or could not be executed.
    pub runs_failed: u64,
    /// Started runs now waiting for an approval.
    pub runs_waiting: u64,
}

/// Where lines come from, for cursors and messages.
pub struct Source {
    /// `file:/abs/path` for files (their cursor is stored), `stdin` otherwise.
    pub name: String,
    /// Byte offset of the first line to read.
    pub start: u64,
    /// Whether each accepted line's end offset is stored with it (files), so a later pass
    /// can start there.
    pub durable_cursor: bool,
}

#[derive(Serialize)]
struct Ack<'a> {
    event: &'a str,
    accepted: AckStatus,
    runs: Vec<&'a str>,
}

/// What an acknowledgement says about an event.
#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum AckStatus {
    New,
    Duplicate,
    /// Same id as an accepted event, another body: kept for a person, not run.
    Conflict,
}

/// Reads events until EOF, runs what they trigger, and waits for those runs.
/// Writes one acknowledgement line per event to `acks` and problems to `errors`; each rejected
/// line goes to `rejected` (a dead-letter file, JSON lines with the source, line number, reason
/// and text), synced before any later line's cursor is stored, so none is lost.
pub async fn ingest<R: AsyncRead + Unpin>(
    engine: &Arc<Engine>,
    mut reader: BufReader<R>,
    source: Source,
    acks: &mut (dyn Write + Send),
    errors: &mut (dyn Write + Send),
    mut rejected: Option<&mut std::fs::File>,
) -> Result<IngestStats> {
    let mut stats = IngestStats::default();
    let mut unsynced = false;
    let mut tasks: JoinSet<crate::Result<crate::RunReport>> = JoinSet::new();
    let in_flight = engine.config.max_concurrent_runs.max(1) * 2;
    let mut offset = source.start;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        let mut batch: Vec<(Event, Option<Cursor>)> = Vec::new();
        let mut eof = false;
        while batch.len() < BATCH {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|e| crate::EngineError::Other(format!("reading {}: {e}", source.name)))?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            offset += n as u64;
            let cursor = source.durable_cursor.then(|| Cursor {
                source: source.name.clone(),
                offset,
            });
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim();
            if !text.is_empty() {
                let refused = if n > MAX_LINE_BYTES {
                    Some(format!("line longer than {MAX_LINE_BYTES} bytes"))
                } else {
                    match Event::from_json_str_stream(text, engine.config.dedup_window) {
                        Ok(ev) => {
                            batch.push((ev, cursor));
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    }
                };
                if let Some(reason) = refused {
                    stats.rejected += 1;
                    let _ = writeln!(errors, "{}:{line_no}: rejected: {reason}", source.name);
                    if let Some(f) = rejected.as_deref_mut() {
                        keep_rejected(f, &source.name, line_no, &reason, text)?;
                        unsynced = true;
                    }
                }
            }
            if reader.buffer().is_empty() && !batch.is_empty() {
                break; // nothing more is waiting: acknowledge what we have now
            }
        }
        // Rejected lines are durable before a later line's cursor moves past them.
        if unsynced && let Some(f) = rejected.as_deref() {
            sync(f).await?;
            unsynced = false;
        }
        if !batch.is_empty() {
            for (event, _) in &mut batch {
                if let Some(id) = earlier_delivery(engine, &event.source, &event.id).await? {
                    event.id = id;
                }
            }
            let mut accepted = engine.accept_batch(batch).await?;
            let mut conflicts = Vec::new();
            let mut records = Vec::new();
            for acc in &accepted {
                if acc.accepted == Accepted::Duplicate
                    && let Some(record) = conflict(engine, &acc.event).await?
                {
                    conflicts.push(acc.event_id.clone());
                    let _ = writeln!(
                        errors,
                        "event {}: conflict: an event with this id and another body was accepted \
                         before ({}); kept as `{CONFLICT_KIND}` event {}, not run",
                        acc.event_id, record.data["differs"], record.id
                    );
                    records.push((record, None));
                }
            }
            if !records.is_empty() {
                // Kept for a person: stored (and matched against playbooks) as its own event.
                accepted.extend(engine.accept_batch(records).await?);
            }
            for acc in accepted {
                let status = match acc.accepted {
                    Accepted::New => {
                        stats.accepted += 1;
                        if acc.runs.is_empty() && acc.event.kind != CONFLICT_KIND {
                            stats.unmatched += 1;
                        }
                        AckStatus::New
                    }
                    Accepted::Duplicate if conflicts.contains(&acc.event_id) => {
                        stats.conflicts += 1;
                        AckStatus::Conflict
                    }
                    Accepted::Duplicate => {
                        stats.duplicates += 1;
                        AckStatus::Duplicate
                    }
                };
                for (pb, msg) in &acc.trigger_errors {
                    let _ = writeln!(
                        errors,
                        "event {}: trigger of `{pb}` not evaluated: {msg}",
                        acc.event_id
                    );
                }
                let ack = Ack {
                    event: &acc.event_id,
                    accepted: status,
                    runs: acc.runs.iter().map(|r| r.id.as_str()).collect(),
                };
                let _ = writeln!(acks, "{}", serde_json::to_string(&ack).unwrap_or_default());
                for run in acc.runs {
                    stats.runs_started += 1;
                    while tasks.len() >= in_flight {
                        reap(tasks.join_next().await, &mut stats, errors);
                    }
                    let engine = engine.clone();
                    let event = acc.event.clone();
                    tasks.spawn(async move { engine.execute_new(run, event).await });
                }
            }
            let _ = acks.flush();
        }
        while let Some(r) = tasks.try_join_next() {
            reap(Some(r), &mut stats, errors);
        }
        if eof {
            break;
        }
    }
    while let Some(r) = tasks.join_next().await {
        reap(Some(r), &mut stats, errors);
    }
    Ok(stats)
}

/// When `event` repeats an accepted id with another body, the event that keeps it: its id is
/// derived from both, so re-sending the same conflicting line is a plain duplicate of it.
/// The time is not compared (a sender that leaves it out gets "now" each time).
/// Bytes of a rejected line kept in the dead-letter file.
const KEPT_TEXT_BYTES: usize = 64 << 10;

/// Appends one rejected line to the dead-letter file.
fn keep_rejected(
    f: &mut std::fs::File,
    source: &str,
    line: u64,
    reason: &str,
    text: &str,
) -> Result<()> {
    let mut cut = text.len().min(KEPT_TEXT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let record = serde_json::json!({
        "source": source,
        "line": line,
        "at": belay_model::now_ms(),
        "reason": reason,
        "text": &text[..cut],
        "truncated": cut < text.len(),
    });
    writeln!(f, "{record}")
        .map_err(|e| crate::EngineError::Other(format!("keeping a rejected line: {e}")))
}

/// `fsync`s the dead-letter file on the blocking pool.
async fn sync(f: &std::fs::File) -> Result<()> {
    let f = f
        .try_clone()
        .map_err(|e| crate::EngineError::Other(format!("syncing the rejected lines: {e}")))?;
    tokio::task::spawn_blocking(move || f.sync_data())
        .await
        .map_err(|e| crate::EngineError::Other(format!("syncing the rejected lines: {e}")))?
        .map_err(|e| crate::EngineError::Other(format!("syncing the rejected lines: {e}")))
}

/// For an event whose content id names its arrival window, the id the same content was
/// accepted under in the window before, if that delivery arrived less than a window ago (so a
/// retry across the boundary is a duplicate too).
async fn earlier_delivery(
    engine: &Arc<Engine>,
    event_source: &str,
    id: &str,
) -> Result<Option<String>> {
    let Some(previous) = Event::previous_window_id(id) else {
        return Ok(None);
    };
    let Some(stored) = engine
        .store
        .get_event(Some(event_source), &previous)
        .await?
    else {
        return Ok(None);
    };
    let age = chrono::Utc::now() - stored.time;
    let window = chrono::Duration::from_std(engine.config.dedup_window).unwrap_or_default();
    Ok((age < window).then_some(previous))
}

async fn conflict(engine: &Arc<Engine>, event: &Event) -> Result<Option<Event>> {
    let Some(stored) = engine
        .store
        .get_event(Some(&event.source), &event.id)
        .await?
    else {
        return Ok(None);
    };
    let mut differs = Vec::new();
    if stored.kind != event.kind {
        differs.push("kind");
    }
    if stored.severity != event.severity {
        differs.push("severity");
    }
    if stored.observables != event.observables {
        differs.push("observables");
    }
    if stored.data != event.data {
        differs.push("data");
    }
    if differs.is_empty() {
        return Ok(None);
    }
    let body = serde_json::to_string(event).unwrap_or_default();
    let digest = belay_model::sha256_hex(body.as_bytes());
    let source: String = format!("conflict:{}", event.source)
        .chars()
        .take(256)
        .collect();
    Ok(Some(Event {
        id: format!("conflict-{}", &digest[..32]),
        kind: CONFLICT_KIND.into(),
        source,
        time: chrono::Utc::now(),
        severity: Severity::Medium,
        // The conflicting observables stay in `data`: nothing in them may be acted on as if
        // the event had been accepted.
        observables: Observables::default(),
        data: json!({
            "id": event.id,
            "differs": differs,
            "accepted": stored.to_value(),
            "conflicting": event.to_value(),
        }),
    }))
}

fn reap(
    r: Option<std::result::Result<crate::Result<crate::RunReport>, tokio::task::JoinError>>,
    stats: &mut IngestStats,
    errors: &mut (dyn Write + Send),
) {
    use belay_model::RunStatus;
    match r {
        Some(Ok(Ok(report))) => match report.status {
            RunStatus::Succeeded => stats.runs_succeeded += 1,
            RunStatus::WaitingApproval => stats.runs_waiting += 1,
            _ => {
                stats.runs_failed += 1;
                let _ = writeln!(
                    errors,
                    "run {} ({}) failed: {}",
                    report.run_id,
                    report.playbook,
                    report.error.unwrap_or_default()
                );
            }
        },
        Some(Ok(Err(e))) => {
            stats.runs_failed += 1;
            let _ = writeln!(errors, "a run could not be executed: {e}");
        }
        Some(Err(e)) => {
            stats.runs_failed += 1;
            let _ = writeln!(errors, "a run task ended abnormally: {e}");
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belay_connectors::Registry;
    use belay_playbook::{Catalog, PlaybookSet};
    use belay_store::{SqliteOptions, SqliteStore, Store};

    async fn run(engine: &Arc<Engine>, lines: &str) -> (IngestStats, String, String) {
        let (mut acks, mut errors) = (Vec::new(), Vec::new());
        let source = Source {
            name: "stdin".into(),
            start: 0,
            durable_cursor: false,
        };
        let reader = BufReader::new(lines.as_bytes());
        let stats = ingest(engine, reader, source, &mut acks, &mut errors, None)
            .await
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (stats, text(acks), text(errors))
    }

    #[tokio::test]
    async fn a_repeated_id_with_another_body_is_a_conflict_kept_for_a_person() {
        let dir = std::env::temp_dir().join(format!("belay-ingest-{}", belay_model::new_id()));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir, SqliteOptions::default()).unwrap());
        let engine = Engine::new(
            store.clone(),
            Arc::new(PlaybookSet::default()),
            Arc::new(Catalog::builtin()),
            Registry::new(),
            crate::EngineConfig::default(),
        );
        let first = r#"{"id":"e1","kind":"ids.alert","observables":{"ips":["192.0.2.1"]}}"#;
        let (stats, _, _) = run(&engine, &format!("{first}\n")).await;
        assert_eq!(stats.accepted, 1);

        // The same event again is a plain duplicate.
        let (stats, acks, errors) = run(&engine, &format!("{first}\n")).await;
        assert_eq!((stats.duplicates, stats.conflicts), (1, 0), "{errors}");
        assert!(acks.contains(r#""accepted":"duplicate""#), "{acks}");

        // Another body under the same id is reported and kept, not dropped.
        let other = r#"{"id":"e1","kind":"ids.alert","observables":{"ips":["198.51.100.9"]}}"#;
        let (stats, acks, errors) = run(&engine, &format!("{other}\n")).await;
        assert_eq!((stats.duplicates, stats.conflicts), (0, 1), "{errors}");
        assert!(acks.contains(r#""accepted":"conflict""#), "{acks}");
        assert!(errors.contains("event e1: conflict") && errors.contains("observables"));
        let id = errors
            .split("event conflict-")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .map(|hex| format!("conflict-{hex}"))
            .expect("the conflict event is named");
        let kept = store.get_event(None, &id).await.unwrap().expect("stored");
        assert_eq!(kept.kind, CONFLICT_KIND);
        assert_eq!(
            kept.data["conflicting"]["observables"]["ips"][0],
            "198.51.100.9"
        );
        assert_eq!(kept.data["accepted"]["observables"]["ips"][0], "192.0.2.1");
        assert!(kept.observables.ips.is_empty(), "nothing to act on");
        // The original is untouched.
        let stored = store.get_event(None, "e1").await.unwrap().unwrap();
        assert_eq!(stored.observables.ips, ["192.0.2.1"]);
        drop(engine);
        let _ = std::fs::remove_dir_all(dir);
    }
}
