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

    /// Adds `entry` to the list (at 1-based `line`, else last) or removes it; false when it
    /// already was so.
    async fn apply(
        &self,
        list: &str,
        entry: &str,
        add: bool,
        line: Option<usize>,
    ) -> Result<bool, ActionError> {
        validate_entry(entry)?;
        let path = self.path_of(list)?;
        let lock = self.lock_for(list);
        let entry = entry.to_owned();
        files::blocking(move || {
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            edit_list(&path, &entry, add, line)
        })
        .await
    }

    /// The 1-based line holding `entry`, if present.
    async fn line_of(&self, list: &str, entry: &str) -> Result<Option<usize>, ActionError> {
        let path = self.path_of(list)?;
        let entry = entry.to_owned();
        files::blocking(move || {
            Ok(read_text(&path)?
                .lines()
                .position(|l| l.trim() == entry)
                .map(|i| i + 1))
        })
        .await
    }
}

/// Rewrites the list at `path` with `entry` added or removed (blocking; the caller holds the
/// list's lock). False when the list already was so.
fn edit_list(
    path: &Path,
    entry: &str,
    add: bool,
    line: Option<usize>,
) -> Result<bool, ActionError> {
    let text = read_text(path)?;
    let present = text.lines().any(|l| l.trim() == entry);
    if present == add {
        return Ok(false);
    }
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    if add {
        let lines: Vec<&str> = text.lines().collect();
        // At the given 1-based line (an undo restoring a removed entry in place), else last.
        let at = line.map_or(lines.len(), |l| l.saturating_sub(1).min(lines.len()));
        for l in &lines[..at] {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(entry);
        out.push('\n');
        for l in &lines[at..] {
            out.push_str(l);
            out.push('\n');
        }
    } else {
        for line in text.lines().filter(|l| l.trim() != entry) {
            out.push_str(line);
            out.push('\n');
        }
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
                let add = call.action == "blocklist.add";
                let line = call
                    .input
                    .get("line")
                    .and_then(Value::as_u64)
                    .map(|l| l as usize);
                let changed = self.apply(list, entry, add, line).await?;
                Ok(json!({ "list": list, "entry": entry, "changed": changed }))
            }
            "blocklist.contains" => {
                Ok(json!({ "present": self.line_of(list, entry).await?.is_some() }))
            }
            other => Err(ActionError::no_action("`blocklist`", other)),
        }
    }

    async fn read_state(&self, _action: &str, input: &Value) -> Result<Value, ActionError> {
        let list = input_str(input, "list")?;
        let entry = input_str(input, "entry")?;
        let line = self.line_of(list, entry).await?;
        Ok(json!({ "present": line.is_some(), "line": line }))
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
