//! Console sessions and failed sign-ins. A session's cookie holds 256 random bits; the store
//! keeps only their SHA-256, the principal, and when the session was made, last used and ends.
//! Failed sign-ins are kept per client address to throttle guessing from one address.

use crate::Result;
use async_trait::async_trait;
use belay_model::AuditDraft;
use serde::Serialize;
use serde_json::json;

/// One console session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the cookie's secret.
    #[serde(skip)]
    pub hash: String,
    /// Public id, recorded in the audit trail with what the session does.
    pub id: String,
    /// Who signed in.
    pub principal: String,
    /// How: `password` or `proxy`.
    pub via: String,
    /// The client's address when it began.
    pub client: String,
    /// Unix ms.
    pub created_at: i64,
    /// Last request (Unix ms), roughly (written back at most once a minute).
    pub last_seen_at: i64,
    /// The absolute end (Unix ms).
    pub expires_at: i64,
}

/// The stored sessions. Every [`crate::Store`] is one.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores a new session, audited `session.started` with its id, how and from where.
    async fn start_session(&self, session: &SessionRecord) -> Result<()>;
    /// The session whose secret hashes to `hash`.
    async fn session_by_hash(&self, hash: &str) -> Result<Option<SessionRecord>>;
    /// Notes a request of the session at `at` (not audited).
    async fn touch_session(&self, hash: &str, at: i64) -> Result<()>;
    /// Ends a session, audited as `kind` (`user.logout`, `session.expired`) with `client`;
    /// false (nothing audited) if there was none.
    async fn end_session(&self, hash: &str, kind: &str, client: &str) -> Result<bool>;
    /// Records a failed sign-in from `client` at `at`, forgets those before `since`, and
    /// returns how many failures `client` has had since `since`, this one included.
    async fn note_login_failure(
        &self,
        client: &str,
        name: &str,
        at: i64,
        since: i64,
    ) -> Result<u64>;
    /// How many failed sign-ins `client` has had since `since`.
    async fn login_failures(&self, client: &str, since: i64) -> Result<u64>;
}

pub(crate) fn started(s: &SessionRecord) -> AuditDraft {
    AuditDraft {
        kind: "session.started".into(),
        actor: s.principal.clone(),
        subject: s.id.clone(),
        detail: json!({ "session_id": s.id, "via": s.via, "client": s.client,
            "expires_at": s.expires_at }),
    }
}

pub(crate) fn ended(s: &SessionRecord, kind: &str, client: &str) -> AuditDraft {
    AuditDraft {
        kind: kind.into(),
        actor: s.principal.clone(),
        subject: s.id.clone(),
        detail: json!({ "session_id": s.id, "client": client }),
    }
}
