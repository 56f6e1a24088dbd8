//! Incident cases: the file an incident accumulates (events, runs, changes, evidence, notes).

use serde::{Deserialize, Serialize};
use serde_json::Value;

string_enum! {
    /// Whether a case is being worked on.
    CaseStatus {
        Open => "open",
        Closed => "closed",
    }
}

string_enum! {
    /// What a case file entry records: a linked run (its event and changes are read through
    /// it), a note, evidence, or a status change (opened, closed, reopened).
    CaseEntryKind {
        Run => "run",
        Note => "note",
        Evidence => "evidence",
        Status => "status",
    }
}

/// A case's header: what it is about and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// Chosen by the playbook (e.g. `phish-<event id>`), so related runs find the same case.
    pub id: String,
    pub title: String,
    pub severity: String,
    pub status: CaseStatus,
    /// Why it was closed.
    pub resolution: Option<String>,
    pub description: Option<String>,
    pub observables: Vec<String>,
    pub assignee: Option<String>,
    pub opened_at: i64,
    pub updated_at: i64,
}

/// One append-only entry of a case file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEntry {
    pub id: String,
    pub case_id: String,
    pub kind: CaseEntryKind,
    pub at: i64,
    /// The run that wrote it, if any.
    pub run_id: Option<String>,
    /// The change's idempotency key: an entry written again under the same key is not doubled.
    pub key: Option<String>,
    /// Kind-specific content: a note's text, evidence's name/kind/location/sha256, a status change.
    pub body: Value,
}

impl CaseEntry {
    /// The entry as shown to people and playbooks: its body with its `id` and `at` (RFC 3339).
    pub fn to_json(&self) -> Value {
        let mut b = self.body.clone();
        b["id"] = Value::from(self.id.as_str());
        b["at"] = Value::from(crate::ms_to_rfc3339(self.at));
        b
    }
}

/// A change to a case, applied atomically by the store.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseOp {
    /// Creates the case, or reopens it if closed; links `entry.run_id` to it either way.
    Open { case: CaseRecord, entry: CaseEntry },
    /// Sets the status of an existing case (closing or reopening it).
    SetStatus {
        case_id: String,
        status: CaseStatus,
        resolution: Option<String>,
        entry: CaseEntry,
    },
    /// Appends a note or evidence to an existing case.
    Append(CaseEntry),
}

/// What a [`CaseOp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// False when the case was already in the requested state, or the entry already written
    /// under its key.
    pub changed: bool,
    /// The id of the entry written (or found under the same key).
    pub entry_id: String,
}

/// A case with its whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseFile {
    pub case: CaseRecord,
    pub entries: Vec<CaseEntry>,
}
