//! An online backup of the embedded store: `VACUUM INTO` a file next to the destination, from
//! one read transaction (so a consistent snapshot while other processes keep writing), checked
//! (`PRAGMA quick_check`), made durable, then renamed into place. Restored by copying the file
//! into an empty data directory as `belay.db`.

use super::db_err;
use crate::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    /// The file's size in bytes.
    pub bytes: u64,
    /// The schema version of the copy.
    pub schema_version: i64,
    /// Audit entries in the copy.
    pub audit_entries: i64,
    /// Runs in the copy.
    pub runs: i64,
}

fn io_err(context: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Database {
        context,
        message: e.to_string(),
    }
}

/// Snapshots the store of the data directory `dir` into `dest`, which must not exist.
/// Safe while other processes write to the store: the copy is one transaction's view.
pub fn backup(dir: &Path, dest: &Path) -> Result<BackupSummary> {
    let src = dir.join("belay.db");
    if !src.is_file() {
        return Err(StoreError::Database {
            context: "backing up the store",
            message: format!("there is no store in {}", dir.display()),
        });
    }
    if dest.exists() {
        return Err(StoreError::Database {
            context: "backing up the store",
            message: format!("{} exists already; choose a new file", dest.display()),
        });
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let partial = dest.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let result = snapshot(&src, &partial).and_then(|summary| {
        std::fs::rename(&partial, dest).map_err(io_err("moving the backup into place"))?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The rename is durable once the directory is.
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn snapshot(src: &Path, partial: &Path) -> Result<BackupSummary> {
    let conn = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err("opening the store to back it up"))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(db_err("setting busy timeout"))?;
    let target = partial.to_str().ok_or_else(|| StoreError::Database {
        context: "backing up the store",
        message: format!("{} is not a UTF-8 path", partial.display()),
    })?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(db_err("copying the store"))?;
    drop(conn);

    // The copy as a store of its own: rollback journal (a single file), checked, durable.
    let copy = Connection::open(partial).map_err(db_err("opening the backup"))?;
    let mode: String = copy
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .map_err(db_err("setting the backup's journal mode"))?;
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(db_err("checking the backup"))?;
    if check != "ok" || mode != "delete" {
        return Err(StoreError::Database {
            context: "checking the backup",
            message: format!("quick_check: {check}; journal mode {mode}"),
        });
    }
    let count = |sql: &str| -> Result<i64> {
        copy.query_row(sql, [], |r| r.get(0))
            .map_err(db_err("counting the backup's rows"))
    };
    let summary = BackupSummary {
        bytes: 0,
        schema_version: count("PRAGMA user_version")?,
        audit_entries: count("SELECT count(*) FROM audit")?,
        runs: count("SELECT count(*) FROM runs")?,
    };
    drop(copy);
    let file = std::fs::File::open(partial).map_err(io_err("reading the backup"))?;
    file.sync_all().map_err(io_err("syncing the backup"))?;
    let bytes = file.metadata().map_err(io_err("reading the backup"))?.len();
    Ok(BackupSummary { bytes, ..summary })
}
