//! Deliveries of approvals and used e-mail links on PostgreSQL: a delivery and its audit
//! entry in one transaction.

use super::PgStore;
use super::error::db_err;
use super::row::get;
use super::write::append_audit;
use crate::Result;
use crate::channels::{ApprovalChannels, Delivery};
use async_trait::async_trait;
use belay_model::AuditDraft;

#[async_trait]
impl ApprovalChannels for PgStore {
    async fn record_delivery(&self, d: &Delivery, audit: AuditDraft) -> Result<bool> {
        const C: &str = "recording a delivery";
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err(C))?;
        let n = tx
            .execute(
                "INSERT INTO approval_deliveries (approval_id, channel, target, recipient, \
                 reference, delivered_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &d.approval_id,
                    &d.channel,
                    &d.target,
                    &d.recipient,
                    &d.reference,
                    &d.delivered_at,
                ],
            )
            .await
            .map_err(db_err(C))?;
        if n > 0 {
            append_audit(&tx, vec![audit]).await?;
        }
        tx.commit().await.map_err(db_err(C))?;
        Ok(n > 0)
    }

    async fn deliveries(&self, approval_id: &str) -> Result<Vec<Delivery>> {
        const C: &str = "listing deliveries";
        self.query(
            "SELECT approval_id, channel, target, recipient, reference, delivered_at \
             FROM approval_deliveries WHERE approval_id = $1 ORDER BY delivered_at",
            &[&approval_id],
            C,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Delivery {
                approval_id: get(r, 0, C)?,
                channel: get(r, 1, C)?,
                target: get(r, 2, C)?,
                recipient: get(r, 3, C)?,
                reference: get(r, 4, C)?,
                delivered_at: get(r, 5, C)?,
            })
        })
        .collect()
    }

    async fn use_link(
        &self,
        nonce: &str,
        approval_id: &str,
        recipient: &str,
        decision: &str,
        at: i64,
    ) -> Result<bool> {
        const C: &str = "using a decision link";
        let client = self.conn().await?;
        let n = client
            .execute(
                "INSERT INTO approval_link_uses (nonce, approval_id, recipient, decision, used_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&nonce, &approval_id, &recipient, &decision, &at],
            )
            .await
            .map_err(db_err(C))?;
        Ok(n > 0)
    }

    async fn link_used(&self, nonce: &str) -> Result<bool> {
        const C: &str = "reading a decision link";
        Ok(!self
            .query(
                "SELECT 1 FROM approval_link_uses WHERE nonce = $1",
                &[&nonce],
                C,
            )
            .await?
            .is_empty())
    }
}
