//! The action catalog: every action a playbook may call, with typed inputs and outputs.
//!
//! Declared as data (`catalog/*.yaml`, compiled in) so playbooks lint against it before any
//! connector exists. A change action names its target field and type, how its state is read,
//! and its inverse (or why it has none). This module never calls anything.

use crate::yaml;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// Whether an action only reads or changes the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Reads only; called without trust levels or guardrails.
    Read,
    /// Changes something: journaled, gated by trust level and guardrails, undoable if it
    /// declares an inverse.
    Change,
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActionKind::Read => "read",
            ActionKind::Change => "change",
        })
    }
}

/// What kind of thing a change acts on; guardrails match targets by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    /// An IP address or CIDR network.
    Ip,
    /// A domain name.
    Domain,
    /// A URL.
    Url,
    /// A host name or device id.
    Host,
    /// A user name or account id.
    User,
    /// An email address.
    Email,
    /// A MAC address.
    Mac,
    /// A file hash.
    Hash,
    /// A class of devices (e.g. a CMDB category), matched against guardrails' device classes.
    DeviceClass,
    /// Anything; classified by its form (an address, a domain...) when guarded.
    Generic,
}

/// Which input holds the change's target, and its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The input whose value is the target.
    pub field: String,
    /// The target's type (`type:` in YAML).
    #[serde(rename = "type")]
    pub kind: TargetType,
}

/// How to undo a change: another action, with inputs copied from the original and constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InverseSpec {
    /// The undoing action; must be declared in the same catalog.
    pub action: String,
    /// Inputs copied unchanged from the original change.
    #[serde(default)]
    pub with: Vec<String>,
    /// Inputs set to constants.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub set: Map<String, Value>,
    /// Inputs taken from the target's state before the change (input name → state field),
    /// e.g. where a removed line stood, so the undo puts it back exactly there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub from_state: BTreeMap<String, String>,
}

impl InverseSpec {
    /// The inverse call for a change made with `input` on a target that was `before`.
    pub fn resolve(&self, input: &Value, before: &Value) -> Value {
        let mut with = self.set.clone();
        for f in &self.with {
            if let Some(v) = input.get(f) {
                with.insert(f.clone(), v.clone());
            }
        }
        for (input_name, field) in &self.from_state {
            match before.get(field) {
                Some(v) if !v.is_null() => {
                    with.insert(input_name.clone(), v.clone());
                }
                _ => {}
            }
        }
        json!({ "action": self.action, "with": with })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: String,
    kind: ActionKind,
    description: String,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    outputs: Map<String, Value>,
    target: Option<TargetSpec>,
    state: Option<String>,
    #[serde(default)]
    state_keys: Vec<String>,
    inverse: Option<InverseSpec>,
    irreversible: Option<String>,
    expiry_input: Option<String>,
    #[serde(default)]
    applied_state: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    actions: Vec<RawAction>,
}

/// One action as the catalog declares it.
#[derive(Debug, Clone, Serialize)]
pub struct ActionSpec {
    /// Dotted name playbooks call, `connector.action` (e.g. `blocklist.add`).
    pub name: String,
    /// Read or change.
    pub kind: ActionKind,
    /// One or two sentences for people (lint messages, `belay actions`).
    pub description: String,
    /// JSON Schema of the inputs (an object schema; unknown inputs are rejected).
    pub inputs: Value,
    /// JSON Schema of the outputs.
    pub outputs: Value,
    /// Which input is the change's target (change actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
    /// How the target's current state is read (change actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The state fields that say whether the target changed (drift, verification); all
    /// fields when empty. Other fields (a line number) only help the undo.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_keys: Vec<String>,
    /// How to undo a change; none if irreversible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inverse: Option<InverseSpec>,
    /// Why a change cannot be undone, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
    /// The input through which the system itself lets a change lapse (nftables' element
    /// `timeout`): a step's `expires:` sets it, so the system and the engine agree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_input: Option<String>,
    /// What the target's state shows once the change is applied (state field → a JSON value,
    /// or `input.NAME` for an input's value), to verify a change whose outcome was lost. Empty:
    /// any significant state other than the before-state counts as applied.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub applied_state: Map<String, Value>,
    #[serde(skip)]
    validator: std::sync::Arc<jsonschema::Validator>,
}

impl ActionSpec {
    /// The input names the schema declares, in declaration order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs["properties"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }

    /// The schema of one input, if declared.
    pub fn input_schema(&self, name: &str) -> Option<&Value> {
        self.inputs["properties"].get(name)
    }

    /// Required input names.
    pub fn required_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    /// Checks resolved inputs against the schema; each error names the input.
    pub fn validate_input(&self, input: &Value) -> Result<(), Vec<String>> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(input)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!(
                        "input `{}`: {e}",
                        path.trim_start_matches('/').replace('/', ".")
                    )
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The target value of a change made with `input`, as text; for a set-level change (its
    /// target input a list) a short description, `<first> and <n> more`.
    pub fn target_of(&self, input: &Value) -> String {
        match self.target.as_ref().and_then(|t| input.get(&t.field)) {
            Some(Value::Array(items)) => match items.as_slice() {
                [] => String::new(),
                [one] => text_of(one),
                [first, rest @ ..] => format!("{} and {} more", text_of(first), rest.len()),
            },
            Some(v) => text_of(v),
            None => String::new(),
        }
    }

    /// Every target of a change made with `input`: each item of a set-level change (its
    /// target input a list), else the one target. Guardrails judge each of them.
    pub fn targets_of(&self, input: &Value) -> Vec<String> {
        match self.target.as_ref().and_then(|t| input.get(&t.field)) {
            Some(Value::Array(items)) => items.iter().map(text_of).collect(),
            Some(v) => vec![text_of(v)],
            None => vec![String::new()],
        }
    }

    /// `input` with its targets replaced by `items` (for a set-level change, the part of the
    /// set to apply, or to hold apart); `input` unchanged when the action has no target.
    pub fn with_targets(&self, input: &Value, items: Vec<Value>) -> Value {
        match (self.target.as_ref(), input) {
            // The other inputs are copied, the (possibly large) target list is not.
            (Some(t), Value::Object(obj)) => {
                let mut out: Map<String, Value> = obj
                    .iter()
                    .filter(|(k, _)| **k != t.field)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                out.insert(t.field.clone(), Value::Array(items));
                Value::Object(out)
            }
            _ => input.clone(),
        }
    }

    /// Whether `input` makes a set-level change: the action's target input is a list.
    pub fn is_set_level(&self, input: &Value) -> bool {
        matches!(
            self.target.as_ref().and_then(|t| input.get(&t.field)),
            Some(Value::Array(_))
        )
    }

    /// How many targets a change made with `input` has (see [`ActionSpec::targets_of`]),
    /// without copying them.
    pub fn target_count(&self, input: &Value) -> usize {
        match self.target.as_ref().and_then(|t| input.get(&t.field)) {
            Some(Value::Array(items)) => items.len(),
            _ => 1,
        }
    }

    /// `input` of a set-level change without the targets `keep` refuses (by their text);
    /// `input` unchanged when its target input is not a list.
    pub fn retain_targets(&self, mut input: Value, keep: impl Fn(&str) -> bool) -> Value {
        if let Some(Value::Array(items)) = self
            .target
            .as_ref()
            .and_then(|t| input.get_mut(t.field.as_str()))
        {
            items.retain(|v| match v {
                Value::String(s) => keep(s),
                other => keep(&other.to_string()),
            });
        }
        input
    }

    /// The part of a state that says whether the target changed (the state itself, not a
    /// copy, when every field counts: a set-level change's state may be large).
    pub fn significant_state<'a>(&self, state: &'a Value) -> std::borrow::Cow<'a, Value> {
        match state {
            Value::Object(m) if !self.state_keys.is_empty() => {
                std::borrow::Cow::Owned(Value::Object(
                    m.iter()
                        .filter(|(k, _)| self.state_keys.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ))
            }
            other => std::borrow::Cow::Borrowed(other),
        }
    }

