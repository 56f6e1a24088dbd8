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

/// Checks that `user` may `doing` (an admin's task: pausing automation, secrets): when users
/// are configured (in `belay.toml` or the store's directory), they must hold the `admin` role.
pub async fn require_admin(
    ctx: &Ctx,
    store: &dyn belay_store::Store,
    user: &str,
    doing: &str,
) -> Result<()> {
    valid_actor(user)?;
    let configured = ctx.config.users.iter().find(|u| u.name == user);
    let stored = store.get_user(user).await?;
    let roles: Option<Vec<String>> = configured
        .map(|u| u.roles.clone())
        .or_else(|| stored.as_ref().map(|u| u.roles.clone()));
    let directory = !ctx.config.users.is_empty() || !store.users().await?.is_empty();
    match roles {
        None if directory => bail!("unknown user `{user}`"),
        Some(r) if !r.iter().any(|r| r == "admin") => bail!(
            "{user} may not {doing}: it needs the admin role (their roles: {})",
            if r.is_empty() {
                "none".into()
            } else {
                r.join(", ")
            }
        ),
        _ => Ok(()),
    }
}
