//! The record tables' column lists and the decoding of their rows, shared by both backends.
//!
//! Each record is selected with one column list and decoded by column name: the positions are
//! computed from the list at compile time ([`position`]), so adding or reordering a column
//! cannot shift a decoder, and no row pays for a name lookup. A backend supplies only
//! [`StoredRow`], how to read one typed value from its rows. Nothing here runs SQL.

use crate::Result;
use crate::codec::parse;
use belay_model::{ChangeRecord, RunRecord, StepRecord};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The columns a run is selected with.
pub(crate) const RUN_COLS: &str = "id, event_id, event_source, playbook, playbook_hash, parent_run, status, dry_run, inputs, error, created_at, updated_at";
/// The columns a step record is selected with.
pub(crate) const STEP_COLS: &str = "run_id, key, step, seq, item, action, with_json, decision, trust, guardrails, status, output, error, attempts, started_at, finished_at";
/// The columns a change is selected with.
pub(crate) const CHANGE_COLS: &str = "id, run_id, step_key, idempotency_key, action, target, with_json, before, after, inverse, trust, guardrails, allowed_by, status, error, created_at, updated_at, expires_at, items";

/// [`CHANGE_COLS`] with the inputs, before- and after-state and inverse replaced by JSON `null`
/// (`null_json`, the backend's literal), at the same positions: a change's head, small whatever
/// the change held.
pub(crate) fn change_head_cols(null_json: &str) -> String {
    CHANGE_COLS
        .split(", ")
        .map(|c| match c {
            "with_json" | "before" | "after" | "inverse" => format!("{null_json} AS {c}"),
            c => c.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The position of column `name` in `list` (comma-separated). Evaluated at compile time for the
/// constants below; a name missing from its list fails the build.
pub(crate) const fn position(list: &str, name: &str) -> usize {
    let (l, n) = (list.as_bytes(), name.as_bytes());
    let (mut start, mut index) = (0, 0);
    loop {
        while start < l.len() && l[start] == b' ' {
            start += 1;
        }
        let mut end = start;
        while end < l.len() && l[end] != b',' {
            end += 1;
        }
        let mut last = end;
        while last > start && l[last - 1] == b' ' {
            last -= 1;
        }
        if last - start == n.len() {
            let mut i = 0;
            while i < n.len() && l[start + i] == n[i] {
                i += 1;
            }
            if i == n.len() {
                return index;
            }
        }
        assert!(end < l.len(), "the column list has no such column");
        start = end + 1;
        index += 1;
    }
}

/// One typed value from a backend's row, by position; errors name `context`.
pub(crate) trait StoredRow {
    fn text(&self, i: usize, context: &'static str) -> Result<String>;
    fn opt_text(&self, i: usize, context: &'static str) -> Result<Option<String>>;
    fn int(&self, i: usize, context: &'static str) -> Result<i64>;
    fn opt_int(&self, i: usize, context: &'static str) -> Result<Option<i64>>;
    fn flag(&self, i: usize, context: &'static str) -> Result<bool>;
    /// A JSON column as a document.
    fn json_value(&self, i: usize, context: &'static str) -> Result<Value>;
    /// A JSON column decoded into `T`.
    fn json<T: DeserializeOwned>(&self, i: usize, context: &'static str) -> Result<T>;

    /// A text column parsed as one of the model's enums.
    fn parsed<T: std::str::FromStr<Err = String>>(
        &self,
        i: usize,
        context: &'static str,
    ) -> Result<T> {
        parse(&self.text(i, context)?, context)
    }
}

macro_rules! columns {
    ($(#[$doc:meta])* $module:ident in $list:ident { $($name:ident = $column:literal),+ $(,)? }) => {
        $(#[$doc])*
        pub(crate) mod $module {
            use super::{$list, position};
            $(pub const $name: usize = position($list, $column);)+
        }
    };
}

columns! {
    /// Positions in [`RUN_COLS`].
    run in RUN_COLS {
        ID = "id", EVENT_ID = "event_id", EVENT_SOURCE = "event_source", PLAYBOOK = "playbook", PLAYBOOK_HASH = "playbook_hash",
        PARENT_RUN = "parent_run", STATUS = "status", DRY_RUN = "dry_run", INPUTS = "inputs",
        ERROR = "error", CREATED_AT = "created_at", UPDATED_AT = "updated_at",
    }
}

columns! {
    /// Positions in [`STEP_COLS`].
    step in STEP_COLS {
        RUN_ID = "run_id", KEY = "key", STEP = "step", SEQ = "seq", ITEM = "item",
        ACTION = "action", WITH = "with_json", DECISION = "decision", TRUST = "trust",
        GUARDRAILS = "guardrails", STATUS = "status", OUTPUT = "output", ERROR = "error",
        ATTEMPTS = "attempts", STARTED_AT = "started_at", FINISHED_AT = "finished_at",
    }
}

columns! {
    /// Positions in [`CHANGE_COLS`].
    change in CHANGE_COLS {
        ID = "id", RUN_ID = "run_id", STEP_KEY = "step_key", IDEMPOTENCY_KEY = "idempotency_key",
        ACTION = "action", TARGET = "target", WITH = "with_json", BEFORE = "before",
        AFTER = "after", INVERSE = "inverse", TRUST = "trust", GUARDRAILS = "guardrails",
        ALLOWED_BY = "allowed_by", STATUS = "status", ERROR = "error",
        CREATED_AT = "created_at", UPDATED_AT = "updated_at", EXPIRES_AT = "expires_at",
        ITEMS = "items",
    }
}

/// A run selected with [`RUN_COLS`].
pub(crate) fn run_from<R: StoredRow>(r: &R) -> Result<RunRecord> {
    const C: &str = "reading a run";
    Ok(RunRecord {
        id: r.text(run::ID, C)?,
        event_id: r.text(run::EVENT_ID, C)?,
        event_source: r.text(run::EVENT_SOURCE, C)?,
        playbook: r.text(run::PLAYBOOK, C)?,
        playbook_hash: r.text(run::PLAYBOOK_HASH, C)?,
        parent_run: r.opt_text(run::PARENT_RUN, C)?,
        status: r.parsed(run::STATUS, "run status")?,
        dry_run: r.flag(run::DRY_RUN, C)?,
        inputs: r.json_value(run::INPUTS, "run inputs")?,
        error: r.opt_text(run::ERROR, C)?,
        created_at: r.int(run::CREATED_AT, C)?,
        updated_at: r.int(run::UPDATED_AT, C)?,
    })
}

/// A step record selected with [`STEP_COLS`].
pub(crate) fn step_from<R: StoredRow>(r: &R) -> Result<StepRecord> {
    const C: &str = "reading a step";
    Ok(StepRecord {
        run_id: r.text(step::RUN_ID, C)?,
        key: r.text(step::KEY, C)?,
        step: r.text(step::STEP, C)?,
        seq: r.int(step::SEQ, C)?,
        item: r.opt_int(step::ITEM, C)?,
        action: r.text(step::ACTION, C)?,
        with: r.json_value(step::WITH, "step inputs")?,
        decision: r.parsed(step::DECISION, "step decision")?,
        trust: r
            .opt_text(step::TRUST, "step trust")?
            .map(|t| parse(&t, "step trust"))
            .transpose()?,
        guardrails: r.json(step::GUARDRAILS, "step guardrails")?,
        status: r.parsed(step::STATUS, "step status")?,
        output: r.json_value(step::OUTPUT, "step output")?,
        error: r.opt_text(step::ERROR, C)?,
        attempts: r.int(step::ATTEMPTS, C)?,
        started_at: r.int(step::STARTED_AT, C)?,
        finished_at: r.opt_int(step::FINISHED_AT, C)?,
    })
}

/// A change selected with [`CHANGE_COLS`].
pub(crate) fn change_from<R: StoredRow>(r: &R) -> Result<ChangeRecord> {
    const C: &str = "reading a change";
    Ok(ChangeRecord {
        id: r.text(change::ID, C)?,
        run_id: r.text(change::RUN_ID, C)?,
        step_key: r.text(change::STEP_KEY, C)?,
        idempotency_key: r.text(change::IDEMPOTENCY_KEY, C)?,
        action: r.text(change::ACTION, C)?,
        target: r.text(change::TARGET, C)?,
        with: r.json_value(change::WITH, "change inputs")?,
        before: r.json_value(change::BEFORE, "change before-state")?,
        after: r.json_value(change::AFTER, "change after-state")?,
        inverse: r.json_value(change::INVERSE, "change inverse")?,
        trust: r.parsed(change::TRUST, "change trust")?,
        guardrails: r.json(change::GUARDRAILS, "change guardrails")?,
        allowed_by: r.text(change::ALLOWED_BY, C)?,
        status: r.parsed(change::STATUS, "change status")?,
        error: r.opt_text(change::ERROR, C)?,
        created_at: r.int(change::CREATED_AT, C)?,
        updated_at: r.int(change::UPDATED_AT, C)?,
        expires_at: r.opt_int(change::EXPIRES_AT, C)?,
        items: r.int(change::ITEMS, C)?.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_column_lists() {
        assert_eq!(run::ID, 0);
        assert_eq!(run::EVENT_SOURCE, 2);
        assert_eq!(run::INPUTS, 8);
        assert_eq!(run::UPDATED_AT, 11);
        assert_eq!(step::ERROR, 12);
        assert_eq!(step::FINISHED_AT, 15);
        assert_eq!(change::GUARDRAILS, 11);
        assert_eq!(change::UPDATED_AT, 16);
        assert_eq!(position("a, bb,c", "c"), 2);
    }
}
