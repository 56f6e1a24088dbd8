//! `belay logs …` (alias `belay syslog …`): the syslog/CEF listener, a file normalizer, and a
//! look-up of one stored event. Flags → `belay_logs` and the engine; no parsing logic here.

use crate::context::{Ctx, resume_in_background};
use crate::output::{Format, joined_or, print_json};
use anyhow::{Context, Result, bail};
use belay_engine::Engine;
use belay_logs::{Batch, Listener, ListenerConfig, Normalizer, Stats};
use belay_store::Accepted;
use clap::Subcommand;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// `belay logs …`.
#[derive(Subcommand)]
pub enum LogsCommand {
    /// Receive syslog (RFC 5424/3164, CEF) over UDP and TCP, store each message as an event and
    /// run the playbooks it triggers. Prints one JSON line per stored event; counters on exit.
    Listen {
        /// Address for both UDP and TCP, as every belay listener takes it (e.g. 0.0.0.0:514);
        /// `--udp` and `--tcp` set one protocol each.
        #[arg(long, value_name = "ADDR", conflicts_with_all = ["udp", "tcp"])]
        listen: Option<SocketAddr>,
        /// UDP address, e.g. 0.0.0.0:514.
        #[arg(long, value_name = "ADDR")]
        udp: Option<SocketAddr>,
        /// TCP address (octet-counted or newline framing, detected per connection).
        #[arg(long, value_name = "ADDR")]
        tcp: Option<SocketAddr>,
        /// Longest message kept; longer ones are truncated to it and flagged `data.truncated`.
        #[arg(long, default_value = "64KiB", value_parser = parse_size)]
        max_message: usize,
        /// TCP connections open at once; more are closed on accept.
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
        /// Close a TCP connection silent for this long (e.g. 10m, 30s).
        #[arg(long, default_value = "10m")]
        idle_timeout: String,
        /// Playbooks to run on the events (default: `playbooks` in belay.toml, else none).
        #[arg(long)]
        playbooks: Option<PathBuf>,
        /// Print the counters to standard error this often (e.g. 10s).
        #[arg(long)]
        stats_every: Option<String>,
        /// Do not print a line per stored event.
        #[arg(long)]
        quiet: bool,
    },
    /// Normalize a file of log lines (syslog, CEF, Suricata EVE, Windows event JSON, or a JSON
    /// array of DLP records) to events on standard output, one JSON object per line.
    Parse {
        /// Log files: syslog, JSON lines, Suricata EVE, CEF, Windows events, DLP exports.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Show one stored event.
    Event {
        /// The event's id.
        id: String,
        /// Its source: ids are unique per source (default: the first event accepted under
        /// the id).
        #[arg(long)]
        source: Option<String>,
    },
}

/// Runs `belay logs …`.
pub async fn run(ctx: &Ctx, command: LogsCommand) -> Result<ExitCode> {
    match command {
        LogsCommand::Listen {
            listen: both,
            udp,
            tcp,
            max_message,
            max_connections,
            idle_timeout,
            playbooks,
            stats_every,
            quiet,
        } => {
            let (udp, tcp) = match both {
                Some(a) => (Some(a), Some(a)),
                None => (udp, tcp),
            };
            if udp.is_none() && tcp.is_none() {
                bail!("give --listen ADDR (UDP and TCP), or --udp ADDR and/or --tcp ADDR");
            }
            let config = ListenerConfig {
                udp,
                tcp,
                max_message,
                max_connections,
                idle_timeout: belay_model::parse_duration(&idle_timeout).with_context(|| {
                    format!("--idle-timeout `{idle_timeout}` is not a duration like 10m")
                })?,
                source: "syslog".into(),
            };
            let stats_every = stats_every
                .map(|s| {
                    belay_model::parse_duration(&s)
                        .with_context(|| format!("--stats-every `{s}` is not a duration like 10s"))
                })
                .transpose()?;
            listen(ctx, config, playbooks, stats_every, quiet).await
        }
        LogsCommand::Parse { files, format } => parse(&files, format),
        LogsCommand::Event { id, source } => {
            let store = ctx.store().await?;
            match store.get_event(source.as_deref(), &id).await? {
                Some(e) => {
                    print_json(&e)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("error: no event `{id}`");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

/// `64KiB`, `1MiB`, `64k`, `65536`.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64KiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("`{text}` is not a size like 64KiB")),
    };
    n.checked_mul(mult)
        .filter(|&n| n > 0 && n <= 64 * 1024 * 1024)
        .ok_or_else(|| format!("`{text}`: the size must be between 1 byte and 64MiB"))
}

fn parse(files: &[PathBuf], format: Format) -> Result<ExitCode> {
    let normalizer = Normalizer::builtin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut parse_errors = 0u64;
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let source = format!("file:{}", f.display());
        let source: String = source
            .chars()
            .filter(|c| !c.is_control())
            .take(256)
            .collect();
        for (line, record) in belay_logs::normalize::split_records(&bytes) {
            let ctx = belay_logs::Context::new(source.clone());
            let Some(n) = normalizer.line(&record, &ctx) else {
                if let Err(e @ belay_logs::syslog::ParseError::OnlyNul(_)) =
                    belay_logs::syslog::parse(&record)
                {
                    parse_errors += 1;
                    eprintln!("{}:{line}: {e} (dropped)", f.display());
                }
                continue;
            };
            if let Some(e) = &n.parse_error {
                parse_errors += 1;
                eprintln!("{}:{line}: {e} (kept as a generic event)", f.display());
            }
            *kinds.entry(n.event.kind.clone()).or_default() += 1;
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&n.event)?)?,
                Format::Text => writeln!(
                    out,
                    "{}:{line}\t{}\t{}\t{}",
                    f.display(),
                    n.event.kind,
                    n.event.severity,
                    summary(&n.event)
                )?,
            }
        }
    }
    out.flush()?;
    let total: u64 = kinds.values().sum();
    let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!(
        "{total} event(s): {}; {parse_errors} line(s) with a parse error",
        joined_or(&by_kind, "none")
    );
    Ok(ExitCode::SUCCESS)
}

