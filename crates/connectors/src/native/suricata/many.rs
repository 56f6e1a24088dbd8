//! Datasets belay keeps in a file (`datasets` in the connector's settings), and the set-level
//! changes `ips.dataset_add_many` / `ips.dataset_remove_many` on them.
//!
//! Suricata 7 adds or removes one value per socket command, and never reloads a dataset
//! declared in suricata.yaml; but a dataset a rule declares with `load FILE` (and no `state`)
//! is loaded afresh from its file on every rule reload. So a batch is one file replace and one
//! `reload-rules`: Suricata builds a new detection engine with the dataset loaded from the new
//! file and swaps it in, and packets see the dataset before the batch or after it, never part
//! of it. If the reload fails, or the dataset does not then show the batch (no rule loads it
//! from that file), the previous file is put back and reloaded, and nothing is applied.
//!
//! The file holds what belay put in the dataset. A value the dataset holds that the file does
//! not was added over the socket by someone else: belay refuses to remove it (and a rule
//! reload, by belay or anyone, drops it, as it drops anything not in the file). The single
//! value actions on such a dataset change the live dataset over the socket and the file with
//! it, so a later reload keeps them.
//!
//! The state of a batch is the part of it the dataset lacks (`add_many`) or holds
//! (`remove_many`), looked up value by value over one socket connection: a change's
//! before-state is its exact item diff, and its inverse puts back exactly that. An add given
//! that state (read by the engine just before, under its lock) adds what it names absent
//! without looking the values up again.

use super::socket::Session;
use super::{Suricata, check_name, dataset_value};
use crate::native::batch;
use crate::{ActionError, files, input_str};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A batch: its dataset, the dataset's file, and its values without repeats, in order, each
/// as given and in the form Suricata reads (base64 for strings, lower-case hex for hashes).
struct Batch {
    dataset: String,
    kind: String,
    file: PathBuf,
    values: Vec<(String, String)>,
}

impl Batch {
    fn parse(ips: &Suricata, input: &Value) -> Result<Batch, ActionError> {
        let dataset = input_str(input, "dataset")?;
        let file = ips.dataset_file(dataset)?.ok_or_else(|| {
            ActionError::permanent(format!(
                "dataset `{dataset}` is not kept in a file (the connector's `datasets` setting): \
                 a set-level change replaces the dataset's file and reloads the rules"
            ))
        })?;
        let kind = input.get("type").and_then(Value::as_str).unwrap_or("ip");
        let values = batch::items(input, "values", "value", |_, text| {
            let encoded = dataset_value(kind, text)?;
            Ok((encoded.clone(), (text.to_owned(), encoded)))
        })?;
        Ok(Batch {
            dataset: dataset.to_owned(),
            kind: kind.to_owned(),
            file,
            values,
        })
    }
}

/// Whether the dataset holds `value` (in Suricata's form), over `session`.
fn lookup(
    session: &mut Session,
    dataset: &str,
    kind: &str,
    value: &str,
) -> Result<bool, ActionError> {
    let args = json!({ "setname": dataset, "settype": kind, "datavalue": value });
    let (ok, msg) = session.command("dataset-lookup", args)?;
    if ok {
        return Ok(true);
    }
    match msg.as_str() {
        Some(m) if m.contains("not found in set") => Ok(false),
        _ => Err(ActionError::permanent(format!(
            "dataset `{dataset}` of type {kind}: {msg} (is it declared with this type?)"
        ))),
    }
}

