//! Where the secrets key comes from: `BELAY_SECRETS_KEY` (base64 keys, comma-separated, the
//! active one first), else the key file `[secrets] key_file` names. Neither: no key, and
//! secrets can be neither set nor resolved from the store.

use crate::context::Ctx;
use anyhow::{Result, anyhow, bail};
use belay_store::Keyring;
use std::path::Path;

/// The environment variable holding the key(s).
pub const KEY_ENV: &str = "BELAY_SECRETS_KEY";

/// The configured keyring, if any.
pub fn keyring(ctx: &Ctx) -> Result<Option<Keyring>> {
    if let Ok(text) = std::env::var(KEY_ENV)
        && !text.trim().is_empty()
    {
        return Ok(Some(
            Keyring::parse(&text, KEY_ENV).map_err(|e| anyhow!("{e}"))?,
        ));
    }
    match &ctx.config.secrets.key_file {
        Some(path) => {
            refuse_inside_data(ctx, path)?;
            Ok(Some(Keyring::from_file(path).map_err(|e| anyhow!("{e}"))?))
        }
        None => Ok(None),
    }
}

/// The configured keyring, or an error saying how to configure one.
pub fn required(ctx: &Ctx) -> Result<Keyring> {
    keyring(ctx)?.ok_or_else(|| {
        anyhow!(
            "no secrets key: set [secrets] key_file in belay.toml (create it with `belay secrets init-key`) or {KEY_ENV}"
        )
    })
}

/// A key kept in the data directory would be copied with the store it protects.
pub fn refuse_inside_data(ctx: &Ctx, path: &Path) -> Result<()> {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .map(|p| p.components().collect::<std::path::PathBuf>())
            .unwrap_or_else(|_| p.to_owned())
    };
    if ctx.database_url.is_none() && abs(path).starts_with(abs(&ctx.data)) {
        bail!(
            "the secrets key file {} is inside the data directory {}: keep it elsewhere, or a copy of the store carries its key",
            path.display(),
            ctx.data.display()
        );
    }
    Ok(())
}
