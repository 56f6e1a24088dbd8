//! Multi-row inserts of the write path (audit entries, step records): [`ROWS_PER_INSERT`] rows
//! per statement, bound without copies. The SQL here is what the writer runs on every commit.

use super::db_err;
use super::encode::StepRow;
use crate::Result;
use belay_model::PreparedDraft;
use rusqlite::Connection;
use std::borrow::Cow;

/// Rows inserted by one statement when a transaction writes that many or more into a table.
pub(super) const ROWS_PER_INSERT: usize = 8;

/// A multi-row INSERT: one row's form and [`ROWS_PER_INSERT`] rows' form.
pub(super) struct InsertSql {
    pub(super) one: String,
    pub(super) many: String,
    pub(super) columns: usize,
}

impl InsertSql {
    pub(super) fn new(head: &str, columns: usize) -> InsertSql {
        let row = format!("({})", vec!["?"; columns].join(", "));
        InsertSql {
            one: format!("{head} VALUES {row}"),
            many: format!("{head} VALUES {}", vec![row; ROWS_PER_INSERT].join(", ")),
            columns,
        }
    }
}

pub(super) static AUDIT_INSERT: std::sync::LazyLock<InsertSql> = std::sync::LazyLock::new(|| {
    InsertSql::new(
        "INSERT INTO audit (seq, at, kind, actor, subject, detail, hash)",
        7,
    )
});

pub(super) static STEP_INSERT: std::sync::LazyLock<InsertSql> = std::sync::LazyLock::new(|| {
    InsertSql::new(
        "INSERT OR REPLACE INTO steps (run_id, key, step, seq, item, action, with_json, decision, \
         trust, guardrails, status, output, error, attempts, started_at, finished_at)",
        16,
    )
});

/// Inserts `rows` with `sql` (one row's placeholders after `VALUES`), [`ROWS_PER_INSERT`] rows
/// per statement while that many remain. `bind` binds row `i` from parameter `first + 1` on.
pub(super) fn insert_rows<T>(
    conn: &Connection,
    sql: &InsertSql,
    rows: &[T],
    bind: impl Fn(&mut rusqlite::CachedStatement<'_>, usize, usize, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut first = 0;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let many = chunk.len() == ROWS_PER_INSERT;
        let mut stmt = conn.prepare_cached(if many { &sql.many } else { &sql.one })?;
        for (j, row) in chunk.iter().enumerate() {
            bind(
                &mut stmt,
                if many { j * sql.columns } else { 0 },
                first + j,
                row,
            )?;
            if !many {
                stmt.raw_execute()?;
            }
        }
        if many {
            stmt.raw_execute()?;
        }
        first += chunk.len();
    }
    Ok(())
}

/// Inserts chained entries (`hashes[i + 1]` is entry i's hash, stored as its 32 bytes).
pub(super) fn insert_audit(
    conn: &Connection,
    entries: &[Cow<'_, PreparedDraft>],
    first_seq: i64,
    now: i64,
    hashes: &[String],
) -> rusqlite::Result<()> {
    insert_rows(conn, &AUDIT_INSERT, entries, |stmt, col, i, d| {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&hashes[i + 1], &mut hash)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        stmt.raw_bind_parameter(col + 1, first_seq + i as i64)?;
        stmt.raw_bind_parameter(col + 2, now)?;
        stmt.raw_bind_parameter(col + 3, &d.kind)?;
        stmt.raw_bind_parameter(col + 4, &d.actor)?;
        stmt.raw_bind_parameter(col + 5, &d.subject)?;
        stmt.raw_bind_parameter(col + 6, &d.canonical)?;
        stmt.raw_bind_parameter(col + 7, &hash[..])
    })
}

/// Stores step records (a later record of the same step replaces an earlier one).
pub(super) fn put_steps(c: &Connection, rows: &[&StepRow]) -> Result<()> {
    insert_rows(c, &STEP_INSERT, rows, |st, col, _, row| {
        let s = &row.rec;
        st.raw_bind_parameter(col + 1, &s.run_id)?;
        st.raw_bind_parameter(col + 2, &s.key)?;
        st.raw_bind_parameter(col + 3, &s.step)?;
        st.raw_bind_parameter(col + 4, s.seq)?;
        st.raw_bind_parameter(col + 5, s.item)?;
        st.raw_bind_parameter(col + 6, &s.action)?;
        st.raw_bind_parameter(col + 7, &row.with)?;
        st.raw_bind_parameter(col + 8, s.decision.as_str())?;
        st.raw_bind_parameter(col + 9, s.trust.map(|t| t.as_str()))?;
        st.raw_bind_parameter(col + 10, &row.guardrails)?;
        st.raw_bind_parameter(col + 11, s.status.as_str())?;
        st.raw_bind_parameter(col + 12, &row.output)?;
        st.raw_bind_parameter(col + 13, &s.error)?;
        st.raw_bind_parameter(col + 14, s.attempts)?;
        st.raw_bind_parameter(col + 15, s.started_at)?;
        st.raw_bind_parameter(col + 16, s.finished_at)
    })
    .map_err(db_err("storing a step"))
}
