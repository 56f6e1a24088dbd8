//! `belay serve`: the engine as a service. Loads the playbooks and guardrails, opens the
//! store, resumes unfinished runs, serves the HTTP API and the webhooks until SIGTERM or
//! Ctrl-C, then drains within 10 seconds.
//!
//! Glue only: the router, authentication and the handlers are `belay_server`'s.

use crate::context::Ctx;
use crate::paths::playbook_dir;
use anyhow::{Context, Result, anyhow, bail};
use belay_connectors::notify_chat::ChatClient;
use belay_server::channels::{Channels, ChatApprovals, EmailApprovals};
use belay_server::console::ConsoleSettings;
use belay_server::hooks::{HookAuth, HookSource};
use belay_server::reload::Reloader;
use belay_server::templates::PayloadTemplate;
use belay_server::{AppState, ServerConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests and runs get after SIGTERM.
const GRACE: Duration = Duration::from_secs(8);

/// `belay serve [--listen ADDR] [--playbooks DIR]`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (default: `[serve] listen` in belay.toml, else 127.0.0.1:8080;
    /// port 0 picks a free port, printed on standard error).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Playbook directory (default: `playbooks` in belay.toml).
    #[arg(long)]
    playbooks: Option<PathBuf>,
}

/// The webhook sources of `[[hooks]]`, their secrets resolved; a bad entry names itself.
fn hook_sources(ctx: &Ctx) -> Result<Vec<HookSource>> {
    let secrets = &ctx.secrets;
    let mut out: Vec<HookSource> = Vec::new();
    for (i, h) in ctx.config.hooks.iter().enumerate() {
        let at = format!("[[hooks]] #{} (`{}`)", i + 1, h.name);
        if h.name.is_empty()
            || !h
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!("{at}: `name` must be letters, digits, `-`, `_` or `.`");
        }
        if out.iter().any(|o| o.name == h.name) {
            bail!("{at}: a second source with this name");
        }
        let auth = match h.auth.as_deref().unwrap_or("hmac") {
            "hmac" => {
                if h.secrets.is_empty() || h.secrets.len() > 2 {
                    bail!("{at}: `secrets` needs one secret, or two while rotating");
                }
                let mut keys = Vec::new();
                for s in &h.secrets {
                    let v = secrets
                        .resolve(s)
                        .with_context(|| format!("{at}: `secrets`"))?;
                    if v.expose().len() < 16 {
                        bail!("{at}: a secret must have at least 16 characters");
                    }
                    keys.push(v.expose().as_bytes().to_vec());
                }
                HookAuth::Hmac(keys)
            }
            "bearer" => {
                if !h.secrets.is_empty() {
                    bail!("{at}: a `bearer` source takes API tokens, not `secrets`");
                }
                HookAuth::Bearer
            }
            other => bail!("{at}: `auth` must be `hmac` or `bearer`, not `{other}`"),
        };
        let template = match &h.template {
            None => None,
            Some(toml::Value::String(name)) => {
                Some(PayloadTemplate::named(name).map_err(|e| anyhow!("{at}: `template`: {e}"))?)
            }
            Some(toml::Value::Table(t)) => {
                let mut fields = Vec::new();
                for (k, v) in t {
                    let text = v.as_str().ok_or_else(|| {
                        anyhow!("{at}: `template.{k}` must be text (a template such as \"${{{{ payload.x }}}}\")")
                    })?;
                    fields.push((k.clone(), text.to_owned()));
                }
                Some(
                    PayloadTemplate::compile("inline", &fields)
                        .map_err(|e| anyhow!("{at}: `template`: {e}"))?,
                )
            }
            Some(_) => bail!(
                "{at}: `template` is a shipped template's name or a table of field = template"
            ),
        };
        out.push(HookSource {
            template: template.map(Arc::new),
            name: h.name.clone(),
            principal: h
                .principal
                .clone()
                .unwrap_or_else(|| format!("hook:{}", h.name)),
            auth,
        });
    }
    Ok(out)
}

/// The config file's name, for messages.
fn config_name(ctx: &Ctx) -> String {
    ctx.config
        .path
        .as_ref()
        .map_or_else(|| "belay.toml".into(), |p| p.display().to_string())
}

/// The sources, feeds, queue and TLS of `belay.toml`; a bad entry is refused naming the file,
/// the entry, the key and the reason.
fn ops(ctx: &Ctx) -> Result<belay_server::sources::Ops> {
    // The environment, the secrets file and the store, as for connectors.
    let secrets = &ctx.secrets;
    let resolve = |r: &str| {
        secrets
            .resolve(r)
            .map(|v| v.expose().to_owned())
            .map_err(|e| e.to_string())
    };
    let (sources, feeds) =
        belay_server::sources::check(&ctx.config.sources, &ctx.config.feeds, &resolve)
            .map_err(|e| anyhow!("{}: {e}", config_name(ctx)))?;
    let serve = &ctx.config.serve;
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(belay_server::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None) => None,
        _ => bail!(
            "{}: [serve]: `tls_cert` and `tls_key` go together: give both, or neither",
            config_name(ctx)
        ),
    };
    if let Some(files) = &tls {
        // Read now, so a bad file stops the start with its name.
        belay_server::tls::server_config(files)
            .map_err(|e| anyhow!("{}: [serve]: {e}", config_name(ctx)))?;
    }
    if serve.queue == Some(0) {
        bail!("{}: [serve]: `queue` must be at least 1", config_name(ctx));
    }
    Ok(belay_server::sources::Ops {
        queue_capacity: serve.queue.unwrap_or(10_000),
        sources,
        feeds,
        data_dir: ctx.data.clone(),
        tls,
    })
}

