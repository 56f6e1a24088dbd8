//! Queries: every record the [`Store`](crate::Store) answers with without writing, each on a
//! pooled connection outside any transaction. Never writes.

use super::PgStore;
use super::error::db_err;
use super::row::{change_from_row, get, get_json, rows_to, run_from_row, step_from_row};
use crate::rows::{CHANGE_COLS, RUN_COLS, STEP_COLS};
use crate::{ApprovalFilter, ChangeHistory, Counts, Result, RunFilter, StatRow, StoreError};
use belay_model::{
    ApprovalRecord, AuditEntry, CaseFile, CaseRecord, CaseStatus, ChangeRecord, Demotion, Event,
    RunRecord, StepRecord,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

pub(super) async fn change_with_key(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<ChangeRecord>> {
    change_where(c, ChangeKey::IdempotencyKey, key).await
}

/// Which unique column finds one change.
#[derive(Clone, Copy)]
pub(super) enum ChangeKey {
    Id,
    IdempotencyKey,
}

pub(super) async fn change_where(
    c: &impl GenericClient,
    key: ChangeKey,
    value: &str,
) -> Result<Option<ChangeRecord>> {
    let column = match key {
        ChangeKey::Id => "id",
        ChangeKey::IdempotencyKey => "idempotency_key",
    };
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {CHANGE_COLS} FROM changes WHERE {column} = $1"
        ))
        .await
        .map_err(db_err("reading a change"))?;
    let row = c
        .query_opt(&stmt, &[&value])
        .await
        .map_err(db_err("reading a change"))?;
    row.as_ref().map(change_from_row).transpose()
}

pub(super) async fn checkpoints(s: &PgStore) -> Result<Vec<crate::Checkpoint>> {
    const C: &str = "listing checkpoints";
    let rows = s
        .query("SELECT name, last_change_id, created_at, actor FROM checkpoints ORDER BY created_at, name", &[], C)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(crate::Checkpoint {
                name: get(r, 0, C)?,
                last_change_id: get(r, 1, C)?,
                created_at: get(r, 2, C)?,
                actor: get(r, 3, C)?,
            })
        })
        .collect()
}

pub(super) async fn audit_entries(
    s: &PgStore,
    after: i64,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    const C: &str = "reading the audit trail";
    let rows = s
        .query(
            "SELECT seq, at, kind, actor, subject, detail, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &(limit as i64)],
            C,
        )
        .await?;
    rows.iter().map(|r| audit_entry(r, C)).collect()
}

pub(super) async fn approval_trail(s: &PgStore, id: &str) -> Result<Vec<AuditEntry>> {
    const C: &str = "reading an approval's trail";
    let rows = s
        .query(
            // Each entry with the hash of the row stored before it, as verification reads it.
            "SELECT a.seq, a.at, a.kind, a.actor, a.subject, a.detail, \
               COALESCE(p.hash, CASE WHEN a.seq = 1 THEN $2 ELSE '' END), a.hash \
             FROM audit a LEFT JOIN audit p ON p.seq = a.seq - 1 \
             WHERE a.subject = $1 AND a.kind LIKE 'approval.%' ORDER BY a.seq",
            &[&id, &belay_model::audit::GENESIS],
            C,
        )
        .await?;
    rows.iter().map(|r| audit_entry(r, C)).collect()
}

/// An entry from `seq, at, kind, actor, subject, detail, prev_hash, hash`.
fn audit_entry(r: &tokio_postgres::Row, c: &'static str) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: get(r, 0, c)?,
        at: get(r, 1, c)?,
        kind: get(r, 2, c)?,
        actor: get(r, 3, c)?,
        subject: get(r, 4, c)?,
        detail: get(r, 5, c)?,
        prev_hash: get(r, 6, c)?,
        hash: get(r, 7, c)?,
    })
}