/// The fields that matter for a kind, for the text format.
fn summary(e: &belay_model::Event) -> String {
    let keys: &[&str] = match e.kind.as_str() {
        "auth.privilege_change" => &["action", "user", "group", "actor", "host"],
        "network.new_device" => &["mac", "ip", "hostname", "vendor"],
        "dlp.alert" => &["user", "policy", "channel", "file", "encrypted"],
        "ids.alert" => &["signature", "sid", "src_ip", "dest_ip"],
        _ => &["message"],
    };
    keys.iter()
        .filter_map(|k| match &e.data[*k] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(format!("{k}={s}")),
            v => Some(format!("{k}={v}")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn listen(
    ctx: &Ctx,
    config: ListenerConfig,
    playbooks: Option<PathBuf>,
    stats_every: Option<Duration>,
    quiet: bool,
) -> Result<ExitCode> {
    let dirs: Vec<PathBuf> = playbooks
        .or_else(|| ctx.config.playbooks.clone())
        .into_iter()
        .collect();
    let set = ctx.load_playbooks(&dirs)?;
    let engine = ctx.engine(set).await?;
    let listener = Listener::bind(config, Normalizer::builtin()).await?;
    let (udp, tcp) = listener.local_addrs();
    if let Some(a) = udp {
        eprintln!("listening on udp {a}");
    }
    if let Some(a) = tcp {
        eprintln!("listening on tcp {a}");
    }
    let stats = listener.stats();
    let resuming = resume_in_background(&engine);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (tx, rx) = mpsc::channel::<Batch>(64);
    let storing = tokio::spawn(store_batches(engine.clone(), rx, stats.clone(), quiet));
    let reporter = stats_every.map(|every| {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("stats: {}", stats.snapshot());
            }
        })
    });
    let receiving = tokio::spawn(listener.run(tx, shutdown_rx));
    wait_for_signal().await?;
    eprintln!("stopping: handing over complete messages, then waiting for running playbooks");
    let _ = shutdown_tx.send(true);
    receiving
        .await
        .context("the listener task ended abnormally")?;
    storing.await.context("the storing task ended abnormally")?;
    if let Some(r) = reporter {
        r.abort();
    }
    match resuming.await {
        Ok(Err(e)) => eprintln!("error: resuming unfinished runs: {e}"),
        Err(e) => eprintln!("error: the resume task ended abnormally: {e}"),
        Ok(Ok(_)) => {}
    }
    let last = stats.snapshot();
    eprintln!("stats: {last}");
    eprintln!("counters: {}", serde_json::to_string(&last)?);
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
    }
    Ok(())
}

