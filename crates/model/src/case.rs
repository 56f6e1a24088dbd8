//! Incident cases: the file an incident accumulates (events, runs, changes, evidence, notes).

use serde::{Deserialize, Serialize};
use serde_json::Value;

string_enum! {
    /// Whether a case is being worked on.
    CaseStatus {
        /// Being worked on; new runs may append to it.
        Open => "open",
        /// Resolved; reopened if a playbook opens it again.
        Closed => "closed",
    }
}

string_enum! {
    /// What a case file entry records: a linked run (its event and changes are read through
    /// it), a note, evidence, or a status change (opened, closed, reopened).
    CaseEntryKind {
        /// A run linked to the case.
        Run => "run",
        /// Free text.
        Note => "note",
        /// A pointer to collected evidence (name, kind, location, SHA-256).
        Evidence => "evidence",
        /// The case was opened, closed or reopened.
        Status => "status",
    }
}

/// A case's header: what it is about and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseRecord {
    /// Chosen by the playbook (e.g. `phish-<event id>`), so related runs find the same case.
    pub id: String,
    /// One line, for lists.
    pub title: String,
    /// As the playbook gave it (`medium` when not given).
    pub severity: String,
    /// Open or closed.
    pub status: CaseStatus,
    /// Why it was closed.
    pub resolution: Option<String>,
    /// Longer free text.
    pub description: Option<String>,
    /// What the case is about (addresses, domains, users...), as the playbook listed them.
    pub observables: Vec<String>,
    /// Who works on it.
    pub assignee: Option<String>,
    /// When first opened, in Unix milliseconds.
    pub opened_at: i64,
    /// Last opening, closing or reopening, in Unix milliseconds.
    pub updated_at: i64,
}

/// One append-only entry of a case file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEntry {
    /// Unique id (UUIDv7).
    pub id: String,
    /// The case it belongs to.
    pub case_id: String,
    /// What it records.
    pub kind: CaseEntryKind,
    /// When written, in Unix milliseconds.
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
    Open {
        /// The header to create; if the case exists only its status changes (reopened).
        case: CaseRecord,
        /// The entry written with it (not doubled under the same key).
        entry: CaseEntry,
    },
    /// Sets the status of an existing case (closing or reopening it).
    SetStatus {
        /// The case to change.
        case_id: String,
        /// The new status.
        status: CaseStatus,
        /// Why it is closed; stored on the header.
        resolution: Option<String>,
        /// The entry recording the change.
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
    /// The header.
    pub case: CaseRecord,
    /// Every entry, in the order written.
    pub entries: Vec<CaseEntry>,
}
