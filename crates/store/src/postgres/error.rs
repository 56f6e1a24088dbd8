//! PostgreSQL errors as [`StoreError`]s: every cause on one line (tokio-postgres alone says
//! only "db error"), and which failures are worth retrying. Never talks to the database.

use crate::StoreError;
use deadpool_postgres::PoolError;

/// An error and its causes on one line (tokio-postgres alone says only "db error").
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let plain = c.to_string();
        match c.downcast_ref::<tokio_postgres::error::DbError>() {
            Some(db) => {
                message.push_str(&format!(
                    ": {}: {} (SQLSTATE {})",
                    db.severity(),
                    db.message(),
                    db.code().code()
                ));
                if let Some(detail) = db.detail() {
                    message.push_str(&format!("; detail: {detail}"));
                }
                if let Some(hint) = db.hint() {
                    message.push_str(&format!("; hint: {hint}"));
                }
            }
            // Wrappers often repeat their cause in their own message already.
            None if message.ends_with(&plain) => {}
            None => {
                message.push_str(": ");
                message.push_str(&plain);
            }
        }
        cause = c.source();
    }
    message
}

pub(super) fn db_err(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Database {
        context,
        message: describe(&e),
    }
}

pub(super) fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Closed => StoreError::Closed,
        e => StoreError::Database {
            context: "getting a database connection",
            message: describe(&e),
        },
    }
}

/// Whether PostgreSQL aborted a transaction that may succeed if run again: a deadlock or a
/// serialization failure (as [`describe`] writes their SQLSTATE).
pub(super) fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Database { message, .. }
        if message.contains("(SQLSTATE 40P01)") || message.contains("(SQLSTATE 40001)"))
}
