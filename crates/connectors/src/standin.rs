//! Stand-ins for system components that are not usable on this machine (no root, not
//! installed): they keep the state a firewall, DNS sinkhole, NAC, IPS or directory would keep,
//! in one JSON file per family, with the same actions, outputs, idempotency and inverses as the
//! native connectors, and say `simulated: true` in every output. `belay demo` uses them only for
//! what it cannot run for real, and says so. File work runs on the blocking pool (changes under
//! the family's lock and the state file's advisory lock, which every belay process honours;
//! states are read under it too), never on a runtime thread.

use crate::files::{self, read_text, write_atomically};
use crate::{ActionError, Call, Connector, input_str};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// What one action does to the family's state: which collection, keyed by which inputs.
struct Rule {
    action: &'static str,
    collection: &'static str,
    key: &'static [&'static str],
    op: Op,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add,
    Remove,
    Read,
}

const RULES: &[Rule] = &[
    Rule {
        action: "firewall.block_ip",
        collection: "blocked",
        key: &["set", "address"],
        op: Op::Add,
    },
    Rule {
        action: "firewall.unblock_ip",
        collection: "blocked",
        key: &["set", "address"],
        op: Op::Remove,
    },
    Rule {
        action: "firewall.status",
        collection: "blocked",
        key: &["set", "address"],
        op: Op::Read,
    },
    Rule {
        action: "dns.sinkhole_domain",
        collection: "sinkholed",
        key: &["domain"],
        op: Op::Add,
    },
    Rule {
        action: "dns.unsinkhole_domain",
        collection: "sinkholed",
        key: &["domain"],
        op: Op::Remove,
    },
    Rule {
        action: "dns.status",
        collection: "sinkholed",
        key: &["domain"],
        op: Op::Read,
    },
    Rule {
        action: "nac.quarantine",
        collection: "quarantined",
        key: &["device"],
        op: Op::Add,
    },
    Rule {
        action: "nac.release",
        collection: "quarantined",
        key: &["device"],
        op: Op::Remove,
    },
    Rule {
        action: "nac.status",
        collection: "quarantined",
        key: &["device"],
        op: Op::Read,
    },
    Rule {
        action: "ips.dataset_add",
        collection: "datasets",
        key: &["dataset", "value"],
        op: Op::Add,
    },
    Rule {
        action: "ips.dataset_remove",
        collection: "datasets",
        key: &["dataset", "value"],
        op: Op::Remove,
    },
    Rule {
        action: "ips.dataset_contains",
        collection: "datasets",
        key: &["dataset", "value"],
        op: Op::Read,
    },
    Rule {
        action: "ips.deploy_rule",
        collection: "rules",
        key: &["ruleset", "sid"],
        op: Op::Add,
    },
    Rule {
        action: "ips.remove_rule",
        collection: "rules",
        key: &["ruleset", "sid"],
        op: Op::Remove,
    },
    Rule {
        action: "ips.status",
        collection: "rules",
        key: &["ruleset", "sid"],
        op: Op::Read,
    },
    Rule {
        action: "directory.add_member",
        collection: "members",
        key: &["group", "user"],
        op: Op::Add,
    },
    Rule {
        action: "directory.remove_member",
        collection: "absent",
        key: &["group", "user"],
        op: Op::Add,
    },
    Rule {
        action: "directory.members",
        collection: "members",
        key: &["group", "user"],
        op: Op::Read,
    },
];

/// Defaults the catalog gives optional key inputs.
fn key_part(input: &Value, name: &str) -> Result<String, ActionError> {
    match (&input[name], name) {
        (Value::String(s), "domain") => Ok(s.trim_end_matches('.').to_ascii_lowercase()),
        (Value::String(s), "device") => Ok(s.to_ascii_lowercase()),
        (Value::String(s), _) => Ok(s.clone()),
        (Value::Number(n), _) => Ok(n.to_string()),
        (Value::Null, "set") => Ok("egress".into()),
        (Value::Null, "ruleset") => Ok("belay".into()),
        (Value::Null, "sid") => Ok(String::new()),
        (Value::Null, "user") => Ok(String::new()),
        _ => input_str(input, name).map(str::to_owned),
    }
}

