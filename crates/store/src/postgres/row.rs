//! Decoding PostgreSQL values: [`StoredRow`] over a `tokio-postgres` row (the record decoders
//! themselves are shared, in [`crate::rows`]). Never writes.

use super::error::describe;
use crate::rows::{StoredRow, change_from, run_from, step_from};
use crate::{Result, StoreError};
use belay_model::{ChangeRecord, RunRecord, StepRecord};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// Column `idx` of `row`; a value of another type is [`StoreError::Corrupt`].
pub(super) fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    context: &'static str,
) -> Result<T> {
    row.try_get(idx).map_err(|e| StoreError::Corrupt {
        context,
        message: describe(&e),
    })
}

/// A JSON column decoded into `T`.
pub(crate) fn get_json<T: DeserializeOwned>(
    row: &Row,
    idx: usize,
    context: &'static str,
) -> Result<T> {
    let value: Value = get(row, idx, context)?;
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        context,
        message: e.to_string(),
    })
}

/// A `tokio-postgres` row read by column; JSON columns are `json`.
struct PgRow<'a>(&'a Row);

impl StoredRow for PgRow<'_> {
    fn text(&self, i: usize, context: &'static str) -> Result<String> {
        get(self.0, i, context)
    }

    fn opt_text(&self, i: usize, context: &'static str) -> Result<Option<String>> {
        get(self.0, i, context)
    }

    fn int(&self, i: usize, context: &'static str) -> Result<i64> {
        get(self.0, i, context)
    }

    fn opt_int(&self, i: usize, context: &'static str) -> Result<Option<i64>> {
        get(self.0, i, context)
    }

    fn flag(&self, i: usize, context: &'static str) -> Result<bool> {
        get(self.0, i, context)
    }

    fn json_value(&self, i: usize, context: &'static str) -> Result<Value> {
        get(self.0, i, context)
    }

    fn json<T: DeserializeOwned>(&self, i: usize, context: &'static str) -> Result<T> {
        get_json(self.0, i, context)
    }
}

/// A run selected with [`RUN_COLS`](crate::rows::RUN_COLS).
pub(super) fn run_from_row(r: &Row) -> Result<RunRecord> {
    run_from(&PgRow(r))
}

/// A step record selected with [`STEP_COLS`](crate::rows::STEP_COLS).
pub(super) fn step_from_row(r: &Row) -> Result<StepRecord> {
    step_from(&PgRow(r))
}

/// A change selected with [`CHANGE_COLS`](crate::rows::CHANGE_COLS).
pub(super) fn change_from_row(r: &Row) -> Result<ChangeRecord> {
    change_from(&PgRow(r))
}

/// Every row decoded with `f`.
pub(super) fn rows_to<T>(rows: &[Row], f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}
