//! Approvals where people are: held changes posted to chat with approve/deny buttons, and
//! e-mailed to each approver with a signed link per decision. Every answer is decided by the
//! same approval policy as the API's (`belay_engine::approvals::cast`: approvers, quorum,
//! separation, bound to the change hash the person was shown); every delivery and every
//! refused answer is in the audit trail with its channel.
//!
//! `deliver` (run every second by `belay serve`) sends what is pending and not yet sent;
//! `chat` verifies and answers the chat's signed callbacks; `links` signs and checks e-mail
//! decision links; `email` sends the messages and serves the confirmation pages; `page` is
//! the HTML those pages share.

pub mod chat;
mod deliver;
pub(crate) mod email;
pub mod links;
mod page;

use belay_connectors::notify_chat::ChatClient;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub(crate) use deliver::spawn;

/// A chat target approvals are posted to and answered from (`/hooks/chat/{name}`).
#[derive(Clone)]
pub struct ChatApprovals {
    /// The notification target's name.
    pub name: String,
    /// The channel id held changes are posted to.
    pub channel: String,
    /// The chat API.
    pub client: ChatClient,
    /// The signing secrets its callbacks are checked with (two while rotating).
    pub signing_secrets: Vec<Vec<u8>>,
}

/// E-mail approvals (`[approvals.email]`).
#[derive(Clone)]
pub struct EmailApprovals {
    /// SMTP relay host.
    pub smtp_host: String,
    /// SMTP relay port.
    pub smtp_port: u16,
    /// The sender address.
    pub from: String,
    /// Base URL of the links (`https://belay.example.org`); default: the address served.
    pub link_base: Option<String>,
    /// The key links are signed with.
    pub key: Vec<u8>,
    /// People who get approvals by e-mail: user name and address.
    pub recipients: Vec<(String, String)>,
}

/// What `belay serve` delivers approvals through; empty: nothing is delivered.
#[derive(Default)]
pub struct Channels {
    /// Chat targets with `approvals = true`.
    pub chat: Vec<ChatApprovals>,
    /// Chat user ids mapped to belay users.
    pub chat_users: HashMap<String, String>,
    /// E-mail approvals, when configured.
    pub email: Option<EmailApprovals>,
    /// The address the server listens on (the links' default base).
    served_at: OnceLock<String>,
    /// Failed sends by delivery key: attempts and when to try again (Unix ms).
    retries: Mutex<HashMap<String, (u32, i64)>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field(
                "chat",
                &self
                    .chat
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("email", &self.email.is_some())
            .finish()
    }
}

impl Channels {
    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.chat.is_empty() && self.email.is_none()
    }

    /// Records the address served (`http://HOST:PORT`), the links' default base.
    pub fn set_served_at(&self, base: String) {
        let _ = self.served_at.set(base);
    }

    /// The base URL of e-mail links.
    pub(crate) fn link_base(&self) -> String {
        self.email
            .as_ref()
            .and_then(|e| e.link_base.clone())
            .or_else(|| self.served_at.get().cloned())
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_owned()
    }

    /// The chat target named `name`.
    pub(crate) fn chat_target(&self, name: &str) -> Option<&ChatApprovals> {
        self.chat.iter().find(|c| c.name == name)
    }
}

/// A held change in words, for messages: every part is plain text made from the approval.
pub(crate) struct Described {
    /// `playbook / step: action target (reason)`.
    pub headline: String,
    /// The planned change's inputs, as indented JSON (cut at 2,000 characters).
    pub planned: String,
    /// One line per guardrail verdict.
    pub verdicts: String,
    /// Quorum, who may decide, separation, the deadline and the change hash.
    pub terms: String,
}

/// Describes approval `a` for a message.
pub(crate) fn describe(a: &belay_model::ApprovalRecord) -> Described {
    let mut planned = serde_json::to_string_pretty(&a.with).unwrap_or_default();
    if planned.len() > 2000 {
        let cut = (0..=2000)
            .rev()
            .find(|i| planned.is_char_boundary(*i))
            .unwrap_or(0);
        planned.truncate(cut);
        planned.push_str("\n…");
    }
    let verdicts = match &a.guardrails {
        serde_json::Value::Array(vs) if !vs.is_empty() => vs
            .iter()
            .map(|v| {
                format!(
                    "{}: {} ({})",
                    v["guardrail"].as_str().unwrap_or("?"),
                    if v["pass"] == true {
                        "pass"
                    } else {
                        "violation"
                    },
                    v["reason"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "none apply".to_owned(),
    };
    let who = if a.terms.approvers.is_empty() {
        "a responder or admin".to_owned()
    } else {
        a.terms.approvers.join(", ")
    };
    Described {
        headline: format!(
            "{} / {}: {} {}{}",
            a.playbook,
            a.key,
            a.action,
            a.target,
            if a.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", a.reason)
            }
        ),
        planned,
        verdicts,
        terms: format!(
            "Needs {} approval(s) from {who}{}; expires {} (then: {}). Approval {}, change {}.",
            a.terms.quorum,
            if a.terms.separation {
                ", not the person who triggered the run"
            } else {
                ""
            },
            belay_model::ms_to_rfc3339(a.expires_at),
            a.terms.on_timeout,
            a.id,
            a.change_hash.get(..16).unwrap_or(&a.change_hash),
        ),
    }
}
