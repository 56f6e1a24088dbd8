//! Case files on both backends. Every [`CaseOp`] runs in one transaction; entries written under
//! an idempotency key already used are not written again (a re-issued change after a crash).

use crate::codec::{from_text, to_text};
use crate::{Result, StoreError};
use belay_model::{
    CaseEntry, CaseEntryKind, CaseFile, CaseOp, CaseOutcome, CaseRecord, CaseStatus, new_id,
};
use rusqlite::{Connection, OptionalExtension, params};

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("case `{id}`"))
}

/// The entry linking a run to a case; its key makes linking idempotent.
fn run_link(case_id: &str, run_id: &str, at: i64) -> CaseEntry {
    CaseEntry {
        id: new_id(),
        case_id: case_id.into(),
        kind: CaseEntryKind::Run,
        at,
        run_id: Some(run_id.into()),
        key: Some(format!("link:{case_id}:{run_id}")),
        body: serde_json::json!({ "run": run_id }),
    }
}

/// What an op does to a case, decided from the case as stored (None: unknown).
enum Plan {
    /// The entry under this key exists: report it, change nothing.
    Done(String),
    Insert(CaseRecord),
    Update(CaseRecord),
    /// Already in the requested state; only the run link is written.
    Unchanged,
    AppendOnly,
}

fn plan(op: &CaseOp, current: Option<CaseRecord>, existing_entry: Option<String>) -> Result<Plan> {
    if let Some(id) = existing_entry {
        return Ok(Plan::Done(id));
    }
    Ok(match (op, current) {
        (CaseOp::Open { case, .. }, None) => Plan::Insert(case.clone()),
        (CaseOp::Open { case, .. }, Some(mut cur)) => {
            if cur.status == CaseStatus::Open {
                Plan::Unchanged
            } else {
                cur.status = CaseStatus::Open;
                cur.resolution = None;
                cur.updated_at = case.updated_at;
                Plan::Update(cur)
            }
        }
        (
            CaseOp::SetStatus {
                status,
                resolution,
                entry,
                ..
            },
            Some(mut cur),
        ) => {
            if cur.status == *status {
                Plan::Unchanged
            } else {
                cur.status = *status;
                cur.resolution = resolution.clone();
                cur.updated_at = entry.at;
                Plan::Update(cur)
            }
        }
        (CaseOp::Append(_), Some(_)) => Plan::AppendOnly,
        (CaseOp::SetStatus { case_id, .. }, None) => return Err(not_found(case_id)),
        (CaseOp::Append(e), None) => return Err(not_found(&e.case_id)),
    })
}

fn op_case_id(op: &CaseOp) -> &str {
    match op {
        CaseOp::Open { case, .. } => &case.id,
        CaseOp::SetStatus { case_id, .. } => case_id,
        CaseOp::Append(e) => &e.case_id,
    }
}

fn op_entry(op: &CaseOp) -> &CaseEntry {
    match op {
        CaseOp::Open { entry, .. } | CaseOp::SetStatus { entry, .. } => entry,
        CaseOp::Append(e) => e,
    }
}

fn sq(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database {
        context,
        message: e.to_string(),
    }
}

