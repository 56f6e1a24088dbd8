//! The PostgreSQL schema: the numbered SQL files of `migrations/postgres/`, embedded at build
//! time and applied in order in one transaction under an advisory lock. Versions are recorded
//! in the `belay_schema` table (one row per version), as every release has recorded them, so
//! existing databases migrate unchanged. A released migration is never edited.

use super::error::db_err;
use super::quote_ident;
use super::row::get;
use crate::{Result, StoreError};
use belay_model::now_ms;

/// The schema's versions, in order: version N is `migrations/postgres/000N_*.sql`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_core.sql"),
    include_str!("../../migrations/postgres/0002_audit.sql"),
    include_str!("../../migrations/postgres/0003_approvals_demotions.sql"),
    include_str!("../../migrations/postgres/0004_cases.sql"),
    include_str!("../../migrations/postgres/0005_drop_events_kind.sql"),
    include_str!("../../migrations/postgres/0006_audit_approvals.sql"),
    include_str!("../../migrations/postgres/0007_playbook_versions.sql"),
    include_str!("../../migrations/postgres/0008_expiry_guardrail_sets.sql"),
    include_str!("../../migrations/postgres/0009_principals.sql"),
    include_str!("../../migrations/postgres/0010_automation_pauses.sql"),
    include_str!("../../migrations/postgres/0011_events_per_source.sql"),
    include_str!("../../migrations/postgres/0012_console_sessions.sql"),
    include_str!("../../migrations/postgres/0013_secrets.sql"),
    include_str!("../../migrations/postgres/0014_change_items.sql"),
    include_str!("../../migrations/postgres/0015_approval_channels.sql"),
];

/// First key of the advisory lock serializing migrations (the second is the schema's hash).
const MIGRATION_LOCK: i32 = 0x6265_6c61; // "bela"
/// Brings the schema up to date in one transaction, serialized across processes by an
/// advisory lock, so workers starting together neither race nor half-migrate.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::Client,
    schema: Option<&str>,
) -> Result<()> {
    const C: &str = "migrating the schema";
    let tx = client.transaction().await.map_err(db_err(C))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE($2::TEXT, current_schema(), '')))",
        &[&MIGRATION_LOCK, &schema],
    )
    .await
    .map_err(db_err("waiting for the migration lock"))?;
    if let Some(schema) = schema {
        let exists: bool = scalar(
            &tx,
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
            "looking up the schema",
        )
        .await?;
        if !exists {
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            ))
            .await
            .map_err(db_err("creating the schema"))?;
        }
    }
    // Checked first so that a role without CREATE rights can use an up-to-date schema.
    let has_table: bool = scalar(
        &tx,
        "SELECT to_regclass('belay_schema') IS NOT NULL",
        &[],
        "reading the schema version",
    )
    .await?;
    if !has_table {
        tx.batch_execute(
            "CREATE TABLE belay_schema (version INT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(db_err("creating the schema version table"))?;
    }
    let version: i32 = scalar(
        &tx,
        "SELECT COALESCE(MAX(version), 0) FROM belay_schema",
        &[],
        "reading the schema version",
    )
    .await?;
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(StoreError::Database {
            context: "checking the schema version",
            message: format!(
                "the database schema is at version {version} but this belay knows only up to {known}; upgrade belay"
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(db_err(C))?;
        tx.execute(
            "INSERT INTO belay_schema (version, applied_at) VALUES ($1, $2)",
            &[&(i as i32 + 1), &now_ms()],
        )
        .await
        .map_err(db_err(C))?;
    }
    tx.commit()
        .await
        .map_err(db_err("committing the migration"))
}

/// The one value the one row of `sql` gives.
async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    context: &'static str,
) -> Result<T> {
    let row = tx.query_one(sql, params).await.map_err(db_err(context))?;
    get(&row, 0, context)
}
