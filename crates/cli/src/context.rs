//! The settings every command shares: the global flags and `belay.toml`, resolved once into a
//! `Ctx` that opens the store, builds the connectors and starts an engine on demand.
//!
//! It never prints and never decides a command's exit code: commands do.

use crate::config::Config;
use crate::paths::dedup_paths;
use anyhow::{Context, Result, anyhow, bail};
use belay_connectors::{Blocklist, Connector, Core, Registry, SecretSource};
use belay_engine::{Engine, EngineConfig};
use belay_playbook::{Catalog, Playbook, PlaybookSet};
use belay_store::{PgOptions, PgStore, SqliteOptions, SqliteStore, Store, Synchronous};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The flags every command accepts.
#[derive(Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Configuration file (default: ./belay.toml when present).
    #[arg(long, global = true, env = "BELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store.
    #[arg(long, global = true, env = "BELAY_DATA")]
    pub data: Option<PathBuf>,
    /// PostgreSQL URL; use PostgreSQL instead of the embedded store.
    #[arg(long, global = true, env = "BELAY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Guardrail file or directory (default: ./guardrails when present).
    #[arg(long, global = true, env = "BELAY_GUARDRAILS")]
    pub guardrails: Option<PathBuf>,
    /// A running `belay serve` (http://HOST:PORT): commands with an API equivalent talk to it
    /// instead of opening the store, with the API token in BELAY_TOKEN.
    #[arg(long, global = true, env = "BELAY_SERVER", value_name = "URL")]
    pub server: Option<String>,
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
    /// Signs the audit head of the configured store as `[audit]` asks (see
    /// [`Ctx::enable_auto_signing`]).
    pub auto_sign: Option<Arc<crate::head_signing::AutoSigner>>,
    /// Where `${{ secrets.NAME }}` resolves from: the environment, the secrets file, then the
    /// secrets sealed in the store that the configuration references.
    pub secrets: SecretSource,
    /// The server given with `--server`, if any.
    pub remote: Option<crate::remote::Remote>,
}

impl Ctx {
    /// Resolves the global flags and `belay.toml`; builds the configured connectors (opening
    /// the secrets they reference from the store when neither the environment nor the secrets
    /// file sets them).
    pub async fn new(g: &Global) -> Result<Ctx> {
        Self::with_connectors(g, true).await
    }

    /// As [`Ctx::new`]; without `connectors`, the configured connectors are not built (nor
    /// their secrets resolved): for `belay secrets`, which sets what they will need.
    pub async fn with_connectors(g: &Global, connectors: bool) -> Result<Ctx> {
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
        let secrets = match &config.secrets_file {
            Some(p) => SecretSource::with_file(p)?,
            None => SecretSource::env(),
        };
        let remote = g
            .server
            .as_deref()
            .map(crate::remote::Remote::new)
            .transpose()?;
        let mut ctx = Ctx {
            config,
            guardrails_path,
            data,
            database_url,
            catalog,
            connectors: Vec::new(),
            auto_sign: None,
            secrets,
            remote,
        };
        // Against a server (`--server`), nothing runs here: no connectors are built.
        if connectors && ctx.remote.is_none() {
            ctx.open_stored_secrets().await?;
            ctx.connectors = configured_connectors(&ctx.config, &ctx.secrets, &ctx.catalog)?;
        }
        Ok(ctx)
    }

