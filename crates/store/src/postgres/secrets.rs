//! Sealed secrets on PostgreSQL: one transaction per write, audited in it.

use super::PgStore;
use super::error::db_err;
use super::row::get;
use super::write::append_audit;
use crate::Result;
use crate::secrets::{self, SealedSecret, Secrets};
use async_trait::async_trait;

#[async_trait]
impl Secrets for PgStore {
    async fn put_secret(&self, s: &SealedSecret, actor: &str) -> Result<()> {
        const C: &str = "setting a secret";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let replaced = tx
            .query_opt(
                "SELECT 1 FROM secrets WHERE name = $1 FOR UPDATE",
                &[&s.name],
            )
            .await
            .map_err(db_err(C))?
            .is_some();
        tx.execute(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
             key_id = excluded.key_id, nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            &[
                &s.name,
                &s.key_id,
                &s.nonce,
                &s.ciphertext,
                &s.created_at,
                &s.updated_at,
            ],
        )
        .await
        .map_err(db_err(C))?;
        append_audit(&tx, vec![secrets::set(s, actor, replaced)]).await?;
        tx.commit().await.map_err(db_err(C))
    }

    async fn delete_secret(&self, name: &str, actor: &str) -> Result<bool> {
        const C: &str = "deleting a secret";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let n = tx
            .execute("DELETE FROM secrets WHERE name = $1", &[&name])
            .await
            .map_err(db_err(C))?;
        if n > 0 {
            append_audit(&tx, vec![secrets::deleted(name, actor)]).await?;
        }
        tx.commit().await.map_err(db_err(C))?;
        Ok(n > 0)
    }

    async fn reseal_secret(&self, s: &SealedSecret, from: &SealedSecret) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE secrets SET key_id = $2, nonce = $3, ciphertext = $4, rotated_at = $5 \
                 WHERE name = $1 AND key_id = $6 AND ciphertext = $7",
                &[
                    &s.name,
                    &s.key_id,
                    &s.nonce,
                    &s.ciphertext,
                    &s.rotated_at,
                    &from.key_id,
                    &from.ciphertext,
                ],
                "sealing a secret under a new key",
            )
            .await?;
        Ok(n > 0)
    }

    async fn sealed_secrets(&self) -> Result<Vec<SealedSecret>> {
        const C: &str = "listing secrets";
        self.query(
            "SELECT name, key_id, nonce, ciphertext, created_at, updated_at, rotated_at \
             FROM secrets ORDER BY name",
            &[],
            C,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(SealedSecret {
                name: get(r, 0, C)?,
                key_id: get(r, 1, C)?,
                nonce: get(r, 2, C)?,
                ciphertext: get(r, 3, C)?,
                created_at: get(r, 4, C)?,
                updated_at: get(r, 5, C)?,
                rotated_at: get(r, 6, C)?,
            })
        })
        .collect()
    }
}
