//! The person a command names with `--as`: a printable name, and one of `[[users]]` when users
//! are configured.
//!
//! It checks names only; it never decides what that person may do (approvals do).

use crate::context::Ctx;
use anyhow::{Result, bail};

/// Checks that `actor` is a usable name: 1 to 128 printable characters.
pub fn valid_actor(actor: &str) -> Result<()> {
    if actor.trim().is_empty() || actor.len() > 128 || actor.chars().any(char::is_control) {
        bail!("--as needs a user name (1 to 128 printable characters)");
    }
    Ok(())
}

/// Checks a person named with `--as`: when users are configured, it must be one of them.
pub fn known_user(ctx: &Ctx, user: &str) -> Result<()> {
    valid_actor(user)?;
    if !ctx.config.users.is_empty() && !ctx.config.users.iter().any(|u| u.name == user) {
        bail!("unknown user `{user}`; users come from [[users]] in belay.toml");
    }
    Ok(())
}