    /// Adds to [`Ctx::secrets`] the stored secrets the configuration references (connectors,
    /// webhook sources) that the environment and the secrets file do not set. Only those are
    /// opened, and only when a secrets key is configured.
    async fn open_stored_secrets(&mut self) -> Result<()> {
        let mut refs = Vec::new();
        for table in self.config.connectors.values() {
            collect_refs(&toml::Value::Table(table.clone()), &mut refs);
        }
        for h in &self.config.hooks {
            refs.extend(h.secrets.iter().map(|s| toml::Value::String(s.clone())));
        }
        let mut wanted: Vec<String> = Vec::new();
        for r in refs {
            if let toml::Value::String(text) = r
                && let Ok(Some(name)) = belay_connectors::secret::reference(&text)
                && !self.secrets.sets_without_store(name)
                && !wanted.iter().any(|w| w == name)
            {
                wanted.push(name.to_owned());
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let Some(ring) = crate::secrets_key::keyring(self)? else {
            self.secrets
                .note_store(", and not in belay's store: no secrets key is configured");
            return Ok(());
        };
        let store = self.store_with(self.synchronous()?).await?;
        for (name, value) in crate::commands::secrets::open_stored(&*store, &ring, &wanted).await? {
            self.secrets.add_stored(&name, value);
        }
        self.secrets.note_store(", and in belay's store");
        Ok(())
    }

    /// Signs the configured store's audit head automatically from now on, when `[audit]` sets
    /// `sign_every_entries` or `sign_every` (for the commands that work on that store).
    pub fn enable_auto_signing(&mut self) -> Result<()> {
        self.auto_sign =
            crate::head_signing::AutoSigner::from_config(&self.config.audit, &self.data)?;
        Ok(())
    }

    /// Signs the head one last time if it is due (the command is ending).
    pub async fn finish_auto_signing(&self) {
        if let Some(s) = &self.auto_sign {
            s.sign_if_due().await;
        }
    }

    /// The SQLite synchronous mode `storage.sqlite_synchronous` asks for.
    fn synchronous(&self) -> Result<Synchronous> {
        match self.config.storage.sqlite_synchronous.as_deref() {
            None | Some("full") => Ok(Synchronous::Full),
            Some("normal") => Ok(Synchronous::Normal),
            Some(other) => {
                bail!("storage.sqlite_synchronous must be `full` or `normal`, not `{other}`")
            }
        }
    }

    /// Opens the configured store (its audit head signed automatically when configured).
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        let store = self.store_with(self.synchronous()?).await?;
        if let Some(s) = &self.auto_sign {
            s.attach(store.clone());
        }
        Ok(store)
    }

    /// Opens the configured store, with this SQLite synchronous mode.
    pub async fn store_with(&self, synchronous: Synchronous) -> Result<Arc<dyn Store>> {
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

    /// Every connector: the built-in ones, then the configured ones replacing theirs.
    pub fn connectors(&self) -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(Core));
        r.register(Arc::new(Blocklist::new(
            self.data.join("lists"),
            self.config.lists.clone(),
        )));
        let notify =
            belay_connectors::Notify::new(self.config.notify.clone(), self.data.join("notify"));
        // Chat targets' tokens come from the secrets file when one is configured.
        let notify = match self
            .config
            .secrets_file
            .as_deref()
            .map(SecretSource::with_file)
        {
            Some(Ok(secrets)) => notify.with_secrets(secrets),
            _ => notify,
        };
        r.register(Arc::new(notify));
        r.register(Arc::new(belay_connectors::Dlp));
        r.register(Arc::new(belay_mail::Email::default()));
        r.register(Arc::new(belay_intel::Intel::new(self.data.clone())));
        for c in &self.connectors {
            r.register(c.clone());
        }
        r
    }