    /// What the target's state `now` says of a change with `input` journaled with `before`
    /// whose outcome was lost (its connector call was in flight when the process stopped).
    pub fn verify_outcome(&self, input: &Value, before: &Value, now: &Value) -> Verified {
        if now.is_null() {
            return Verified::Neither;
        }
        let shows_applied = !self.applied_state.is_empty()
            && self.applied_state.iter().all(|(field, want)| {
                let want = match want.as_str().and_then(|w| w.strip_prefix("input.")) {
                    Some(name) => input.get(name).cloned().unwrap_or(Value::Null),
                    None => want.clone(),
                };
                now.get(field).cloned().unwrap_or(Value::Null) == want
            });
        if shows_applied {
            Verified::Applied
        } else if self.significant_state(now) == self.significant_state(before) {
            Verified::NotApplied
        } else if self.applied_state.is_empty() {
            Verified::Applied
        } else {
            Verified::Neither
        }
    }

    /// The same spec, with what its target shows once applied (see `applied_state`).
    pub fn with_applied_state(mut self, applied: Map<String, Value>) -> Self {
        self.applied_state = applied;
        self
    }

    /// Builds a spec from parts (used by tests and benchmarks that add their own actions).
    pub fn new(
        name: &str,
        kind: ActionKind,
        description: &str,
        inputs: Map<String, Value>,
        target: Option<TargetSpec>,
        inverse: Option<InverseSpec>,
    ) -> Result<ActionSpec, String> {
        build(RawAction {
            name: name.into(),
            kind,
            description: description.into(),
            inputs,
            outputs: Map::new(),
            target,
            state: None,
            state_keys: Vec::new(),
            inverse,
            irreversible: None,
            expiry_input: None,
            applied_state: Map::new(),
        })
    }
}

/// What a target's state says of a change whose outcome was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The target shows the change's after-state: it was applied.
    Applied,
    /// The target is still in its before-state: it was not applied.
    NotApplied,
    /// Neither (or the state could not be read): someone else changed the target; a person decides.
    Neither,
}

/// A target value as text: a string as it is, anything else as JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn object_schema(props: &Map<String, Value>, closed: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, schema) in props {
        let mut schema = schema.clone();
        if let Some(obj) = schema.as_object_mut()
            && obj.remove("required") == Some(Value::Bool(true))
        {
            required.push(Value::String(name.clone()));
        }
        properties.insert(name.clone(), schema);
    }
    let mut s = json!({ "type": "object", "properties": properties, "required": required });
    if closed {
        s["additionalProperties"] = Value::Bool(false);
    }
    s
}

fn build(raw: RawAction) -> Result<ActionSpec, String> {
    let inputs = object_schema(&raw.inputs, true);
    let outputs = object_schema(&raw.outputs, false);
    let validator = jsonschema::validator_for(&inputs)
        .map_err(|e| format!("action `{}`: input schema is invalid: {e}", raw.name))?;
    if let Some(t) = &raw.target
        && !raw.inputs.contains_key(&t.field)
    {
        return Err(format!(
            "action `{}`: target field `{}` is not an input",
            raw.name, t.field
        ));
    }
    if raw.kind == ActionKind::Change {
        if raw.target.is_none() {
            return Err(format!(
                "change action `{}` must declare its target",
                raw.name
            ));
        }
        if raw.inverse.is_none() && raw.irreversible.is_none() {
            return Err(format!(
                "change action `{}` must declare an inverse or say why it is irreversible",
                raw.name
            ));
        }
    }
    if let Some(inv) = &raw.inverse
        && let Some(f) = inv.with.iter().find(|f| !raw.inputs.contains_key(*f))
    {
        return Err(format!(
            "action `{}`: inverse copies unknown input `{f}`",
            raw.name
        ));
    }
    if let Some(f) = &raw.expiry_input
        && !raw.inputs.contains_key(f)
    {
        return Err(format!(
            "action `{}`: expiry input `{f}` is not an input",
            raw.name
        ));
    }
    Ok(ActionSpec {
        name: raw.name,
        kind: raw.kind,
        description: raw.description,
        inputs,
        outputs,
        target: raw.target,
        state: raw.state,
        state_keys: raw.state_keys,
        inverse: raw.inverse,
        irreversible: raw.irreversible,
        expiry_input: raw.expiry_input,
        applied_state: raw.applied_state,
        validator: std::sync::Arc::new(validator),
    })
}

