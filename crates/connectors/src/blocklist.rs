//! `blocklist.*`: plain-text list files, one entry per line, the kind Squid, nginx and DNS
//! tools consume.
//!
//! Every change runs under the list's advisory file lock (`.<file>.lock` beside it), which
//! every belay process takes, so processes sharing a data directory never lose each other's
//! entries; states are read under it too (shared). Adding one entry appends one line (one
//! write, one fsync): the cost does not grow with the list, because each process keeps an
//! index of the list, re-read only when the file changed under it (another process, a person).
//! Adds that arrive while the list is being written wait and are written together, with one
//! write and one fsync (a group commit), each answered only once its line is durable.
//! Removing entries and the set-level actions (`add_many`, `remove_many`) replace the file
//! atomically (temporary file, fsync, rename), once per call, so a reader or a crash never
//! sees half a batch. File work runs on the blocking pool, never on a runtime thread.

use crate::files::{self, read_text, write_atomically};
use crate::{ActionError, Call, Connector, input_str};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most entries one `add_many` or `remove_many` takes.
pub const MAX_BATCH: usize = 1_000_000;

/// The `blocklist` connector.
pub struct Blocklist {
    dir: PathBuf,
    paths: HashMap<String, PathBuf>,
    /// Per list file, this process's state of it.
    indexes: Mutex<HashMap<PathBuf, Arc<ListSlot>>>,
}

/// One list file in this process.
struct ListSlot {
    /// Taken before the list's file work is handed to the blocking pool: calls wait for the
    /// list here, as tasks, rather than as blocked threads of the pool (which would grow by a
    /// thread per waiting call). A few at a time, so the next is ready when one ends.
    turns: tokio::sync::Semaphore,
    /// The index as last read (its lock also serializes this process's work on the list).
    index: Mutex<Option<Index>>,
    /// Plain adds waiting to be written, and whether a writer is at work on them.
    appends: Mutex<Appends>,
}

/// Calls of one list handed to the blocking pool at once.
const TURNS: usize = 4;

impl Default for ListSlot {
    fn default() -> Self {
        ListSlot {
            turns: tokio::sync::Semaphore::new(TURNS),
            index: Mutex::default(),
            appends: Mutex::default(),
        }
    }
}

/// The adds queued on one list, written by one writer at a time.
#[derive(Default)]
struct Appends {
    queue: Vec<Append>,
    /// A call is writing the queue: it writes what is queued meanwhile too.
    writing: bool,
}

/// A `blocklist.add` at the end of the list, waiting for the list's next write.
struct Append {
    entry: String,
    /// Whether the entry was added (not held already), once its line is durable.
    done: tokio::sync::oneshot::Sender<Result<bool, ActionError>>,
}

/// What identifies one version of a list file: when any of it differs, the file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Result<Option<Stamp>, ActionError> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stamp {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ActionError::transient(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }
}

/// A list file's entries and where they stand.
#[derive(Debug, Default)]
struct Index {
    stamp: Option<Stamp>,
    /// Entry → the 1-based lines holding it, ascending.
    lines: HashMap<String, Vec<usize>>,
    /// Lines in the file.
    count: usize,
    /// Whether the file is empty or ends with a newline (else an append starts one).
    ends_clean: bool,
}

impl Index {
    fn build(text: &str, stamp: Option<Stamp>) -> Index {
        let mut lines: HashMap<String, Vec<usize>> = HashMap::new();
        let mut count = 0;
        for (i, l) in text.lines().enumerate() {
            count = i + 1;
            let t = l.trim();
            if !t.is_empty() {
                lines.entry(t.to_owned()).or_default().push(i + 1);
            }
        }
        Index {
            stamp,
            lines,
            count,
            ends_clean: text.is_empty() || text.ends_with('\n'),
        }
    }

    fn lines_of(&self, entry: &str) -> Vec<usize> {
        self.lines.get(entry).cloned().unwrap_or_default()
    }

    fn has(&self, entry: &str) -> bool {
        self.lines.contains_key(entry)
    }
}