pub(super) async fn audit_head(s: &PgStore) -> Result<Option<(i64, String)>> {
    const C: &str = "reading the audit head";
    let row = s
        .query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[], C)
        .await?;
    row.map(|r| Ok((get(&r, 0, C)?, get(&r, 1, C)?)))
        .transpose()
}

pub(super) async fn get_event(
    s: &PgStore,
    source: Option<&str>,
    id: &str,
) -> Result<Option<Event>> {
    let row = s
        .query_opt(
            "SELECT body FROM events WHERE id = $1 AND ($2::TEXT IS NULL OR source = $2) \
             ORDER BY seq LIMIT 1",
            &[&id, &source],
            "reading an event",
        )
        .await?;
    row.map(|r| get_json(&r, 0, "event body")).transpose()
}

pub(super) async fn get_run(s: &PgStore, id: &str) -> Result<Option<RunRecord>> {
    let row = s
        .query_opt(
            &format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"),
            &[&id],
            "reading a run",
        )
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

pub(super) async fn list_runs(s: &PgStore, filter: &RunFilter) -> Result<Vec<RunRecord>> {
    // Only the filters given appear in the SQL, so each shape gets a plan that uses its index.
    let status = filter.status.map(|s| s.as_str());
    let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut conds = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(s) = &status {
        params.push(s);
        conds.push(format!("status = ${}", params.len()));
    }
    if let Some(p) = &filter.playbook {
        params.push(p);
        conds.push(format!("playbook = ${}", params.len()));
    }
    if let Some(e) = &filter.event_id {
        params.push(e);
        conds.push(format!("event_id = ${}", params.len()));
    }
    if let Some((at, id)) = &filter.before {
        params.push(at);
        params.push(id);
        conds.push(format!(
            "(created_at, id) < (${}, ${})",
            params.len() - 1,
            params.len()
        ));
    }
    params.push(&limit);
    let filter_sql = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {RUN_COLS} FROM runs {filter_sql} ORDER BY created_at DESC, id DESC LIMIT ${}",
        params.len()
    );
    let rows = s.query(&sql, &params, "listing runs").await?;
    rows_to(&rows, run_from_row)
}

pub(super) async fn steps(s: &PgStore, run_id: &str) -> Result<Vec<StepRecord>> {
    // NULLS FIRST: the order SQLite gives, so a step's own record precedes its items'.
    let rows = s
        .query(
            &format!("SELECT {STEP_COLS} FROM steps WHERE run_id = $1 ORDER BY seq, item NULLS FIRST, key"),
            &[&run_id],
            "reading steps",
        )
        .await?;
    rows_to(&rows, step_from_row)
}

pub(super) async fn changes(s: &PgStore, run_id: Option<&str>) -> Result<Vec<ChangeRecord>> {
    let rows = match run_id {
        Some(id) => {
            s.query(
                &format!("SELECT {CHANGE_COLS} FROM changes WHERE run_id = $1 ORDER BY seq"),
                &[&id],
                "listing changes",
            )
            .await?
        }
        None => {
            s.query(
                &format!("SELECT {CHANGE_COLS} FROM changes ORDER BY seq"),
                &[],
                "listing changes",
            )
            .await?
        }
    };
    rows_to(&rows, change_from_row)
}

pub(super) async fn change_heads(s: &PgStore) -> Result<Vec<ChangeRecord>> {
    let cols = crate::rows::change_head_cols("'null'::jsonb");
    let rows = s
        .query(
            &format!("SELECT {cols} FROM changes ORDER BY seq"),
            &[],
            "listing changes",
        )
        .await?;
    rows_to(&rows, change_from_row)
}

pub(super) async fn expiring_changes(
    s: &PgStore,
    due_by: Option<i64>,
    limit: usize,
) -> Result<Vec<ChangeRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = s
        .query(
            &format!(
                "SELECT {CHANGE_COLS} FROM changes WHERE expires_at IS NOT NULL AND status = 'applied' \
                 AND expires_at <= $1 ORDER BY expires_at, seq LIMIT $2"
            ),
            &[&due_by.unwrap_or(i64::MAX), &limit],
            "listing expiring changes",
        )
        .await?;
    rows_to(&rows, change_from_row)
}

