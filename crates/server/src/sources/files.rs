//! A JSON-lines file tailed with the durable cursor of `belay ingest`
//! (`belay_engine::ingest`): each pass reads the complete lines written since the stored
//! offset, commits each batch with the offset after it, and waits for its runs; a restart goes
//! on from the last commit. A file that shrank (rotated or truncated) is read from its start.

use crate::state::AppState;
use belay_engine::ingest::{MAX_LINE_BYTES, Source, ingest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(super) fn start(
    state: Arc<AppState>,
    name: String,
    path: PathBuf,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    state.sources.register(
        &name,
        "file",
        &path.display().to_string(),
        Some(humantime::format_duration(poll).to_string()),
    );
    state.sources.running(&name, true);
    tokio::spawn(async move {
        loop {
            if *stop.borrow() {
                break;
            }
            match pass(&state, &name, &path).await {
                Ok(Some(new)) => state.sources.success(&name, new, None),
                Ok(None) => {}
                Err(e) => state.sources.error(&name, &e),
            }
            if super::sleep_or_stop(poll, &mut stop).await {
                break;
            }
        }
        state.sources.running(&name, false);
    })
}

/// Reads what was completed since the cursor; how many new events it stored (`None`: nothing
/// new to read).
async fn pass(state: &Arc<AppState>, name: &str, path: &Path) -> Result<Option<u64>, String> {
    let path =
        std::fs::canonicalize(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let engine = state.engine();
    let cursor_name = format!("file:{}", path.display());
    let mut start = engine
        .store
        .cursor(&cursor_name)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len < start {
        tracing::warn!(
            source = name,
            "{} shrank below its cursor ({start}): reading it from its start",
            path.display()
        );
        start = 0;
    }
    let end = complete_end(&mut file, start, len)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if end <= start {
        return Ok(None);
    }
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| format!("cannot seek {}: {e}", path.display()))?;
    let reader = tokio::io::BufReader::new(file.take(end - start));
    let source = Source {
        name: cursor_name,
        start,
        durable_cursor: true,
    };
    let rejected_path = state.config.ops.data_dir.join("rejected.jsonl");
    let mut rejected = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&rejected_path)
        .map_err(|e| format!("cannot open {}: {e}", rejected_path.display()))?;
    let mut errors = LogLines(name.to_owned(), Vec::new());
    let stats = ingest(
        &engine,
        reader,
        source,
        &mut std::io::sink(),
        &mut errors,
        Some(&mut rejected),
    )
    .await
    .map_err(|e| e.to_string())?;
    state
        .metrics
        .count_new(name, stats.accepted, stats.duplicates);
    if stats.rejected > 0 {
        state.sources.error(
            name,
            &format!(
                "{} line(s) rejected, kept with the reason in {}",
                stats.rejected,
                rejected_path.display()
            ),
        );
    }
    Ok(Some(stats.accepted))
}

/// The offset just past the last complete line (ending in a newline) between `start` and
/// `len`: a line still being written is left for the next pass.
async fn complete_end(file: &mut tokio::fs::File, start: u64, len: u64) -> std::io::Result<u64> {
    let window = (MAX_LINE_BYTES as u64 + 1).min(len - start);
    let from = len - window;
    file.seek(std::io::SeekFrom::Start(from)).await?;
    let mut tail = Vec::with_capacity(window as usize);
    (&mut *file).take(window).read_to_end(&mut tail).await?;
    Ok(match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => from + i as u64 + 1,
        // No newline in the last line's longest length: the line is too long and is read
        // (and refused) whole.
        None if window > MAX_LINE_BYTES as u64 => len,
        None => start,
    })
}

/// Problem lines of a pass, logged with the source's name.
struct LogLines(String, Vec<u8>);

impl Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        while let Some(i) = self.1.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.1.drain(..=i).collect();
            tracing::warn!(source = %self.0, "{}", String::from_utf8_lossy(&line).trim_end());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
