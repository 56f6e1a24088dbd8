//! Reads on the reader connection (off the writer thread, in `spawn_blocking`): every query the
//! [`Store`](crate::Store) answers without writing. Never writes.

use super::row::{change_from_row, hash_text, run_from_row, step_from_row};
use super::{SqliteStore, db_err};
use crate::codec::from_text;
use crate::rows::{CHANGE_COLS, RUN_COLS, STEP_COLS};
use crate::{ApprovalFilter, ChangeHistory, Counts, Result, RunFilter, StatRow};
use belay_model::{
    ApprovalRecord, AuditEntry, CaseFile, CaseRecord, CaseStatus, ChangeRecord, Demotion, Event,
    RunRecord, StepRecord,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

/// The JSON documents in the `body` column of the rows `sql` selects, decoded as `what`s;
/// `context` names the query in errors.
pub(super) fn all_bodies<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: &'static str,
    what: &'static str,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err(context))?;
    let rows = stmt
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(db_err(context))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(from_text(&r.map_err(db_err(context))?, what)?);
    }
    Ok(out)
}

/// The JSON document in the `body` column of the row `sql` selects by id, decoded.
pub(super) async fn body_by_id<T: serde::de::DeserializeOwned + Send + 'static>(
    s: &SqliteStore,
    sql: &'static str,
    id: &str,
    context: &'static str,
) -> Result<Option<T>> {
    let id = id.to_owned();
    s.read(move |c| {
        let body: Option<String> = c
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([&id], |r| r.get(0)).optional())
            .map_err(db_err(context))?;
        body.map(|b| from_text(&b, context)).transpose()
    })
    .await
}

/// Every row `sql` selects with `params`, each decoded by `row`; `context` names the query in
/// errors.
fn query_all<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T>>,
    context: &'static str,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err(context))?;
    let rows = stmt.query_map(params, row).map_err(db_err(context))?;
    collect(rows, context)
}

pub(super) fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T>>>,
    context: &'static str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(db_err(context))??);
    }
    Ok(out)
}

pub(super) fn change_with_key(c: &Connection, key: &str) -> Result<Option<ChangeRecord>> {
    change_where(c, ChangeKey::IdempotencyKey, key)
}

/// Which unique column finds one change.
#[derive(Clone, Copy)]
pub(super) enum ChangeKey {
    Id,
    IdempotencyKey,
}

fn change_where(c: &Connection, key: ChangeKey, value: &str) -> Result<Option<ChangeRecord>> {
    let column = match key {
        ChangeKey::Id => "id",
        ChangeKey::IdempotencyKey => "idempotency_key",
    };
    c.prepare_cached(&format!(
        "SELECT {CHANGE_COLS} FROM changes WHERE {column} = ?1"
    ))
    .and_then(|mut s| s.query_row([value], change_from_row).optional())
    .map_err(db_err("reading a change"))?
    .transpose()
}

pub(super) async fn get_event(
    s: &SqliteStore,
    source: Option<&str>,
    id: &str,
) -> Result<Option<Event>> {
    const C: &str = "reading an event";
    let (id, source) = (id.to_owned(), source.map(str::to_owned));
    s.read(move |c| {
        let body: Option<String> = c
            .prepare_cached(
                "SELECT body FROM events WHERE id = ?1 AND (?2 IS NULL OR source = ?2) \
                 ORDER BY seq LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![id, source], |r| r.get(0)).optional())
            .map_err(db_err(C))?;
        body.map(|b| from_text(&b, C)).transpose()
    })
    .await
}

pub(super) async fn get_run(s: &SqliteStore, id: &str) -> Result<Option<RunRecord>> {
    let id = id.to_owned();
    s.read(move |c| {
        c.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))
            .and_then(|mut s| s.query_row([&id], run_from_row).optional())
            .map_err(db_err("reading a run"))?
            .transpose()
    })
    .await
}

pub(super) async fn list_runs(s: &SqliteStore, filter: &RunFilter) -> Result<Vec<RunRecord>> {
    let f = filter.clone();
    s.read(move |c| {
        let limit = f.limit.map_or(-1, |l| l as i64);
        query_all(
            c,
            &format!(
                "SELECT {RUN_COLS} FROM runs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR playbook = ?2) \
                 AND (?3 IS NULL OR event_id = ?3) \
                 AND (?5 IS NULL OR created_at < ?5 OR (created_at = ?5 AND id < ?6)) \
                 ORDER BY created_at DESC, id DESC LIMIT ?4"
            ),
            params![
                f.status.map(|s| s.as_str()),
                f.playbook,
                f.event_id,
                limit,
                f.before.as_ref().map(|b| b.0),
                f.before.as_ref().map(|b| b.1.as_str())
            ],
            run_from_row,
            "listing runs",
        )
    })
    .await
}

