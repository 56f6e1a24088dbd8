//! `case.*`: incident case files kept in belay's store. A case links the runs that opened or
//! wrote to it (through them, their events and changes), and keeps notes and evidence
//! append-only. The run is read from the change's idempotency key (`RUN/STEP`).

use belay_connector_api::{ActionError, Call, Connector};
use belay_model::{CaseEntry, CaseEntryKind, CaseOp, CaseRecord, CaseStatus, new_id, now_ms};
use belay_store::{Store, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;

/// The `case` connector.
pub struct Cases {
    store: Arc<dyn Store>,
}

impl Cases {
    pub(crate) fn new(store: Arc<dyn Store>) -> Cases {
        Cases { store }
    }
}

fn text<'a>(input: &'a Value, name: &str) -> Result<&'a str, ActionError> {
    input[name]
        .as_str()
        .ok_or_else(|| ActionError::permanent(format!("missing text input `{name}`")))
}

fn opt(input: &Value, name: &str) -> Option<String> {
    input[name].as_str().map(str::to_owned)
}

fn store_err(e: StoreError) -> ActionError {
    match e {
        StoreError::NotFound(what) => ActionError::permanent(format!("{what} does not exist")),
        e => ActionError::transient(e.to_string()),
    }
}

fn entry(case: &str, kind: CaseEntryKind, call: &Call<'_>, body: Value) -> CaseEntry {
    CaseEntry {
        id: new_id(),
        case_id: case.into(),
        kind,
        at: now_ms(),
        run_id: call
            .idempotency_key
            .and_then(|k| k.split_once('/'))
            .map(|(run, _)| run.to_owned()),
        key: call.idempotency_key.map(str::to_owned),
        body,
    }
}

impl Cases {
    async fn apply(&self, op: CaseOp) -> Result<belay_model::CaseOutcome, ActionError> {
        self.store.apply_case(op).await.map_err(store_err)
    }

    /// Appends a note or evidence to `case`: the entry's id.
    async fn append(
        &self,
        case: &str,
        kind: CaseEntryKind,
        call: &Call<'_>,
        body: Value,
    ) -> Result<String, ActionError> {
        let out = self
            .apply(CaseOp::Append(entry(case, kind, call, body)))
            .await?;
        Ok(out.entry_id)
    }

    async fn set_status(
        &self,
        call: &Call<'_>,
        status: CaseStatus,
        resolution: Option<String>,
    ) -> Result<Value, ActionError> {
        let case = text(call.input, "case")?;
        let body = json!({ "status": status, "resolution": resolution });
        let out = self
            .apply(CaseOp::SetStatus {
                case_id: case.into(),
                status,
                resolution,
                entry: entry(case, CaseEntryKind::Status, call, body),
            })
            .await?;
        Ok(json!({ "case": case, "changed": out.changed }))
    }
}

#[async_trait::async_trait]
impl Connector for Cases {
    fn family(&self) -> &str {
        "case"
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let input = call.input;
        match call.action {
            "case.open" => {
                let case = text(input, "case")?;
                let now = now_ms();
                let record = CaseRecord {
                    id: case.into(),
                    title: text(input, "title")?.into(),
                    severity: opt(input, "severity").unwrap_or_else(|| "medium".into()),
                    status: CaseStatus::Open,
                    resolution: None,
                    description: opt(input, "description"),
                    observables: input["observables"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    assignee: opt(input, "assignee"),
                    opened_at: now,
                    updated_at: now,
                };
                let body = json!({ "status": "open", "title": record.title });
                let out = self
                    .apply(CaseOp::Open {
                        case: record,
                        entry: entry(case, CaseEntryKind::Status, &call, body),
                    })
                    .await?;
                Ok(json!({ "case": case, "url": format!("/cases/{case}"), "changed": out.changed }))
            }
            "case.close" => {
                let resolution = opt(input, "resolution").unwrap_or_else(|| "resolved".into());
                self.set_status(&call, CaseStatus::Closed, Some(resolution))
                    .await
            }
            "case.reopen" => self.set_status(&call, CaseStatus::Open, None).await,
            "case.add_note" => {
                let case = text(input, "case")?;
                let body = json!({ "note": text(input, "note")? });
                let id = self.append(case, CaseEntryKind::Note, &call, body).await?;
                Ok(json!({ "note_id": id }))
            }
            "case.add_evidence" => {
                let case = text(input, "case")?;
                let body = crate::case_file::evidence_body(input)
                    .map_err(|(_, why)| ActionError::permanent(why))?;
                let sha256 = body["sha256"].clone();
                let id = self
                    .append(case, CaseEntryKind::Evidence, &call, body)
                    .await?;
                Ok(json!({ "evidence_id": id, "sha256": sha256 }))
            }
            "case.get" => {
                let case = text(input, "case")?;
                let file = self
                    .store
                    .case_file(case)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| {
                        ActionError::permanent(format!("case `{case}` does not exist"))
                    })?;
                let of = |kind: CaseEntryKind| -> Vec<Value> {
                    file.entries
                        .iter()
                        .filter(|e| e.kind == kind)
                        .map(|e| e.to_json())
                        .collect()
                };
                let runs: Vec<&str> = file
                    .entries
                    .iter()
                    .filter(|e| e.kind == CaseEntryKind::Run)
                    .filter_map(|e| e.run_id.as_deref())
                    .collect();
                Ok(json!({
                    "case": case,
                    "status": file.case.status,
                    "title": file.case.title,
                    "severity": file.case.severity,
                    "notes": of(CaseEntryKind::Note),
                    "evidence": of(CaseEntryKind::Evidence),
                    "runs": runs,
                }))
            }
            other => Err(ActionError::permanent(format!(
                "the case connector has no action `{other}`"
            ))),
        }
    }

    /// The part of the case an action changes: its status, or its notes or evidence.
    async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        let case = text(input, "case")?;
        let Some(f) = self.store.case_file(case).await.map_err(store_err)? else {
            return Ok(match action {
                "case.add_note" => json!({ "exists": false, "notes": 0 }),
                "case.add_evidence" => json!({ "exists": false, "evidence": 0 }),
                _ => json!({ "open": false }),
            });
        };
        let count = |kind: CaseEntryKind| f.entries.iter().filter(|e| e.kind == kind).count();
        Ok(match action {
            "case.add_note" => json!({ "exists": true, "notes": count(CaseEntryKind::Note) }),
            "case.add_evidence" => {
                json!({ "exists": true, "evidence": count(CaseEntryKind::Evidence) })
            }
            // Not existing and closed are the same for opening and closing.
            _ => json!({ "open": f.case.status == CaseStatus::Open }),
        })
    }
}