pub(super) async fn count_changes(s: &PgStore, actions: &[String], since: i64) -> Result<u64> {
    const C: &str = "counting recent changes";
    let row = s
        .query_opt(
            "SELECT COALESCE(SUM(items), 0)::BIGINT FROM changes WHERE created_at >= $1 AND status IN ('pending', 'unknown', 'applied') AND action = ANY($2)",
            &[&since, &actions],
            C,
        )
        .await?;
    let n: i64 = match row {
        Some(r) => get(&r, 0, C)?,
        None => 0,
    };
    Ok(n as u64)
}

pub(super) async fn change(
    s: &PgStore,
    key: ChangeKey,
    value: &str,
) -> Result<Option<ChangeRecord>> {
    let client = s.conn().await?;
    change_where(&client, key, value).await
}

pub(super) async fn get_approval(s: &PgStore, id: &str) -> Result<Option<ApprovalRecord>> {
    const C: &str = "reading an approval";
    let row = s
        .query_opt("SELECT body FROM approvals WHERE id = $1", &[&id], C)
        .await?;
    row.map(|r| get_json(&r, 0, C)).transpose()
}

pub(super) async fn approvals(s: &PgStore, filter: &ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
    const C: &str = "listing approvals";
    let status = filter.status.map(|s| s.as_str());
    let rows = s
        .query(
            "SELECT body FROM approvals WHERE ($1::TEXT IS NULL OR status = $1) \
             AND ($2::TEXT IS NULL OR run_id = $2) ORDER BY created_at, id",
            &[&status, &filter.run_id],
            C,
        )
        .await?;
    rows.iter().map(|r| get_json(r, 0, C)).collect()
}

pub(super) async fn demotions(s: &PgStore) -> Result<Vec<Demotion>> {
    const C: &str = "listing demotions";
    let rows = s
        .query("SELECT body FROM demotions ORDER BY playbook, step", &[], C)
        .await?;
    rows.iter().map(|r| get_json(r, 0, C)).collect()
}

pub(super) async fn playbook_version(
    s: &PgStore,
    hash: &str,
) -> Result<Option<belay_model::PlaybookVersion>> {
    const C: &str = "reading a playbook version";
    let row = s
        .query_opt(
            "SELECT body FROM playbook_versions WHERE hash = $1",
            &[&hash],
            C,
        )
        .await?;
    row.map(|r| get_json(&r, 0, C)).transpose()
}

pub(super) async fn playbook_versions(s: &PgStore) -> Result<Vec<belay_model::PlaybookVersion>> {
    const C: &str = "listing playbook versions";
    let rows = s
        .query(
            "SELECT body FROM playbook_versions ORDER BY created_at, hash",
            &[],
            C,
        )
        .await?;
    rows.iter().map(|r| get_json(r, 0, C)).collect()
}