/// A stand-in for one action family.
pub struct Standin {
    family: String,
    path: PathBuf,
    lock: Mutex<()>,
}

impl Standin {
    /// Keeps the family's state in `dir/<family>.json`.
    pub fn new(family: &str, dir: impl Into<PathBuf>) -> Standin {
        let dir = dir.into();
        Standin {
            path: dir.join(format!("{family}.json")),
            family: family.into(),
            lock: Mutex::new(()),
        }
    }

    /// The families a stand-in can serve.
    pub fn families() -> impl Iterator<Item = &'static str> {
        ["firewall", "dns", "nac", "ips", "directory"].into_iter()
    }

    /// The family's state in `path` (blocking).
    fn load(path: &Path) -> Result<Map<String, Value>, ActionError> {
        let text = read_text(path)?;
        if text.trim().is_empty() {
            return Ok(Map::new());
        }
        serde_json::from_str(&text)
            .map_err(|e| ActionError::permanent(format!("{}: {e}", path.display())))
    }

    fn rule(action: &str) -> Result<&'static Rule, ActionError> {
        RULES
            .iter()
            .find(|r| r.action == action)
            .ok_or_else(|| ActionError::permanent(format!("the stand-in has no action `{action}`")))
    }

    fn key(rule: &Rule, input: &Value) -> Result<String, ActionError> {
        Ok(rule
            .key
            .iter()
            .map(|k| key_part(input, k))
            .collect::<Result<Vec<_>, _>>()?
            .join("|"))
    }

    /// Applies one action to the state in `path` (blocking; the caller holds the lock).
    fn change(
        path: &Path,
        rule: &Rule,
        action: &str,
        key: String,
        input: &Value,
    ) -> Result<Value, ActionError> {
        let mut state = Self::load(path)?;
        let mut out = input.clone();
        out["simulated"] = json!(true);
        // Group membership: removal records the user as absent; adding clears that.
        let (collection, op) = match (action, rule.op) {
            ("directory.add_member", _) => ("absent", Op::Remove),
            (_, op) => (rule.collection, op),
        };
        let entries = state
            .entry(collection)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| ActionError::permanent("corrupt stand-in state"))?;
        let present = entries.contains_key(&key);
        match op {
            Op::Read => {
                out["present"] = json!(present);
                out["blocked"] = json!(present);
                out["quarantined"] = json!(present);
                out["sinkholed"] = json!(present);
                out["member"] = json!(collection != "absent" && !present);
                return Ok(out);
            }
            Op::Add if !present => {
                entries.insert(key, input.clone());
            }
            Op::Remove if present => {
                entries.remove(&key);
            }
            _ => {
                out["changed"] = json!(false);
                return Ok(out);
            }
        }
        let bytes =
            serde_json::to_vec_pretty(&state).map_err(|e| ActionError::permanent(e.to_string()))?;
        files::create_parent_dir(path)?;
        write_atomically(path, &bytes)?;
        out["changed"] = json!(true);
        Ok(out)
    }
}

/// A set-level action: the single-value action whose state it changes for each item of its
/// list input, and whether it adds (`block_many`) or removes (`unblock_many`).
struct Many {
    action: &'static str,
    single: &'static str,
    list: &'static str,
    item: &'static str,
    add: bool,
}

const MANY: &[Many] = &[
    Many {
        action: "firewall.block_many",
        single: "firewall.block_ip",
        list: "addresses",
        item: "address",
        add: true,
    },
    Many {
        action: "firewall.unblock_many",
        single: "firewall.unblock_ip",
        list: "addresses",
        item: "address",
        add: false,
    },
    Many {
        action: "dns.sinkhole_many",
        single: "dns.sinkhole_domain",
        list: "domains",
        item: "domain",
        add: true,
    },
    Many {
        action: "dns.unsinkhole_many",
        single: "dns.unsinkhole_domain",
        list: "domains",
        item: "domain",
        add: false,
    },
    Many {
        action: "ips.dataset_add_many",
        single: "ips.dataset_add",
        list: "values",
        item: "value",
        add: true,
    },
    Many {
        action: "ips.dataset_remove_many",
        single: "ips.dataset_remove",
        list: "values",
        item: "value",
        add: false,
    },
];

/// The set-level action `action`, if it is one.
fn many(action: &str) -> Option<&'static Many> {
    MANY.iter().find(|m| m.action == action)
}

