//! The directory of principals the server authenticates: users with a password and API tokens.
//!
//! The store keeps only what verifies a secret (an argon2id PHC string, the SHA-256 of a token),
//! never the secret. Every change to a user or a token is audited in the same transaction;
//! the audit entries name roles and flags, never a hash.

use crate::Result;
use async_trait::async_trait;
use belay_model::AuditDraft;
use serde::Serialize;
use serde_json::json;

/// A person who can sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// Unique name (the actor recorded for what they do).
    pub name: String,
    /// Role names: `viewer`, `responder`, `author`, `admin`.
    pub roles: Vec<String>,
    /// The argon2id hash of their password (PHC string); `None`: no password login.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// A disabled user cannot sign in and their decisions are refused.
    pub disabled: bool,
    /// Wrong passwords in a row since the last successful sign-in.
    pub failed_logins: u32,
    /// Until when (Unix ms) sign-in is refused after too many wrong passwords.
    pub locked_until: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// An API token: shown once when created, stored as the SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Public id (recorded in the audit trail with what the token does).
    pub id: String,
    /// The principal the token acts as.
    pub principal: String,
    /// The token's roles.
    pub roles: Vec<String>,
    /// SHA-256 (hex) of the token's text.
    #[serde(skip)]
    pub hash: String,
    /// Unix ms.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
    /// When it stops working (Unix ms); never when `None`.
    pub expires_at: Option<i64>,
    /// When it was last used (Unix ms), roughly (updated at most once a minute).
    pub last_used_at: Option<i64>,
    /// When it was revoked (Unix ms).
    pub revoked_at: Option<i64>,
}

impl TokenRecord {
    /// Whether the token authenticates at `now` (not revoked, not expired).
    pub fn usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// After how many wrong passwords in a row sign-in is refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Wrong passwords in a row that lock the account.
    pub max_failures: u32,
    /// How long the lock lasts, in ms.
    pub lock_ms: i64,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout {
            max_failures: 5,
            lock_ms: 15 * 60_000,
        }
    }
}

/// The stored users and tokens. Every [`crate::Store`] is one.
#[async_trait]
pub trait Principals: Send + Sync {
    /// Inserts or replaces a user, audited as `actor` (`user.saved`, with `note` saying what
    /// changed).
    async fn put_user(&self, user: &UserRecord, actor: &str, note: &str) -> Result<()>;
    /// The user with this exact name.
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>>;
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRecord>>;
    /// Records a sign-in attempt of an existing user from `client`. A success clears the
    /// failure count; a failure counts, and the `lockout.max_failures`-th locks the account for
    /// `lockout.lock_ms` (audited `user.locked`). Returns the user as stored after it.
    async fn record_login(
        &self,
        name: &str,
        ok: bool,
        lockout: Lockout,
        client: &str,
    ) -> Result<Option<UserRecord>>;

    /// Stores a new token, audited as `actor` (`token.created`). Fails if its id or hash exists.
    async fn put_token(&self, token: &TokenRecord, actor: &str) -> Result<()>;
    /// The token whose text hashes to `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Revokes a token, audited as `actor`; false if no such token or revoked already.
    async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool>;
    /// Notes that a token was used at `at` (not audited: the requests it makes are).
    async fn touch_token(&self, id: &str, at: i64) -> Result<()>;
}

pub(crate) fn user_saved(actor: &str, u: &UserRecord, note: &str) -> AuditDraft {
    AuditDraft {
        kind: "user.saved".into(),
        actor: actor.into(),
        subject: u.name.clone(),
        detail: json!({ "note": note, "roles": u.roles, "disabled": u.disabled,
            "password": u.password_hash.is_some() }),
    }
}

pub(crate) fn login(name: &str, ok: bool, locked_until: Option<i64>, client: &str) -> AuditDraft {
    let kind = match (ok, locked_until) {
        (true, _) => "user.login",
        (false, Some(_)) => "user.locked",
        (false, None) => "user.login_failed",
    };
    AuditDraft {
        kind: kind.into(),
        actor: name.into(),
        subject: name.into(),
        detail: json!({ "client": client, "locked_until": locked_until }),
    }
}

pub(crate) fn token_created(actor: &str, t: &TokenRecord) -> AuditDraft {
    AuditDraft {
        kind: "token.created".into(),
        actor: actor.into(),
        subject: t.id.clone(),
        detail: json!({ "principal": t.principal, "roles": t.roles, "expires_at": t.expires_at }),
    }
}

pub(crate) fn token_revoked(actor: &str, id: &str) -> AuditDraft {
    AuditDraft {
        kind: "token.revoked".into(),
        actor: actor.into(),
        subject: id.into(),
        detail: json!({}),
    }
}

/// The failure count and lock after one more sign-in attempt.
pub(crate) fn after_attempt(
    failed: u32,
    ok: bool,
    lockout: Lockout,
    now: i64,
) -> (u32, Option<i64>) {
    if ok {
        return (0, None);
    }
    let failed = failed.saturating_add(1);
    if failed >= lockout.max_failures {
        (0, Some(now + lockout.lock_ms))
    } else {
        (failed, None)
    }
}
