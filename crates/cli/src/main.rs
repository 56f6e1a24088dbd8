//! The `belay` binary: thin glue from command-line flags to the engine, store and language.

mod cases;
mod config;
mod demo;
mod email;
mod intel;
mod lab;
mod labenv;
mod logs;
mod trust;

use anyhow::{Context, Result, anyhow, bail};
use belay_connectors::{Blocklist, Core, Registry};
use belay_engine::{Engine, EngineConfig, RunReport};
use belay_model::{Event, RunStatus};
use belay_playbook::{Catalog, Playbook, PlaybookSet};
use belay_store::{PgOptions, PgStore, RunFilter, SqliteOptions, SqliteStore, Store, Synchronous};
use clap::{Args, Parser, Subcommand, ValueEnum};
use config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// A general-purpose allocator that stays fast when many tasks allocate at once.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[derive(Args, Clone)]
struct Global {
    /// Configuration file (default: ./belay.toml when present).
    #[arg(long, global = true, env = "BELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store.
    #[arg(long, global = true, env = "BELAY_DATA")]
    data: Option<PathBuf>,
    /// PostgreSQL URL; use PostgreSQL instead of the embedded store.
    #[arg(long, global = true, env = "BELAY_DATABASE_URL")]
    database_url: Option<String>,
    /// Guardrail file or directory (default: ./guardrails when present).
    #[arg(long, global = true, env = "BELAY_GUARDRAILS")]
    guardrails: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the example playbooks end to end on a throw-away embedded store.
    Demo,
    /// The simulators of SaaS security products (EDR, SIEM, CMDB...), for trying playbooks.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Check playbooks; prints FILE:LINE:COL: error: MESSAGE for each problem.
    Lint {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run one playbook on one event.
    Run {
        playbook: PathBuf,
        #[arg(long)]
        event: PathBuf,
        /// Apply nothing; report what would happen.
        #[arg(long)]
        dry_run: bool,
        /// Other playbooks it may start (default: the playbook's directory).
        #[arg(long)]
        playbooks: Option<PathBuf>,
        /// The person running it, recorded as the event's source `user:USER` (with
        /// `approval.separation`, they may not approve its changes).
        #[arg(long = "as", value_name = "USER")]
        actor: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Run playbook tests (*.test.yaml).
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Read JSON-lines events from a file or stdin, store them durably and run what they trigger.
    Ingest {
        /// A file of JSON lines, or `-` for standard input.
        #[arg(default_value = "-")]
        input: String,
        #[arg(long)]
        playbooks: Option<PathBuf>,
        /// Do not print an acknowledgement line per event.
        #[arg(long)]
        quiet: bool,
    },
    /// E-mail: parse a message, or ingest reported messages as phishing.reported events.
    Email {
        #[command(subcommand)]
        command: email::EmailCommand,
    },
    /// Runs and their steps.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// The action catalog.
    Actions {
        #[command(subcommand)]
        command: ActionsCommand,
    },
    /// The change journal.
    Changes {
        #[command(subcommand)]
        command: ChangesCommand,
    },
    /// Put a system that lost its state (e.g. Unbound after a restart) back into the state the
    /// journal says: every applied change of the family is issued again, in order.
    Reapply {
        /// The action family, e.g. `dns`.
        family: String,
        /// Who asks (recorded in the audit trail).
        #[arg(long = "as", value_name = "USER")]
        actor: String,
    },
    /// Undo changes, newest first; each target is read again and verified.
    Rollback {
        #[command(flatten)]
        select: RollbackSelect,
        /// Report what would be undone; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Undo targets that changed since the change (drift) too.
        #[arg(long)]
        force: bool,
        /// Who is rolling back (recorded in the journal and the audit trail).
        #[arg(long = "as", value_name = "USER")]
        actor: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Planned changes waiting for a person's decision.
    Approvals {
        #[command(subcommand)]
        command: trust::ApprovalsCommand,
    },
    /// Incident case files kept by playbooks (`case.*`).
    Cases {
        #[command(subcommand)]
        command: cases::CasesCommand,
    },
    /// The trust each playbook step has earned; lifting demotions.
    Trust {
        #[command(subcommand)]
        command: trust::TrustCommand,
    },
    /// Run a playbook in shadow over past events: the changes, approvals and guardrail holds
    /// it would have produced.
    Replay {
        playbook: PathBuf,
        #[arg(long)]
        events: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Named points in the change journal ("known good").
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Guardrails: explain their verdicts on one planned change.
    Guardrails {
        #[command(subcommand)]
        command: GuardrailsCommand,
    },
    /// The append-only, hash-chained audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Threat intel: import feeds, look values up, statistics.
    Intel {
        #[command(subcommand)]
        command: intel::IntelCommand,
    },
    /// Syslog/CEF listener, log-file normalizer, stored events (alias: `belay syslog`).
    #[command(alias = "syslog")]
    Logs {
        #[command(subcommand)]
        command: logs::LogsCommand,
    },
    /// Measure durable runs per second on the store.
    Bench {
        #[arg(long, default_value_t = 20_000)]
        runs: usize,
        /// Runs in flight at once (512 keep the single writer's batches full; more only add
        /// queueing latency and memory).
        #[arg(long, default_value_t = 512)]
        concurrency: usize,
        /// SQLite synchronous mode for this measurement.
        #[arg(long, value_enum, default_value = "full")]
        synchronous: SyncArg,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SyncArg {
    Full,
    Normal,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Recent runs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        playbook: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One run with its steps.
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct RollbackSelect {
    /// One change.
    #[arg(long)]
    change: Option<String>,
    /// Every change of a run (and its sub-playbook runs).
    #[arg(long)]
    run: Option<String>,
    /// Every change after a checkpoint.
    #[arg(long = "to", value_name = "CHECKPOINT")]
    to: Option<String>,
    /// Every change at or after an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
}

#[derive(Subcommand)]
enum ChangesCommand {
    List {
        #[arg(long)]
        run: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum CheckpointCommand {
    Create {
        name: String,
        #[arg(long = "as", value_name = "USER")]
        actor: String,
    },
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum GuardrailsCommand {
    /// The verdict of every governing guardrail on one change, e.g.
    /// `belay guardrails check blocklist.add --with '{"list":"egress","entry":"203.0.113.9"}'`.
    Check {
        action: String,
        #[arg(long = "with", value_name = "JSON")]
        with: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Measure `never` lookups on a generated list of N networks.
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        cidrs: usize,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole chain; exit 1 naming the first broken entry.
    Verify,
    /// Write entries to standard output.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Jsonl,
    Cef,
}

#[derive(Subcommand)]
enum ActionsCommand {
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    Show {
        name: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`belay runs list | head`).
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // No transparent huge pages: the allocator asks for them, and a 2 MB page backing a few
    // live objects costs the whole 2 MB of resident memory (a third of the engine's under load).
    // SAFETY: prctl with these arguments only sets a flag on this process.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BELAY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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

/// Resolved settings shared by the commands.
pub struct Ctx {
    pub config: Config,
    pub guardrails_path: PathBuf,
    pub data: PathBuf,
    pub database_url: Option<String>,
    pub catalog: Arc<Catalog>,
    /// Connectors from `[connectors.NAME]`, replacing the built-in ones of their family.
    pub connectors: Vec<Arc<dyn belay_connectors::Connector>>,
}

impl Ctx {
    fn new(g: &Global) -> Result<Ctx> {
        let config = Config::load(g.config.as_deref())?;
        let data = g
            .data
            .clone()
            .or_else(|| config.data.clone())
            .unwrap_or_else(|| PathBuf::from("belay-data"));
        let database_url = g
            .database_url
            .clone()
            .or_else(|| config.database_url.clone());
        let guardrails_path = g
            .guardrails
            .clone()
            .or_else(|| config.guardrails.clone())
            .unwrap_or_else(|| PathBuf::from("guardrails"));
        let catalog = Arc::new(Catalog::builtin());
        let connectors = lab::configured_connectors(&config, &catalog)?;
        Ok(Ctx {
            config,
            guardrails_path,
            data,
            database_url,
            catalog,
            connectors,
        })
    }

    fn synchronous(&self) -> Result<Synchronous> {
        match self.config.storage.sqlite_synchronous.as_deref() {
            None | Some("full") => Ok(Synchronous::Full),
            Some("normal") => Ok(Synchronous::Normal),
            Some(other) => {
                bail!("storage.sqlite_synchronous must be `full` or `normal`, not `{other}`")
            }
        }
    }

    async fn store(&self) -> Result<Arc<dyn Store>> {
        self.store_with(self.synchronous()?).await
    }

    async fn store_with(&self, synchronous: Synchronous) -> Result<Arc<dyn Store>> {
        Ok(match &self.database_url {
            Some(url) => {
                let opts = PgOptions {
                    schema: self.config.storage.postgres_schema.clone(),
                    ..Default::default()
                };
                Arc::new(
                    PgStore::connect(url, opts)
                        .await
                        .context("cannot open the PostgreSQL store")?,
                )
            }
            None => {
                let opts = SqliteOptions {
                    synchronous,
                    ..Default::default()
                };
                Arc::new(
                    SqliteStore::open(&self.data, opts).with_context(|| {
                        format!("cannot open the store in {}", self.data.display())
                    })?,
                )
            }
        })
    }

    fn connectors(&self) -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(Core));
        r.register(Arc::new(Blocklist::new(
            self.data.join("lists"),
            self.config.lists.clone(),
        )));
        r.register(Arc::new(belay_connectors::Notify::new(
            self.config.notify.clone(),
            self.data.join("notify"),
        )));
        r.register(Arc::new(belay_connectors::Dlp));
        r.register(email::connector());
        r.register(Arc::new(belay_intel::Intel::new(self.data.clone())));
        for c in &self.connectors {
            r.register(c.clone());
        }
        r
    }

    fn engine_config(&self) -> Result<EngineConfig> {
        let mut c = EngineConfig::default();
        if let Some(n) = self.config.engine.max_concurrent_runs {
            c.max_concurrent_runs = n.max(1);
        }
        if let Some(t) = &self.config.engine.action_timeout {
            c.action_timeout = humantime_parse(t)?;
        }
        Ok(c)
    }

    fn load_playbooks(&self, paths: &[PathBuf]) -> Result<PlaybookSet> {
        PlaybookSet::load_paths(paths, &self.catalog).map_err(|errs| {
            let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            anyhow!("playbooks have errors:\n{}", text.join("\n"))
        })
    }

    fn guardrails(&self) -> Result<belay_engine::guard::Guardrails> {
        belay_engine::guard::Guardrails::load(&self.guardrails_path)
            .map_err(|e| anyhow!("guardrails: {e}"))
    }

    async fn engine(&self, playbooks: PlaybookSet) -> Result<Arc<Engine>> {
        let guardrails = self.guardrails()?;
        // A step may only name guardrails that exist: a typo must not silently drop a limit.
        let mut unknown = Vec::new();
        for pb in playbooks.iter() {
            for step in &pb.steps {
                for (g, pos) in &step.guardrails {
                    if guardrails.get(g).is_none() {
                        unknown.push(format!(
                            "{}:{pos}: error: unknown guardrail `{g}`",
                            pb.path.display()
                        ));
                    }
                }
            }
        }
        if !unknown.is_empty() {
            bail!(
                "{}\n(guardrails are loaded from {})",
                unknown.join("\n"),
                self.guardrails_path.display()
            );
        }
        Ok(Engine::with_guardrails(
            self.store().await?,
            Arc::new(playbooks),
            self.catalog.clone(),
            self.connectors(),
            self.engine_config()?,
            Arc::new(guardrails),
        ))
    }
}

fn humantime_parse(text: &str) -> Result<std::time::Duration> {
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{text}` is not a duration like 30s"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => bail!("`{text}` is not a duration like 30s"),
    })
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx::new(&cli.global)?;
    match cli.command {
        Command::Demo => demo::run(&ctx).await,
        Command::Lab { command } => lab::run(command).await,
        Command::Lint { paths } => lint(&ctx, &paths),
        Command::Run {
            playbook,
            event,
            dry_run,
            playbooks,
            actor,
            format,
        } => run(&ctx, &playbook, &event, dry_run, playbooks, actor, format).await,
        Command::Approvals { command } => trust::approvals_cmd(&ctx, command).await,
        Command::Trust { command } => trust::trust_cmd(&ctx, command).await,
        Command::Cases { command } => cases::cases_cmd(&ctx, command).await,
        Command::Replay {
            playbook,
            events,
            format,
        } => trust::replay(&ctx, &playbook, &events, format).await,
        Command::Test { paths } => test(&ctx, &paths).await,
        Command::Ingest {
            input,
            playbooks,
            quiet,
        } => ingest(&ctx, &input, playbooks, quiet).await,
        Command::Email { command } => email::run(&ctx, command).await,
        Command::Runs { command } => runs(&ctx, command).await,
        Command::Actions { command } => actions(&ctx, command),
        Command::Audit { command } => audit(&ctx, command).await,
        Command::Changes {
            command: ChangesCommand::List { run, format },
        } => changes(&ctx, run, format).await,
        Command::Reapply { family, actor } => {
            valid_actor(&actor)?;
            trust::known_user(&ctx, &actor)?;
            let engine = ctx.engine(PlaybookSet::default()).await?;
            let done = belay_engine::reapply::reapply(&engine, &family, &actor).await?;
            let restored = done.iter().filter(|r| r.restored).count();
            let failed = done.iter().filter(|r| r.error.is_some()).count();
            for r in &done {
                let what = match (&r.error, r.restored) {
                    (Some(e), _) => format!("failed: {e}"),
                    (None, true) => "restored".into(),
                    (None, false) => "already in place".into(),
                };
                println!("{:<24} {:<40} {what}", r.action, r.target);
            }
            println!(
                "{} change(s) re-issued: {restored} restored, {} already in place, {failed} failed",
                done.len(),
                done.len() - restored - failed
            );
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Rollback {
            select,
            dry_run,
            force,
            actor,
            format,
        } => rollback(&ctx, select, dry_run, force, actor, format).await,
        Command::Checkpoint { command } => checkpoint(&ctx, command).await,
        Command::Guardrails { command } => guardrails(&ctx, command).await,
        Command::Intel { command } => intel::run(&ctx, command).await,
        Command::Logs { command } => logs::run(&ctx, command).await,
        Command::Bench {
            runs,
            concurrency,
            synchronous,
            format,
        } => bench(&ctx, runs, concurrency, synchronous, format).await,
    }
}

fn lint(ctx: &Ctx, paths: &[PathBuf]) -> Result<ExitCode> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(
            belay_playbook::playbook_files(p)
                .with_context(|| format!("cannot read {}", p.display()))?,
        );
    }
    if files.is_empty() {
        bail!("no playbook files (*.yaml) under the given paths");
    }
    match PlaybookSet::load(&files, &ctx.catalog) {
        Ok(set) => {
            println!("{} playbook(s) OK", set.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            let mut n = 0;
            for e in &errs {
                n += e.diagnostics.len();
                println!("{e}");
            }
            eprintln!("{n} error(s) in {} file(s)", errs.len());
            Ok(ExitCode::from(1))
        }
    }
}

fn read_event(path: &Path) -> Result<Event> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read event {}", path.display()))?;
    Event::from_json_str(&text).with_context(|| format!("{}", path.display()))
}

async fn run(
    ctx: &Ctx,
    playbook: &Path,
    event: &Path,
    dry_run: bool,
    playbooks: Option<PathBuf>,
    actor: Option<String>,
    format: Format,
) -> Result<ExitCode> {
    if let Some(a) = &actor {
        trust::known_user(ctx, a)?;
    }
    let dir = playbooks.unwrap_or_else(|| parent_dir(playbook));
    let mut paths = vec![dir];
    if playbook.is_file() {
        paths.push(playbook.to_owned());
    }
    let parsed = Playbook::load(playbook).map_err(|d| {
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
    let mut event = read_event(event)?;
    if let Some(a) = actor {
        event.source = format!("user:{a}");
    }
    let engine = ctx.engine(set).await?;
    let report = engine.run_once(&pb, event, dry_run).await?;
    print_report(&report, format)?;
    Ok(if report.status == RunStatus::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The directory holding `file`: `.` for a bare file name.
fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn dedup_paths(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    // A directory already covers the files in it.
    let dirs: Vec<PathBuf> = paths
        .iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    paths
        .into_iter()
        .filter(|p| {
            !(p.is_file()
                && p.canonicalize()
                    .ok()
                    .and_then(|c| c.parent().map(Path::to_path_buf))
                    .is_some_and(|d| dirs.contains(&d)))
        })
        .collect()
}

fn print_report(report: &RunReport, format: Format) -> Result<()> {
    if format == Format::Json {
        let steps: Vec<serde_json::Value> = report
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "step": s.key, "action": s.action, "with": s.with, "decision": s.decision,
                    "trust": s.trust, "status": s.status, "output": s.output, "error": s.error,
                })
            })
            .collect();
        let out = serde_json::json!({
            "run_id": report.run_id, "playbook": report.playbook, "event_id": report.event_id,
            "status": report.status, "error": report.error, "steps": steps,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "run {} ({}) {}",
        report.run_id, report.playbook, report.status
    );
    if let Some(e) = &report.error {
        println!("  error: {e}");
    }
    for s in &report.steps {
        let trust = s.trust.map(|t| format!(" trust={t}")).unwrap_or_default();
        println!(
            "  {:<24} {:<22} {:<14} {:<10}{trust}",
            s.key,
            s.action,
            s.decision.as_str(),
            s.status.as_str()
        );
        println!("      with   {}", s.with);
        if !s.output.is_null() {
            println!("      output {}", s.output);
        }
        if let Some(e) = &s.error {
            println!("      error  {e}");
        }
    }
    Ok(())
}

async fn test(ctx: &Ctx, paths: &[PathBuf]) -> Result<ExitCode> {
    let files = belay_engine::playtest::test_files(paths).context("cannot list test files")?;
    if files.is_empty() {
        bail!("no playbook tests (*.test.yaml) under the given paths");
    }
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        let dir = parent_dir(&f);
        let r = belay_engine::playtest::run_case(&f, &[dir], &ctx.catalog).await;
        if r.passed() {
            passed += 1;
            println!("PASS {} ({})", r.name, f.display());
        } else {
            failed += 1;
            println!("FAIL {} ({})", r.name, f.display());
            for m in &r.failures {
                println!("    {m}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn ingest(
    ctx: &Ctx,
    input: &str,
    playbooks: Option<PathBuf>,
    quiet: bool,
) -> Result<ExitCode> {
    let dir = playbooks
        .or_else(|| ctx.config.playbooks.clone())
        .ok_or_else(|| {
            anyhow!(
                "give the playbook directory with --playbooks DIR (or `playbooks` in belay.toml)"
            )
        })?;
    let set = ctx.load_playbooks(&[dir])?;
    let engine = ctx.engine(set).await?;
    // Unfinished runs resume alongside new events, sharing the engine's execution slots.
    let resuming = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .resume(&mut |n| eprintln!("resuming {n} unfinished run(s)"))
                .await
        })
    };
    // Decisions made while ingesting (from `belay approvals`) and deadlines that pass are
    // picked up every second.
    let decisions = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = engine.pick_up_decisions().await {
                    tracing::error!("picking up approval decisions failed: {e}");
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
        belay_engine::ingest::ingest(&engine, reader, source, &mut *acks, &mut errors).await?
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
        )
        .await?
    };
    let resumed = resuming
        .await
        .context("the resume task ended abnormally")??;
    decisions.abort();
    eprintln!(
        "ingest: {} accepted, {} duplicate, {} conflict, {} rejected; runs: {} started, {} resumed, {} succeeded, {} failed, {} waiting",
        stats.accepted,
        stats.duplicates,
        stats.conflicts,
        stats.rejected,
        stats.runs_started,
        resumed,
        stats.runs_succeeded,
        stats.runs_failed,
        stats.runs_waiting
    );
    Ok(ExitCode::SUCCESS)
}

async fn runs(ctx: &Ctx, command: RunsCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        RunsCommand::List {
            status,
            playbook,
            limit,
            format,
        } => {
            let status = status
                .map(|s| s.parse::<RunStatus>().map_err(|e| anyhow!(e)))
                .transpose()?;
            let runs = store
                .list_runs(&RunFilter {
                    status,
                    playbook,
                    event_id: None,
                    limit: Some(limit),
                })
                .await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:<38} {:<24} {:<17} {:<24} EVENT",
                    "RUN", "PLAYBOOK", "STATUS", "CREATED"
                );
                for r in runs {
                    println!(
                        "{:<38} {:<24} {:<17} {:<24} {}",
                        r.id,
                        r.playbook,
                        r.status.as_str(),
                        belay_model::ms_to_rfc3339(r.created_at),
                        r.event_id
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { id, format } => {
            let run = store
                .get_run(&id)
                .await?
                .ok_or_else(|| anyhow!("no run `{id}`"))?;
            let steps = store.steps(&id).await?;
            print_report(&RunReport::from_records(&run, &steps), format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn guardrails(ctx: &Ctx, command: GuardrailsCommand) -> Result<ExitCode> {
    match command {
        GuardrailsCommand::Check {
            action,
            with,
            format,
        } => {
            let spec = ctx
                .catalog
                .get(&action)
                .ok_or_else(|| anyhow!("no action `{action}`"))?;
            let input: serde_json::Value =
                serde_json::from_str(&with).context("--with is not JSON")?;
            if let Err(errs) = spec.validate_input(&input) {
                bail!("invalid inputs for `{action}`: {}", errs.join("; "));
            }
            let guardrails = ctx.guardrails()?;
            let store = ctx.store().await?;
            let mut recent = std::collections::HashMap::new();
            let mut baselines = std::collections::HashMap::new();
            let now = belay_model::now_ms();
            for g in guardrails.governing(&action, &[]) {
                let actions = guardrails.actions_of(g, &ctx.catalog);
                let window = g.rate.map(|(_, per)| per).or(g.baseline.map(|b| b.per));
                if let Some(per) = window {
                    let since = now - per.as_millis() as i64;
                    recent.insert(g.name.clone(), store.count_changes(&actions, since).await?);
                }
                if let Some(b) = &g.baseline {
                    let since = now - b.lookback().as_millis() as i64;
                    let history = store.change_history(&actions, since).await?;
                    baselines.insert(g.name.clone(), b.learn(&history, now));
                }
            }
            let targets = vec![spec.target_of(&input)];
            let verdicts = guardrails.check(
                &[],
                &belay_engine::guard::Context {
                    action: spec,
                    targets: &targets,
                    recent: &recent,
                    baselines: &baselines,
                },
            );
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&verdicts)?);
            } else if verdicts.is_empty() {
                println!(
                    "no guardrail governs `{action}` (loaded from {})",
                    ctx.guardrails_path.display()
                );
            } else {
                for v in &verdicts {
                    let what = if v.pass {
                        "pass".to_string()
                    } else {
                        format!("{:?}", v.on_violation).to_lowercase()
                    };
                    println!("{:<28} {:<5} {}", v.guardrail, what, v.reason);
                }
            }
            Ok(if verdicts.iter().all(|v| v.pass) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        GuardrailsCommand::Bench { cidrs } => {
            let r = belay_engine::guard::bench_never(cidrs);
            println!(
                "never list: {} networks loaded in {:.2}s ({} ranges after merging)",
                cidrs, r.load_secs, r.ranges
            );
            println!(
                "lookup: {:.0} ns per address ({} lookups, {} hits)",
                r.ns_per_lookup, r.lookups, r.hits
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn changes(ctx: &Ctx, run: Option<String>, format: Format) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let changes = store.changes(run.as_deref()).await?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&changes)?);
    } else {
        println!(
            "{:<38} {:<18} {:<22} {:<20} {:<9} ALLOWED BY",
            "CHANGE", "ACTION", "TARGET", "STEP", "STATUS"
        );
        for c in changes {
            println!(
                "{:<38} {:<18} {:<22} {:<20} {:<9} {}",
                c.id,
                c.action,
                c.target,
                c.step_key,
                c.status.as_str(),
                c.allowed_by
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn valid_actor(actor: &str) -> Result<()> {
    if actor.trim().is_empty() || actor.len() > 128 || actor.chars().any(char::is_control) {
        bail!("--as needs a user name (1 to 128 printable characters)");
    }
    Ok(())
}

async fn rollback(
    ctx: &Ctx,
    s: RollbackSelect,
    dry_run: bool,
    force: bool,
    actor: String,
    format: Format,
) -> Result<ExitCode> {
    use belay_engine::rollback::{Outcome, RollbackOptions, Selection};
    trust::known_user(ctx, &actor)?;
    let selection = match (s.change, s.run, s.to, s.since) {
        (Some(c), ..) => Selection::Change(c),
        (_, Some(r), ..) => Selection::Run(r),
        (_, _, Some(t), _) => Selection::Checkpoint(t),
        (_, _, _, Some(t)) => Selection::Since(
            chrono::DateTime::parse_from_rfc3339(&t)
                .with_context(|| format!("--since `{t}` is not an RFC 3339 time"))?
                .timestamp_millis(),
        ),
        _ => bail!("choose what to roll back: --change, --run, --to or --since"),
    };
    let engine = ctx.engine(PlaybookSet::default()).await?;
    let report = belay_engine::rollback::rollback(
        &engine,
        selection,
        RollbackOptions {
            dry_run,
            force,
            actor,
        },
    )
    .await?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for i in &report.items {
            let o = serde_json::to_value(i.outcome)?
                .as_str()
                .unwrap_or_default()
                .to_owned();
            println!(
                "{o:<13} {} {} {}  ({})",
                i.action, i.target, i.change_id, i.detail
            );
        }
        println!(
            "{} reverted, {} unchanged, {} kept (irreversible), {} drifted, {} failed{}",
            report.count(Outcome::Reverted),
            report.count(Outcome::Unchanged),
            report.count(Outcome::Irreversible),
            report.count(Outcome::Drifted),
            report.count(Outcome::Failed),
            if dry_run {
                format!(
                    ", {} would be reverted (dry run)",
                    report.count(Outcome::WouldRevert)
                )
            } else {
                String::new()
            }
        );
        if let Some(r) = &report.rollback_run {
            println!("rollback run {r} (roll it back to redo)");
        }
    }
    let bad = report.count(Outcome::Failed) + report.count(Outcome::Drifted);
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn checkpoint(ctx: &Ctx, command: CheckpointCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        CheckpointCommand::Create { name, actor } => {
            trust::known_user(ctx, &actor)?;
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                bail!("a checkpoint name is 1 to 128 printable characters");
            }
            let cp = store.create_checkpoint(&name, &actor).await?;
            println!(
                "checkpoint {} after change {}",
                cp.name,
                cp.last_change_id.as_deref().unwrap_or("(none)")
            );
        }
        CheckpointCommand::List { format } => {
            let cps = store.checkpoints().await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&cps)?);
            } else {
                for c in cps {
                    println!(
                        "{:<24} {} by {} after change {}",
                        c.name,
                        belay_model::ms_to_rfc3339(c.created_at),
                        c.actor,
                        c.last_change_id.as_deref().unwrap_or("(none)")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(ctx: &Ctx, command: AuditCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        AuditCommand::Verify => match belay_store::verify_audit(store.as_ref()).await? {
            Ok(n) => {
                println!("audit chain intact: {n} entries");
                Ok(ExitCode::SUCCESS)
            }
            Err(b) => {
                println!("audit chain broken at entry {}: {}", b.seq, b.reason);
                Ok(ExitCode::from(1))
            }
        },
        AuditCommand::Export { format, since } => {
            let since_ms = since
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(&t)
                        .map(|d| d.timestamp_millis())
                        .with_context(|| format!("--since `{t}` is not an RFC 3339 time"))
                })
                .transpose()?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut after = 0;
            loop {
                let page = store.audit_entries(after, 5000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in page.iter().filter(|e| since_ms.is_none_or(|s| e.at >= s)) {
                    match format {
                        ExportFormat::Jsonl => writeln!(out, "{}", serde_json::to_string(e)?)?,
                        ExportFormat::Cef => writeln!(out, "{}", cef_line(e))?,
                    }
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One audit entry as an ArcSight CEF line.
fn cef_line(e: &belay_model::AuditEntry) -> String {
    fn header(s: &str) -> String {
        s.replace('\\', "\\\\").replace('|', "\\|")
    }
    fn ext(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('=', "\\=")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    }
    let severity = if e.kind.contains("failed") || e.kind.contains("denied") {
        7
    } else {
        3
    };
    format!(
        "CEF:0|belay|belay|{}|{}|{}|{severity}|rt={} suser={} cs1Label=subject cs1={} cs2Label=hash cs2={} cn1Label=seq cn1={} msg={}",
        env!("CARGO_PKG_VERSION"),
        header(&e.kind),
        header(&e.kind),
        e.at,
        ext(&e.actor),
        ext(&e.subject),
        e.hash,
        e.seq,
        ext(&belay_model::audit::canonical_json(&e.detail)),
    )
}

fn actions(ctx: &Ctx, command: ActionsCommand) -> Result<ExitCode> {
    match command {
        ActionsCommand::List { format } => {
            let all: Vec<_> = ctx.catalog.iter().collect();
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for a in all {
                    let inverse = a
                        .inverse
                        .as_ref()
                        .map(|i| format!(" (inverse: {})", i.action))
                        .unwrap_or_default();
                    println!(
                        "{:<28} {:<7} {}{inverse}",
                        a.name,
                        a.kind.to_string(),
                        a.description
                    );
                }
            }
        }
        ActionsCommand::Show { name, format } => {
            let a = ctx
                .catalog
                .get(&name)
                .ok_or_else(|| match ctx.catalog.suggest(&name) {
                    Some(s) => anyhow!("no action `{name}`; did you mean `{s}`?"),
                    None => anyhow!("no action `{name}`"),
                })?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(a)?);
            } else {
                println!("{} ({})\n  {}", a.name, a.kind, a.description);
                if let Some(t) = &a.target {
                    println!("  target: input `{}` ({:?})", t.field, t.kind);
                }
                if let Some(s) = &a.state {
                    println!("  state:  {s}");
                }
                if let Some(i) = &a.inverse {
                    println!("  inverse: {} with {:?}", i.action, i.with);
                }
                if let Some(r) = &a.irreversible {
                    println!("  irreversible: {r}");
                }
                println!("  inputs:  {}", serde_json::to_string_pretty(&a.inputs)?);
                println!("  outputs: {}", serde_json::to_string_pretty(&a.outputs)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    ctx: &Ctx,
    runs: usize,
    concurrency: usize,
    sync: SyncArg,
    format: Format,
) -> Result<ExitCode> {
    let synchronous = match sync {
        SyncArg::Full => Synchronous::Full,
        SyncArg::Normal => Synchronous::Normal,
    };
    // A fresh embedded store unless --data or a database is given explicitly.
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let explicit = std::env::args().any(|a| a == "--data" || a.starts_with("--data="))
        || std::env::var_os("BELAY_DATA").is_some();
    let data = if explicit {
        ctx.data.clone()
    } else {
        tmp.path().to_path_buf()
    };
    let bench_ctx = Ctx {
        config: Config::default(),
        guardrails_path: ctx.guardrails_path.clone(),
        data,
        database_url: ctx.database_url.clone(),
        catalog: ctx.catalog.clone(),
        connectors: Vec::new(),
    };
    let store = bench_ctx.store_with(synchronous).await?;
    let label = match store.kind() {
        "sqlite" => format!(
            "sqlite (WAL, synchronous={})",
            if synchronous == Synchronous::Full {
                "FULL"
            } else {
                "NORMAL"
            }
        ),
        other => other.to_string(),
    };
    let r = belay_engine::bench::run(
        store,
        label,
        belay_engine::bench::BenchOptions { runs, concurrency },
    )
    .await?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("store:        {}", r.store);
        println!(
            "runs:         {} in {:.2}s ({} in flight)",
            r.runs, r.seconds, r.concurrency
        );
        println!("runs/s:       {:.0}", r.runs_per_sec);
        println!("latency p50:  {:.2} ms", r.p50_ms);
        println!("latency p99:  {:.2} ms", r.p99_ms);
        println!("peak RSS:     {:.1} MB", r.peak_rss_mb);
        println!(
            "CPU per run:  {:.0} µs ({:.0} µs on the store's writer)",
            r.cpu_us_per_run, r.writer_cpu_us_per_run
        );
        println!("written/run:  {:.1} KB", r.written_kb_per_run);
    }
    Ok(ExitCode::SUCCESS)
}
