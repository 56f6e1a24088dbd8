//! Action errors: what failed, in words safe to store and show, and whether retrying may help.
//! Never holds a secret.

/// Whether retrying may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying (timeouts, 5xx, 429, a busy resource).
    Transient,
    /// Retrying will not help (bad input, refused, not found).
    Permanent,
}

/// A failed action, with a message safe to store and show (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    /// Whether the engine may retry the call.
    pub kind: ErrorKind,
    /// What failed, in words for the run record and the operator; also the `Display` text.
    pub message: String,
}

impl ActionError {
    /// An error retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        ActionError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    /// An error worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        ActionError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    /// The permanent error a connector returns for an action it does not implement:
    /// "`{connector}` has no action `{action}`", `connector` naming it as users know it
    /// (e.g. "the dlp connector" or "`scan` (clamav)").
    pub fn no_action(connector: &str, action: &str) -> Self {
        Self::permanent(format!("{connector} has no action `{action}`"))
    }
}
