//! Files the connectors own (block lists, stand-in state, component configuration): read
//! (a missing file reads as empty), and replaced atomically: a temporary file beside the target,
//! world-readable (a daemon that dropped its privileges must read it), fsynced, renamed over the
//! target, the directory synced, so a reader or a crash never sees half a file. Async code runs
//! this blocking work through [`blocking`], never on a runtime thread.

use crate::ActionError;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Reads a text file; a missing file reads as empty.
pub(crate) fn read_text(path: &Path) -> Result<String, ActionError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ActionError::transient(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `bytes` to a new world-readable temporary file beside `path` (a daemon that dropped
/// its privileges must be able to read it), synced; `persist` it to replace `path`.
pub(crate) fn candidate(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile, ActionError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |what: &str, e: std::io::Error| {
        ActionError::transient(format!("cannot {what} {}: {e}", path.display()))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".belay-candidate-")
        .tempfile_in(dir)
        .map_err(|e| fail("create a temporary file for", e))?;
    tmp.write_all(bytes).map_err(|e| fail("write", e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| fail("set permissions of", e))?;
    tmp.as_file().sync_all().map_err(|e| fail("sync", e))?;
    Ok(tmp)
}

/// Replaces `path` by a candidate from [`candidate`], then syncs the directory.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), ActionError> {
    tmp.persist(path).map_err(|e| {
        ActionError::transient(format!("cannot replace {}: {}", path.display(), e.error))
    })?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `path` atomically (temporary file and rename), world-readable.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ActionError> {
    persist(candidate(path, bytes)?, path)
}

/// Creates the directory `path` goes in, when it is missing.
pub(crate) fn create_parent_dir(path: &Path) -> Result<(), ActionError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        ActionError::transient(format!(
            "cannot create the directory of {}: {e}",
            path.display()
        ))
    })
}

/// Runs blocking file work (reads, writes, fsync) on tokio's blocking pool, so a runtime thread
/// never waits for the disk. A panic in `f` resumes in the caller.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ActionError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ActionError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ActionError::transient(format!(
            "file work was cancelled: {e}"
        ))),
    }
}

/// An advisory lock on a file the connectors own, honoured by every belay process (and by
/// any tool that takes `flock(2)` on the same lock file): held until dropped.
pub(crate) struct FileLock {
    _file: std::fs::File,
}

/// The lock file guarding `path`: `.<name>.lock` beside it (the target itself is replaced
/// by rename, so a lock on it would not outlive a change).
pub(crate) fn lock_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "belay".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.lock"))
}

/// Takes the lock guarding `path`, exclusive (to change it) or shared (to read it), waiting
/// for other processes (blocking: call it on the blocking pool).
pub(crate) fn lock(path: &Path, exclusive: bool) -> Result<FileLock, ActionError> {
    let lock = lock_path(path);
    create_parent_dir(&lock)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(|e| ActionError::transient(format!("cannot open {}: {e}", lock.display())))?;
    let taken = if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    };
    taken.map_err(|e| ActionError::transient(format!("cannot lock {}: {e}", lock.display())))?;
    Ok(FileLock { _file: file })
}

/// Takes the lock guarding `path` from async code (the wait runs on the blocking pool); the
/// guard may be held across awaits.
pub(crate) async fn lock_async(path: &Path, exclusive: bool) -> Result<FileLock, ActionError> {
    let path = path.to_owned();
    blocking(move || lock(&path, exclusive)).await
}
