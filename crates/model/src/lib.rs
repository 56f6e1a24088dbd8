//! Plain domain types of belay, shared by every other crate.
//!
//! This crate owns the vocabulary (events, trust levels, runs, steps, changes) and their
//! validation. It does no I/O: storage, connectors and the engine live at the edges.

pub mod audit;
mod event;
mod run;
mod time;

pub use audit::{AuditDraft, AuditEntry};
pub use event::{Event, EventError, Observables, Severity};
pub use run::{
    ChangeRecord, ChangeStatus, Decision, RunRecord, RunStatus, StepRecord, StepStatus, TrustLevel,
};
pub use time::{ms_to_rfc3339, now_ms};

use sha2::{Digest, Sha256};

/// SHA-256 of a byte string, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A fresh, time-ordered identifier (UUIDv7), so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