pub(super) async fn steps(s: &SqliteStore, run_id: &str) -> Result<Vec<StepRecord>> {
    let id = run_id.to_owned();
    s.read(move |c| {
        let sql =
            format!("SELECT {STEP_COLS} FROM steps WHERE run_id = ?1 ORDER BY seq, item, key");
        query_all(c, &sql, [&id], step_from_row, "reading steps")
    })
    .await
}

pub(super) async fn changes(s: &SqliteStore, run_id: Option<&str>) -> Result<Vec<ChangeRecord>> {
    let id = run_id.map(str::to_owned);
    s.read(move |c| {
        const C: &str = "listing changes";
        match &id {
            // Keys of a run's changes are `RUN/...` ('0' follows '/'), so the key index
            // finds them.
            Some(id) => query_all(
                c,
                &format!("SELECT {CHANGE_COLS} FROM changes WHERE idempotency_key >= ?1 || '/' AND idempotency_key < ?1 || '0' ORDER BY seq"),
                [id],
                change_from_row,
                C,
            ),
            None => query_all(
                c,
                &format!("SELECT {CHANGE_COLS} FROM changes ORDER BY seq"),
                [],
                change_from_row,
                C,
            ),
        }
    })
    .await
}

pub(super) async fn change_heads(s: &SqliteStore) -> Result<Vec<ChangeRecord>> {
    s.read(move |c| {
        let cols = crate::rows::change_head_cols("'null'");
        query_all(
            c,
            &format!("SELECT {cols} FROM changes ORDER BY seq"),
            [],
            change_from_row,
            "listing changes",
        )
    })
    .await
}

