//! The audit head's signing key and when heads get signed: `belay audit keygen` writes the key
//! pair, `belay audit sign` signs once, and a process whose `[audit]` asks for it signs every
//! `sign_every_entries` entries or `sign_every` (checked each second and when it ends).
//!
//! The private key never lives in the data directory: a key, or a signed heads file, inside it
//! is refused, since whoever can rewrite the database could then rewrite them too. Signing is in
//! `belay_store::head_signing`; delivery in `head_export.rs`.

use crate::head_export::{self, Sinks, Syslog};
use anyhow::{Context, Result, bail};
use belay_store::{AuditProblem, HeadKey, PublicKey, SignedHead, Store, head_signing};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `path` made absolute with symbolic links resolved as far as it exists.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => resolved(dir).join(name),
        _ => abs,
    }
}

/// Refuses `path` (a `what`) inside the data directory `data`.
pub fn outside_data(path: &Path, data: &Path, what: &str) -> Result<()> {
    if resolved(path).starts_with(resolved(data)) {
        bail!(
            "the {what} {} is inside the data directory {}: keep it outside, where whoever can rewrite the database cannot rewrite it too",
            path.display(),
            data.display()
        );
    }
    Ok(())
}

/// Reads the private key at `path`, which must be outside `data` and readable by its owner only.
pub fn load_key(path: &Path, data: &Path) -> Result<HeadKey> {
    outside_data(path, data, "audit signing key")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read audit signing key {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "audit signing key {} is readable by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read audit signing key {}", path.display()))?;
    HeadKey::parse(&text).map_err(|e| anyhow::anyhow!("audit signing key {}: {e}", path.display()))
}

/// Reads a public key file.
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read public key {}", path.display()))?;
    PublicKey::parse(&text).map_err(|e| anyhow::anyhow!("public key {}: {e}", path.display()))
}

/// Writes a new key pair: `out` (mode 0600, never overwritten) and `out.pub`. Returns the
/// public key's path.
pub fn write_keypair(out: &Path, data: &Path) -> Result<PathBuf> {
    outside_data(out, data, "audit signing key")?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
    let key = HeadKey::from_seed(seed);
    let public = PathBuf::from(format!("{}.pub", out.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(out).with_context(|| {
        format!(
            "cannot create {} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    f.write_all(key.to_text().as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::write(&public, format!("{}\n", key.public().to_hex()))
        .with_context(|| format!("cannot write {}", public.display()))?;
    Ok(public)
}

/// Where signed heads go, from `[audit]` (a file must be outside `data`).
pub fn sinks(audit: &crate::config::AuditSection, data: &Path) -> Result<Sinks> {
    if let Some(f) = &audit.signed_heads {
        outside_data(f, data, "signed heads file")?;
    }
    Ok(Sinks {
        file: audit.signed_heads.clone(),
        syslog: audit.syslog.as_deref().map(Syslog::parse).transpose()?,
    })
}

/// The last head in the sinks' file signed by `key`, if any (one by another key, or altered,
/// is not trusted as a starting point: the whole trail is checked instead).
fn last_signed(sinks: &Sinks, key: &HeadKey) -> Result<Option<SignedHead>> {
    let Some(file) = &sinks.file else {
        return Ok(None);
    };
    Ok(head_export::last_in_file(file)?.filter(|h| h.verify(&key.public()).is_ok()))
}

/// Signs the current head (after checking the trail since the last signed head still chains
/// to it) and delivers it to the sinks.
pub async fn sign_now(
    store: &dyn Store,
    key: &HeadKey,
    sinks: &Sinks,
    last: Option<&SignedHead>,
) -> Result<std::result::Result<SignedHead, AuditProblem>> {
    let from_file = match last {
        Some(_) => None,
        None => last_signed(sinks, key)?,
    };
    let last = last.or(from_file.as_ref());
    let head = match head_signing::sign_head(store, key, last, belay_model::now_ms()).await? {
        Ok(h) => h,
        Err(p) => return Ok(Err(p)),
    };
    sinks.deliver(&head).await?;
    Ok(Ok(head))
}

/// Signs heads automatically as `[audit]` asks.
pub struct AutoSigner {
    key: HeadKey,
    sinks: Sinks,
    every_entries: Option<u64>,
    every: Option<Duration>,
    store: std::sync::Mutex<Option<Arc<dyn Store>>>,
    /// Serializes signing; holds the last head this process signed.
    last: tokio::sync::Mutex<Option<SignedHead>>,
    warned: std::sync::atomic::AtomicBool,
}

impl AutoSigner {
    /// The signer `[audit]` configures, or None when it asks for no automatic signing.
    pub fn from_config(
        audit: &crate::config::AuditSection,
        data: &Path,
    ) -> Result<Option<Arc<AutoSigner>>> {
        let every = audit
            .sign_every
            .as_deref()
            .map(|t| {
                belay_model::parse_duration(t)
                    .with_context(|| format!("[audit] sign_every `{t}` is not a duration like 10m"))
            })
            .transpose()?;
        if audit.sign_every_entries.is_none() && every.is_none() {
            return Ok(None);
        }
        let Some(key_path) = &audit.signing_key else {
            bail!(
                "[audit] sign_every_entries or sign_every needs signing_key (create one with `belay audit keygen --out FILE`)"
            );
        };
        let sinks = sinks(audit, data)?;
        if sinks.file.is_none() && sinks.syslog.is_none() {
            bail!(
                "[audit] automatic signing needs signed_heads (a file) or syslog to send the signed heads to"
            );
        }
        Ok(Some(Arc::new(AutoSigner {
            key: load_key(key_path, data)?,
            sinks,
            every_entries: audit.sign_every_entries.map(|n| n.max(1)),
            every,
            store: std::sync::Mutex::new(None),
            last: tokio::sync::Mutex::new(None),
            warned: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    /// Signs for `store` from now on: checks each second while the process runs.
    pub fn attach(self: &Arc<Self>, store: Arc<dyn Store>) {
        let first = {
            let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
            slot.replace(store).is_none()
        };
        if first {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    me.sign_if_due().await;
                }
            });
        }
    }

    /// Signs the head if enough entries or time went by since the last signed one; a failure
    /// is reported on stderr (once), never fatal to the command.
    pub async fn sign_if_due(&self) {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(store) = store else { return };
        if let Err(e) = self.try_sign(store.as_ref()).await
            && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            eprintln!("warning: the audit head was not signed: {e:#}");
        }
    }

    async fn try_sign(&self, store: &dyn Store) -> Result<()> {
        let mut last = self.last.lock().await;
        let Some((head, _)) = store.audit_head().await? else {
            return Ok(());
        };
        // Another process may have signed since: the file's last head counts too.
        let from_file = last_signed(&self.sinks, &self.key)?;
        let latest = [last.clone(), from_file]
            .into_iter()
            .flatten()
            .max_by_key(|h| h.seq);
        let (since, last_at) = match &latest {
            Some(h) => (head - h.seq, h.at),
            None => (head, i64::MIN),
        };
        let elapsed = belay_model::now_ms().saturating_sub(last_at);
        let due = since > 0
            && (self.every_entries.is_some_and(|n| since as u64 >= n)
                || self
                    .every
                    .is_some_and(|d| elapsed >= i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        if !due {
            return Ok(());
        }
        match sign_now(store, &self.key, &self.sinks, latest.as_ref()).await? {
            Ok(h) => {
                *last = Some(h);
                Ok(())
            }
            Err(p) => bail!("{p}"),
        }
    }
}
