//! SQLite store: WAL, one batching writer thread, acknowledged only after commit.
//!
//! Every write goes through one thread that takes whatever is queued (up to a batch), applies
//! it in one transaction, commits, and only then answers each caller (a failed batch is replayed
//! one operation per transaction). Callers encode their rows first (JSON serialized, audit
//! entries in canonical form), so the writer only binds, chains and commits. Concurrent runs
//! therefore share one fsync, which is how the embedded store sustains thousands of durable runs
//! per second with `synchronous=FULL`.
//!
//! This module owns the store's handle, its options and the hand-off to the writer and the
//! reader; it never runs SQL itself. Where each part lives: [`open`] (opening, pragmas, the
//! worker's lock file), [`migrate`] (the schema from `migrations/sqlite/`), [`encode`] (rows
//! encoded on the caller's thread), [`writer`] (the writer thread and group commit), [`apply`]
//! (each operation's SQL inside the writer's transaction), [`insert`] (multi-row inserts),
//! [`checkpoint`] (the WAL checkpointer), [`row`] (decoding SQLite values), [`read`] (queries on
//! the reader connection) and [`store`] (the [`Store`](crate::Store) implementation).

mod apply;
mod backup;
mod channels;
mod checkpoint;
mod encode;
mod insert;
mod migrate;
mod open;
mod pauses;
mod principals;
mod read;
mod row;
mod secrets;
mod sessions;
mod store;
mod writer;

pub use backup::{BackupSummary, backup};

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use writer::{Job, Op, Reply};

/// SQLite's `synchronous` setting. With WAL, `Normal` survives a killed process but may lose
/// the last commits on power loss; `Full` survives both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous = NORMAL`: fewer fsyncs, faster commits.
    Normal,
    /// `synchronous = FULL`: an fsync per commit; the default.
    Full,
}

/// The name of the store's writer thread (Linux keeps 15 bytes of a thread's name).
pub const WRITER_THREAD: &str = "belay-writer";

/// How to open the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// SQLite's durability setting.
    pub synchronous: Synchronous,
    /// Most operations committed together.
    pub max_batch: usize,
    /// How long a claimed run stays leased without renewal.
    pub lease_ms: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            max_batch: 1024,
            lease_ms: 30_000,
        }
    }
}

/// The embedded store.
pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Ends after the writer (which holds its wake-up channel).
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    worker: String,
    workers_dir: PathBuf,
    /// Held for the life of the store: other processes see this worker as alive.
    _worker_lock: File,
}

fn db_err(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database {
        context,
        message: e.to_string(),
    }
}

fn unexpected(context: &'static str) -> StoreError {
    StoreError::Corrupt {
        context,
        message: "the writer answered with another kind of reply".into(),
    }
}

impl SqliteStore {
    async fn submit(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let tx = jobs.as_ref().ok_or(StoreError::Closed)?;
            tx.send(Job { op, reply }).map_err(|_| StoreError::Closed)?;
        }
        let (result, op) = rx.await.map_err(|_| StoreError::Closed)?;
        drop(op);
        result
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Database {
            context: "reading",
            message: e.to_string(),
        })?
    }

    /// Stops the writer after it drains what is queued.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        for thread in [&self.writer, &self.checkpointer] {
            if let Some(h) = thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
        let _ = std::fs::remove_file(self.workers_dir.join(format!("{}.lock", self.worker)));
    }
}