/// The console's sign-in settings of `[serve]`; a bad value names its key.
fn console_settings(ctx: &Ctx) -> Result<ConsoleSettings> {
    let s = &ctx.config.serve;
    let mut out = ConsoleSettings::default();
    let ms = |key: &str, v: &Option<String>, default: i64| -> Result<i64> {
        match v {
            None => Ok(default),
            Some(text) => {
                let d = belay_model::parse_duration(text)
                    .with_context(|| format!("[serve] {key} `{text}`"))?;
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                if ms < 1000 {
                    bail!("[serve] {key} `{text}`: at least one second");
                }
                Ok(ms)
            }
        }
    };
    out.session_idle_ms = ms("session_idle", &s.session_idle, out.session_idle_ms)?;
    out.session_max_ms = ms("session_max", &s.session_max, out.session_max_ms)?;
    out.lockout.lock_ms = ms("lockout", &s.lockout, out.lockout.lock_ms)?;
    out.secure_cookies = s.secure_cookies.unwrap_or(false);
    for (i, p) in s.trusted_proxies.iter().enumerate() {
        let net = p
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|e| anyhow!("[serve] trusted_proxies[{i}] `{p}`: {e}"))?;
        out.trusted_proxies.push(net);
    }
    out.proxy_user_header = s.proxy_user_header.clone();
    if out.proxy_user_header.is_some() == out.trusted_proxies.is_empty() {
        bail!("[serve] proxy_user_header and trusted_proxies go together: set both or neither");
    }
    Ok(out)
}

/// The chat targets and e-mail settings approvals are delivered through, their secrets
/// resolved; a bad entry is refused naming its table and key.
fn channels(ctx: &Ctx) -> Result<Channels> {
    let secrets = &ctx.secrets;
    let mut out = Channels::default();
    for (name, target) in &ctx.config.notify {
        let Some(chat) = target.chat.as_ref().filter(|c| c.approvals) else {
            continue;
        };
        let at = format!("[notify.{name}.chat]");
        let secret = chat
            .signing_secret
            .as_deref()
            .ok_or_else(|| anyhow!("{at}: `approvals = true` needs `signing_secret`"))?;
        let secret = secrets
            .resolve(secret)
            .with_context(|| format!("{at}: `signing_secret`"))?;
        if secret.expose().len() < 16 {
            bail!("{at}: `signing_secret` must have at least 16 characters");
        }
        let client = ChatClient::new(chat, secrets).map_err(|e| anyhow!("{at}: {}", e.message))?;
        out.chat.push(ChatApprovals {
            name: name.clone(),
            channel: chat.channel.clone(),
            client,
            signing_secrets: vec![secret.expose().as_bytes().to_vec()],
        });
    }
    for (i, u) in ctx.config.chat.users.iter().enumerate() {
        if u.id.trim().is_empty() || u.user.trim().is_empty() {
            bail!(
                "[[chat.users]] #{}: `id` and `user` must not be empty",
                i + 1
            );
        }
        out.chat_users
            .insert(u.id.trim().to_owned(), u.user.trim().to_owned());
    }
    if let Some(e) = &ctx.config.approvals.email {
        let at = "[approvals.email]";
        let (host, port) = e
            .smtp
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_matches(['[', ']']).to_owned(),
                    p.parse::<u16>().ok()?,
                ))
            })
            .ok_or_else(|| anyhow!("{at}: `smtp` must be HOST:PORT, not `{}`", e.smtp))?;
        let key = secrets
            .resolve(&e.key)
            .with_context(|| format!("{at}: `key`"))?;
        if key.expose().len() < 32 {
            bail!("{at}: `key` must have at least 32 characters");
        }
        if !e.from.contains('@') {
            bail!("{at}: `from` must be an e-mail address, not `{}`", e.from);
        }
        let recipients = ctx
            .config
            .users
            .iter()
            .filter_map(|u| Some((u.name.clone(), u.email.clone()?)))
            .collect();
        out.email = Some(EmailApprovals {
            smtp_host: host,
            smtp_port: port,
            from: e.from.clone(),
            link_base: e.link_base.clone(),
            key: key.expose().as_bytes().to_vec(),
            recipients,
        });
    }
    Ok(out)
}