impl Blocklist {
    /// Lists live in `dir/<name>.txt` unless `paths` maps a name to another file.
    pub fn new(dir: impl Into<PathBuf>, paths: HashMap<String, PathBuf>) -> Self {
        Blocklist {
            dir: dir.into(),
            paths,
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// The file behind a list name.
    pub fn path_of(&self, list: &str) -> Result<PathBuf, ActionError> {
        if let Some(p) = self.paths.get(list) {
            return Ok(p.clone());
        }
        let ok = !list.is_empty()
            && list.len() <= 64
            && list
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !list.starts_with('.');
        if !ok {
            return Err(ActionError::permanent(format!(
                "invalid list name `{list}`"
            )));
        }
        Ok(self.dir.join(format!("{list}.txt")))
    }

    /// The file behind `list` and this process's state of it.
    fn slot(&self, list: &str) -> Result<(PathBuf, Arc<ListSlot>), ActionError> {
        let path = self.path_of(list)?;
        let mut m = lock(&self.indexes);
        let slot = m.entry(path.clone()).or_default().clone();
        Ok((path, slot))
    }

    /// Adds `entry` at the end of the list unless the list holds it; whether it added it.
    ///
    /// The entry is queued and answered once its line is durable. The call that finds no
    /// writer at work starts one ([`write_all`]); the others only wait.
    async fn append_grouped(&self, list: &str, entry: String) -> Result<bool, ActionError> {
        let (path, slot) = self.slot(list)?;
        let (done, answer) = tokio::sync::oneshot::channel();
        let write = {
            let mut appends = lock(&slot.appends);
            appends.queue.push(Append { entry, done });
            !std::mem::replace(&mut appends.writing, true)
        };
        if write {
            // A task of its own: the call that started it may be dropped (a step's timeout)
            // while the queue still waits for it.
            tokio::spawn(write_all(path, slot));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ActionError::transient(
                "the write of the list stopped before answering",
            ))
        })
    }

