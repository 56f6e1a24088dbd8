//! Users and API tokens on SQLite: writes go through the writer (audited in its transaction),
//! reads through the reader connection.

use super::writer::{Entries, Op, Reply};
use super::{SqliteStore, db_err, unexpected};
use crate::principals::{self, Lockout, Principals, TokenRecord, UserRecord};
use crate::{Result, StoreError};
use async_trait::async_trait;
use belay_model::PreparedDraft;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::borrow::Cow;

/// A write to the directory of principals.
pub(super) enum PrincipalOp {
    PutUser(UserRecord, PreparedDraft),
    Login {
        name: String,
        ok: bool,
        lockout: Lockout,
        client: String,
    },
    PutToken(TokenRecord, PreparedDraft),
    Revoke {
        id: String,
        actor: String,
    },
    Touch {
        id: String,
        at: i64,
    },
}

const USER_COLS: &str =
    "name, roles, password_hash, disabled, failed_logins, locked_until, created_at, updated_at";
const TOKEN_COLS: &str =
    "id, principal, roles, hash, created_at, created_by, expires_at, last_used_at, revoked_at";

fn roles(text: String) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        roles: roles(r.get(1)?)?,
        password_hash: r.get(2)?,
        disabled: r.get(3)?,
        failed_logins: r.get(4)?,
        locked_until: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        principal: r.get(1)?,
        roles: roles(r.get(2)?)?,
        hash: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
        expires_at: r.get(6)?,
        last_used_at: r.get(7)?,
        revoked_at: r.get(8)?,
    })
}

fn roles_text(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".into())
}

fn user(c: &Connection, name: &str) -> Result<Option<UserRecord>> {
    c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE name = ?1"))
        .and_then(|mut s| s.query_row([name], user_from_row).optional())
        .map_err(db_err("reading a user"))
}

/// Applies one directory write inside the writer's transaction.
pub(super) fn apply<'a>(
    c: &Connection,
    op: &'a PrincipalOp,
    now: i64,
    entries: &mut Entries<'a>,
) -> Result<Reply> {
    match op {
        PrincipalOp::PutUser(u, draft) => {
            c.execute(
                &format!(
                    "INSERT INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT(name) DO UPDATE SET roles = excluded.roles, \
                     password_hash = excluded.password_hash, disabled = excluded.disabled, \
                     failed_logins = excluded.failed_logins, locked_until = excluded.locked_until, \
                     updated_at = excluded.updated_at"
                ),
                params![
                    u.name,
                    roles_text(&u.roles),
                    u.password_hash,
                    u.disabled,
                    u.failed_logins,
                    u.locked_until,
                    u.created_at,
                    now
                ],
            )
            .map_err(db_err("storing a user"))?;
            entries.push(Cow::Borrowed(draft));
            Ok(Reply::Unit)
        }
        PrincipalOp::Login {
            name,
            ok,
            lockout,
            client,
        } => {
            let Some(u) = user(c, name)? else {
                return Ok(Reply::Flag(false));
            };
            let (failed, locked) = principals::after_attempt(u.failed_logins, *ok, *lockout, now);
            c.execute(
                "UPDATE users SET failed_logins = ?2, locked_until = ?3, updated_at = ?4 WHERE name = ?1",
                params![name, failed, locked, now],
            )
            .map_err(db_err("recording a sign-in"))?;
            entries.push(Cow::Owned(
                principals::login(name, *ok, locked, client).prepare(),
            ));
            Ok(Reply::Flag(true))
        }
        PrincipalOp::PutToken(t, draft) => {
            c.execute(
                &format!(
                    "INSERT INTO api_tokens ({TOKEN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    t.id,
                    t.principal,
                    roles_text(&t.roles),
                    t.hash,
                    t.created_at,
                    t.created_by,
                    t.expires_at,
                    t.last_used_at,
                    t.revoked_at
                ],
            )
            .map_err(db_err("storing a token"))?;
            entries.push(Cow::Borrowed(draft));
            Ok(Reply::Unit)
        }
        PrincipalOp::Revoke { id, actor } => {
            let n = c
                .execute(
                    "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    params![id, now],
                )
                .map_err(db_err("revoking a token"))?;
            if n > 0 {
                entries.push(Cow::Owned(principals::token_revoked(actor, id).prepare()));
            }
            Ok(Reply::Flag(n > 0))
        }
        PrincipalOp::Touch { id, at } => {
            c.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                params![id, at],
            )
            .map_err(db_err("noting a token's use"))?;
            Ok(Reply::Unit)
        }
    }
}

impl SqliteStore {
    async fn principal_op(&self, op: PrincipalOp) -> Result<Reply> {
        self.submit(Op::Principal(op)).await
    }
}

fn flag(r: Reply, context: &'static str) -> Result<bool> {
    match r {
        Reply::Flag(b) => Ok(b),
        _ => Err(unexpected(context)),
    }
}

#[async_trait]
impl Principals for SqliteStore {
    async fn put_user(&self, u: &UserRecord, actor: &str, note: &str) -> Result<()> {
        let draft = principals::user_saved(actor, u, note).prepare();
        self.principal_op(PrincipalOp::PutUser(u.clone(), draft))
            .await
            .map(|_| ())
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let name = name.to_owned();
        self.read(move |c| user(c, &name)).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        self.read(|c| {
            let mut s = c
                .prepare_cached(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))
                .map_err(db_err("listing users"))?;
            s.query_map([], user_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db_err("listing users"))
        })
        .await
    }

    async fn record_login(
        &self,
        name: &str,
        ok: bool,
        lockout: Lockout,
        client: &str,
    ) -> Result<Option<UserRecord>> {
        let r = self
            .principal_op(PrincipalOp::Login {
                name: name.into(),
                ok,
                lockout,
                client: client.into(),
            })
            .await?;
        if !flag(r, "recording a sign-in")? {
            return Ok(None);
        }
        self.get_user(name).await
    }

    async fn put_token(&self, t: &TokenRecord, actor: &str) -> Result<()> {
        let draft = principals::token_created(actor, t).prepare();
        self.principal_op(PrincipalOp::PutToken(t.clone(), draft))
            .await
            .map(|_| ())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens WHERE hash = ?1"
            ))
            .and_then(|mut s| s.query_row([hash], token_from_row).optional())
            .map_err(db_err("reading a token"))
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.read(|c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLS} FROM api_tokens ORDER BY created_at, id"
                ))
                .map_err(db_err("listing tokens"))?;
            s.query_map([], token_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db_err("listing tokens"))
        })
        .await
    }

    async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool> {
        let r = self
            .principal_op(PrincipalOp::Revoke {
                id: id.into(),
                actor: actor.into(),
            })
            .await?;
        flag(r, "revoking a token")
    }

    async fn touch_token(&self, id: &str, at: i64) -> Result<()> {
        match self
            .principal_op(PrincipalOp::Touch { id: id.into(), at })
            .await?
        {
            Reply::Unit => Ok(()),
            _ => Err(StoreError::Closed),
        }
    }
}