/// Applies an op inside the SQLite writer's transaction.
pub(crate) fn sqlite_apply(c: &Connection, op: &CaseOp) -> Result<CaseOutcome> {
    const C: &str = "updating a case";
    let id = op_case_id(op);
    let entry = op_entry(op);
    let current: Option<CaseRecord> = c
        .prepare_cached("SELECT body FROM cases WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get::<_, String>(0)).optional())
        .map_err(sq(C))?
        .map(|b| from_text(&b, "case"))
        .transpose()?;
    let existing: Option<String> = match &entry.key {
        Some(k) => c
            .prepare_cached("SELECT id FROM case_entries WHERE key = ?1")
            .and_then(|mut s| s.query_row([k], |r| r.get(0)).optional())
            .map_err(sq(C))?,
        None => None,
    };
    let put_case = |case: &CaseRecord| {
        c.prepare_cached(
            "INSERT INTO cases (id, status, updated_at, body) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, \
             updated_at = excluded.updated_at, body = excluded.body",
        )
        .and_then(|mut s| {
            s.execute(params![
                case.id,
                case.status.as_str(),
                case.updated_at,
                to_text(case)
            ])
        })
        .map_err(sq(C))
    };
    let put_entry = |e: &CaseEntry| {
        c.prepare_cached(
            "INSERT INTO case_entries (id, case_id, kind, key, body) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(key) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![e.id, e.case_id, e.kind.as_str(), e.key, to_text(e)]))
        .map_err(sq(C))
    };
    let changed = match plan(op, current, existing)? {
        Plan::Done(entry_id) => {
            return Ok(CaseOutcome {
                changed: false,
                entry_id,
            });
        }
        Plan::Insert(case) | Plan::Update(case) => {
            put_case(&case)?;
            put_entry(entry)?;
            true
        }
        Plan::AppendOnly => {
            put_entry(entry)?;
            true
        }
        Plan::Unchanged => false,
    };
    if let (CaseOp::Open { .. }, Some(run)) = (op, &entry.run_id) {
        put_entry(&run_link(id, run, entry.at))?;
    }
    Ok(CaseOutcome {
        changed,
        entry_id: entry.id.clone(),
    })
}

pub(crate) fn sqlite_file(c: &Connection, id: &str) -> Result<Option<CaseFile>> {
    const C: &str = "reading a case";
    let Some(body) = c
        .prepare_cached("SELECT body FROM cases WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get::<_, String>(0)).optional())
        .map_err(sq(C))?
    else {
        return Ok(None);
    };
    let case: CaseRecord = from_text(&body, "case")?;
    let mut stmt = c
        .prepare_cached("SELECT body FROM case_entries WHERE case_id = ?1 ORDER BY seq")
        .map_err(sq(C))?;
    let rows = stmt
        .query_map([id], |r| r.get::<_, String>(0))
        .map_err(sq(C))?;
    let mut entries = Vec::new();
    for r in rows {
        entries.push(from_text(&r.map_err(sq(C))?, "case entry")?);
    }
    Ok(Some(CaseFile { case, entries }))
}

pub(crate) fn sqlite_list(c: &Connection, status: Option<CaseStatus>) -> Result<Vec<CaseRecord>> {
    const C: &str = "listing cases";
    let mut stmt = c
        .prepare_cached(
            "SELECT body FROM cases WHERE (?1 IS NULL OR status = ?1) ORDER BY updated_at DESC, id",
        )
        .map_err(sq(C))?;
    let rows = stmt
        .query_map([status.map(|s| s.as_str())], |r| r.get::<_, String>(0))
        .map_err(sq(C))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(from_text(&r.map_err(sq(C))?, "case")?);
    }
    Ok(out)
}

/// The PostgreSQL side: the same plan, in the caller's transaction.
pub(crate) mod pg {
    use super::*;
    use crate::postgres::get_json;
    use deadpool_postgres::GenericClient;
    use tokio_postgres::types::Json;

    fn pe(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
        move |e| StoreError::Database {
            context,
            message: e.to_string(),
        }
    }

    pub(crate) async fn apply(tx: &impl GenericClient, op: &CaseOp) -> Result<CaseOutcome> {
        const C: &str = "updating a case";
        let id = op_case_id(op);
        let entry = op_entry(op);
        let current: Option<CaseRecord> = tx
            .query_opt("SELECT body FROM cases WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(pe(C))?
            .map(|r| get_json(&r, 0, "case"))
            .transpose()?;
        let existing: Option<String> = match &entry.key {
            Some(k) => tx
                .query_opt("SELECT id FROM case_entries WHERE key = $1", &[k])
                .await
                .map_err(pe(C))?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(pe(C))?,
            None => None,
        };
        let changed = match plan(op, current, existing)? {
            Plan::Done(entry_id) => {
                return Ok(CaseOutcome {
                    changed: false,
                    entry_id,
                });
            }
            Plan::Insert(case) | Plan::Update(case) => {
                tx.execute(
                    "INSERT INTO cases (id, status, updated_at, body) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                     updated_at = excluded.updated_at, body = excluded.body",
                    &[
                        &case.id,
                        &case.status.as_str(),
                        &case.updated_at,
                        &Json(&case),
                    ],
                )
                .await
                .map_err(pe(C))?;
                put_entry(tx, entry).await?;
                true
            }
            Plan::AppendOnly => {
                put_entry(tx, entry).await?;
                true
            }
            Plan::Unchanged => false,
        };
        if let (CaseOp::Open { .. }, Some(run)) = (op, &entry.run_id) {
            put_entry(tx, &run_link(id, run, entry.at)).await?;
        }
        Ok(CaseOutcome {
            changed,
            entry_id: entry.id.clone(),
        })
    }

    async fn put_entry(tx: &impl GenericClient, e: &CaseEntry) -> Result<()> {
        tx.execute(
            "INSERT INTO case_entries (id, case_id, kind, key, body) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO NOTHING",
            &[&e.id, &e.case_id, &e.kind.as_str(), &e.key, &Json(e)],
        )
        .await
        .map_err(pe("updating a case"))?;
        Ok(())
    }

    pub(crate) async fn file(client: &impl GenericClient, id: &str) -> Result<Option<CaseFile>> {
        const C: &str = "reading a case";
        let Some(row) = client
            .query_opt("SELECT body FROM cases WHERE id = $1", &[&id])
            .await
            .map_err(pe(C))?
        else {
            return Ok(None);
        };
        let case = get_json(&row, 0, C)?;
        let entries = client
            .query(
                "SELECT body FROM case_entries WHERE case_id = $1 ORDER BY seq",
                &[&id],
            )
            .await
            .map_err(pe(C))?
            .iter()
            .map(|r| get_json(r, 0, C))
            .collect::<Result<_>>()?;
        Ok(Some(CaseFile { case, entries }))
    }

    pub(crate) async fn list(
        client: &impl GenericClient,
        status: Option<CaseStatus>,
    ) -> Result<Vec<CaseRecord>> {
        let status = status.map(|s| s.as_str());
        client
            .query(
                "SELECT body FROM cases WHERE ($1::TEXT IS NULL OR status = $1) \
                 ORDER BY updated_at DESC, id",
                &[&status],
            )
            .await
            .map_err(pe("listing cases"))?
            .iter()
            .map(|r| get_json(r, 0, "listing cases"))
            .collect()
    }
}