    /// The engine settings of `[engine]`.
    fn engine_config(&self) -> Result<EngineConfig> {
        let mut c = EngineConfig::default();
        if let Some(n) = self.config.engine.max_concurrent_runs {
            c.max_concurrent_runs = n.max(1);
        }
        if let Some(t) = &self.config.engine.action_timeout {
            c.action_timeout = belay_model::parse_duration(t).with_context(|| {
                format!("[engine] action_timeout `{t}` is not a duration like 30s or 1h")
            })?;
        }
        if let Some(t) = &self.config.engine.dedup_window {
            c.dedup_window = belay_model::parse_duration(t)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| {
                    format!("[engine] dedup_window `{t}` is not a duration like 24h or 7d")
                })?;
        }
        Ok(c)
    }

    /// Loads the playbooks under `paths`; every error, one per line, when any has one.
    pub fn load_playbooks(&self, paths: &[PathBuf]) -> Result<PlaybookSet> {
        PlaybookSet::load_paths(paths, &self.catalog).map_err(|errs| {
            let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            anyhow!("playbooks have errors:\n{}", text.join("\n"))
        })
    }

    /// Loads `playbook` with the playbooks in `dir` (the ones it may start), and returns the
    /// set and `playbook` as loaded in it; a parse error names the file.
    pub fn load_playbook_in(
        &self,
        playbook: &Path,
        dir: PathBuf,
    ) -> Result<(PlaybookSet, Arc<Playbook>)> {
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
        let set = self.load_playbooks(&dedup_paths(paths))?;
        let pb = set
            .get(&parsed.name)
            .ok_or_else(|| anyhow!("playbook `{}` did not load", parsed.name))?;
        Ok((set, pb))
    }

    /// Loads the guardrails from the configured path.
    pub fn guardrails(&self) -> Result<belay_engine::guard::Guardrails> {
        belay_engine::guard::Guardrails::load(&self.guardrails_path)
            .map_err(|e| anyhow!("guardrails: {e}"))
    }

    /// An engine over the store, the connectors and the guardrails, running `playbooks`;
    /// refuses playbooks naming a guardrail that does not exist.
    pub async fn engine(&self, playbooks: PlaybookSet) -> Result<Arc<Engine>> {
        let guardrails = self.guardrails()?;
        let unknown = unknown_guardrails(&playbooks, &guardrails);
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
            {
                let files = guardrail_files(&self.guardrails_path);
                EngineConfig {
                    guardrails_hash: guardrails_hash(&files),
                    guardrail_files: files,
                    ..self.engine_config()?
                }
            },
            Arc::new(guardrails),
        ))
    }
}

/// Each step naming a guardrail that does not exist, as `FILE:LINE:COL: error: …`: a typo
/// must not silently drop a limit.
pub fn unknown_guardrails(
    playbooks: &PlaybookSet,
    guardrails: &belay_engine::guard::Guardrails,
) -> Vec<String> {
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
    unknown
}

/// The guardrail files the engine loads from `path` (the same files, in the same order:
/// `*.yaml`/`*.yml` of a directory by name, or the one file), each as its name and text.
pub fn guardrail_files(path: &Path) -> Vec<(String, String)> {
    let files = if path.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        f.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")));
        f.sort();
        f
    } else if path.is_file() {
        vec![path.to_owned()]
    } else {
        return Vec::new();
    };
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, text)
        })
        .collect()
}

/// SHA-256 over guardrail files, each as its name and the SHA-256 of its text; empty when there
/// are none. Stored with every playbook version, and the key of the stored guardrail set.
pub fn guardrails_hash(files: &[(String, String)]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut listing = String::new();
    for (name, text) in files {
        listing.push_str(&format!(
            "{name}\0{}\n",
            belay_model::sha256_hex(text.as_bytes())
        ));
    }
    belay_model::sha256_hex(listing.as_bytes())
}

/// The connectors `[connectors.NAME]` in `belay.toml` describes, with their secrets resolved
/// from the environment, the secrets file and the store.
fn configured_connectors(
    config: &Config,
    secrets: &SecretSource,
    catalog: &Catalog,
) -> Result<Vec<Arc<dyn Connector>>> {
    if config.connectors.is_empty() {
        return Ok(Vec::new());
    }
    Ok(belay_connectors::build_configured(
        &config.connectors,
        secrets,
        catalog,
    )?)
}

/// Every string value under `v` (where `${{ secrets.NAME }}` references may be).
fn collect_refs(v: &toml::Value, out: &mut Vec<toml::Value>) {
    match v {
        toml::Value::String(_) => out.push(v.clone()),
        toml::Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        toml::Value::Table(t) => t.values().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// Starts resuming the unfinished runs in the background, saying on stderr how many each claim
/// takes; they share the engine's execution slots with new work. The task yields how many ran.
pub fn resume_in_background(
    engine: &Arc<Engine>,
) -> tokio::task::JoinHandle<belay_engine::Result<usize>> {
    let engine = engine.clone();
    tokio::spawn(async move {
        engine
            .resume(&mut |n| eprintln!("resuming {n} unfinished run(s)"))
            .await
    })
}
