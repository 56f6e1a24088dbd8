//! The syslog line rules: loading `rules/rules.toml` (or a user's file in its format) into a
//! [`Normalizer`], and matching a program and message against them.
//!
//! A matching rule's named captures become the event's fields; the rule's `kind` picks the event
//! builder (privilege changes and new devices have their own; any other kind is generic). This
//! module never hard-codes a vendor's line format: those are data in the rule file.

use super::devices::parse_oui;
use super::fields::{make, push};
use super::{Context, Normalizer};
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The embedded rule file.
pub(super) const RULES_TOML: &str = include_str!("../rules/rules.toml");
const OUI_TSV: &str = include_str!("../rules/oui.tsv");

/// A broken embedded or user rule file.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The text is not TOML, or not in the rule file's format; holds the parser's message.
    #[error("rules are not valid TOML: {0}")]
    Toml(String),
    /// A rule's or data type's regular expression does not compile.
    #[error("rule `{id}`: bad `{field}` regex: {message}")]
    Regex {
        /// The rule's `id`, or the data type's `name`.
        id: String,
        /// Which regex: `program` or `match` of a rule, `pattern` of a data type.
        field: &'static str,
        /// The regex compiler's message.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
    #[serde(default)]
    privileged: Privileged,
    #[serde(default)]
    data_type: Vec<DataTypeDef>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Privileged {
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    program: String,
    #[serde(rename = "match")]
    pattern: String,
    kind: String,
    #[serde(default)]
    set: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataTypeDef {
    name: String,
    pattern: String,
}

struct Rule {
    id: String,
    program: Regex,
    pattern: Regex,
    kind: String,
    set: Map<String, Value>,
}

/// Everything a [`Normalizer`] is configured with: compiled rules, privileged group names, DLP
/// data types and the MAC vendor table.
pub(super) struct Rules {
    rules: Vec<Rule>,
    pub(super) privileged: HashSet<String>,
    pub(super) data_types: Vec<(String, Regex)>,
    pub(super) oui: HashMap<[u8; 3], &'static str>,
}

impl Normalizer {
    /// A normalizer with rules from TOML text in the format of the embedded `rules.toml`.
    pub fn from_rules(text: &str) -> Result<Normalizer, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError::Toml(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for r in file.rule {
            let program =
                Regex::new(&format!("^(?:{})$", r.program)).map_err(|e| RulesError::Regex {
                    id: r.id.clone(),
                    field: "program",
                    message: e.to_string(),
                })?;
            let pattern = Regex::new(&r.pattern).map_err(|e| RulesError::Regex {
                id: r.id.clone(),
                field: "match",
                message: e.to_string(),
            })?;
            rules.push(Rule {
                id: r.id,
                program,
                pattern,
                kind: r.kind,
                set: r.set,
            });
        }
        let mut data_types = Vec::new();
        for d in file.data_type {
            let re = Regex::new(&format!("(?i){}", d.pattern)).map_err(|e| RulesError::Regex {
                id: d.name.clone(),
                field: "pattern",
                message: e.to_string(),
            })?;
            data_types.push((d.name, re));
        }
        Ok(Normalizer {
            rules: Arc::new(Rules {
                rules,
                privileged: file
                    .privileged
                    .groups
                    .iter()
                    .map(|g| g.to_lowercase())
                    .collect(),
                data_types,
                oui: parse_oui(OUI_TSV),
            }),
        })
    }

    /// The event of the first rule matching `program` and `message`, if any.
    pub(super) fn apply_rules(
        &self,
        program: &str,
        message: &str,
        base: &Map<String, Value>,
        time: DateTime<Utc>,
        host: Option<&str>,
        ctx: &Context,
    ) -> Option<Event> {
        let rule = self
            .rules
            .rules
            .iter()
            .find(|r| r.program.is_match(program) && r.pattern.is_match(message))?;
        let caps = rule.pattern.captures(message)?;
        let mut fields = Map::new();
        for name in rule.pattern.capture_names().flatten() {
            if let Some(m) = caps.name(name) {
                let key = name.split("__").next().unwrap_or(name);
                fields.insert(key.to_owned(), Value::from(m.as_str()));
            }
        }
        for (k, v) in &rule.set {
            fields.insert(k.clone(), v.clone());
        }
        let mut data = base.clone();
        data.insert("rule".into(), Value::from(rule.id.clone()));
        data.insert("program".into(), Value::from(program));
        data.insert("message".into(), Value::from(message));
        let mut m = Matched {
            fields,
            data,
            time,
            host,
        };
        Some(match rule.kind.as_str() {
            "auth.privilege_change" => self.privilege_change(m, ctx),
            "network.new_device" => self.new_device(m, ctx),
            _ => {
                let mut obs = Observables::default();
                if let Some(h) = host {
                    push(&mut obs.hosts, h);
                }
                m.data.extend(std::mem::take(&mut m.fields));
                m.event(&rule.kind, Severity::Medium, obs, ctx)
            }
        })
    }
}

/// What a rule that matched a line hands the code of its kind: the fields it captured (and
/// set), the event data so far, the line's time and host.
pub(super) struct Matched<'a> {
    pub(super) fields: Map<String, Value>,
    pub(super) data: Map<String, Value>,
    pub(super) time: DateTime<Utc>,
    pub(super) host: Option<&'a str>,
}

impl Matched<'_> {
    /// The event of kind `kind` for the matched line: its data so far, at its time.
    pub(super) fn event(
        self,
        kind: &str,
        severity: Severity,
        observables: Observables,
        ctx: &Context,
    ) -> Event {
        make(kind, self.time, severity, observables, self.data, None, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_rules_compile() {
        assert!(Normalizer::from_rules(RULES_TOML).is_ok());
        assert!(Normalizer::builtin().rules.oui.len() > 1000);
    }

    #[test]
    fn bad_rules_say_which_rule_and_field() {
        let err = Normalizer::from_rules(
            "[[rule]]\nid = \"x\"\nprogram = \"a\"\nmatch = \"(\"\nkind = \"k\"\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("rule `x`: bad `match` regex"), "{err}");
    }
}
