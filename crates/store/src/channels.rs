//! Approvals delivered to people where they are (chat, e-mail): which messages were sent, so
//! each is sent once, and which e-mail decision links were used, so each decides once. A
//! delivery is recorded with its `approval.delivered` audit entry in one transaction.

use crate::Result;
use async_trait::async_trait;
use belay_model::AuditDraft;
use serde::Serialize;
use serde_json::json;

/// One message that told someone about an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The approval.
    pub approval_id: String,
    /// `chat` or `email`.
    pub channel: String,
    /// The notification target (chat) or the mail setup (`email`).
    pub target: String,
    /// Who it went to: the chat channel, or the approver's user name.
    pub recipient: String,
    /// The channel's reference of the message (a chat message's timestamp, a Message-ID).
    pub reference: Option<String>,
    /// Unix ms.
    pub delivered_at: i64,
}

impl Delivery {
    /// The `approval.delivered` audit entry of this delivery, recorded as `actor`.
    pub fn audit(&self, actor: &str) -> AuditDraft {
        AuditDraft {
            kind: "approval.delivered".into(),
            actor: actor.into(),
            subject: self.approval_id.clone(),
            detail: json!({ "channel": self.channel, "target": self.target,
                "recipient": self.recipient, "reference": self.reference }),
        }
    }
}

/// The stored deliveries and used links. Every [`crate::Store`] is one.
#[async_trait]
pub trait ApprovalChannels: Send + Sync {
    /// Records `delivery` with `audit` in one transaction; false (nothing recorded) when the
    /// same approval already went to the same channel, target and recipient.
    async fn record_delivery(&self, delivery: &Delivery, audit: AuditDraft) -> Result<bool>;
    /// The deliveries of one approval, oldest first.
    async fn deliveries(&self, approval_id: &str) -> Result<Vec<Delivery>>;
    /// Marks the nonce of an e-mail decision link used; false when it was used before.
    async fn use_link(
        &self,
        nonce: &str,
        approval_id: &str,
        recipient: &str,
        decision: &str,
        at: i64,
    ) -> Result<bool>;
    /// Whether the nonce of an e-mail decision link was used.
    async fn link_used(&self, nonce: &str) -> Result<bool>;
}