/// Loads the playbooks of `dir` and the guardrails of `guardrails_path` again, as at start: a
/// reload keeps the running set unless every file loads and lints clean.
fn reloader(
    dir: PathBuf,
    catalog: Arc<belay_playbook::Catalog>,
    guardrails_path: PathBuf,
    base: belay_engine::EngineConfig,
) -> Reloader {
    Reloader(Arc::new(move || {
        let set = belay_playbook::PlaybookSet::load_paths(std::slice::from_ref(&dir), &catalog)
            .map_err(|errs| {
                let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                format!("playbooks have errors:\n{}", text.join("\n"))
            })?;
        let guardrails = belay_engine::guard::Guardrails::load(&guardrails_path)
            .map_err(|e| format!("guardrails: {e}"))?;
        let unknown = crate::context::unknown_guardrails(&set, &guardrails);
        if !unknown.is_empty() {
            return Err(unknown.join("\n"));
        }
        let files = crate::context::guardrail_files(&guardrails_path);
        let config = belay_engine::EngineConfig {
            guardrails_hash: crate::context::guardrails_hash(&files),
            guardrail_files: files,
            ..base.clone()
        };
        Ok((set, guardrails, config))
    }))
}

/// Reloads on every SIGHUP, as the process's owner (an admin), saying what happened.
fn reload_on_hangup(state: Arc<AppState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let via = serde_json::json!({ "signal": "SIGHUP" });
            match state.reload("signal:SIGHUP", true, via).await {
                Ok(v) => eprintln!(
                    "belay serve: reloaded {} playbook(s)",
                    v["after"]["playbooks"].as_object().map_or(0, |p| p.len())
                ),
                Err(p) => eprintln!("belay serve: reload refused: {}", p.detail),
            }
        }
    });
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, serve until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Logs on standard error as `[serve] log_format` says: `text` (the default) or `json`, one
/// object a line; a run's lines carry its run and event ids. `BELAY_LOG` sets the level
/// (default `info`).
fn init_logs(ctx: &Ctx) -> Result<()> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("BELAY_LOG").unwrap_or_else(|_| "info".into())
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    let r = match ctx.config.serve.log_format.as_deref().unwrap_or("text") {
        "text" => builder.try_init(),
        "json" => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        other => bail!(
            "{}: [serve]: `log_format` must be `text` or `json`, not `{other}`",
            config_name(ctx)
        ),
    };
    // Already set up (in tests that run the command in-process): keep that one.
    drop(r);
    Ok(())
}

/// Runs `belay serve`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    init_logs(ctx)?;
    let listen = args
        .listen
        .or_else(|| ctx.config.serve.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let hooks = hook_sources(ctx)?;
    let ops = ops(ctx)?;
    let channels = Arc::new(channels(ctx)?);
    let dir = playbook_dir(ctx, args.playbooks);
    let set = match &dir {
        Some(dir) => ctx.load_playbooks(std::slice::from_ref(dir))?,
        None => belay_playbook::PlaybookSet::default(),
    };
    let engine = ctx.engine(set).await?;
    let reload = dir.map(|dir| {
        reloader(
            dir,
            ctx.catalog.clone(),
            ctx.guardrails_path.clone(),
            engine.config.clone(),
        )
    });
    let mut trust = belay_engine::trust::Thresholds::default();
    if let Some(w) = &ctx.config.trust.window {
        trust.window =
            belay_model::parse_duration(w).with_context(|| format!("[trust] window `{w}`"))?;
    }
    if let Some(n) = ctx.config.trust.promote_to_log_after {
        trust.promote_to_log = n;
    }
    if let Some(n) = ctx.config.trust.promote_to_guarded_after {
        trust.promote_to_guarded = n;
    }
    let console = console_settings(ctx)?;
    let config = ServerConfig {
        body_limit: ctx.config.serve.body_limit.unwrap_or(1 << 20),
        config_users: ctx
            .config
            .users
            .iter()
            .map(|u| (u.name.clone(), u.roles.clone()))
            .collect(),
        hooks,
        trust,
        reload,
        data: Some(ctx.data.clone()),
        ops,
        console,
        secrets_key: crate::secrets_key::keyring(ctx)?,
        channels,
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| anyhow!("the listener has no address: {e}"))?;
    let scheme = if config.ops.tls.is_some() {
        "https"
    } else {
        belay_server::tls::check_plaintext(&addr, ctx.config.serve.allow_plaintext)
            .map_err(|e| anyhow!("{}: [serve]: {e}", config_name(ctx)))?;
        "http"
    };
    let playbooks = engine.playbooks.len();
    let state = AppState::new(engine, ctx.catalog.clone(), config);
    eprintln!(
        "belay serve: listening on {scheme}://{addr} ({playbooks} playbook(s), {} webhook source(s), {} source(s), {} feed(s))",
        state.config.hooks.len(),
        state.config.ops.sources.len(),
        state.config.ops.feeds.len()
    );
    reload_on_hangup(state.clone());
    let parked = belay_server::serve(listener, state.clone(), terminated(), GRACE).await?;
    if parked > 0 {
        eprintln!("belay serve: stopped; {parked} run(s) still in flight resume at the next start");
    } else {
        eprintln!("belay serve: stopped");
    }
    Ok(ExitCode::SUCCESS)
}
