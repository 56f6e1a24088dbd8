//! Users and API tokens on PostgreSQL: one transaction per write, audited in it.

use super::PgStore;
use super::error::db_err;
use super::row::{get, get_json};
use super::write::append_audit;
use crate::Result;
use crate::principals::{self, Lockout, Principals, TokenRecord, UserRecord};
use async_trait::async_trait;
use belay_model::now_ms;
use serde_json::{Value, json};
use tokio_postgres::Row;

const USER_COLS: &str =
    "name, roles, password_hash, disabled, failed_logins, locked_until, created_at, updated_at";
const TOKEN_COLS: &str =
    "id, principal, roles, hash, created_at, created_by, expires_at, last_used_at, revoked_at";

fn user_from_row(r: &Row) -> Result<UserRecord> {
    const C: &str = "reading a user";
    let failed: i32 = get(r, 4, C)?;
    Ok(UserRecord {
        name: get(r, 0, C)?,
        roles: get_json(r, 1, C)?,
        password_hash: get(r, 2, C)?,
        disabled: get(r, 3, C)?,
        failed_logins: u32::try_from(failed).unwrap_or(0),
        locked_until: get(r, 5, C)?,
        created_at: get(r, 6, C)?,
        updated_at: get(r, 7, C)?,
    })
}

fn token_from_row(r: &Row) -> Result<TokenRecord> {
    const C: &str = "reading a token";
    Ok(TokenRecord {
        id: get(r, 0, C)?,
        principal: get(r, 1, C)?,
        roles: get_json(r, 2, C)?,
        hash: get(r, 3, C)?,
        created_at: get(r, 4, C)?,
        created_by: get(r, 5, C)?,
        expires_at: get(r, 6, C)?,
        last_used_at: get(r, 7, C)?,
        revoked_at: get(r, 8, C)?,
    })
}

fn roles_json(roles: &[String]) -> Value {
    json!(roles)
}

#[async_trait]
impl Principals for PgStore {
    async fn put_user(&self, u: &UserRecord, actor: &str, note: &str) -> Result<()> {
        const C: &str = "storing a user";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let failed = i32::try_from(u.failed_logins).unwrap_or(i32::MAX);
        tx.execute(
            &format!(
                "INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (name) DO UPDATE SET roles = excluded.roles, \
                 password_hash = excluded.password_hash, disabled = excluded.disabled, \
                 failed_logins = excluded.failed_logins, locked_until = excluded.locked_until, \
                 updated_at = excluded.updated_at"
            ),
            &[
                &u.name,
                &roles_json(&u.roles),
                &u.password_hash,
                &u.disabled,
                &failed,
                &u.locked_until,
                &u.created_at,
                &now_ms(),
            ],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![principals::user_saved(actor, u, note)]).await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.query_opt(
            &format!("SELECT {USER_COLS} FROM users WHERE name = $1"),
            &[&name],
            "reading a user",
        )
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        self.query(
            &format!("SELECT {USER_COLS} FROM users ORDER BY name"),
            &[],
            "listing users",
        )
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn record_login(
        &self,
        name: &str,
        ok: bool,
        lockout: Lockout,
        client_addr: &str,
    ) -> Result<Option<UserRecord>> {
        const C: &str = "recording a sign-in";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let Some(row) = tx
            .query_opt(
                &format!("SELECT {USER_COLS} FROM users WHERE name = $1 FOR UPDATE"),
                &[&name],
            )
            .await
            .map_err(db_err(C))?
        else {
            return Ok(None);
        };
        let mut u = user_from_row(&row)?;
        let now = now_ms();
        let (failed, locked) = principals::after_attempt(u.failed_logins, ok, lockout, now);
        let failed_db = i32::try_from(failed).unwrap_or(i32::MAX);
        tx.execute(
            "UPDATE users SET failed_logins = $2, locked_until = $3, updated_at = $4 WHERE name = $1",
            &[&name, &failed_db, &locked, &now],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![principals::login(name, ok, locked, client_addr)]).await?;
        tx.commit().await.map_err(db_err(C))?;
        (u.failed_logins, u.locked_until, u.updated_at) = (failed, locked, now);
        Ok(Some(u))
    }

    async fn put_token(&self, t: &TokenRecord, actor: &str) -> Result<()> {
        const C: &str = "storing a token";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        tx.execute(
            &format!(
                "INSERT INTO api_tokens ({TOKEN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &t.id,
                &t.principal,
                &roles_json(&t.roles),
                &t.hash,
                &t.created_at,
                &t.created_by,
                &t.expires_at,
                &t.last_used_at,
                &t.revoked_at,
            ],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![principals::token_created(actor, t)]).await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.query_opt(
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE hash = $1"),
            &[&hash],
            "reading a token",
        )
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.query(
            &format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY created_at, id"),
            &[],
            "listing tokens",
        )
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool> {
        const C: &str = "revoking a token";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let n = tx
            .execute(
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now_ms()],
            )
            .await
            .map_err(db_err(C))?;
        if n > 0 {
            append_audit(&tx, vec![principals::token_revoked(actor, id)]).await?;
        }
        tx.commit().await.map_err(db_err(C))?;
        Ok(n > 0)
    }

    async fn touch_token(&self, id: &str, at: i64) -> Result<()> {
        self.execute(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
            &[&id, &at],
            "noting a token's use",
        )
        .await
        .map(|_| ())
    }
}
