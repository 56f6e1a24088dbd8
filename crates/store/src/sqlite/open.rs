//! Opening the embedded store: the data directory, the connections and their pragmas, the
//! worker's lock file and the threads. Other processes learn which workers are alive from the
//! lock files, never from the database.

use super::checkpoint::checkpoint_loop;
use super::migrate::migrate;
use super::writer::{Job, Writer};
use super::{SqliteOptions, SqliteStore, Synchronous, WRITER_THREAD, db_err};
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// WAL pages after which the writer checkpoints by itself, finishing what the checkpointer
/// thread has mostly done; the WAL then restarts from its beginning (~32 MB at most).
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 8_000;
pub(super) fn open_conn(path: &Path, sync: Synchronous) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err("opening the database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err("setting busy timeout"))?;
    let sync = match sync {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    // 8 KB pages for a new database (an existing one keeps its size): half the WAL frames
    // and write calls per commit, for somewhat more bytes (~25 instead of ~22 KB per
    // benchmark run), measured faster on the writer.
    let pragmas = format!(
        "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8000; \
         PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES};"
    );
    // Setting the journal mode can answer "busy" at once, without the busy handler, while
    // another process opens or checkpoints the same database (belay ingest, approvals and the
    // expiry scheduler side by side): try again for as long as the busy timeout.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.execute_batch(&pragmas) {
            Ok(()) => return Ok(conn),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(db_err("setting pragmas")(e)),
        }
    }
}

impl SqliteStore {
    /// Opens (creating and migrating) the store in a data directory.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let io = |context: &'static str| {
            move |e: std::io::Error| StoreError::Database {
                context,
                message: e.to_string(),
            }
        };
        std::fs::create_dir_all(dir).map_err(io("creating the data directory"))?;
        let workers_dir = dir.join("workers");
        std::fs::create_dir_all(&workers_dir).map_err(io("creating the workers directory"))?;
        let worker = format!("w-{}-{}", std::process::id(), &belay_model::new_id()[24..]);
        let lock = File::create(workers_dir.join(format!("{worker}.lock")))
            .map_err(io("creating the worker lock"))?;
        lock.try_lock().map_err(|e| StoreError::Database {
            context: "locking the worker file",
            message: e.to_string(),
        })?;
        let path = dir.join("belay.db");
        let mut writer = open_conn(&path, options.synchronous)?;
        migrate(&mut writer)?;
        let reader = open_conn(&path, options.synchronous)?;
        let checkpointer = open_conn(&path, options.synchronous)?;
        let (committed, commits) = mpsc::sync_channel::<()>(1);
        let checkpoint_handle = std::thread::Builder::new()
            .name("belay-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointer, &commits))
            .map_err(io("starting the checkpoint thread"))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let w = Writer {
            committed,
            conn: writer,
            worker: worker.clone(),
            lease_ms: options.lease_ms,
            head: None,
            head_dirty: false,
        };
        let max_batch = options.max_batch.max(1);
        let handle = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || w.run(rx, max_batch))
            .map_err(io("starting the writer thread"))?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpoint_handle)),
            reader: Arc::new(Mutex::new(reader)),
            worker,
            workers_dir,
            _worker_lock: lock,
        })
    }

    /// Owners of unfinished runs whose process is gone (their lock file is free).
    pub(super) fn dead_owners(&self, owners: Vec<String>) -> Vec<String> {
        owners
            .into_iter()
            .filter(|o| o != &self.worker)
            .filter(|o| {
                let p = self.workers_dir.join(format!("{o}.lock"));
                match File::options().write(true).open(&p) {
                    Ok(f) => {
                        let dead = f.try_lock().is_ok();
                        if dead {
                            let _ = std::fs::remove_file(&p);
                        }
                        dead
                    }
                    Err(_) => true,
                }
            })
            .collect()
    }
}
