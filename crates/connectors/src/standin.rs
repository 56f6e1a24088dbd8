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

/// Whether `action` is a set-level firewall action: `Some(true)` adds, `Some(false)` removes.
fn many(action: &str) -> Option<bool> {
    match action {
        "firewall.block_many" => Some(true),
        "firewall.unblock_many" => Some(false),
        _ => None,
    }
}

/// The state key and address of each distinct address of a set-level firewall action.
fn many_keys(input: &Value) -> Result<Vec<(String, String)>, ActionError> {
    let set = key_part(input, "set")?;
    let Some(Value::Array(items)) = input.get("addresses") else {
        return Err(ActionError::permanent(
            "`addresses` must be a list of addresses",
        ));
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        let a = v
            .as_str()
            .ok_or_else(|| ActionError::permanent(format!("address `{v}` is not text")))?;
        if seen.insert(a) {
            out.push((format!("{set}|{a}"), a.to_owned()));
        }
    }
    Ok(out)
}

impl Standin {
    /// Adds or removes every address of a set-level firewall action in one write (blocking;
    /// the caller holds the locks).
    fn change_many(
        path: &Path,
        add: bool,
        keys: &[(String, String)],
    ) -> Result<Value, ActionError> {
        let mut state = Self::load(path)?;
        let blocked = state
            .entry("blocked")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| ActionError::permanent("corrupt stand-in state"))?;
        let mut n = 0usize;
        for (key, address) in keys {
            let present = blocked.contains_key(key);
            if add && !present {
                blocked.insert(key.clone(), json!({ "address": address }));
                n += 1;
            } else if !add && present {
                blocked.remove(key);
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
        if let Some(add) = many(&action) {
            let keys = many_keys(&input)?;
            return files::blocking(move || {
                let _lock = files::lock(&path, true)?;
                Self::change_many(&path, add, &keys)
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
        if let Some(add) = many(action) {
            let keys = many_keys(input)?;
            let state = files::blocking(move || {
                let _lock = files::lock(&path, false)?;
                Self::load(&path)
            })
            .await?;
            let blocked = state.get("blocked");
            let (name, items): (&str, Vec<&str>) = if add {
                (
                    "absent",
                    keys.iter()
                        .filter(|(k, _)| blocked.and_then(|c| c.get(k)).is_none())
                        .map(|(_, a)| a.as_str())
                        .collect(),
                )
            } else {
                (
                    "present",
                    keys.iter()
                        .filter(|(k, _)| blocked.and_then(|c| c.get(k)).is_some())
                        .map(|(_, a)| a.as_str())
                        .collect(),
                )
            };
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
