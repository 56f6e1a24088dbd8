//! `belay secrets init-key|set|list|delete|rotate-key`: connector credentials kept sealed in
//! the store (XChaCha20-Poly1305 under a key outside it). Values go in through standard input
//! and never come out: no command prints one. Changes need an admin and are audited by name.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use crate::secrets_key::{self, KEY_ENV};
use anyhow::{Context, Result, anyhow, bail};
use belay_model::{AuditDraft, ms_to_rfc3339};
use belay_store::{Keyring, SecretKey, Store, valid_secret_name};
use clap::Subcommand;
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay secrets …`.
#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Write a new random key file (mode 0600, never overwritten); name it in `[secrets]
    /// key_file`.
    InitKey {
        /// Where (default: `[secrets] key_file` of belay.toml).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Set (or replace) a secret; its value is read from standard input, never the command line.
    Set {
        /// Its name, as `${{ secrets.NAME }}` references it.
        name: String,
        /// Who sets it (an admin when users are configured).
        #[arg(long = "as", value_name = "USER")]
        actor: String,
    },
    /// The stored secrets: names, key ids and times, never values.
    List {
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Delete a secret.
    Delete {
        /// Its name.
        name: String,
        /// Who deletes it (an admin when users are configured).
        #[arg(long = "as", value_name = "USER")]
        actor: String,
    },
    /// Seal every secret under a new key: with a key file, a new key is generated and put
    /// first (the old one stays accepted until every secret is moved, then is dropped); with
    /// BELAY_SECRETS_KEY, list the new key first and the old one after it.
    RotateKey {
        /// Who rotates (an admin when users are configured).
        #[arg(long = "as", value_name = "USER")]
        actor: String,
    },
}

/// Runs `belay secrets …`.
pub async fn run(ctx: &Ctx, command: SecretsCommand) -> Result<ExitCode> {
    match command {
        SecretsCommand::InitKey { out } => init_key(ctx, out),
        SecretsCommand::Set { name, actor } => {
            check_name(&name)?;
            let ring = secrets_key::required(ctx)?;
            let store = ctx.store().await?;
            crate::actor::require_admin(ctx, &*store, &actor, "set secrets").await?;
            let value = read_value()?;
            let now = belay_model::now_ms();
            let mut sealed = ring
                .seal(&name, value.as_bytes(), now)
                .map_err(|e| anyhow!("{e}"))?;
            if let Some(old) = store.sealed_secret(&name).await? {
                sealed.created_at = old.created_at;
            }
            store.put_secret(&sealed, &actor).await?;
            eprintln!("secret {name} set (key {})", sealed.key_id);
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::List { format } => {
            let store = ctx.store().await?;
            let infos = store.secret_infos().await?;
            match format {
                Format::Json => print_json(&json!({ "secrets": infos }))?,
                Format::Text => {
                    if infos.is_empty() {
                        println!("no secrets stored");
                    }
                    for s in infos {
                        println!(
                            "{}  key {}  created {}  set {}{}",
                            s.name,
                            s.key_id,
                            ms_to_rfc3339(s.created_at),
                            ms_to_rfc3339(s.updated_at),
                            s.rotated_at
                                .map(|t| format!("  rotated {}", ms_to_rfc3339(t)))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Delete { name, actor } => {
            check_name(&name)?;
            let store = ctx.store().await?;
            crate::actor::require_admin(ctx, &*store, &actor, "delete secrets").await?;
            if store.delete_secret(&name, &actor).await? {
                eprintln!("secret {name} deleted");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no secret named {name}");
                Ok(ExitCode::FAILURE)
            }
        }
        SecretsCommand::RotateKey { actor } => rotate(ctx, &actor).await,
    }
}

fn check_name(name: &str) -> Result<()> {
    if !valid_secret_name(name) {
        bail!(
            "a secret's name is 1 to 128 letters, digits and `_` (what `${{{{ secrets.NAME }}}}` can name)"
        );
    }
    Ok(())
}

/// The value on standard input, without one trailing line ending.
fn read_value() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024 + 1)
        .read_to_string(&mut text)
        .context("reading the secret's value from standard input (UTF-8 text)")?;
    if text.len() > 64 * 1024 {
        bail!("a secret's value is at most 64 KiB");
    }
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        bail!("no value on standard input (e.g. `belay secrets set NAME --as USER < file`)");
    }
    Ok(value.to_owned())
}

/// Creates a key file with one new key, mode 0600, refusing to overwrite one.
fn init_key(ctx: &Ctx, out: Option<PathBuf>) -> Result<ExitCode> {
    let path = out
        .or_else(|| ctx.config.secrets.key_file.clone())
        .ok_or_else(|| anyhow!("say where: --out FILE, or [secrets] key_file in belay.toml"))?;
    secrets_key::refuse_inside_data(ctx, &path)?;
    let key = SecretKey::generate().map_err(|e| anyhow!("{e}"))?;
    write_new_key_file(&path, &format!("{key}\n"))?;
    let ring = Keyring::parse(&key, "the new key").map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "wrote secrets key {} to {} (mode 0600); keep a copy outside this machine",
        ring.active().id(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_new_key_file(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| {
        format!(
            "cannot create {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Replaces the key file's text atomically (a temporary file beside it, 0600, synced, renamed).
fn replace_key_file(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("rotating");
    let _ = std::fs::remove_file(&tmp);
    write_new_key_file(&tmp, text)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Seals every secret under the new active key. The old keys stay accepted (in the key file,
/// or the environment) until every secret is moved, so processes starting meanwhile open every
/// secret whichever key sealed it.
async fn rotate(ctx: &Ctx, actor: &str) -> Result<ExitCode> {
    let store = ctx.store().await?;
    crate::actor::require_admin(ctx, &*store, actor, "rotate the secrets key").await?;
    let from_env = std::env::var(KEY_ENV).is_ok_and(|v| !v.trim().is_empty());
    let current = secrets_key::required(ctx)?;
    let ring = if from_env {
        current
    } else {
        let path = ctx
            .config
            .secrets
            .key_file
            .clone()
            .ok_or_else(|| anyhow!("no secrets key file"))?;
        let old = std::fs::read_to_string(&path)?;
        let new = SecretKey::generate().map_err(|e| anyhow!("{e}"))?;
        // The new key first (it seals from now on), the old ones still accepted.
        replace_key_file(&path, &format!("{new}\n{old}"))?;
        secrets_key::required(ctx)?
    };
    let active = ring.active().id().to_owned();
    let mut moved = 0usize;
    let mut from_keys = std::collections::BTreeSet::new();
    // Until nothing is sealed under another key (a `set` racing with the rotation is caught by
    // the compare-and-swap and sealed again on the next pass).
    loop {
        let pending: Vec<_> = store
            .sealed_secrets()
            .await?
            .into_iter()
            .filter(|s| s.key_id != active)
            .collect();
        if pending.is_empty() {
            break;
        }
        for s in pending {
            let value = ring.open(&s).map_err(|e| anyhow!("{e}"))?;
            let now = belay_model::now_ms();
            let mut sealed = ring
                .seal(&s.name, &value, now)
                .map_err(|e| anyhow!("{e}"))?;
            sealed.created_at = s.created_at;
            sealed.updated_at = s.updated_at;
            sealed.rotated_at = Some(now);
            if store.reseal_secret(&sealed, &s).await? {
                moved += 1;
                from_keys.insert(s.key_id.clone());
            }
        }
    }
    store
        .append_audit(vec![AuditDraft {
            kind: "secrets.key_rotated".into(),
            actor: actor.into(),
            subject: active.clone(),
            detail: json!({ "key_id": active, "from_key_ids": from_keys, "secrets": moved }),
        }])
        .await?;
    if from_env {
        eprintln!(
            "{moved} secret(s) sealed under key {active}; drop the older keys from {KEY_ENV} now"
        );
    } else if let Some(path) = &ctx.config.secrets.key_file {
        // Every secret is under the new key: the old ones are no longer needed.
        let new = std::fs::read_to_string(path)?;
        let first = new.lines().next().unwrap_or_default();
        replace_key_file(path, &format!("{first}\n"))?;
        eprintln!("{moved} secret(s) sealed under the new key {active}; the old key is dropped");
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the stored secrets named in `names` (those the configuration references and the
/// environment and secrets file do not set), for the connectors that use them.
pub async fn open_stored(
    store: &dyn Store,
    ring: &Keyring,
    names: &[String],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for s in store.sealed_secrets().await? {
        if names.contains(&s.name) {
            let value = ring.open(&s).map_err(|e| anyhow!("{e}"))?;
            let text = String::from_utf8(value)
                .map_err(|_| anyhow!("secret `{}` is not UTF-8 text", s.name))?;
            out.push((s.name, text));
        }
    }
    Ok(out)
}