/// The catalog files compiled into belay.
const BUILTIN: &[(&str, &str)] = &[
    ("core.yaml", include_str!("../catalog/core.yaml")),
    ("security.yaml", include_str!("../catalog/security.yaml")),
];

/// All known actions by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    actions: BTreeMap<String, ActionSpec>,
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Catalog {
        let mut c = Catalog::default();
        for (file, text) in BUILTIN {
            // The built-in files are checked by tests; failing here is a build defect.
            c.load(file, text)
                .unwrap_or_else(|e| panic!("built-in catalog {file}: {e}"));
        }
        c
    }

    /// Adds the actions declared in one catalog YAML text.
    pub fn load(&mut self, file: &str, text: &str) -> Result<(), String> {
        let node = yaml::parse(text).map_err(|d| format!("{file}:{d}"))?;
        let raw: RawFile =
            serde_json::from_value(node.to_json()).map_err(|e| format!("{file}: {e}"))?;
        for a in raw.actions {
            if self.actions.contains_key(&a.name) {
                return Err(format!("{file}: action `{}` is declared twice", a.name));
            }
            let spec = build(a).map_err(|e| format!("{file}: {e}"))?;
            self.actions.insert(spec.name.clone(), spec);
        }
        for spec in self.actions.values() {
            if let Some(inv) = &spec.inverse
                && !self.actions.contains_key(&inv.action)
            {
                return Err(format!(
                    "{file}: inverse `{}` of `{}` is not declared",
                    inv.action, spec.name
                ));
            }
        }
        Ok(())
    }

    /// Adds or replaces one action.
    pub fn insert(&mut self, spec: ActionSpec) {
        self.actions.insert(spec.name.clone(), spec);
    }

    /// The action named `name` (dotted, exact).
    pub fn get(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.get(name)
    }

    /// Every action, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &ActionSpec> {
        self.actions.values()
    }

    /// Names close to `name`, for "did you mean" hints.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        let prefix = name.split('.').next().unwrap_or(name);
        self.actions
            .keys()
            .map(|k| (edit_distance(k, name), k))
            .filter(|(d, k)| *d <= 3 || k.starts_with(&format!("{prefix}.")))
            .min()
            .map(|(_, k)| k.as_str())
    }
}

