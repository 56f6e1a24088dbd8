//! `belay email`: parse a message, or ingest reported messages as `phishing.reported` events.
//!
//! A message is moved away from its maildir or IMAP folder only after its event is durable
//! (after `accept_batch` returned); a crash in between leaves it in place, and reading it again
//! gives the same event id, acknowledged as a duplicate.

use crate::context::{Ctx, resume_in_background};
use crate::output::print_json;
use anyhow::{Context, Result, anyhow, bail};
use belay_mail::ParseOptions;
use belay_mail::source::{Files, Imap, ImapConfig, Maildir, Source};
use belay_store::Accepted;
use clap::{Args, Subcommand};
use ipnet::IpNet;
use serde_json::json;
use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::task::JoinSet;

/// Messages read and committed together.
const BATCH: usize = 64;

/// `belay email …`.
#[derive(Subcommand)]
pub enum EmailCommand {
    /// Parse one message (a file, or `-` for standard input) and print what `email.parse` returns.
    Parse {
        /// The message to parse (an .eml file).
        #[arg(default_value = "-")]
        file: String,
        /// Parse the suspect message attached (message/rfc822) to a user's report.
        #[arg(long)]
        unwrap: bool,
        /// A network of our own mail relays, skipped when finding the originating IP (repeatable).
        #[arg(long = "own-relay", value_name = "CIDR")]
        own_relays: Vec<IpNet>,
    },
    /// Read reported messages, turn each into a `phishing.reported` event, store it durably and
    /// run the playbooks it triggers.
    Ingest(IngestArgs),
}

#[derive(Args)]
#[group(id = "from", required = true, multiple = false)]
pub struct From {
    /// `.eml` files, read once.
    #[arg(long, num_args = 1.., value_name = "FILE", group = "from")]
    eml: Vec<PathBuf>,
    /// A maildir (new/ and cur/); handled messages move to its `.<MOVE_TO>` subfolder.
    #[arg(long, value_name = "DIR", group = "from")]
    maildir: Option<PathBuf>,
    /// An IMAP server: imap://host[:port] (plain) or imaps://host[:port] (TLS).
    #[arg(long, value_name = "URL", group = "from")]
    imap: Option<String>,
}

#[derive(Args)]
pub struct IngestArgs {
    #[command(flatten)]
    from: From,
    /// The IMAP folder to read.
    #[arg(long, default_value = "INBOX")]
    folder: String,
    /// Where handled messages go: an IMAP folder, or a maildir subfolder name.
    #[arg(long, default_value = "Handled")]
    move_to: String,
    /// IMAP user.
    #[arg(long)]
    user: Option<String>,
    /// The environment variable holding the IMAP password.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Read again at this interval until interrupted (maildir and IMAP; default 30s).
    #[arg(long, value_name = "DURATION")]
    poll: Option<String>,
    /// Read what is waiting once, then stop.
    #[arg(long)]
    once: bool,
    /// Playbook directory (default: `playbooks` in belay.toml).
    #[arg(long)]
    playbooks: Option<PathBuf>,
    /// Parse the report itself, not a message attached to it.
    #[arg(long)]
    no_unwrap: bool,
    /// A network of our own mail relays, skipped when finding the originating IP (repeatable).
    #[arg(long = "own-relay", value_name = "CIDR")]
    own_relays: Vec<IpNet>,
    /// Do not print an acknowledgement line per message.
    #[arg(long)]
    quiet: bool,
}

/// Runs `belay email …`.
pub async fn run(ctx: &Ctx, command: EmailCommand) -> Result<ExitCode> {
    match command {
        EmailCommand::Parse {
            file,
            unwrap,
            own_relays,
        } => parse(&file, unwrap, own_relays),
        EmailCommand::Ingest(args) => ingest(ctx, args).await,
    }
}