    /// Runs `f` on the list behind `list` under its file lock (exclusive to change it), with
    /// its index brought up to date (blocking work, on the blocking pool).
    async fn with_list<T, F>(&self, list: &str, exclusive: bool, f: F) -> Result<T, ActionError>
    where
        T: Send + 'static,
        F: FnOnce(&Path, &mut Index) -> Result<T, ActionError> + Send + 'static,
    {
        let (path, slot) = self.slot(list)?;
        with_slot(path, slot, exclusive, f).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` on the list at `path` under its file lock (exclusive to change it), with its index
/// brought up to date: once one of the list's turns is free, on the blocking pool.
async fn with_slot<T, F>(
    path: PathBuf,
    slot: Arc<ListSlot>,
    exclusive: bool,
    f: F,
) -> Result<T, ActionError>
where
    T: Send + 'static,
    F: FnOnce(&Path, &mut Index) -> Result<T, ActionError> + Send + 'static,
{
    let turns = slot.clone();
    let _turn =
        turns.turns.acquire().await.map_err(|_| {
            ActionError::transient(format!("the list {} is closed", path.display()))
        })?;
    files::blocking(move || {
        let mut cached = lock(&slot.index);
        let _lock = files::lock(&path, exclusive)?;
        let stamp = Stamp::of(&path)?;
        let index = match cached.take() {
            Some(i) if i.stamp == stamp => i,
            _ => Index::build(&read_text(&path)?, stamp),
        };
        let index = cached.insert(index);
        match f(&path, index) {
            Ok(v) => Ok(v),
            Err(e) => {
                // The file may be half-way through a change: read it afresh next time.
                *cached = None;
                Err(e)
            }
        }
    })
    .await
}

/// The list's writer: appends every queued add with one write and one fsync, answers each,
/// and goes on until the queue is empty. If the list cannot be written, or the writer
/// panics, every add still queued fails and the writer's place is free again.
async fn write_all(path: PathBuf, slot: Arc<ListSlot>) {
    let _unstuck = Unstuck(slot.clone());
    let queue = slot.clone();
    let wrote = with_slot(path, slot.clone(), true, move |path, index| {
        write_queued(path, index, &queue)
    })
    .await;
    if let Err(e) = wrote {
        fail_queued(&slot, &e);
    }
}

/// Fails every add queued on `slot` with `e` and frees the writer's place.
fn fail_queued(slot: &ListSlot, e: &ActionError) {
    let mut appends = lock(&slot.appends);
    for a in std::mem::take(&mut appends.queue) {
        let _ = a.done.send(Err(e.clone()));
    }
    appends.writing = false;
}

/// Frees the writer's place when the writer panics, so later adds do not wait for a writer
/// that is gone.
struct Unstuck(Arc<ListSlot>);

impl Drop for Unstuck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fail_queued(&self.0, &ActionError::transient("the list's writer failed"));
        }
    }
}

/// Writes the adds queued on `slot` until none is left (the caller holds the list and is its
/// writer), answering each: added, held already, or the write's error.
fn write_queued(path: &Path, index: &mut Index, slot: &ListSlot) -> Result<(), ActionError> {
    loop {
        let queued = {
            let mut appends = lock(&slot.appends);
            if appends.queue.is_empty() {
                appends.writing = false;
                return Ok(());
            }
            std::mem::take(&mut appends.queue)
        };
        let mut seen = HashSet::new();
        let added: Vec<bool> = queued
            .iter()
            .map(|a| !index.has(&a.entry) && seen.insert(a.entry.as_str()))
            .collect();
        let fresh: Vec<&str> = queued
            .iter()
            .zip(&added)
            .filter(|(_, added)| **added)
            .map(|(a, _)| a.entry.as_str())
            .collect();
        let written = append(path, index, &fresh);
        for (a, added) in queued.into_iter().zip(added) {
            let _ = a.done.send(written.clone().map(|()| added));
        }
        // On error the file may be half-written: the index is read afresh, by the next writer.
        written?;
    }
}

/// Appends `entries` as the list's last lines: one write, one fsync (the caller holds the
/// lock).
fn append(path: &Path, index: &mut Index, entries: &[&str]) -> Result<(), ActionError> {
    if entries.is_empty() {
        return Ok(());
    }
    files::create_parent_dir(path)?;
    let fail = |e: std::io::Error| {
        ActionError::transient(format!("cannot append to {}: {e}", path.display()))
    };
    let created = index.stamp.is_none();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(fail)?;
    if created {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(fail)?;
    }
    let mut text = String::with_capacity(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
    if !index.ends_clean {
        text.push('\n');
    }
    for entry in entries {
        text.push_str(entry);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_data().map_err(fail)?;
    if created && let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = d.sync_all();
    }
    for entry in entries {
        index.count += 1;
        index
            .lines
            .entry((*entry).to_owned())
            .or_default()
            .push(index.count);
    }
    index.ends_clean = true;
    index.stamp = Stamp::of(path)?;
    Ok(())
}

/// Replaces the list with `lines` and re-indexes it (the caller holds the lock).
fn rewrite(path: &Path, index: &mut Index, lines: &[&str]) -> Result<(), ActionError> {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    files::create_parent_dir(path)?;
    write_atomically(path, out.as_bytes())?;
    let stamp = Stamp::of(path)?;
    // The old index goes before the new one is built: a list of 200,000 entries is not
    // indexed twice at once.
    *index = Index::default();
    *index = Index::build(&out, stamp);
    Ok(())
}

/// Adds `entries` absent from the list: each at its 1-based lines when given (ascending over
/// the whole batch, as they stood: an undo puts removed lines back in place), else at the end.
/// Returns how many entries it added.
fn add_entries(
    path: &Path,
    index: &mut Index,
    entries: &[(&str, Vec<usize>)],
) -> Result<usize, ActionError> {
    let mut seen = HashSet::new();
    let todo: Vec<&(&str, Vec<usize>)> = entries
        .iter()
        .filter(|(e, _)| !index.has(e) && seen.insert(*e))
        .collect();
    let added = todo.len();
    if added == 0 {
        return Ok(0);
    }
    if todo.iter().all(|(_, at)| at.is_empty()) {
        let entries: Vec<&str> = todo.iter().map(|(e, _)| *e).collect();
        append(path, index, &entries)?;
        return Ok(added);
    }
    let text = read_text(path)?;
    let mut lines: Vec<&str> = text.lines().collect();
    let mut placed: Vec<(usize, &str)> = Vec::new();
    let mut tail: Vec<&str> = Vec::new();
    for (e, at) in &todo {
        if at.is_empty() {
            tail.push(e);
        } else {
            placed.extend(at.iter().map(|l| (*l, *e)));
        }
    }
    placed.sort_unstable();
    placed.dedup();
    for (l, e) in placed {
        let i = l.saturating_sub(1).min(lines.len());
        lines.insert(i, e);
    }
    lines.extend(tail);
    rewrite(path, index, &lines)?;
    Ok(added)
}

/// Removes every copy of each of `entries` in one rewrite; returns how many distinct
/// entries it removed.
fn remove_entries(path: &Path, index: &mut Index, entries: &[&str]) -> Result<usize, ActionError> {
    let gone: HashSet<&str> = entries.iter().copied().filter(|e| index.has(e)).collect();
    let removed = gone.len();
    if removed == 0 {
        return Ok(0);
    }
    let text = read_text(path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !gone.contains(l.trim())).collect();
    rewrite(path, index, &lines)?;
    Ok(removed)
}

fn validate_entry(entry: &str) -> Result<(), ActionError> {
    if entry.is_empty()
        || entry.len() > 2048
        || entry.starts_with('#')
        || entry.chars().any(char::is_whitespace)
    {
        return Err(ActionError::permanent(format!(
            "invalid list entry `{}`: one token, no whitespace, not a comment",
            entry.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// The `entries` input of a set-level action, each checked, in order.
fn entries_input(input: &Value) -> Result<Vec<String>, ActionError> {
    let Some(Value::Array(items)) = input.get("entries") else {
        return Err(ActionError::permanent(
            "`entries` must be a list of entries",
        ));
    };
    if items.len() > MAX_BATCH {
        return Err(ActionError::permanent(format!(
            "`entries` holds {} entries, more than the {MAX_BATCH} one change may take; nothing was applied",
            items.len()
        )));
    }
    items
        .iter()
        .map(|v| {
            let e = v
                .as_str()
                .ok_or_else(|| ActionError::permanent(format!("entry `{v}` is not text")))?;
            validate_entry(e)?;
            Ok(e.to_owned())
        })
        .collect()
}

/// Where `add_many` puts each entry back: `lines` (aligned with `entries`, as `remove_many`'s
/// state recorded them), else at the end.
fn lines_input(input: &Value, n: usize) -> Result<Vec<Vec<usize>>, ActionError> {
    match input.get("lines") {
        None | Some(Value::Null) => Ok(vec![Vec::new(); n]),
        Some(Value::Array(ls)) if ls.len() == n => ls
            .iter()
            .map(|l| match l {
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_u64()
                            .filter(|&x| x >= 1)
                            .map(|x| x as usize)
                            .ok_or_else(|| {
                                ActionError::permanent(format!(
                                    "`{x}` is not a 1-based line number"
                                ))
                            })
                    })
                    .collect(),
                other => Err(ActionError::permanent(format!(
                    "`lines` holds `{other}`, not a list of line numbers"
                ))),
            })
            .collect(),
        Some(_) => Err(ActionError::permanent(
            "`lines` must hold one list of line numbers per entry",
        )),
    }
}

/// `entries` without repeats, in order.
fn distinct(entries: &[String]) -> Vec<&str> {
    let mut seen = HashSet::with_capacity(entries.len());
    entries
        .iter()
        .map(String::as_str)
        .filter(|e| seen.insert(*e))
        .collect()
}

#[async_trait]
impl Connector for Blocklist {
    fn family(&self) -> &str {
        "blocklist"
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let list = input_str(call.input, "list")?;
        match call.action {
            "blocklist.add" => {
                let entry = input_str(call.input, "entry")?;
                validate_entry(entry)?;
                let at = insert_lines(call.input)?;
                let added = if at.is_empty() {
                    self.append_grouped(list, entry.to_owned()).await?
                } else {
                    let e = entry.to_owned();
                    self.with_list(list, true, move |path, index| {
                        add_entries(path, index, &[(e.as_str(), at)])
                    })
                    .await?
                        > 0
                };
                Ok(json!({ "list": list, "entry": entry, "changed": added }))
            }
            "blocklist.remove" => {
                let entry = input_str(call.input, "entry")?;
                validate_entry(entry)?;
                let e = entry.to_owned();
                let removed = self
                    .with_list(list, true, move |path, index| {
                        remove_entries(path, index, &[e.as_str()])
                    })
                    .await?;
                Ok(json!({ "list": list, "entry": entry, "changed": removed > 0 }))
            }
            "blocklist.add_many" => {
                let entries = entries_input(call.input)?;
                let lines = lines_input(call.input, entries.len())?;
                let added = self
                    .with_list(list, true, move |path, index| {
                        let pairs: Vec<(&str, Vec<usize>)> =
                            entries.iter().map(String::as_str).zip(lines).collect();
                        add_entries(path, index, &pairs)
                    })
                    .await?;
                Ok(json!({ "list": list, "added": added, "changed": added > 0 }))
            }
            "blocklist.remove_many" => {
                let entries = entries_input(call.input)?;
                let removed = self
                    .with_list(list, true, move |path, index| {
                        remove_entries(path, index, &distinct(&entries))
                    })
                    .await?;
                Ok(json!({ "list": list, "removed": removed, "changed": removed > 0 }))
            }
            "blocklist.contains" => {
                let entry = input_str(call.input, "entry")?.to_owned();
                let present = self
                    .with_list(list, false, move |_, index| Ok(index.has(&entry)))
                    .await?;
                Ok(json!({ "present": present }))
            }
            other => Err(ActionError::no_action("`blocklist`", other)),
        }
    }

    async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        let list = input_str(input, "list")?;
        match action {
            // The entries of the batch the list lacks: after the change, none.
            "blocklist.add_many" => {
                let entries = entries_input(input)?;
                self.with_list(list, false, move |_, index| {
                    let absent: Vec<&str> = distinct(&entries)
                        .into_iter()
                        .filter(|e| !index.has(e))
                        .collect();
                    Ok(json!({ "absent": absent }))
                })
                .await
            }
            // The entries of the batch the list holds, and on which lines (so that an undo
            // puts each back where it stood): after the change, none.
            "blocklist.remove_many" => {
                let entries = entries_input(input)?;
                self.with_list(list, false, move |_, index| {
                    let present: Vec<&str> = distinct(&entries)
                        .into_iter()
                        .filter(|e| index.has(e))
                        .collect();
                    let lines: Vec<Vec<usize>> =
                        present.iter().map(|e| index.lines_of(e)).collect();
                    Ok(json!({ "present": present, "lines": lines }))
                })
                .await
            }
            _ => {
                let entry = input_str(input, "entry")?.to_owned();
                let lines = self
                    .with_list(list, false, move |_, index| Ok(index.lines_of(&entry)))
                    .await?;
                let mut state = json!({ "present": !lines.is_empty(), "line": lines.first() });
                // A list holding the entry more than once says so, so that undoing its removal
                // restores every copy, and verification notices when one is missing.
                if lines.len() > 1 {
                    state["count"] = json!(lines.len());
                    state["lines"] = json!(lines);
                }
                Ok(state)
            }
        }
    }
}

/// Where an add inserts: `lines` (every copy an undo restores), else `line`, else the end.
fn insert_lines(input: &Value) -> Result<Vec<usize>, ActionError> {
    let line = |v: &Value| {
        v.as_u64()
            .filter(|&l| l >= 1)
            .map(|l| l as usize)
            .ok_or_else(|| ActionError::permanent(format!("`{v}` is not a 1-based line number")))
    };
    match (input.get("lines"), input.get("line")) {
        (Some(Value::Array(ls)), _) => ls.iter().map(line).collect(),
        (Some(other), _) => Err(ActionError::permanent(format!(
            "`lines` must be a list of line numbers, not `{other}`"
        ))),
        (None, Some(l)) if !l.is_null() => Ok(vec![line(l)?]),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn call<'a>(action: &'a str, input: &'a Value) -> Call<'a> {
        Call {
            action,
            input,
            idempotency_key: Some("k"),
            before: None,
        }
    }

    #[tokio::test]
    async fn add_and_remove_are_idempotent_and_reversible() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blocklist::new(dir.path(), HashMap::new());
        std::fs::write(
            dir.path().join("egress.txt"),
            "# managed by hand\n198.51.100.7\n",
        )
        .unwrap();
        let input = json!({"list": "egress", "entry": "192.0.2.1"});
        let before = std::fs::read(dir.path().join("egress.txt")).unwrap();
        assert_eq!(
            b.read_state("blocklist.add", &input).await.unwrap(),
            json!({"present": false, "line": null})
        );
        let out = b.call(call("blocklist.add", &input)).await.unwrap();
        assert_eq!(out["changed"], json!(true));
        let again = b.call(call("blocklist.add", &input)).await.unwrap();
        assert_eq!(again["changed"], json!(false), "a repeated add is a no-op");
        let text = std::fs::read_to_string(dir.path().join("egress.txt")).unwrap();
        assert_eq!(text, "# managed by hand\n198.51.100.7\n192.0.2.1\n");
        b.call(call("blocklist.remove", &input)).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("egress.txt")).unwrap(),
            before
        );
    }

    #[tokio::test]
    async fn every_copy_of_a_repeated_entry_is_counted_and_comes_back_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blocklist::new(dir.path(), HashMap::new());
        let original = "a\nx\nb\nx\n";
        std::fs::write(dir.path().join("l.txt"), original).unwrap();
        let input = json!({"list": "l", "entry": "x"});
        let before = b.read_state("blocklist.remove", &input).await.unwrap();
        assert_eq!(
            before,
            json!({"present": true, "line": 2, "count": 2, "lines": [2, 4]})
        );
        b.call(call("blocklist.remove", &input)).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("l.txt")).unwrap(),
            "a\nb\n"
        );
        let undo = json!({"list": "l", "entry": "x", "line": 2, "lines": [2, 4]});
        b.call(call("blocklist.add", &undo)).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("l.txt")).unwrap(),
            original
        );
        assert_eq!(b.read_state("blocklist.add", &input).await.unwrap(), before);
    }

    #[tokio::test]
    async fn bad_names_and_entries_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blocklist::new(dir.path(), HashMap::new());
        for input in [
            json!({"list": "../x", "entry": "a"}),
            json!({"list": "l", "entry": "a b"}),
        ] {
            assert!(b.call(call("blocklist.add", &input)).await.is_err());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn mapped_lists_use_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("squid").join("blocked_domains.acl");
        let b = Blocklist::new(
            dir.path(),
            HashMap::from([("squid".to_string(), target.clone())]),
        );
        b.call(call(
            "blocklist.add",
            &json!({"list": "squid", "entry": ".evil.example"}),
        ))
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(target).unwrap(), ".evil.example\n");
    }

    #[tokio::test]
    async fn a_set_is_added_and_removed_in_one_write_and_its_undo_restores_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blocklist::new(dir.path(), HashMap::new());
        let path = dir.path().join("l.txt");
        let original = "# hand\nb\nx\nb\n";
        std::fs::write(&path, original).unwrap();
        let add = json!({"list": "l", "entries": ["a", "b", "c", "a"]});
        let before = b.read_state("blocklist.add_many", &add).await.unwrap();
        assert_eq!(before, json!({"absent": ["a", "c"]}), "the diff, once each");
        let out = b.call(call("blocklist.add_many", &add)).await.unwrap();
        assert_eq!(out["added"], 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# hand\nb\nx\nb\na\nc\n"
        );
        assert_eq!(
            b.read_state("blocklist.add_many", &add).await.unwrap(),
            json!({"absent": []})
        );
        // The catalog's inverse removes exactly the diff: `b` stays, both copies.
        let undo = json!({"list": "l", "entries": before["absent"]});
        b.call(call("blocklist.remove_many", &undo)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

        // Removing a set records where each entry stood; adding it back puts it there.
        let remove = json!({"list": "l", "entries": ["b", "x", "zz"]});
        let before = b
            .read_state("blocklist.remove_many", &remove)
            .await
            .unwrap();
        assert_eq!(
            before,
            json!({"present": ["b", "x"], "lines": [[2, 4], [3]]})
        );
        b.call(call("blocklist.remove_many", &remove))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# hand\n");
        let undo = json!({"list": "l", "entries": before["present"], "lines": before["lines"]});
        b.call(call("blocklist.add_many", &undo)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    }

    /// Adds arriving together are written together: every entry lands once, each call is
    /// answered with whether it added its entry, and a list that cannot be written fails
    /// every add queued on it, with nothing left waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_adds_each_land_once_and_are_answered() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(Blocklist::new(dir.path(), HashMap::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..400 {
            let b = b.clone();
            // Every entry twice: exactly one of the two adds it.
            let entry = format!("198.51.100.{}", i % 200);
            tasks.spawn(async move {
                let input = json!({ "list": "l", "entry": entry });
                let out = b.call(call("blocklist.add", &input)).await.unwrap();
                (entry, out["changed"] == true)
            });
        }
        let mut added: HashMap<String, usize> = HashMap::new();
        while let Some(r) = tasks.join_next().await {
            let (entry, changed) = r.unwrap();
            *added.entry(entry).or_default() += usize::from(changed);
        }
        assert_eq!(added.len(), 200);
        assert!(added.values().all(|&n| n == 1), "{added:?}");
        let text = std::fs::read_to_string(dir.path().join("l.txt")).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!((lines.len(), text.lines().count()), (200, 200));

        // A list whose file cannot be written: every add fails, and a later one is not stuck.
        let blocked = dir.path().join("blocked.txt");
        std::fs::create_dir(&blocked).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let b = b.clone();
            tasks.spawn(async move {
                let input = json!({ "list": "blocked", "entry": format!("192.0.2.{i}") });
                b.call(call("blocklist.add", &input)).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert!(r.unwrap().is_err());
        }
        std::fs::remove_dir(&blocked).unwrap();
        let input = json!({ "list": "blocked", "entry": "192.0.2.99" });
        let out = b.call(call("blocklist.add", &input)).await.unwrap();
        assert_eq!(out["changed"], true);
    }

    /// An add whose call is dropped while it waits for the list (a step's timeout) leaves
    /// the list's writer at work: later adds are written and answered, not left waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_add_does_not_stop_the_lists_writer() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blocklist::new(dir.path(), HashMap::new());
        let (_, slot) = b.slot("l").unwrap();
        // Every turn of the list taken: the first add's writer has to wait for one.
        let turns = slot.turns.acquire_many(TURNS as u32).await.unwrap();
        let first = json!({ "list": "l", "entry": "192.0.2.1" });
        let wait = Duration::from_millis(50);
        let dropped = tokio::time::timeout(wait, b.call(call("blocklist.add", &first))).await;
        assert!(
            dropped.is_err(),
            "the add waited for the list and was dropped"
        );
        drop(turns);
        let second = json!({ "list": "l", "entry": "192.0.2.2" });
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            b.call(call("blocklist.add", &second)),
        )
        .await
        .expect("the next add is answered")
        .unwrap();
        assert_eq!(out["changed"], true);
        let text = std::fs::read_to_string(dir.path().join("l.txt")).unwrap();
        assert!(text.lines().any(|l| l == "192.0.2.2"), "{text}");
    }

    #[tokio::test]
    async fn a_list_changed_by_someone_else_is_read_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blocklist::new(dir.path(), HashMap::new());
        let path = dir.path().join("l.txt");
        let input = json!({"list": "l", "entry": "a"});
        b.call(call("blocklist.add", &input)).await.unwrap();
        // Another process (or a person) replaces the file, without a final newline.
        std::fs::write(&path, "z\ny").unwrap();
        assert_eq!(
            b.read_state("blocklist.add", &input).await.unwrap()["present"],
            false
        );
        b.call(call("blocklist.add", &input)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "z\ny\na\n");
        assert_eq!(
            b.read_state("blocklist.add", &input).await.unwrap(),
            json!({"present": true, "line": 3})
        );
    }
}
