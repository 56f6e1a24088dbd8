//! The SQLite schema: the numbered SQL files of `migrations/sqlite/`, embedded at build time and
//! applied in order in one transaction. The version reached is `PRAGMA user_version`, as every
//! release has recorded it, so existing data directories open unchanged. A migration is never
//! edited once released: a change to the schema is a new file.

use super::db_err;
use crate::Result;
use rusqlite::Connection;

/// The schema's versions, in order: version N is `migrations/sqlite/000N_*.sql`.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_core.sql"),
    include_str!("../../migrations/sqlite/0002_audit.sql"),
    include_str!("../../migrations/sqlite/0003_approvals_demotions.sql"),
    include_str!("../../migrations/sqlite/0004_cases.sql"),
    include_str!("../../migrations/sqlite/0005_drop_events_kind.sql"),
    include_str!("../../migrations/sqlite/0006_steps_by_write.sql"),
    include_str!("../../migrations/sqlite/0007_drop_changes_run.sql"),
    include_str!("../../migrations/sqlite/0008_audit_hash_blob.sql"),
    include_str!("../../migrations/sqlite/0009_audit_approvals.sql"),
    include_str!("../../migrations/sqlite/0010_playbook_versions.sql"),
    include_str!("../../migrations/sqlite/0011_expiry_guardrail_sets.sql"),
    include_str!("../../migrations/sqlite/0012_principals.sql"),
    include_str!("../../migrations/sqlite/0013_automation_pauses.sql"),
    include_str!("../../migrations/sqlite/0014_events_per_source.sql"),
    include_str!("../../migrations/sqlite/0015_console_sessions.sql"),
    include_str!("../../migrations/sqlite/0016_secrets.sql"),
    include_str!("../../migrations/sqlite/0017_change_items.sql"),
    include_str!("../../migrations/sqlite/0018_approval_channels.sql"),
];

/// Applies the migrations the database has not seen, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err("starting migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading schema version"))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(db_err("migrating"))?;
        tx.execute_batch(&format!("PRAGMA user_version={}", i + 1))
            .map_err(db_err("migrating"))?;
    }
    tx.commit().map_err(db_err("committing migration"))
}