fn parse(file: &str, unwrap: bool, own_relays: Vec<IpNet>) -> Result<ExitCode> {
    let raw = if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(belay_mail::MAX_MESSAGE_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {file}"))?
    };
    let input = json!({
        "message": belay_mail::message_field(&raw).0,
        "encoding": belay_mail::message_field(&raw).1,
        "unwrap": unwrap,
    });
    let out = belay_mail::Email::new(own_relays)
        .parse_action(&input)
        .map_err(|e| anyhow!("{file}: {e}"))?;
    print_json(&out)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Stats {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    runs_started: u64,
    runs_failed: u64,
}

async fn ingest(ctx: &Ctx, args: IngestArgs) -> Result<ExitCode> {
    let dir = args
        .playbooks
        .clone()
        .or_else(|| ctx.config.playbooks.clone())
        .ok_or_else(|| {
            anyhow!(
                "give the playbook directory with --playbooks DIR (or `playbooks` in belay.toml)"
            )
        })?;
    let files_mode = !args.from.eml.is_empty();
    let mut source: Box<dyn Source> = if files_mode {
        Box::new(Files::new(args.from.eml.clone()))
    } else if let Some(dir) = &args.from.maildir {
        Box::new(Maildir::open(dir, &args.move_to)?)
    } else if let Some(url) = &args.from.imap {
        let user = args
            .user
            .clone()
            .ok_or_else(|| anyhow!("--imap needs --user"))?;
        let var = args.password_env.clone().ok_or_else(|| {
            anyhow!("--imap needs --password-env VAR (the password is read from that variable)")
        })?;
        let password = std::env::var(&var)
            .map_err(|_| anyhow!("the environment variable {var} (--password-env) is not set"))?;
        Box::new(Imap::new(ImapConfig {
            url: url.clone(),
            user,
            password,
            folder: args.folder.clone(),
            move_to: args.move_to.clone(),
        })?)
    } else {
        bail!("give --eml FILE..., --maildir DIR or --imap URL");
    };
    let poll = match &args.poll {
        Some(p) => belay_model::parse_duration(p)
            .with_context(|| format!("--poll `{p}` is not a duration like 30s"))?,
        None => std::time::Duration::from_secs(30),
    };
    if poll.is_zero() {
        bail!("--poll must be longer than zero");
    }
    let once = args.once || files_mode;
    let options = ParseOptions {
        unwrap: !args.no_unwrap,
        own_relays: args.own_relays.clone(),
        ..Default::default()
    };

    let set = ctx.load_playbooks(&[dir])?;
    let engine = ctx.engine(set).await?;
    let resumed = resume_in_background(&engine);
    let mut stats = Stats::default();
    let mut tasks: JoinSet<belay_engine::Result<belay_engine::RunReport>> = JoinSet::new();
    // Messages that are not messages stay where they are; say so once, not at every poll.
    let mut skipped: HashSet<String> = HashSet::new();
    let name = source.name();
    let mut result = Ok(());
    loop {
        let fetched = match source.fetch(BATCH + skipped.len()).await {
            Ok(f) => f,
            Err(e) if once => {
                result = Err(anyhow!(e).context(format!("cannot read {name}")));
                break;
            }
            Err(e) => {
                eprintln!("email ingest: cannot read {name}: {e}; retrying in {poll:?}");
                if wait_or_stop(poll).await {
                    break;
                }
                continue;
            }
        };
        let prepared = belay_mail::batch::prepare(fetched, &options, &name, &mut skipped);
        for (origin, e) in &prepared.rejected {
            stats.rejected += 1;
            eprintln!("{origin}: {e}; left in place");
        }
        let events: Vec<_> = prepared.events.into_iter().map(|e| (e, None)).collect();
        let ids = prepared.messages;
        if events.is_empty() {
            if once || wait_or_stop(poll).await {
                break;
            }
            continue;
        }
        // Durable first; only then may the messages leave their folder.
        let accepted = engine.accept_batch(events).await?;
        let handled: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
        if let Err(e) = source.handled(&handled).await {
            // The events are stored: reading these messages again only gives duplicates.
            eprintln!("email ingest: cannot move handled messages: {e}");
            if once {
                result = Err(anyhow!(e).context("cannot move handled messages"));
            }
        }
        for (acc, (_, origin)) in accepted.into_iter().zip(&ids) {
            match acc.accepted {
                Accepted::New => stats.accepted += 1,
                Accepted::Duplicate => stats.duplicates += 1,
            }
            for (pb, msg) in &acc.trigger_errors {
                eprintln!(
                    "event {}: trigger of `{pb}` not evaluated: {msg}",
                    acc.event_id
                );
            }
            if !args.quiet {
                let ack = json!({
                    "event": acc.event_id,
                    "origin": origin,
                    "accepted": acc.accepted,
                    "severity": acc.event.severity,
                    "runs": acc.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                });
                println!("{ack}");
            }
            for run in acc.runs {
                stats.runs_started += 1;
                let engine = engine.clone();
                let event = acc.event.clone();
                tasks.spawn(async move { engine.execute_new(run, event).await });
            }
        }
        while let Some(r) = tasks.try_join_next() {
            reap(r, &mut stats);
        }
        if result.is_err() {
            break;
        }
    }
    source.close().await;
    while let Some(r) = tasks.join_next().await {
        reap(r, &mut stats);
    }
    let resumed = resumed
        .await
        .context("the resume task ended abnormally")??;
    eprintln!(
        "email ingest: {} accepted, {} duplicate, {} rejected; runs: {} started, {} resumed, {} failed",
        stats.accepted,
        stats.duplicates,
        stats.rejected,
        stats.runs_started,
        resumed,
        stats.runs_failed
    );
    result?;
    Ok(if files_mode && stats.rejected > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn reap(
    r: std::result::Result<belay_engine::Result<belay_engine::RunReport>, tokio::task::JoinError>,
    stats: &mut Stats,
) {
    use belay_model::RunStatus;
    match r {
        Ok(Ok(report)) => {
            if !matches!(
                report.status,
                RunStatus::Succeeded | RunStatus::WaitingApproval
            ) {
                stats.runs_failed += 1;
                eprintln!(
                    "run {} ({}) failed: {}",
                    report.run_id,
                    report.playbook,
                    report.error.unwrap_or_default()
                );
            }
        }
        Ok(Err(e)) => {
            stats.runs_failed += 1;
            eprintln!("a run could not be executed: {e}");
        }
        Err(e) => {
            stats.runs_failed += 1;
            eprintln!("a run task ended abnormally: {e}");
        }
    }
}

/// Sleeps for `poll`; true when interrupted (Ctrl-C), meaning stop.
async fn wait_or_stop(poll: std::time::Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(poll) => false,
        _ = tokio::signal::ctrl_c() => true,
    }
}
