//! `proxy.block_many` and `proxy.unblock_many`: a set of domains, addresses and networks into
//! or out of one block list in one change: each of the list's two ACL files is replaced at most
//! once, checked by `squid -k parse` and taken by one `squid -k reconfigure`. The state of a
//! batch is the part of it the list lacks (`block_many`) or holds (`unblock_many`), by exact
//! line, so the change's before-state is its exact item diff and its inverse puts back exactly
//! that; lines the batch does not name are left as they are, in place.

use super::{Edit, Squid, Target};
use crate::native::batch;
use crate::{ActionError, files};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;

/// A batch's entries without repeats (by ACL line), in order: each as given, and its target.
struct Batch {
    list: String,
    items: Vec<(String, Target)>,
}

impl Batch {
    fn parse(squid: &Squid, input: &Value) -> Result<Batch, ActionError> {
        let list = squid.list(input)?;
        let items = batch::items(input, "addresses", "address", |_, text| {
            let t = Target::parse(text)?;
            Ok((t.line(), (text.to_owned(), t)))
        })?;
        Ok(Batch { list, items })
    }
}

/// The lines of one ACL file.
fn lines_of(path: &std::path::Path) -> Result<HashSet<String>, ActionError> {
    Ok(files::read_text(path)?
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Whether the list holds each entry of the batch (its exact line), in order, given the
/// list's files of domains and of addresses.
fn held(items: &[(String, Target)], domains: &HashSet<String>, ips: &HashSet<String>) -> Vec<bool> {
    items
        .iter()
        .map(|(_, t)| {
            let lines = if t.ext() == "domains" { domains } else { ips };
            lines.contains(&t.line())
        })
        .collect()
}

/// The edits that add (`add`) or remove the entries of `items` that the list lacks or holds,
/// each ACL file at most once, and how many entries they change (blocking).
fn batch_edits(
    items: &[(String, Target)],
    files: [(&'static str, PathBuf); 2],
    add: bool,
) -> Result<(Vec<Edit>, usize), ActionError> {
    let [(_, dom_path), (_, ip_path)] = &files;
    let have = held(items, &lines_of(dom_path)?, &lines_of(ip_path)?);
    let mut edits = Vec::new();
    let mut count = 0;
    for (ext, path) in files {
        let lines: HashSet<String> = items
            .iter()
            .zip(&have)
            .filter(|((_, t), h)| t.ext() == ext && **h != add)
            .map(|((_, t), _)| t.line())
            .collect();
        if lines.is_empty() {
            continue;
        }
        count += lines.len();
        let old = files::read_text(&path)?;
        let text = if add {
            let mut text = old;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            // In the batch's order.
            for (_, t) in items.iter().filter(|(_, t)| t.ext() == ext) {
                let line = t.line();
                if lines.contains(&line) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        } else {
            old.lines()
                .filter(|l| !lines.contains(l.trim()))
                .flat_map(|l| [l, "\n"])
                .collect()
        };
        edits.push(Edit {
            path,
            text,
            checked: true,
        });
    }
    Ok((edits, count))
}

impl Squid {
    /// The list's two ACL files: domains, then addresses.
    fn list_files(&self, list: &str) -> [(&'static str, PathBuf); 2] {
        ["domains", "ips"].map(|ext| (ext, self.path(&format!("block-{list}.{ext}"))))
    }

    /// `proxy.block_many`: the entries the list lacks; `proxy.unblock_many`: those it holds.
    pub(super) async fn many_read_state(
        &self,
        action: &str,
        input: &Value,
    ) -> Result<Value, ActionError> {
        let b = Batch::parse(self, input)?;
        let _files = self.files_lock(false).await?;
        let [(_, dom), (_, ips)] = self.list_files(&b.list);
        let add = action == "proxy.block_many";
        let list = b.list;
        files::blocking(move || {
            let have = held(&b.items, &lines_of(&dom)?, &lines_of(&ips)?);
            let (key, items) = batch::diff(b.items.iter().map(|(text, _)| text), &have, add);
            Ok(json!({ "list": list, key: items }))
        })
        .await
    }

    /// Adds (`add`) or removes every entry of the batch in one checked replace of each ACL
    /// file it touches and one reconfigure.
    pub(super) async fn change_many(&self, input: &Value, add: bool) -> Result<Value, ActionError> {
        let b = Batch::parse(self, input)?;
        let _guard = self.lock.lock().await;
        let _files = self.files_lock(true).await?;
        let list = b.list.clone();
        let paths = self.list_files(&b.list);
        let (edits, count) = files::blocking(move || batch_edits(&b.items, paths, add)).await?;
        let changed = self.apply(edits).await?;
        let n = if add { "added" } else { "removed" };
        Ok(json!({ "list": list, n: count, "changed": changed }))
    }
}
