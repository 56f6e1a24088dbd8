//! The before and after of a planned change, for the person deciding: the target's state as
//! read when the change was held, and the state the change is to leave. Connectors report a
//! target's state as flags (`present`, `blocked`, `member`…); the change sets them (an `add`,
//! `block` or `isolate` action) or clears them (a `remove`, `unblock` or `release` action).

use maud::{Markup, html};
use serde_json::{Map, Value};

/// Flags a change's verb sets (or clears, for the undoing verbs).
const FLAGS: &[&str] = &[
    "present",
    "blocked",
    "member",
    "listed",
    "isolated",
    "quarantined",
    "disabled",
    "sinkholed",
    "locked",
];
const CLEARING: &[&str] = &[
    "remove",
    "unblock",
    "release",
    "unisolate",
    "enable",
    "unlock",
    "delete",
    "unsinkhole",
    "relax",
];

/// The state `before` is to become after `action`, as far as its flags show; `None` when the
/// state has no flag the action is known to set.
pub fn after(action: &str, before: &Value) -> Option<Value> {
    let verb = action.rsplit('.').next().unwrap_or(action);
    let clears = CLEARING.iter().any(|c| verb.starts_with(c));
    let mut out: Map<String, Value> = before.as_object()?.clone();
    let mut changed = false;
    for f in FLAGS {
        if let Some(Value::Bool(_)) = out.get(*f) {
            out.insert((*f).to_owned(), Value::Bool(!clears));
            changed = true;
        }
    }
    // Where the entry stood is the before-state's business only.
    for k in ["line", "lines"] {
        if changed && out.contains_key(k) {
            out.insert(k.to_owned(), Value::Null);
        }
    }
    changed.then_some(Value::Object(out))
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// A table of the target's fields before and after the change (changed rows marked).
pub fn table(action: &str, target: &str, before: &Value, with: &Value) -> Markup {
    let after = after(action, before);
    let keys: Vec<String> = before
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    html! {
        @if keys.is_empty() {
            p.muted { "The connector reports no readable state for " (target) ": " (show(Some(before))) }
            h3 { "Change" }
            pre { (action) " " (super::pretty(with)) }
        } @else {
            table.diff {
                thead { tr { th { "field of " (target) } th { "before" } th { "after" } } }
                tbody {
                    @for k in &keys {
                        @let b = before.get(k);
                        @let a = after.as_ref().and_then(|a| a.get(k)).or(b);
                        @let same = a == b;
                        tr.same[same] {
                            td { (k) }
                            td.before { (show(b)) }
                            td.after { (show(a)) }
                        }
                    }
                }
            }
            @if after.is_none() {
                p.muted { "The state after depends on the connector: " (action) " with the inputs below." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_add_sets_the_flag_and_a_remove_clears_it() {
        let before = json!({"present": false, "line": null});
        assert_eq!(after("blocklist.add", &before).unwrap()["present"], true);
        let before = json!({"present": true, "line": 3});
        let a = after("blocklist.remove", &before).unwrap();
        assert_eq!(
            (a["present"].clone(), a["line"].clone()),
            (json!(false), Value::Null)
        );
        assert_eq!(after("core.log", &json!({"x": 1})), None);
    }
}
