//! Encoding writes into rows on the caller's thread: JSON columns serialized, audit entries
//! prepared. The writer thread then only binds and chains; nothing here touches the database.

use crate::audit;
use crate::codec::to_text;
use crate::{Cursor, Result, Write};
use belay_model::audit::text_hash;
use belay_model::{
    ApprovalRecord, ChangeRecord, ChangeStatus, Event, PreparedDraft, RunRecord, RunStatus,
    StepRecord,
};
use serde_json::Value;

/// One state write, encoded for its rows.
#[allow(clippy::large_enum_variant)]
pub(super) enum WriteRow {
    Step(StepRow),
    /// A change's journal entry (with its step's record, if given); stores nothing if a
    /// change with its idempotency key exists.
    BeginChange(ChangeRow, Option<StepRow>),
    FinishChange {
        step: StepRow,
        change_id: String,
        status: ChangeStatus,
        after: String,
        error: Option<String>,
    },
    RunStatus {
        run_id: String,
        status: RunStatus,
        error: Option<String>,
    },
    Approval(Box<ApprovalRecord>),
    /// Only the audit entry beside it.
    Audit,
}

/// A step record's row, its JSON columns serialized.
pub(super) struct StepRow {
    pub(super) rec: StepRecord,
    pub(super) with: String,
    pub(super) guardrails: String,
    pub(super) output: String,
}

impl StepRow {
    /// Serializes the record's JSON columns; the JSON values are dropped here, on the
    /// caller's thread.
    pub(super) fn new(mut rec: StepRecord) -> StepRow {
        let with = to_text(&rec.with);
        let output = to_text(&rec.output);
        let guardrails = to_text(&rec.guardrails);
        rec.with = Value::Null;
        rec.output = Value::Null;
        StepRow {
            rec,
            with,
            guardrails,
            output,
        }
    }
}

/// A change record's row, its JSON columns serialized.
pub(super) struct ChangeRow {
    pub(super) rec: ChangeRecord,
    pub(super) with: String,
    pub(super) before: String,
    pub(super) after: String,
    pub(super) inverse: String,
    pub(super) guardrails: String,
}

/// A run record's row, its inputs serialized.
pub(super) struct RunRow {
    pub(super) rec: RunRecord,
    pub(super) inputs: String,
}

impl RunRow {
    pub(super) fn new(rec: RunRecord) -> RunRow {
        RunRow {
            inputs: to_text(&rec.inputs),
            rec: RunRecord {
                inputs: Value::Null,
                ..rec
            },
        }
    }
}

/// An event offered for acceptance, with its runs, encoded.
pub(super) struct EventRow {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) source: String,
    pub(super) time_ms: i64,
    pub(super) severity: String,
    pub(super) body: String,
    pub(super) runs: Vec<RunRow>,
    pub(super) cursor: Option<Cursor>,
    /// The `event.accepted` entry recorded if the event is new.
    pub(super) accepted: PreparedDraft,
}

impl EventRow {
    pub(super) fn new(
        actor: &str,
        event: &Event,
        runs: Vec<RunRecord>,
        cursor: Option<Cursor>,
    ) -> EventRow {
        let body = to_text(event);
        let severity = event.severity.to_string();
        let accepted = audit::prepared::event_accepted(
            actor,
            &event.id,
            &event.kind,
            &event.source,
            &severity,
            &text_hash(&body),
            runs.iter().map(|r| {
                (
                    r.id.as_str(),
                    r.playbook.as_str(),
                    r.playbook_hash.as_str(),
                    r.dry_run,
                )
            }),
        );
        EventRow {
            id: event.id.clone(),
            kind: event.kind.clone(),
            source: event.source.clone(),
            time_ms: event.time.timestamp_millis(),
            severity,
            body,
            runs: runs.into_iter().map(RunRow::new).collect(),
            cursor,
            accepted,
        }
    }
}

/// A write encoded on the caller's thread: its rows, the audit entry it records and, for a
/// new journal entry, the change itself (the answer unless its key was journaled before).
pub(super) type Encoded = (WriteRow, Option<PreparedDraft>, Option<ChangeRecord>);

/// Encodes a write on the caller's thread.
pub(super) fn encode(actor: &str, w: Write) -> Result<Encoded> {
    Ok(match w {
        Write::Step(s) => {
            let row = StepRow::new(s);
            let d = audit::prepared::step_finished(
                actor,
                &row.rec,
                &text_hash(&row.with),
                &text_hash(&row.output),
            );
            (WriteRow::Step(row), Some(d), None)
        }
        Write::BeginChange(c) => {
            let (row, d) = change_row(actor, &c)?;
            (WriteRow::BeginChange(row, None), Some(d), Some(c))
        }
        Write::FinishChange(c) => {
            let step = StepRow::new(c.step);
            let after = to_text(&c.after);
            let d = audit::prepared::change_finished(
                actor,
                &c.change_id,
                c.status,
                &text_hash(&after),
                c.error.as_deref(),
                &step.rec,
                &text_hash(&step.output),
            );
            let row = WriteRow::FinishChange {
                step,
                change_id: c.change_id,
                status: c.status,
                after,
                error: c.error,
            };
            (row, Some(d), None)
        }
        Write::RunStatus {
            run_id,
            status,
            error,
        } => {
            let d = audit::prepared::run_status(actor, &run_id, status, error.as_deref());
            (
                WriteRow::RunStatus {
                    run_id,
                    status,
                    error,
                },
                Some(d),
                None,
            )
        }
        Write::Audit(d) => (WriteRow::Audit, Some(d.prepare()), None),
        Write::Approval(a) => {
            let d = audit::approval(actor, &a).prepare();
            (WriteRow::Approval(a), Some(d), None)
        }
    })
}

/// A change's row and its `change.journaled` entry; the record's JSON stays with the caller.
pub(super) fn change_row(actor: &str, c: &ChangeRecord) -> Result<(ChangeRow, PreparedDraft)> {
    crate::check_change_key(c)?;
    let with = to_text(&c.with);
    let before = to_text(&c.before);
    let d = audit::prepared::change_journaled(actor, c, &text_hash(&with), &text_hash(&before));
    let row = ChangeRow {
        with,
        before,
        after: to_text(&c.after),
        inverse: to_text(&c.inverse),
        guardrails: to_text(&c.guardrails),
        rec: ChangeRecord {
            id: c.id.clone(),
            run_id: c.run_id.clone(),
            step_key: c.step_key.clone(),
            idempotency_key: c.idempotency_key.clone(),
            action: c.action.clone(),
            target: c.target.clone(),
            with: Value::Null,
            before: Value::Null,
            after: Value::Null,
            inverse: Value::Null,
            trust: c.trust,
            guardrails: Vec::new(),
            allowed_by: c.allowed_by.clone(),
            status: c.status,
            error: c.error.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            expires_at: c.expires_at,
            items: c.items,
        },
    };
    Ok((row, d))
}
