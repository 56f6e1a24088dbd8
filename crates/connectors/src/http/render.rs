//! Templates to request parts and outputs: the request URL from a spec's path template (each
//! expression one percent-encoded segment), rendered query, headers and bodies, the expression
//! context (`input`, `vars`, `response`, `status`), and the clean-up of rendered values. It
//! sends nothing.

use super::Http;
use super::spec::{ActionMap, RequestSpec};
use crate::{ActionError, ErrorKind};
use belay_playbook::expr::Part;
use belay_playbook::{Template, context_value, describe_value};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use serde_json::{Map, Value, json};

/// Path-segment encoding: everything but RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Http {
    /// Builds the request URL from a path template.
    pub(super) fn url(
        &self,
        req: &RequestSpec,
        ctx: &minijinja::Value,
    ) -> Result<Url, ActionError> {
        let mut path = String::new();
        for part in &req.path {
            match part {
                Part::Text(t) => path.push_str(t),
                Part::Expr(e) => {
                    let v = e
                        .eval_json(ctx)
                        .map_err(|e| self.fail(ErrorKind::Permanent, format!("path: {e}")))?;
                    let text = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(self.fail(
                                ErrorKind::Permanent,
                                format!(
                                    "path: `{}` must be text or a number, found {}",
                                    e.source,
                                    describe_value(&other)
                                ),
                            ));
                        }
                    };
                    if text.is_empty() {
                        return Err(self.fail(
                            ErrorKind::Permanent,
                            format!("path: `{}` is empty", e.source),
                        ));
                    }
                    let enc = utf8_percent_encode(&text, SEGMENT).to_string();
                    // `.` and `..` would be resolved away by URL parsing.
                    if enc.chars().all(|c| c == '.') {
                        path.push_str(&enc.replace('.', "%2E"));
                    } else {
                        path.push_str(&enc);
                    }
                }
            }
        }
        let full = format!("{}{}", self.base.as_str().trim_end_matches('/'), path);
        Url::parse(&full).map_err(|e| {
            self.fail(
                ErrorKind::Permanent,
                format!("cannot build a URL from path `{path}`: {e}"),
            )
        })
    }

    pub(super) fn render(
        &self,
        t: &Template,
        ctx: &minijinja::Value,
        what: &str,
    ) -> Result<Value, ActionError> {
        t.render(ctx).map_err(|e| {
            self.fail(
                ErrorKind::Permanent,
                format!("spec `{}`, {what}: {e}", self.spec.name),
            )
        })
    }

    pub(super) fn context(
        &self,
        map: &ActionMap,
        input: &Value,
        response: Option<(u16, &Value)>,
    ) -> minijinja::Value {
        let mut filled = match input {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        for name in &map.inputs {
            filled.entry(name.clone()).or_insert(Value::Null);
        }
        let mut ctx = json!({ "input": filled, "vars": self.settings.vars });
        if let Some((status, body)) = response {
            ctx["response"] = body.clone();
            ctx["status"] = json!(status);
        }
        context_value(&ctx)
    }
}

/// Leaves null members out of objects (recursively), so optional inputs that were not given
/// are not sent, and outputs the answer did not have are absent rather than null.
pub(super) fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

/// Query pairs from a rendered mapping: nulls left out, lists repeated.
pub(super) fn pairs(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    if let Value::Object(m) = v {
        for (k, v) in m {
            match v {
                Value::Array(items) => {
                    out.extend(items.iter().filter_map(scalar).map(|s| (k.clone(), s)))
                }
                other => out.extend(scalar(other).map(|s| (k.clone(), s))),
            }
        }
    }
    out
}
