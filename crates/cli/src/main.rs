//! The `belay` binary: parses the command line and hands each command to its module under
//! `commands/`. Nothing else: no command's logic, no printing of results.

mod actor;
mod commands;
mod config;
mod context;
mod head_export;
mod head_signing;
mod ids;
mod labenv;
mod output;
mod paths;
mod remote;
mod secrets_key;

use anyhow::Result;
use clap::{Parser, Subcommand};
use commands::{
    actions, approvals, audit, backup, bench, cases, changes, checkpoint, demo, email, events,
    guardrails, guide, ingest, intel, lab, lint, logs, pause, reapply, replay, rollback, run, runs,
    secrets, serve, test, tokens, trust, users,
};
use context::{Ctx, Global};
use std::process::ExitCode;

/// A general-purpose allocator that stays fast when many tasks allocate at once.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (`mimalloc.h`; the bindings name no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with the allocator before it goes back to the system.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

#[derive(Parser)]
#[command(
    name = "belay",
    version,
    about = "Trustable security automation: playbooks that earn their autonomy."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the example playbooks end to end on a throw-away embedded store.
    Demo,
    /// The reference guides (playbooks, expressions, trust, serve, …), as the docs say them.
    Guide(guide::Args),
    /// The simulators of SaaS security products (EDR, SIEM, CMDB...), for trying playbooks.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Check playbooks; prints FILE:LINE:COL: error: MESSAGE for each problem.
    Lint(lint::Args),
    /// Run one playbook on one event.
    Run(run::Args),
    /// Run playbook tests (*.test.yaml).
    Test(test::Args),
    /// Read JSON-lines events from a file or stdin, store them durably and run what they trigger.
    Ingest(ingest::Args),
    /// E-mail: parse a message, or ingest reported messages as phishing.reported events.
    #[command(subcommand)]
    Email(email::EmailCommand),
    /// Runs and their steps.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Stored events: run them again through the playbooks' triggers.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// The action catalog.
    #[command(subcommand)]
    Actions(actions::ActionsCommand),
    /// The change journal.
    #[command(subcommand)]
    Changes(changes::ChangesCommand),
    /// Put a system that lost its state (e.g. Unbound after a restart) back into the state the
    /// journal says: every applied change of the family is issued again, in order.
    Reapply(reapply::Args),
    /// Undo changes, newest first; each target is read again and verified.
    Rollback(rollback::Args),
    /// Planned changes waiting for a person's decision.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Incident case files kept by playbooks (`case.*`).
    #[command(subcommand)]
    Cases(cases::CasesCommand),
    /// The trust each playbook step has earned; lifting demotions.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Run a playbook in shadow over past events: the changes, approvals and guardrail holds
    /// it would have produced.
    Replay(replay::Args),
    /// Named points in the change journal ("known good").
    #[command(subcommand)]
    Checkpoint(checkpoint::CheckpointCommand),
    /// Guardrails: explain their verdicts on one planned change.
    #[command(subcommand)]
    Guardrails(guardrails::GuardrailsCommand),
    /// The append-only, hash-chained audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Threat intel: import feeds, look values up, statistics.
    #[command(subcommand)]
    Intel(intel::IntelCommand),
    /// Syslog/CEF listener, log-file normalizer, stored events (alias: `belay syslog`).
    #[command(alias = "syslog", subcommand)]
    Logs(logs::LogsCommand),
    /// Measure durable runs per second on the store.
    Bench(bench::Args),
    /// The engine as a service: HTTP API, signed webhooks, resumption, until SIGTERM.
    Serve(serve::Args),
    /// People in the directory of principals (argon2id passwords, roles).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// API tokens for `belay serve` (shown once, stored hashed).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Pause all automation or one playbook: change steps are recorded as shadow, not applied.
    Pause(pause::PauseArgs),
    /// Lift a pause of automation (`belay pause`).
    #[command(alias = "resume-automation")]
    Unpause(pause::UnpauseArgs),
    /// A consistent online snapshot of the embedded store (PostgreSQL: use pg_dump).
    Backup(backup::Args),
    /// Connector credentials sealed in the store: set, list (names only), delete, rotate-key.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
}

