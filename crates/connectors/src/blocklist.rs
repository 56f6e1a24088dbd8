//! `blocklist.*`: plain-text list files, one entry per line, the kind Squid, nginx and DNS
//! tools consume. Every write replaces the file atomically (temporary file, fsync, rename),
//! so a reader or a crash never sees half a list. File work runs on the blocking pool, under the
//! list's lock, never on a runtime thread.

use crate::files::{self, read_text, write_atomically};
use crate::{ActionError, Call, Connector, input_str};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The `blocklist` connector.
pub struct Blocklist {
    dir: PathBuf,
    paths: HashMap<String, PathBuf>,
    /// One lock per list, so concurrent changes to the same file never lose an update.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Blocklist {
    /// Lists live in `dir/<name>.txt` unless `paths` maps a name to another file.
    pub fn new(dir: impl Into<PathBuf>, paths: HashMap<String, PathBuf>) -> Self {
        Blocklist {
            dir: dir.into(),
            paths,
            locks: Mutex::new(HashMap::new()),
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

    fn lock_for(&self, list: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(list.to_owned()).or_default().clone()
    }

    /// Adds `entry` to the list (at the given 1-based lines, else last) or removes every copy
    /// of it; false when it already was so.
    async fn apply(&self, list: &str, entry: &str, edit: Edit) -> Result<bool, ActionError> {
        validate_entry(entry)?;
        let path = self.path_of(list)?;
        let lock = self.lock_for(list);
        let entry = entry.to_owned();
        files::blocking(move || {
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            edit_list(&path, &entry, &edit)
        })
        .await
    }

    /// The 1-based lines holding `entry`, in order.
    async fn lines_of(&self, list: &str, entry: &str) -> Result<Vec<usize>, ActionError> {
        let path = self.path_of(list)?;
        let entry = entry.to_owned();
        files::blocking(move || Ok(lines_holding(&read_text(&path)?, &entry))).await
    }
}

/// What a change does to a list.
enum Edit {
    /// Insert the entry at each of these 1-based lines (ascending; an undo restoring every
    /// removed copy where it stood), or once at the end when empty.
    Add(Vec<usize>),
    /// Remove every copy of the entry.
    Remove,
}

fn lines_holding(text: &str, entry: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == entry)
        .map(|(i, _)| i + 1)
        .collect()
}

/// Rewrites the list at `path` with `entry` added or removed (blocking; the caller holds the
/// list's lock). False when the list already was so.
fn edit_list(path: &Path, entry: &str, edit: &Edit) -> Result<bool, ActionError> {
    let text = read_text(path)?;
    let present = text.lines().any(|l| l.trim() == entry);
    let mut lines: Vec<&str> = text.lines().collect();
    match edit {
        Edit::Add(_) if present => return Ok(false),
        Edit::Remove if !present => return Ok(false),
        Edit::Add(at) if at.is_empty() => lines.push(entry),
        Edit::Add(at) => {
            let mut at = at.clone();
            at.sort_unstable();
            at.dedup();
            for l in at {
                let i = l.saturating_sub(1).min(lines.len());
                lines.insert(i, entry);
            }
        }
        Edit::Remove => lines.retain(|l| l.trim() != entry),
    }
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    files::create_parent_dir(path)?;
    write_atomically(path, out.as_bytes())?;
    Ok(true)
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

#[async_trait]
impl Connector for Blocklist {
    fn family(&self) -> &str {
        "blocklist"
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let list = input_str(call.input, "list")?;
        let entry = input_str(call.input, "entry")?;
        match call.action {
            "blocklist.add" | "blocklist.remove" => {
                let edit = if call.action == "blocklist.add" {
                    Edit::Add(insert_lines(call.input)?)
                } else {
                    Edit::Remove
                };
                let changed = self.apply(list, entry, edit).await?;
                Ok(json!({ "list": list, "entry": entry, "changed": changed }))
            }
            "blocklist.contains" => {
                Ok(json!({ "present": !self.lines_of(list, entry).await?.is_empty() }))
            }
            other => Err(ActionError::no_action("`blocklist`", other)),
        }
    }

    async fn read_state(&self, _action: &str, input: &Value) -> Result<Value, ActionError> {
        let list = input_str(input, "list")?;
        let entry = input_str(input, "entry")?;
        let lines = self.lines_of(list, entry).await?;
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

    fn call<'a>(action: &'a str, input: &'a Value) -> Call<'a> {
        Call {
            action,
            input,
            idempotency_key: Some("k"),
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
}