/// Most events committed together.
const COMMIT: usize = 512;

/// Stores batches (several connections' together), acknowledges each after its commit, and
/// starts the runs the events trigger. Returns when every sender is gone and every run ended.
async fn store_batches(
    engine: Arc<Engine>,
    mut rx: mpsc::Receiver<Batch>,
    stats: Arc<Stats>,
    quiet: bool,
) {
    let mut runs: JoinSet<()> = JoinSet::new();
    let in_flight = engine.config.max_concurrent_runs.max(1) * 2;
    let stdout = std::io::stdout();
    while let Some(first) = rx.recv().await {
        let mut batches = vec![first];
        let mut count = batches[0].events.len();
        while count < COMMIT {
            match rx.try_recv() {
                Ok(b) => {
                    count += b.events.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
        let events: Vec<_> = batches
            .iter_mut()
            .flat_map(|b| b.events.drain(..))
            .map(|e| (e, None))
            .collect();
        let accepted = match engine.accept_batch(events).await {
            Ok(a) => a,
            Err(e) => {
                // Not durable: the TCP senders see their connection closed, unacknowledged.
                stats.store_errors.fetch_add(count as u64, Relaxed);
                eprintln!("error: cannot store {count} event(s): {e}");
                continue;
            }
        };
        for b in batches {
            if let Some(done) = b.done {
                let _ = done.send(());
            }
        }
        let mut lines = String::new();
        let mut to_run = Vec::new();
        for acc in accepted {
            match acc.accepted {
                Accepted::New => stats.stored.fetch_add(1, Relaxed),
                Accepted::Duplicate => stats.duplicates.fetch_add(1, Relaxed),
            };
            for (pb, msg) in &acc.trigger_errors {
                eprintln!(
                    "event {}: trigger of `{pb}` not evaluated: {msg}",
                    acc.event_id
                );
            }
            if !quiet {
                let line = serde_json::json!({
                    "event": acc.event_id, "kind": acc.event.kind, "accepted": acc.accepted,
                    "runs": acc.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                });
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
            for run in acc.runs {
                to_run.push((run, acc.event.clone()));
            }
        }
        {
            let mut out = stdout.lock();
            let _ = out.write_all(lines.as_bytes());
            let _ = out.flush();
        }
        for (run, event) in to_run {
            stats.runs_started.fetch_add(1, Relaxed);
            while runs.len() >= in_flight {
                runs.join_next().await;
            }
            let engine = engine.clone();
            runs.spawn(async move {
                match engine.execute_new(run, event).await {
                    Ok(r) if r.status == belay_model::RunStatus::Failed => eprintln!(
                        "run {} ({}) failed: {}",
                        r.run_id,
                        r.playbook,
                        r.error.unwrap_or_default()
                    ),
                    Ok(_) => {}
                    Err(e) => eprintln!("a run could not be executed: {e}"),
                }
            });
        }
        while runs.try_join_next().is_some() {}
    }
    while runs.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }
}