/// How the process uses memory, set at start before any other thread.
fn tune_memory() {
    // No transparent huge pages: the allocator asks for them, and a 2 MB page backing a few
    // live objects costs the whole 2 MB of resident memory (a third of the engine's under load).
    // SAFETY: prctl with these arguments only sets a flag on this process.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // Memory freed goes back to the system after 10 ms instead of mimalloc's default second:
    // a run that frees one large batch and builds the next (a 200,000-address feed, its
    // rollback) otherwise holds both, and the freed one for no use. The same engine throughput
    // (`docs/performance.md`). An option set here overrides `MIMALLOC_PURGE_DELAY`.
    // SAFETY: sets one option value before any other thread starts.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`belay runs list | head`).
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tune_memory();
    let cli = Cli::parse();
    // `belay serve` sets up its own logs, in the format its configuration asks for.
    if !matches!(cli.command, Command::Serve(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("BELAY_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves the shared settings, then runs the command.
async fn dispatch(cli: Cli) -> Result<ExitCode> {
    // `belay secrets` sets what the connectors need: it does not build them.
    let connectors = !matches!(cli.command, Command::Secrets(_));
    let mut ctx = Ctx::with_connectors(&cli.global, connectors).await?;
    if ctx.remote.is_some() && !serves_remotely(&cli.command) {
        anyhow::bail!(
            "this command has no API equivalent: run it without --server (or BELAY_SERVER) on the host that holds the store"
        );
    }
    // The configured store's head is signed automatically when `[audit]` asks, except by the
    // commands that work elsewhere (demo, bench, lab) or on the trail itself (`audit`).
    if !matches!(
        cli.command,
        Command::Demo | Command::Lab(_) | Command::Bench(_) | Command::Audit(_) | Command::Guide(_)
    ) {
        ctx.enable_auto_signing()?;
    }
    let code = run_command(&ctx, cli.command).await;
    ctx.finish_auto_signing().await;
    code
}

/// Whether the command can talk to a server (`--server`): those with an API equivalent, and
/// those that never open the store.
fn serves_remotely(command: &Command) -> bool {
    use commands::trust::TrustCommand;
    matches!(
        command,
        Command::Demo
            | Command::Guide(_)
            | Command::Lab(_)
            | Command::Lint(_)
            | Command::Test(_)
            | Command::Ingest(_)
            | Command::Approvals(_)
            | Command::Rollback(_)
            | Command::Pause(_)
            | Command::Unpause(_)
            | Command::Trust(TrustCommand::Report { .. })
            | Command::Runs(runs::RunsCommand::List { .. } | runs::RunsCommand::Show(_))
            | Command::Changes(changes::ChangesCommand::List { .. })
            | Command::Audit(audit::AuditCommand::Verify { .. })
    )
}

/// Runs the command.
async fn run_command(ctx: &Ctx, command: Command) -> Result<ExitCode> {
    match command {
        Command::Demo => demo::run(ctx).await,
        Command::Guide(args) => guide::run(args),
        Command::Lab(command) => lab::run(command).await,
        Command::Lint(args) => lint::run(ctx, args),
        Command::Run(args) => run::run(ctx, args).await,
        Command::Test(args) => test::run(ctx, args).await,
        Command::Ingest(args) => ingest::run(ctx, args).await,
        Command::Email(command) => email::run(ctx, command).await,
        Command::Runs(command) => runs::run(ctx, command).await,
        Command::Events(command) => events::run(ctx, command).await,
        Command::Actions(command) => actions::run(ctx, command),
        Command::Changes(command) => changes::run(ctx, command).await,
        Command::Reapply(args) => reapply::run(ctx, args).await,
        Command::Rollback(args) => rollback::run(ctx, args).await,
        Command::Approvals(command) => approvals::run(ctx, command).await,
        Command::Cases(command) => cases::run(ctx, command).await,
        Command::Trust(command) => trust::run(ctx, command).await,
        Command::Replay(args) => replay::run(ctx, args).await,
        Command::Checkpoint(command) => checkpoint::run(ctx, command).await,
        Command::Guardrails(command) => guardrails::run(ctx, command).await,
        Command::Audit(command) => audit::run(ctx, command).await,
        Command::Intel(command) => intel::run(ctx, command).await,
        Command::Logs(command) => logs::run(ctx, command).await,
        Command::Bench(args) => bench::run(ctx, args).await,
        Command::Serve(args) => serve::run(ctx, args).await,
        Command::Users(command) => users::run(ctx, command).await,
        Command::Tokens(command) => tokens::run(ctx, command).await,
        Command::Pause(args) => pause::pause(ctx, args).await,
        Command::Unpause(args) => pause::unpause(ctx, args).await,
        Command::Backup(args) => backup::run(ctx, args).await,
        Command::Secrets(command) => secrets::run(ctx, command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start-up sets mimalloc's purge delay, and the option it sets is the purge delay (its
    /// default, a second, is the only option with that value), so it cannot change some other
    /// option after an upgrade.
    #[test]
    fn start_up_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one option value.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 1000);
        tune_memory();
        assert_eq!(get(), PURGE_DELAY_MS);
    }
}
