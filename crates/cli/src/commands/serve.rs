//! `belay serve`: the engine as a service. Loads the playbooks and guardrails, opens the
//! store, resumes unfinished runs, serves the HTTP API and the webhooks until SIGTERM or
//! Ctrl-C, then drains within 10 seconds.
//!
//! Glue only: the router, authentication and the handlers are `belay_server`'s.

use crate::context::Ctx;
use crate::paths::playbook_dir;
use anyhow::{Context, Result, anyhow, bail};
use belay_connectors::SecretSource;
use belay_connectors::notify_chat::ChatClient;
use belay_server::channels::{Channels, ChatApprovals, EmailApprovals};
use belay_server::hooks::{HookAuth, HookSource};
use belay_server::reload::Reloader;
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
    let secrets = match &ctx.config.secrets_file {
        Some(p) => SecretSource::with_file(p)?,
        None => SecretSource::env(),
    };
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
        out.push(HookSource {
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

/// The chat targets and e-mail settings approvals are delivered through, their secrets
/// resolved; a bad entry is refused naming its table and key.
fn channels(ctx: &Ctx) -> Result<Channels> {
    let secrets = match &ctx.config.secrets_file {
        Some(p) => SecretSource::with_file(p)?,
        None => SecretSource::env(),
    };
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
        let client = ChatClient::new(chat, &secrets).map_err(|e| anyhow!("{at}: {}", e.message))?;
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

/// Runs `belay serve`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let listen = args
        .listen
        .or_else(|| ctx.config.serve.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let hooks = hook_sources(ctx)?;
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
        channels,
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| anyhow!("the listener has no address: {e}"))?;
    let playbooks = engine.playbooks.len();
    let state = AppState::new(engine, ctx.catalog.clone(), config);
    eprintln!(
        "belay serve: listening on http://{addr} ({playbooks} playbook(s), {} webhook source(s))",
        state.config.hooks.len()
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
