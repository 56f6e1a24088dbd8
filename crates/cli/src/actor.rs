//! The person a command names with `--as`: a printable name, and one of `[[users]]` when users
//! are configured.
//!
//! When users are configured, a command that changes state needs one of the roles that may
//! decide on approvals (`responder`, `admin`); a `viewer` may look, preview and export. Real
//! identity comes with the server; on the local CLI this keeps `--as` consistent with the roles.

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

/// Checks that `user` may `doing` (a command that changes state): when users are configured,
/// they must hold one of [`belay_engine::approvals::DEFAULT_APPROVER_ROLES`].
pub fn may_change(ctx: &Ctx, user: &str, doing: &str) -> Result<()> {
    known_user(ctx, user)?;
    let Some(u) = ctx.config.users.iter().find(|u| u.name == user) else {
        return Ok(()); // no users configured: names only
    };
    let allowed = belay_engine::approvals::DEFAULT_APPROVER_ROLES;
    if u.roles.iter().any(|r| allowed.contains(&r.as_str())) {
        return Ok(());
    }
    bail!(
        "{user} may not {doing}: it needs the {} role (their roles: {})",
        allowed.join(" or "),
        if u.roles.is_empty() {
            "none".to_owned()
        } else {
            u.roles.join(", ")
        }
    )
}