/// One distinct item of a set-level action: its state key (as the single-value action keys
/// it), the item as given, and the single-value action's input for it.
struct Item {
    key: String,
    text: String,
    input: Value,
}

/// The distinct items of a set-level action, in order.
fn many_items(m: &Many, input: &Value) -> Result<(&'static Rule, Vec<Item>), ActionError> {
    let rule = Standin::rule(m.single)?;
    let Some(Value::Array(items)) = input.get(m.list) else {
        return Err(ActionError::permanent(format!(
            "`{}` must be a list of values",
            m.list
        )));
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        let text = v
            .as_str()
            .ok_or_else(|| ActionError::permanent(format!("`{v}` is not text")))?;
        // The single action's input: the item and the other key inputs, not the whole list.
        let mut one = Map::new();
        for k in rule.key.iter().filter(|k| **k != m.item) {
            if let Some(x) = input.get(*k) {
                one.insert((*k).to_owned(), x.clone());
            }
        }
        one.insert(m.item.to_owned(), json!(text));
        let one = Value::Object(one);
        let key = Standin::key(rule, &one)?;
        if seen.insert(key.clone()) {
            out.push(Item {
                key,
                text: text.to_owned(),
                input: one,
            });
        }
    }
    Ok((rule, out))
}

impl Standin {
    /// Adds or removes every item of a set-level action in one write (blocking; the caller
    /// holds the locks).
    fn change_many(
        path: &Path,
        add: bool,
        collection: &str,
        items: Vec<Item>,
    ) -> Result<Value, ActionError> {
        let mut state = Self::load(path)?;
        let entries = state
            .entry(collection)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| ActionError::permanent("corrupt stand-in state"))?;
        let mut n = 0usize;
        for item in items {
            let present = entries.contains_key(&item.key);
            if add && !present {
                entries.insert(item.key, item.input);
                n += 1;
            } else if !add && present {
                entries.remove(&item.key);
                n += 1;
            }
        }
        if n > 0 {
            let bytes = serde_json::to_vec_pretty(&state)
                .map_err(|e| ActionError::permanent(e.to_string()))?;
            files::create_parent_dir(path)?;
            write_atomically(path, &bytes)?;
        }
        let count = if add { "added" } else { "removed" };
        Ok(json!({ count: n, "changed": n > 0, "simulated": true }))
    }
}

#[async_trait]
impl Connector for Standin {
    fn family(&self) -> &str {
        &self.family
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let _guard = self.lock.lock().await;
        let path = self.path.clone();
        let action = call.action.to_owned();
        let input = call.input.clone();
        if let Some(m) = many(&action) {
            let (rule, items) = many_items(m, &input)?;
            return files::blocking(move || {
                let _lock = files::lock(&path, true)?;
                Self::change_many(&path, m.add, rule.collection, items)
            })
            .await;
        }
        let rule = Self::rule(call.action)?;
        let key = Self::key(rule, call.input)?;
        files::blocking(move || {
            let _lock = files::lock(&path, true)?;
            Self::change(&path, rule, &action, key, &input)
        })
        .await
    }

    async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        let path = self.path.clone();
        if let Some(m) = many(action) {
            let (rule, items) = many_items(m, input)?;
            let state = files::blocking(move || {
                let _lock = files::lock(&path, false)?;
                Self::load(&path)
            })
            .await?;
            let held = state.get(rule.collection);
            let (name, items): (&str, Vec<&str>) = (
                if m.add { "absent" } else { "present" },
                items
                    .iter()
                    .filter(|i| held.and_then(|c| c.get(&i.key)).is_some() != m.add)
                    .map(|i| i.text.as_str())
                    .collect(),
            );
            return Ok(json!({ name: items, "simulated": true }));
        }
        let rule = Self::rule(action)?;
        let key = Self::key(rule, input)?;
        let state = files::blocking(move || {
            let _lock = files::lock(&path, false)?;
            Self::load(&path)
        })
        .await?;
        let collection = if action.starts_with("directory.") {
            "absent"
        } else {
            rule.collection
        };
        let present = state.get(collection).and_then(|c| c.get(&key)).is_some();
        Ok(json!({ "present": present, "simulated": true }))
    }
}