pub(super) async fn trust_stats(s: &PgStore, since: i64) -> Result<Vec<StatRow>> {
    const C: &str = "counting for the trust report";
    let queries: [(&'static str, &str); 3] = [
        (
            "step",
            "SELECT r.playbook, s.step, s.decision, s.status, s.trust, COUNT(*), r.playbook_hash FROM steps s JOIN runs r ON r.id = s.run_id \
                  WHERE s.started_at >= $1 AND NOT r.dry_run GROUP BY 1, 2, 3, 4, 5, 7",
        ),
        (
            "change",
            "SELECT r.playbook, split_part(c.step_key, '[', 1), NULL::TEXT, c.status, c.trust, COUNT(*), r.playbook_hash \
                    FROM changes c JOIN runs r ON r.id = c.run_id WHERE c.created_at >= $1 AND NOT r.dry_run GROUP BY 1, 2, 3, 4, 5, 7",
        ),
        (
            "approval",
            "SELECT a.playbook, a.step, NULL::TEXT, a.status, NULL::TEXT, COUNT(*), COALESCE(r.playbook_hash, '') FROM approvals a \
                    LEFT JOIN runs r ON r.id = a.run_id WHERE a.created_at >= $1 GROUP BY 1, 2, 3, 4, 5, 7",
        ),
    ];
    let mut out = Vec::new();
    for (kind, sql) in queries {
        for r in s.query(sql, &[&since], C).await? {
            let count: i64 = get(&r, 5, C)?;
            out.push(StatRow {
                playbook: get(&r, 0, C)?,
                playbook_hash: get(&r, 6, C)?,
                step: get(&r, 1, C)?,
                kind,
                decision: get(&r, 2, C)?,
                status: get(&r, 3, C)?,
                trust: get(&r, 4, C)?,
                count: count as u64,
            });
        }
    }
    Ok(out)
}

pub(super) async fn change_history(
    s: &PgStore,
    actions: &[String],
    since: i64,
) -> Result<ChangeHistory> {
    const C: &str = "reading the change history";
    const FILTER: &str = "action = ANY($1) AND trust IN ('log', 'guarded') AND status IN ('applied', 'reverted', 'drifted')";
    let first = s
        .query_opt(
            &format!("SELECT MIN(created_at) FROM changes WHERE {FILTER}"),
            &[&actions],
            C,
        )
        .await?;
    let first_at: Option<i64> = match first {
        Some(r) => get(&r, 0, C)?,
        None => None,
    };
    let rows = s
        .query(
            &format!(
                "SELECT MIN(created_at), SUM(items)::BIGINT FROM changes WHERE {FILTER} AND created_at >= $2 GROUP BY run_id ORDER BY 1"
            ),
            &[&actions, &since],
            C,
        )
        .await?;
    let mut batches = Vec::with_capacity(rows.len());
    for r in &rows {
        let (at, n): (i64, i64) = (get(r, 0, C)?, get(r, 1, C)?);
        batches.push((at, n as u64));
    }
    Ok(ChangeHistory { first_at, batches })
}

pub(super) async fn case_file(s: &PgStore, id: &str) -> Result<Option<CaseFile>> {
    crate::cases::pg::file(&s.conn().await?, id).await
}

pub(super) async fn cases(s: &PgStore, status: Option<CaseStatus>) -> Result<Vec<CaseRecord>> {
    crate::cases::pg::list(&s.conn().await?, status).await
}

pub(super) async fn cursor(s: &PgStore, source: &str) -> Result<Option<u64>> {
    const C: &str = "reading a cursor";
    let row = s
        .query_opt(
            "SELECT \"offset\" FROM cursors WHERE source = $1",
            &[&source],
            C,
        )
        .await?;
    row.map(|r| {
        let offset: i64 = get(&r, 0, C)?;
        u64::try_from(offset).map_err(|_| StoreError::Corrupt {
            context: C,
            message: format!("negative offset {offset}"),
        })
    })
    .transpose()
}

pub(super) async fn counts(s: &PgStore) -> Result<Counts> {
    const C: &str = "counting";
    let rows = s
        .query(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM runs), \
             (SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')), (SELECT COUNT(*) FROM steps), \
             (SELECT COUNT(*) FROM changes), (SELECT COUNT(*) FROM changes WHERE status = 'applied')",
            &[],
            C,
        )
        .await?;
    let row = rows.first().ok_or(StoreError::Corrupt {
        context: C,
        message: "no row".into(),
    })?;
    let n =
        |i: usize| -> Result<u64> { get::<i64>(row, i, C).map(|v| u64::try_from(v).unwrap_or(0)) };
    Ok(Counts {
        events: n(0)?,
        runs: n(1)?,
        runs_unfinished: n(2)?,
        steps: n(3)?,
        changes: n(4)?,
        changes_applied: n(5)?,
    })
}
