//! Decoding SQLite values: [`StoredRow`] over a `rusqlite` row (the record decoders themselves
//! are shared, in [`crate::rows`]) and stored audit hashes. Never writes.

use super::db_err;
use crate::Result;
use crate::codec::from_text;
use crate::rows::{StoredRow, change_from, run_from, step_from};
use belay_model::{ChangeRecord, RunRecord, StepRecord};
use rusqlite::Row;
use rusqlite::types::ValueRef;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A stored entry hash as the chain spells it: its 32 bytes in hex. A value of another type
/// (a row edited by hand) is returned as it reads, for verification to report, never as an
/// error that would stop the trail from being read or appended to.
pub(super) fn hash_text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Blob(b) => hex::encode(b),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    }
}

/// A decoded record, inside the `rusqlite` result a row callback returns.
pub(super) type RowResult<T> = rusqlite::Result<Result<T>>;

/// A `rusqlite` row read by column; JSON columns are text.
struct SqliteRow<'a, 'r>(&'a Row<'r>);

impl StoredRow for SqliteRow<'_, '_> {
    fn text(&self, i: usize, context: &'static str) -> Result<String> {
        self.0.get(i).map_err(db_err(context))
    }

    fn opt_text(&self, i: usize, context: &'static str) -> Result<Option<String>> {
        self.0.get(i).map_err(db_err(context))
    }

    fn int(&self, i: usize, context: &'static str) -> Result<i64> {
        self.0.get(i).map_err(db_err(context))
    }

    fn opt_int(&self, i: usize, context: &'static str) -> Result<Option<i64>> {
        self.0.get(i).map_err(db_err(context))
    }

    fn flag(&self, i: usize, context: &'static str) -> Result<bool> {
        self.0.get(i).map_err(db_err(context))
    }

    fn json_value(&self, i: usize, context: &'static str) -> Result<Value> {
        self.json(i, context)
    }

    fn json<T: DeserializeOwned>(&self, i: usize, context: &'static str) -> Result<T> {
        let text: String = self.text(i, context)?;
        from_text(&text, context)
    }
}

/// A run selected with [`RUN_COLS`](crate::rows::RUN_COLS), as a row callback.
pub(super) fn run_from_row(r: &Row) -> RowResult<RunRecord> {
    Ok(run_from(&SqliteRow(r)))
}

/// A step record selected with [`STEP_COLS`](crate::rows::STEP_COLS), as a row callback.
pub(super) fn step_from_row(r: &Row) -> RowResult<StepRecord> {
    Ok(step_from(&SqliteRow(r)))
}

/// A change selected with [`CHANGE_COLS`](crate::rows::CHANGE_COLS), as a row callback.
pub(super) fn change_from_row(r: &Row) -> RowResult<ChangeRecord> {
    Ok(change_from(&SqliteRow(r)))
}
