//! Pauses of automation on PostgreSQL: one transaction per switch, audited in it.

use super::PgStore;
use super::error::db_err;
use super::row::get;
use super::write::append_audit;
use crate::Result;
use crate::pauses::{self, PauseRecord, Pauses};
use async_trait::async_trait;

#[async_trait]
impl Pauses for PgStore {
    async fn pause(&self, p: &PauseRecord) -> Result<()> {
        const C: &str = "pausing automation";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        tx.execute(
            "INSERT INTO automation_pauses (scope, paused_by, reason, paused_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope) DO UPDATE SET \
             paused_by = excluded.paused_by, reason = excluded.reason, \
             paused_at = excluded.paused_at",
            &[&p.scope(), &p.paused_by, &p.reason, &p.paused_at],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![pauses::paused(p)]).await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn unpause(&self, playbook: Option<&str>, actor: &str, reason: &str) -> Result<bool> {
        const C: &str = "resuming automation";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let scope = playbook.unwrap_or(pauses::ALL);
        let n = tx
            .execute("DELETE FROM automation_pauses WHERE scope = $1", &[&scope])
            .await
            .map_err(db_err(C))?;
        if n > 0 {
            append_audit(&tx, vec![pauses::resumed(playbook, actor, reason)]).await?;
        }
        tx.commit().await.map_err(db_err(C))?;
        Ok(n > 0)
    }

    async fn pauses(&self) -> Result<Vec<PauseRecord>> {
        const C: &str = "listing pauses";
        self.query(
            "SELECT scope, paused_by, reason, paused_at FROM automation_pauses \
             ORDER BY scope <> '*', scope",
            &[],
            C,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(PauseRecord::from_scope(
                get(r, 0, C)?,
                get(r, 1, C)?,
                get(r, 2, C)?,
                get(r, 3, C)?,
            ))
        })
        .collect()
    }
}