/// The values of a dataset's file (one a line, in Suricata's form), as they stand.
fn file_values(path: &Path) -> Result<Vec<String>, ActionError> {
    Ok(files::read_text(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Most values of a batch looked up after its reload.
const SAMPLE: usize = 32;

/// Up to [`SAMPLE`] values spread over `values`, the first and the last among them.
fn sample(values: &[&str]) -> Vec<String> {
    let n = values.len();
    if n <= SAMPLE {
        return values.iter().map(|v| (*v).to_owned()).collect();
    }
    (0..SAMPLE)
        .map(|i| values[i * (n - 1) / (SAMPLE - 1)].to_owned())
        .collect()
}

fn file_text(values: &[String]) -> String {
    let mut text = String::with_capacity(values.iter().map(|v| v.len() + 1).sum());
    for v in values {
        text.push_str(v);
        text.push('\n');
    }
    text
}

impl Suricata {
    /// The file a dataset is kept in, when the settings name one; the name is checked.
    pub(super) fn dataset_file(&self, dataset: &str) -> Result<Option<PathBuf>, ActionError> {
        check_name("dataset", dataset)?;
        Ok(self.config.datasets.get(dataset).cloned())
    }

    fn reply_timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }

    /// Whether the dataset holds each value of the batch, in order.
    async fn presence(&self, b: &Batch) -> Result<Vec<bool>, ActionError> {
        let (socket, timeout) = (self.config.socket.clone(), self.reply_timeout());
        let (dataset, kind) = (b.dataset.clone(), b.kind.clone());
        let values: Vec<String> = b.values.iter().map(|(_, e)| e.clone()).collect();
        files::blocking(move || {
            let mut s = Session::connect(&socket, timeout)?;
            values
                .iter()
                .map(|v| lookup(&mut s, &dataset, &kind, v))
                .collect()
        })
        .await
    }

    /// `ips.dataset_add_many`: the values the dataset lacks; `ips.dataset_remove_many`: those
    /// it holds (none, once applied).
    pub(super) async fn many_read_state(
        &self,
        action: &str,
        input: &Value,
    ) -> Result<Value, ActionError> {
        let b = Batch::parse(self, input)?;
        let present = self.presence(&b).await?;
        let add = action == "ips.dataset_add_many";
        let (key, items) = batch::diff(b.values.iter().map(|(text, _)| text), &present, add);
        Ok(json!({ key: items }))
    }

    /// Adds every value of the batch the dataset lacks, in one file replace and rule reload.
    /// Given the state the engine read just before under its lock (`before`), the values it
    /// names absent, without looking each one up again.
    pub(super) async fn dataset_add_many(
        &self,
        input: &Value,
        before: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let b = Batch::parse(self, input)?;
        let _guard = self.lock.lock().await;
        let _file = files::lock_async(&b.file, true).await?;
        let encoded: HashMap<&str, &str> = b
            .values
            .iter()
            .map(|(text, e)| (text.as_str(), e.as_str()))
            .collect();
        let absent: Vec<&str> =
            match batch::absent_before(before, |text| encoded.get(text).copied()) {
                Some(absent) => absent,
                None => {
                    let present = self.presence(&b).await?;
                    b.values
                        .iter()
                        .zip(&present)
                        .filter(|(_, p)| !**p)
                        .map(|((_, e), _)| e.as_str())
                        .collect()
                }
            };
        if absent.is_empty() {
            return Ok(json!({ "dataset": b.dataset, "added": 0, "changed": false }));
        }
        let old = file_values(&b.file)?;
        let mut new = old.clone();
        let had: HashSet<&str> = old.iter().map(String::as_str).collect();
        new.extend(
            absent
                .iter()
                .filter(|v| !had.contains(*v))
                .map(|v| (*v).to_owned()),
        );
        let added = absent.len();
        let check = sample(&absent);
        self.replace_and_reload(&b, &old, &new, check, true).await?;
        Ok(json!({ "dataset": b.dataset, "added": added, "changed": true }))
    }

    /// Removes every value of the batch the dataset holds, in one file replace and rule
    /// reload; refused whole when one of them is not in belay's file.
    pub(super) async fn dataset_remove_many(&self, input: &Value) -> Result<Value, ActionError> {
        let b = Batch::parse(self, input)?;
        let _guard = self.lock.lock().await;
        let _file = files::lock_async(&b.file, true).await?;
        let present = self.presence(&b).await?;
        let old = file_values(&b.file)?;
        let ours: HashSet<&str> = old.iter().map(String::as_str).collect();
        let held: Vec<&(String, String)> = b
            .values
            .iter()
            .zip(&present)
            .filter(|(_, p)| **p)
            .map(|(v, _)| v)
            .collect();
        if let Some((theirs, _)) = held.iter().find(|(_, e)| !ours.contains(e.as_str())) {
            return Err(ActionError::permanent(format!(
                "`{theirs}` is in dataset `{}` but not in belay's file {}: belay removes only \
                 what it added; nothing of the batch was removed",
                b.dataset,
                b.file.display()
            )));
        }
        if held.is_empty() {
            return Ok(json!({ "dataset": b.dataset, "removed": 0, "changed": false }));
        }
        let gone: HashSet<&str> = b.values.iter().map(|(_, e)| e.as_str()).collect();
        let new: Vec<String> = old
            .iter()
            .filter(|v| !gone.contains(v.as_str()))
            .cloned()
            .collect();
        let removed = held.len();
        let gone_values: Vec<&str> = held.iter().map(|(_, e)| e.as_str()).collect();
        let check = sample(&gone_values);
        self.replace_and_reload(&b, &old, &new, check, false)
            .await?;
        Ok(json!({ "dataset": b.dataset, "removed": removed, "changed": true }))
    }

    /// Replaces the dataset's file by `new` and reloads the rules; then the dataset must hold
    /// (`want` true) or lack every value of `check` (a sample of the batch: Suricata loads a
    /// dataset from its file whole or not at all). Otherwise `old` is put back and
    /// reloaded, and the change fails having applied nothing.
    async fn replace_and_reload(
        &self,
        b: &Batch,
        old: &[String],
        new: &[String],
        check: Vec<String>,
        want: bool,
    ) -> Result<(), ActionError> {
        let before = self.reload_time().await?;
        super::write_off_runtime(&b.file, &file_text(new)).await?;
        let problem = match self.sc_ok("reload-rules").await {
            Err(e) => Some(e.message),
            Ok(_) if self.reload_time().await? == before => {
                Some("suricata did not reload its rules (its log says why)".to_owned())
            }
            Ok(_) => {
                let (socket, timeout) = (self.config.socket.clone(), self.reply_timeout());
                let (dataset, kind) = (b.dataset.clone(), b.kind.clone());
                let wrong = files::blocking(move || {
                    let mut s = Session::connect(&socket, timeout)?;
                    for v in check {
                        if lookup(&mut s, &dataset, &kind, &v)? != want {
                            return Ok(Some(v));
                        }
                    }
                    Ok(None)
                })
                .await?;
                wrong.map(|v| {
                    format!(
                        "after the reload dataset `{}` {} `{v}`: no rule loads it from {} (a rule \
                         must declare it with `dataset:…,{},load {}` and no `state`)",
                        b.dataset,
                        if want { "lacks" } else { "still holds" },
                        b.file.display(),
                        b.kind,
                        b.file.display()
                    )
                })
            }
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        super::write_off_runtime(&b.file, &file_text(old)).await?;
        let restored = match self.sc_ok("reload-rules").await {
            Ok(_) => "previous file restored and reloaded".to_owned(),
            Err(e) => format!(
                "previous file restored, but its reload failed: {}",
                e.message
            ),
        };
        Err(ActionError::permanent(format!(
            "{problem}; nothing of the batch was applied ({restored})"
        )))
    }

    /// After a single value was added to (`add`) or removed from a file-backed dataset over
    /// the socket: the file follows, so a later rule reload keeps the change. The caller holds
    /// the file's lock.
    pub(super) async fn follow_in_file(
        &self,
        file: &Path,
        value: &str,
        add: bool,
    ) -> Result<(), ActionError> {
        let (file, value) = (file.to_owned(), value.to_owned());
        files::blocking(move || {
            let old = file_values(&file)?;
            let has = old.contains(&value);
            let new: Vec<String> = match (add, has) {
                (true, false) => old.into_iter().chain([value]).collect(),
                (false, true) => old.into_iter().filter(|v| *v != value).collect(),
                _ => return Ok(()),
            };
            files::create_parent_dir(&file)?;
            files::write_atomically(&file, file_text(&new).as_bytes())
        })
        .await
    }

    /// Whether belay's file of a file-backed dataset holds `value` (in Suricata's form). The
    /// caller holds the file's lock.
    pub(super) async fn in_file(&self, file: &Path, value: &str) -> Result<bool, ActionError> {
        let (file, value) = (file.to_owned(), value.to_owned());
        files::blocking(move || Ok(file_values(&file)?.contains(&value))).await
    }
}
