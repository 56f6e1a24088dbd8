//! Case files as people see and keep them (`belay cases`, `/api/v1/cases`): a case with what
//! its linked runs did, and cases, notes and evidence added by a person rather than a
//! playbook. The store applies each change atomically; entries are append-only.

use belay_model::{
    CaseEntry, CaseEntryKind, CaseFile, CaseOp, CaseRecord, CaseStatus, ms_to_rfc3339, new_id,
    now_ms, sha256_hex,
};
use belay_store::{Store, StoreError};
use serde_json::{Value, json};

/// A case with what its linked runs did: their events and journaled changes; its notes,
/// evidence and status history.
pub async fn case_view(store: &dyn Store, file: &CaseFile) -> Result<Value, StoreError> {
    let mut runs = Vec::new();
    for e in file.entries.iter().filter(|e| e.kind == CaseEntryKind::Run) {
        let Some(run_id) = &e.run_id else { continue };
        let Some(run) = store.get_run(run_id).await? else {
            continue;
        };
        let event = store.get_event(run.trigger_source(), &run.event_id).await?;
        let changes: Vec<Value> = store
            .changes(Some(run_id))
            .await?
            .iter()
            .map(|c| {
                json!({ "id": c.id, "action": c.action, "target": c.target, "status": c.status,
                        "at": ms_to_rfc3339(c.created_at) })
            })
            .collect();
        runs.push(json!({
            "id": run.id, "playbook": run.playbook, "status": run.status,
            "event": event.map(|ev| json!({ "id": ev.id, "kind": ev.kind, "severity": ev.severity })),
            "changes": changes,
        }));
    }
    let entries = |kind: CaseEntryKind| -> Vec<Value> {
        file.entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| {
                let mut b = e.to_json();
                b["run"] = json!(e.run_id);
                b
            })
            .collect()
    };
    Ok(json!({
        "case": file.case,
        "runs": runs,
        "notes": entries(CaseEntryKind::Note),
        "evidence": entries(CaseEntryKind::Evidence),
        "history": entries(CaseEntryKind::Status),
    }))
}

/// The body of an evidence entry: `name`, `kind` (default `other`), `location`, `content`,
/// `sha256` (computed from `content`; a given one must agree) and `description`. `Err` names
/// the bad input and why.
pub fn evidence_body(input: &Value) -> Result<Value, (&'static str, String)> {
    let name = input["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .ok_or(("name", "evidence needs a `name`".to_owned()))?;
    let content = input["content"].as_str();
    let given = input["sha256"].as_str().map(str::to_ascii_lowercase);
    let computed = content.map(|c| sha256_hex(c.as_bytes()));
    let sha256 = match (given, computed) {
        (Some(g), Some(c)) if g != c => {
            return Err((
                "sha256",
                format!("the evidence's content has SHA-256 {c}, not the {g} given"),
            ));
        }
        (g, c) => c.or(g),
    };
    Ok(json!({
        "name": name,
        "kind": input["kind"].as_str().unwrap_or("other"),
        "location": input["location"],
        "content": content,
        "sha256": sha256,
        "description": input["description"],
    }))
}

fn person_entry(case: &str, kind: CaseEntryKind, mut body: Value, by: &str) -> CaseEntry {
    body["by"] = json!(by);
    CaseEntry {
        id: new_id(),
        case_id: case.into(),
        kind,
        at: now_ms(),
        run_id: None,
        key: None,
        body,
    }
}

/// What a person gives to open a case.
#[derive(Debug, Clone, Default)]
pub struct NewCase {
    /// The case's id (chosen by the person, e.g. `inc-2026-042`).
    pub id: String,
    /// One line, for lists.
    pub title: String,
    /// Severity (default `medium`).
    pub severity: Option<String>,
    /// Longer free text.
    pub description: Option<String>,
    /// What the case is about.
    pub observables: Vec<String>,
    /// Who works on it.
    pub assignee: Option<String>,
}

/// Opens a case as `by` (a closed case of the same id is reopened); whether anything changed.
pub async fn open_case(store: &dyn Store, new: NewCase, by: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    let body = json!({ "status": "open", "title": new.title });
    let entry = person_entry(&new.id, CaseEntryKind::Status, body, by);
    let case = CaseRecord {
        id: new.id,
        title: new.title,
        severity: new.severity.unwrap_or_else(|| "medium".into()),
        status: CaseStatus::Open,
        resolution: None,
        description: new.description,
        observables: new.observables,
        assignee: new.assignee,
        opened_at: now,
        updated_at: now,
    };
    Ok(store
        .apply_case(CaseOp::Open { case, entry })
        .await?
        .changed)
}

/// Appends a note by `by` to an existing case; the entry's id.
pub async fn add_note(
    store: &dyn Store,
    case: &str,
    note: &str,
    by: &str,
) -> Result<String, StoreError> {
    let entry = person_entry(case, CaseEntryKind::Note, json!({ "note": note }), by);
    Ok(store.apply_case(CaseOp::Append(entry)).await?.entry_id)
}

/// Appends evidence (see [`evidence_body`]) by `by` to an existing case; the entry's id.
pub async fn add_evidence(
    store: &dyn Store,
    case: &str,
    body: Value,
    by: &str,
) -> Result<String, StoreError> {
    let entry = person_entry(case, CaseEntryKind::Evidence, body, by);
    Ok(store.apply_case(CaseOp::Append(entry)).await?.entry_id)
}
