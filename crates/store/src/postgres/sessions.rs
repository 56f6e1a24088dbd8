//! Console sessions and failed sign-ins on PostgreSQL: one transaction per audited write.

use super::PgStore;
use super::error::db_err;
use super::row::get;
use super::write::append_audit;
use crate::Result;
use crate::sessions::{self, SessionRecord, Sessions};
use async_trait::async_trait;
use tokio_postgres::Row;

const COLS: &str = "hash, id, principal, via, client, created_at, last_seen_at, expires_at";

fn from_row(r: &Row) -> Result<SessionRecord> {
    const C: &str = "reading a session";
    Ok(SessionRecord {
        hash: get(r, 0, C)?,
        id: get(r, 1, C)?,
        principal: get(r, 2, C)?,
        via: get(r, 3, C)?,
        client: get(r, 4, C)?,
        created_at: get(r, 5, C)?,
        last_seen_at: get(r, 6, C)?,
        expires_at: get(r, 7, C)?,
    })
}

#[async_trait]
impl Sessions for PgStore {
    async fn start_session(&self, s: &SessionRecord) -> Result<()> {
        const C: &str = "starting a session";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        tx.execute(
            &format!(
                "INSERT INTO console_sessions ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &s.hash,
                &s.id,
                &s.principal,
                &s.via,
                &s.client,
                &s.created_at,
                &s.last_seen_at,
                &s.expires_at,
            ],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![sessions::started(s)]).await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn session_by_hash(&self, hash: &str) -> Result<Option<SessionRecord>> {
        self.query_opt(
            &format!("SELECT {COLS} FROM console_sessions WHERE hash = $1"),
            &[&hash],
            "reading a session",
        )
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
    }

    async fn touch_session(&self, hash: &str, at: i64) -> Result<()> {
        self.execute(
            "UPDATE console_sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE hash = $1",
            &[&hash, &at],
            "noting a session's use",
        )
        .await
        .map(|_| ())
    }

    async fn end_session(&self, hash: &str, kind: &str, client_addr: &str) -> Result<bool> {
        const C: &str = "ending a session";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let row = tx
            .query_opt(
                &format!("DELETE FROM console_sessions WHERE hash = $1 RETURNING {COLS}"),
                &[&hash],
            )
            .await
            .map_err(db_err(C))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let s = from_row(&row)?;
        append_audit(&tx, vec![sessions::ended(&s, kind, client_addr)]).await?;
        tx.commit().await.map_err(db_err(C))?;
        Ok(true)
    }

    async fn note_login_failure(
        &self,
        client_addr: &str,
        name: &str,
        at: i64,
        since: i64,
    ) -> Result<u64> {
        const C: &str = "recording a failed sign-in";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        tx.execute("DELETE FROM login_failures WHERE at < $1", &[&since])
            .await
            .map_err(db_err(C))?;
        tx.execute(
            "INSERT INTO login_failures (client, name, at) VALUES ($1, $2, $3)",
            &[&client_addr, &name, &at],
        )
        .await
        .map_err(db_err(C))?;
        let row = tx
            .query_one(
                "SELECT COUNT(*) FROM login_failures WHERE client = $1 AND at >= $2",
                &[&client_addr, &since],
            )
            .await
            .map_err(db_err(C))?;
        let n: i64 = get(&row, 0, C)?;
        tx.commit().await.map_err(db_err(C))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn login_failures(&self, client: &str, since: i64) -> Result<u64> {
        const C: &str = "counting failed sign-ins";
        let row = self
            .query_opt(
                "SELECT COUNT(*) FROM login_failures WHERE client = $1 AND at >= $2",
                &[&client, &since],
                C,
            )
            .await?;
        let n: i64 = match row {
            Some(r) => get(&r, 0, C)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