/// Levenshtein distance, in characters (for "did you mean" hints).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_consistent() {
        let c = Catalog::builtin();
        for spec in c.iter() {
            if spec.kind == ActionKind::Change {
                assert!(spec.target.is_some(), "{}", spec.name);
                assert!(
                    spec.state.is_some(),
                    "{} says how its state is read",
                    spec.name
                );
                if let Some(inv) = &spec.inverse {
                    assert_eq!(c.get(&inv.action).map(|a| a.kind), Some(ActionKind::Change));
                }
            }
        }
    }

    #[test]
    fn scenario_actions_are_declared() {
        let c = Catalog::builtin();
        for name in [
            "firewall.block_ip",
            "dns.sinkhole_domain",
            "proxy.block",
            "proxy.status",
            "ips.deploy_rule",
            "edr.isolate_host",
            "edr.set_monitoring",
            "edr.scan",
            "siem.watch_user",
            "cmdb.lookup_device",
            "nac.quarantine",
            "directory.remove_member",
            "training.enroll_user",
            "takedown.submit",
            "case.open",
            "notify.send",
            "email.parse",
            "intel.lookup",
            "scan.endpoint",
            "pcap.start",
        ] {
            assert!(c.get(name).is_some(), "missing action {name}");
        }
    }

    #[test]
    fn inputs_are_validated_against_the_schema() {
        let c = Catalog::builtin();
        let add = c.get("blocklist.add").unwrap();
        assert!(
            add.validate_input(&json!({"list": "egress", "entry": "192.0.2.1"}))
                .is_ok()
        );
        let errs = add
            .validate_input(&json!({"list": "../etc", "entry": "x", "extra": 1}))
            .unwrap_err();
        assert!(errs.iter().any(|e| e.contains("input `list`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("extra")), "{errs:?}");
        let inv = add.inverse.as_ref().unwrap().resolve(
            &json!({"list": "egress", "entry": "192.0.2.1"}),
            &json!({"present": false, "line": null}),
        );
        assert_eq!(
            inv,
            json!({"action": "blocklist.remove", "with": {"list": "egress", "entry": "192.0.2.1"}})
        );
    }

    #[test]
    fn a_set_level_change_has_every_item_as_a_target() {
        let c = Catalog::builtin();
        let add = c.get("blocklist.add_many").unwrap();
        let input = json!({"list": "feed", "entries": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]});
        assert!(add.validate_input(&input).is_ok());
        assert_eq!(
            add.targets_of(&input),
            ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        );
        assert_eq!(add.target_of(&input), "192.0.2.1 and 2 more");
        let single = c.get("blocklist.add").unwrap();
        let one = json!({"list": "feed", "entry": "192.0.2.1"});
        assert_eq!(single.targets_of(&one), ["192.0.2.1"]);
        let kept = add.with_targets(&input, vec![json!("192.0.2.3")]);
        assert_eq!(kept, json!({"list": "feed", "entries": ["192.0.2.3"]}));
        let inv = add
            .inverse
            .as_ref()
            .unwrap()
            .resolve(&input, &json!({"absent": ["192.0.2.2"]}));
        assert_eq!(
            inv,
            json!({"action": "blocklist.remove_many", "with": {"list": "feed", "entries": ["192.0.2.2"]}})
        );
        let fw = c.get("firewall.block_many").unwrap();
        assert!(
            fw.validate_input(&json!({"addresses": ["10.0.0.0/8", "2001:db8::1"]}))
                .is_ok()
        );
        assert!(
            fw.validate_input(&json!({"addresses": ["not an address"]}))
                .is_err()
        );
    }

    #[test]
    fn every_set_level_action_is_undone_by_its_pair_with_exactly_the_diff() {
        let c = Catalog::builtin();
        let pairs = [
            ("blocklist.add_many", "blocklist.remove_many"),
            ("firewall.block_many", "firewall.unblock_many"),
            ("ips.dataset_add_many", "ips.dataset_remove_many"),
            ("proxy.block_many", "proxy.unblock_many"),
            ("dns.sinkhole_many", "dns.unsinkhole_many"),
        ];
        for (add, remove) in pairs {
            for (a, b, diff) in [(add, remove, "absent"), (remove, add, "present")] {
                let spec = c.get(a).unwrap_or_else(|| panic!("{a} is declared"));
                let field = &spec.target.as_ref().expect("a target").field;
                assert_eq!(spec.inputs["properties"][field]["type"], "array", "{a}");
                assert!(spec.state_keys.contains(&diff.to_owned()), "{a}: {diff}");
                let inv = spec.inverse.as_ref().expect("an inverse");
                assert_eq!(inv.action, b, "{a}");
                assert_eq!(
                    inv.from_state.get(field).map(String::as_str),
                    Some(diff),
                    "{a}"
                );
            }
        }
        let dns = c.get("dns.unsinkhole_many").unwrap();
        let undo = dns.inverse.as_ref().unwrap().resolve(
            &json!({"domains": ["a.example", "b.example", "c.example"]}),
            &json!({"present": ["a.example", "b.example"], "modes": ["redirect", "nxdomain"], "answers": ["10.0.0.1", null]}),
        );
        assert_eq!(
            undo["with"],
            json!({"domains": ["a.example", "b.example"], "modes": ["redirect", "nxdomain"], "answers": ["10.0.0.1", null]})
        );
        assert!(
            c.get("dns.sinkhole_many")
                .unwrap()
                .validate_input(&undo["with"])
                .is_ok()
        );
    }

    #[test]
    fn suggests_near_names() {
        let c = Catalog::builtin();
        assert_eq!(c.suggest("blocklist.ad"), Some("blocklist.add"));
    }
}