pub(super) async fn count_changes(s: &SqliteStore, actions: &[String], since: i64) -> Result<u64> {
    let actions = serde_json::to_string(actions).unwrap_or_else(|_| "[]".into());
    s.read(move |c| {
        c.prepare_cached(
            "SELECT COALESCE(SUM(items), 0) FROM changes WHERE created_at >= ?1 AND status IN ('pending', 'unknown', 'applied') \
             AND action IN (SELECT value FROM json_each(?2))",
        )
        .and_then(|mut s| s.query_row(params![since, actions], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(db_err("counting recent changes"))
    })
    .await
}

pub(super) async fn expiring_changes(
    s: &SqliteStore,
    due_by: Option<i64>,
    limit: usize,
) -> Result<Vec<ChangeRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    s.read(move |c| {
        query_all(
            c,
            &format!(
                "SELECT {CHANGE_COLS} FROM changes WHERE expires_at IS NOT NULL AND status = 'applied' \
                 AND expires_at <= ?1 ORDER BY expires_at, seq LIMIT ?2"
            ),
            params![due_by.unwrap_or(i64::MAX), limit],
            change_from_row,
            "listing expiring changes",
        )
    })
    .await
}

pub(super) async fn change(
    s: &SqliteStore,
    key: ChangeKey,
    value: &str,
) -> Result<Option<ChangeRecord>> {
    let value = value.to_owned();
    s.read(move |c| change_where(c, key, &value)).await
}

pub(super) async fn checkpoints(s: &SqliteStore) -> Result<Vec<crate::Checkpoint>> {
    s.read(|c| {
        let mut stmt = c
            .prepare_cached("SELECT name, last_change_id, created_at, actor FROM checkpoints ORDER BY created_at, name")
            .map_err(db_err("listing checkpoints"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(crate::Checkpoint { name: r.get(0)?, last_change_id: r.get(1)?, created_at: r.get(2)?, actor: r.get(3)? })
            })
            .map_err(db_err("listing checkpoints"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err("listing checkpoints"))
    })
    .await
}

pub(super) async fn audit_entries(
    s: &SqliteStore,
    after: i64,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    s.read(move |c| {
        let mut stmt = c
            // Each entry with the hash of the row stored before it (from entry `after`
            // itself, which the window includes and the outer query drops).
            .prepare_cached(
                "SELECT seq, at, kind, actor, subject, detail, prev, hash FROM (\
                   SELECT seq, at, kind, actor, subject, detail, hash, \
                     LAG(hash) OVER (ORDER BY seq) AS prev FROM audit \
                   WHERE seq >= ?1 ORDER BY seq LIMIT ?2 + 1) \
                 WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(db_err("reading the audit trail"))?;
        let rows = stmt
            // No row before: the chain's start, or (after a deletion) nothing to commit to,
            // which verification reports.
            .query_map(params![after, limit as i64], |r| audit_entry(r, after == 0))
            .map_err(db_err("reading the audit trail"))?;
        collect(rows, "reading the audit trail")
    })
    .await
}

/// An entry from `seq, at, kind, actor, subject, detail, prev, hash`; a missing `prev` is the
/// chain's start when `at_start`, else no hash (which verification reports).
fn audit_entry(r: &rusqlite::Row<'_>, at_start: bool) -> rusqlite::Result<Result<AuditEntry>> {
    let detail: String = r.get(5)?;
    let prev = match r.get_ref(6)? {
        ValueRef::Null if at_start => belay_model::audit::GENESIS.to_string(),
        v => hash_text(v),
    };
    let hash = hash_text(r.get_ref(7)?);
    Ok(from_text(&detail, "audit detail").map(|detail| AuditEntry {
        seq: r.get(0).unwrap_or_default(),
        at: r.get(1).unwrap_or_default(),
        kind: r.get(2).unwrap_or_default(),
        actor: r.get(3).unwrap_or_default(),
        subject: r.get(4).unwrap_or_default(),
        detail,
        prev_hash: prev,
        hash,
    }))
}

pub(super) async fn approval_trail(s: &SqliteStore, id: &str) -> Result<Vec<AuditEntry>> {
    let id = id.to_owned();
    s.read(move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT a.seq, a.at, a.kind, a.actor, a.subject, a.detail, p.hash, a.hash \
                 FROM audit a LEFT JOIN audit p ON p.seq = a.seq - 1 \
                 WHERE a.subject = ?1 AND a.kind LIKE 'approval.%' ORDER BY a.seq",
            )
            .map_err(db_err("reading an approval's trail"))?;
        let rows = stmt
            .query_map(params![id], |r| {
                let first = r.get::<_, i64>(0)? == 1;
                audit_entry(r, first)
            })
            .map_err(db_err("reading an approval's trail"))?;
        collect(rows, "reading an approval's trail")
    })
    .await
}

pub(super) async fn audit_head(s: &SqliteStore) -> Result<Option<(i64, String)>> {
    s.read(|c| {
        c.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(db_err("reading the audit head"))
    })
    .await
}

pub(super) async fn get_approval(s: &SqliteStore, id: &str) -> Result<Option<ApprovalRecord>> {
    body_by_id(
        s,
        "SELECT body FROM approvals WHERE id = ?1",
        id,
        "reading an approval",
    )
    .await
}

pub(super) async fn approvals(
    s: &SqliteStore,
    filter: &ApprovalFilter,
) -> Result<Vec<ApprovalRecord>> {
    let status = filter.status.map(|s| s.as_str());
    let run = filter.run_id.clone();
    s.read(move |c| {
        all_bodies(
            c,
            "SELECT body FROM approvals WHERE (?1 IS NULL OR status = ?1) \
             AND (?2 IS NULL OR run_id = ?2) ORDER BY created_at, id",
            params![status, run],
            "listing approvals",
            "approval",
        )
    })
    .await
}

pub(super) async fn demotions(s: &SqliteStore) -> Result<Vec<Demotion>> {
    s.read(|c| {
        all_bodies(
            c,
            "SELECT body FROM demotions ORDER BY playbook, step",
            [],
            "listing demotions",
            "demotion",
        )
    })
    .await
}

pub(super) async fn playbook_version(
    s: &SqliteStore,
    hash: &str,
) -> Result<Option<belay_model::PlaybookVersion>> {
    body_by_id(
        s,
        "SELECT body FROM playbook_versions WHERE hash = ?1",
        hash,
        "reading a playbook version",
    )
    .await
}

pub(super) async fn playbook_versions(
    s: &SqliteStore,
) -> Result<Vec<belay_model::PlaybookVersion>> {
    s.read(|c| {
        all_bodies(
            c,
            "SELECT body FROM playbook_versions ORDER BY created_at, hash",
            [],
            "listing playbook versions",
            "playbook version",
        )
    })
    .await
}

pub(super) async fn trust_stats(s: &SqliteStore, since: i64) -> Result<Vec<StatRow>> {
    s.read(move |c| {
        let mut out = Vec::new();
        let queries: [(&'static str, &str); 3] = [
            ("step", "SELECT r.playbook, s.step, s.decision, s.status, s.trust, COUNT(*), r.playbook_hash FROM steps s JOIN runs r ON r.id = s.run_id \
                      WHERE s.started_at >= ?1 AND r.dry_run = 0 GROUP BY 1, 2, 3, 4, 5, 7"),
            ("change", "SELECT r.playbook, CASE WHEN instr(c.step_key, '[') > 0 THEN substr(c.step_key, 1, instr(c.step_key, '[') - 1) ELSE c.step_key END, \
                        NULL, c.status, c.trust, COUNT(*), r.playbook_hash FROM changes c JOIN runs r ON r.id = c.run_id WHERE c.created_at >= ?1 AND r.dry_run = 0 GROUP BY 1, 2, 3, 4, 5, 7"),
            ("approval", "SELECT a.playbook, a.step, NULL, a.status, NULL, COUNT(*), COALESCE(r.playbook_hash, '') FROM approvals a \
                          LEFT JOIN runs r ON r.id = a.run_id WHERE a.created_at >= ?1 GROUP BY 1, 2, 3, 4, 5, 7"),
        ];
        for (kind, sql) in queries {
            let mut stmt = c.prepare_cached(sql).map_err(db_err("counting for the trust report"))?;
            let rows = stmt
                .query_map([since], |r| {
                    Ok(StatRow {
                        playbook: r.get(0)?,
                        playbook_hash: r.get(6)?,
                        step: r.get(1)?,
                        kind,
                        decision: r.get(2)?,
                        status: r.get(3)?,
                        trust: r.get(4)?,
                        count: r.get::<_, i64>(5)? as u64,
                    })
                })
                .map_err(db_err("counting for the trust report"))?;
            for r in rows {
                out.push(r.map_err(db_err("counting for the trust report"))?);
            }
        }
        Ok(out)
    })
    .await
}

pub(super) async fn change_history(
    s: &SqliteStore,
    actions: &[String],
    since: i64,
) -> Result<ChangeHistory> {
    let actions = serde_json::to_string(actions).unwrap_or_else(|_| "[]".into());
    s.read(move |c| {
        const C: &str = "reading the change history";
        let filter = "action IN (SELECT value FROM json_each(?1)) AND trust IN ('log', 'guarded') \
                      AND status IN ('applied', 'reverted', 'drifted')";
        let first_at: Option<i64> = c
            .prepare_cached(&format!(
                "SELECT MIN(created_at) FROM changes WHERE {filter}"
            ))
            .and_then(|mut s| s.query_row([&actions], |r| r.get(0)))
            .map_err(db_err(C))?;
        let mut stmt = c
            .prepare_cached(&format!(
                "SELECT MIN(created_at), SUM(items) FROM changes WHERE {filter} AND created_at >= ?2 \
                 GROUP BY run_id ORDER BY 1"
            ))
            .map_err(db_err(C))?;
        let rows = stmt
            .query_map(params![actions, since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(db_err(C))?;
        let batches = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(C))?;
        Ok(ChangeHistory { first_at, batches })
    })
    .await
}

pub(super) async fn case_file(s: &SqliteStore, id: &str) -> Result<Option<CaseFile>> {
    let id = id.to_owned();
    s.read(move |c| crate::cases::sqlite_file(c, &id)).await
}

pub(super) async fn cases(s: &SqliteStore, status: Option<CaseStatus>) -> Result<Vec<CaseRecord>> {
    s.read(move |c| crate::cases::sqlite_list(c, status)).await
}

pub(super) async fn cursor(s: &SqliteStore, source: &str) -> Result<Option<u64>> {
    let source = source.to_owned();
    s.read(move |c| {
        c.prepare_cached("SELECT offset FROM cursors WHERE source = ?1")
            .and_then(|mut s| s.query_row([&source], |r| r.get::<_, i64>(0)).optional())
            .map(|o| o.map(|v| v as u64))
            .map_err(db_err("reading a cursor"))
    })
    .await
}

pub(super) async fn counts(s: &SqliteStore) -> Result<Counts> {
    s.read(|c| {
        let one = |sql: &str| -> Result<u64> {
            c.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(db_err("counting"))
        };
        Ok(Counts {
            events: one("SELECT COUNT(*) FROM events")?,
            runs: one("SELECT COUNT(*) FROM runs")?,
            runs_unfinished: one(
                "SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')",
            )?,
            steps: one("SELECT COUNT(*) FROM steps")?,
            changes: one("SELECT COUNT(*) FROM changes")?,
            changes_applied: one("SELECT COUNT(*) FROM changes WHERE status = 'applied'")?,
        })
    })
    .await
}

/// Events matching `f`, newest first, with their sequence numbers.
pub(super) fn search_events(
    c: &Connection,
    f: &crate::EventFilter,
) -> Result<Vec<(i64, belay_model::Event)>> {
    const C: &str = "searching events";
    let mut stmt = c
        .prepare_cached(
            "SELECT seq, body FROM events WHERE (?1 IS NULL OR kind = ?1) \
             AND (?2 IS NULL OR source = ?2) AND (?3 IS NULL OR instr(body, ?3) > 0) \
             AND seq < ?4 ORDER BY seq DESC LIMIT ?5",
        )
        .map_err(db_err(C))?;
    let rows = stmt
        .query_map(
            rusqlite::params![
                f.kind,
                f.source,
                f.contains,
                f.before_seq.unwrap_or(i64::MAX),
                i64::try_from(f.limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .map_err(db_err(C))?;
    let mut out = Vec::new();
    for r in rows {
        let (seq, body) = r.map_err(db_err(C))?;
        out.push((seq, from_text(&body, "event")?));
    }
    Ok(out)
}
