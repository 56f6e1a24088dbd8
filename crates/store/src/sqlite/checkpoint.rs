//! The WAL checkpointer thread: copies committed pages back into the database so the writer's
//! commits rarely wait. It never blocks the writer or the readers.

use rusqlite::Connection;
use std::sync::mpsc;

/// The checkpointer's pause after each checkpoint, so it runs once per many commits.
pub(super) const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Copies committed WAL pages back into the database on its own thread, so the writer's
/// commits rarely wait for a checkpoint. Passive: it never blocks the writer or readers (a page
/// a reader still needs is copied next time). Ends when the writer is gone.
pub(super) fn checkpoint_loop(conn: &Connection, commits: &mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("background checkpoint failed: {e}");
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}
