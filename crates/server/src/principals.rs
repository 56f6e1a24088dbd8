//! Managing the directory of principals: users and API tokens, created, listed, disabled and
//! revoked the same way from the local CLI (`belay users`, `belay tokens`) and the API
//! (`/api/v1/users`, `/api/v1/tokens`, admin only). The store audits every change in the same
//! transaction, naming roles and flags, never a hash or a token.

use crate::auth::{Role, hash_password, new_token};
use belay_store::{Store, StoreError, TokenRecord, UserRecord};

/// Why a directory change was refused.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The input is not acceptable: the field and why.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// No such user or token.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a principal's name: 1 to 128 printable characters.
pub fn valid_name(name: &str) -> Result<(), DirectoryError> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(DirectoryError::Invalid(
            "name",
            "a principal name has 1 to 128 printable characters".into(),
        ));
    }
    Ok(())
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Adds (or replaces) user `name` with `roles` and, when given, a password (hashed with
/// argon2id), as `actor`; the record and whether it was `created` or `replaced`.
pub async fn save_user(
    store: &dyn Store,
    name: &str,
    roles: &[Role],
    password: Option<&str>,
    actor: &str,
) -> Result<(UserRecord, &'static str), DirectoryError> {
    valid_name(name)?;
    if roles.is_empty() {
        return Err(DirectoryError::Invalid(
            "roles",
            "give at least one role".into(),
        ));
    }
    let password_hash = match password {
        Some(p) if p.chars().count() < MIN_PASSWORD => {
            return Err(DirectoryError::Invalid(
                "password",
                format!("the password must have at least {MIN_PASSWORD} characters"),
            ));
        }
        Some(p) => Some(hash_password(p).map_err(|e| DirectoryError::Invalid("password", e))?),
        None => None,
    };
    let now = belay_model::now_ms();
    let existing = store.get_user(name).await?;
    let user = UserRecord {
        name: name.to_owned(),
        roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        password_hash,
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        created_at: existing.as_ref().map_or(now, |u| u.created_at),
        updated_at: now,
    };
    let note = if existing.is_some() {
        "replaced"
    } else {
        "created"
    };
    store.put_user(&user, actor, note).await?;
    Ok((user, note))
}

/// Disables stored user `name` as `actor`: their tokens stop working at once.
pub async fn disable_user(
    store: &dyn Store,
    name: &str,
    actor: &str,
) -> Result<UserRecord, DirectoryError> {
    let mut user = store
        .get_user(name)
        .await?
        .ok_or_else(|| DirectoryError::NotFound(format!("no stored user `{name}`")))?;
    user.disabled = true;
    store.put_user(&user, actor, "disabled").await?;
    Ok(user)
}

/// Creates a token for `principal` with `roles`, expiring at `expires_at` (Unix ms), as
/// `actor`: the token's text (shown once, never stored) and its record.
pub async fn create_token(
    store: &dyn Store,
    principal: &str,
    roles: &[Role],
    expires_at: Option<i64>,
    actor: &str,
) -> Result<(String, TokenRecord), DirectoryError> {
    valid_name(principal)?;
    if roles.is_empty() {
        return Err(DirectoryError::Invalid(
            "roles",
            "give at least one role".into(),
        ));
    }
    let now = belay_model::now_ms();
    if expires_at.is_some_and(|e| e <= now) {
        return Err(DirectoryError::Invalid(
            "expires",
            "the expiry must be in the future".into(),
        ));
    }
    let no_randomness =
        |e: getrandom::Error| DirectoryError::Invalid("token", format!("no randomness: {e}"));
    let (text, hash) = new_token().map_err(no_randomness)?;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(no_randomness)?;
    let token = TokenRecord {
        id: format!("tok_{}", hex::encode(id)),
        principal: principal.to_owned(),
        roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        hash,
        created_at: now,
        created_by: actor.to_owned(),
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    store.put_token(&token, actor).await?;
    Ok((text, token))
}

/// Revokes token `id` as `actor`; `NotFound` when there is no such usable token.
pub async fn revoke_token(store: &dyn Store, id: &str, actor: &str) -> Result<(), DirectoryError> {
    if store.revoke_token(id, actor).await? {
        Ok(())
    } else {
        Err(DirectoryError::NotFound(format!(
            "no token `{id}`, or it was revoked already"
        )))
    }
}
