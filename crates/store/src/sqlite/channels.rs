//! Deliveries of approvals and used e-mail links on SQLite: writes through the writer
//! (audited in its transaction), reads through the reader connection.

use super::writer::{Entries, Op, Reply};
use super::{SqliteStore, db_err, unexpected};
use crate::Result;
use crate::channels::{ApprovalChannels, Delivery};
use async_trait::async_trait;
use belay_model::{AuditDraft, PreparedDraft};
use rusqlite::{Connection, OptionalExtension, params};
use std::borrow::Cow;

/// A write to the deliveries or the used links.
pub(super) enum ChannelOp {
    Deliver(Delivery, PreparedDraft),
    UseLink {
        nonce: String,
        approval_id: String,
        recipient: String,
        decision: String,
        at: i64,
    },
}

/// Applies one write inside the writer's transaction.
pub(super) fn apply<'a>(
    c: &Connection,
    op: &'a ChannelOp,
    entries: &mut Entries<'a>,
) -> Result<Reply> {
    match op {
        ChannelOp::Deliver(d, draft) => {
            let n = c
                .execute(
                    "INSERT INTO approval_deliveries (approval_id, channel, target, recipient, \
                     reference, delivered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT DO NOTHING",
                    params![
                        d.approval_id,
                        d.channel,
                        d.target,
                        d.recipient,
                        d.reference,
                        d.delivered_at
                    ],
                )
                .map_err(db_err("recording a delivery"))?;
            if n > 0 {
                entries.push(Cow::Borrowed(draft));
            }
            Ok(Reply::Flag(n > 0))
        }
        ChannelOp::UseLink {
            nonce,
            approval_id,
            recipient,
            decision,
            at,
        } => {
            let n = c
                .execute(
                    "INSERT INTO approval_link_uses (nonce, approval_id, recipient, decision, \
                     used_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![nonce, approval_id, recipient, decision, at],
                )
                .map_err(db_err("using a decision link"))?;
            Ok(Reply::Flag(n > 0))
        }
    }
}

#[async_trait]
impl ApprovalChannels for SqliteStore {
    async fn record_delivery(&self, delivery: &Delivery, audit: AuditDraft) -> Result<bool> {
        let op = ChannelOp::Deliver(delivery.clone(), audit.prepare());
        match self.submit(Op::Channel(op)).await? {
            Reply::Flag(b) => Ok(b),
            _ => Err(unexpected("recording a delivery")),
        }
    }

    async fn deliveries(&self, approval_id: &str) -> Result<Vec<Delivery>> {
        let id = approval_id.to_owned();
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT approval_id, channel, target, recipient, reference, delivered_at \
                     FROM approval_deliveries WHERE approval_id = ?1 ORDER BY delivered_at",
                )
                .map_err(db_err("listing deliveries"))?;
            s.query_map([&id], |r| {
                Ok(Delivery {
                    approval_id: r.get(0)?,
                    channel: r.get(1)?,
                    target: r.get(2)?,
                    recipient: r.get(3)?,
                    reference: r.get(4)?,
                    delivered_at: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err("listing deliveries"))
        })
        .await
    }

    async fn use_link(
        &self,
        nonce: &str,
        approval_id: &str,
        recipient: &str,
        decision: &str,
        at: i64,
    ) -> Result<bool> {
        let op = ChannelOp::UseLink {
            nonce: nonce.into(),
            approval_id: approval_id.into(),
            recipient: recipient.into(),
            decision: decision.into(),
            at,
        };
        match self.submit(Op::Channel(op)).await? {
            Reply::Flag(b) => Ok(b),
            _ => Err(unexpected("using a decision link")),
        }
    }

    async fn link_used(&self, nonce: &str) -> Result<bool> {
        let nonce = nonce.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT 1 FROM approval_link_uses WHERE nonce = ?1",
                [&nonce],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(db_err("reading a decision link"))
        })
        .await
    }
}
