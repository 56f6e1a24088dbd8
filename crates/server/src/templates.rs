//! Payload templates: a webhook source may receive a foreign payload (a Splunk alert webhook,
//! an Elastic alert, a Suricata EVE record) and map it to belay's event shape with a template
//! from the configuration. Only the template is an expression; the payload is data, bound as
//! `payload` in the strict expression language of playbooks (no code in it is ever evaluated).
//!
//! A template maps event fields (`id`, `kind`, `severity`, `time`, `observables.ips`, …,
//! `data`, `data.NAME`) to text with `${{ … }}` expressions. A field that fails to map is a
//! 400 naming the template field and the payload path it could not read.

use crate::problem::Problem;
use belay_playbook::{Pos, Template, context_value};
use serde_json::{Map, Value, json};

/// One compiled payload template.
#[derive(Debug)]
pub struct PayloadTemplate {
    /// `splunk`, `elastic`, `suricata`, or `inline`.
    pub name: String,
    fields: Vec<(String, String, Template)>,
}

/// The templates belay ships, by name: (event field, template text).
pub fn builtin(name: &str) -> Option<&'static [(&'static str, &'static str)]> {
    match name {
        // Splunk's alert action "Webhook": {"result": {...first result row...}, "sid": ...,
        // "search_name": ..., "app": ..., "owner": ..., "results_link": ...}.
        "splunk" => Some(&[
            ("id", "splunk:${{ payload.sid }}"),
            ("kind", "siem.alert"),
            (
                "severity",
                "${{ 'low' if (payload.result.severity | default('medium') | lower) in ['informational', 'info', 'low'] else (payload.result.severity | default('medium') | lower) }}",
            ),
            (
                "observables.ips",
                "${{ [payload.result.src_ip | default(''), payload.result.dest_ip | default('')] }}",
            ),
            (
                "observables.hosts",
                "${{ [payload.result.host | default('')] }}",
            ),
            (
                "observables.users",
                "${{ [payload.result.user | default('')] }}",
            ),
            ("data.search_name", "${{ payload.search_name }}"),
            (
                "data.results_link",
                "${{ payload.results_link | default('') }}",
            ),
            ("data.result", "${{ payload.result }}"),
        ]),
        // An Elastic alert as a Kibana webhook connector or a Watcher posts it: the alert
        // document in ECS (`@timestamp`, `kibana.alert.*`, `source`, `destination`, `host`, `user`).
        "elastic" => Some(&[
            ("id", "elastic:${{ payload['kibana.alert.uuid'] }}"),
            ("kind", "siem.alert"),
            (
                "severity",
                "${{ payload['kibana.alert.severity'] | default('medium') | lower }}",
            ),
            ("time", "${{ payload['@timestamp'] }}"),
            (
                "observables.ips",
                "${{ [(payload.source | default({})).ip | default(''), (payload.destination | default({})).ip | default('')] }}",
            ),
            (
                "observables.hosts",
                "${{ [(payload.host | default({})).name | default('')] }}",
            ),
            (
                "observables.users",
                "${{ [(payload.user | default({})).name | default('')] }}",
            ),
            ("data.rule", "${{ payload['kibana.alert.rule.name'] }}"),
            ("data.alert", "${{ payload }}"),
        ]),
        // A Suricata EVE `alert` record (eve.json), e.g. forwarded by a log shipper.
        "suricata" => Some(&[
            (
                "id",
                "suricata:${{ payload.flow_id }}:${{ payload.alert.signature_id }}:${{ payload.timestamp }}",
            ),
            ("kind", "ids.alert"),
            (
                "severity",
                "${{ 'high' if payload.alert.severity == 1 else ('medium' if payload.alert.severity == 2 else 'low') }}",
            ),
            (
                "observables.ips",
                "${{ [payload.src_ip, payload.dest_ip] }}",
            ),
            (
                "observables.domains",
                "${{ [(payload.http | default({})).hostname | default(''), (payload.tls | default({})).sni | default('')] }}",
            ),
            ("data.signature", "${{ payload.alert.signature }}"),
            ("data.signature_id", "${{ payload.alert.signature_id }}"),
            (
                "data.category",
                "${{ payload.alert.category | default('') }}",
            ),
            ("data.eve", "${{ payload }}"),
        ]),
        _ => None,
    }
}

impl PayloadTemplate {
    /// A shipped template by name.
    pub fn named(name: &str) -> Result<PayloadTemplate, String> {
        let fields = builtin(name).ok_or_else(|| {
            format!("no template `{name}` (belay ships `splunk`, `elastic` and `suricata`; or give a table of field = template)")
        })?;
        let owned: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::compile(name, &owned)
    }

    /// A template from (event field, template text) pairs; an unknown field or a bad
    /// expression is an error naming the field.
    pub fn compile(name: &str, fields: &[(String, String)]) -> Result<PayloadTemplate, String> {
        let mut out = Vec::new();
        for (field, text) in fields {
            let known = matches!(field.as_str(), "id" | "kind" | "severity" | "time" | "data")
                || field
                    .strip_prefix("observables.")
                    .is_some_and(|o| belay_model::Observables::KEYS.contains(&o))
                || field
                    .strip_prefix("data.")
                    .is_some_and(|d| !d.is_empty() && !d.contains('.'));
            if !known {
                return Err(format!(
                    "template field `{field}` is not an event field (id, kind, severity, time, observables.{}, data, data.NAME)",
                    belay_model::Observables::KEYS.join("|")
                ));
            }
            let t = Template::from_text(text, Pos { line: 1, col: 1 })
                .map_err(|d| format!("template field `{field}`: {}", d.message))?;
            out.push((field.clone(), text.clone(), t));
        }
        if !out.iter().any(|(f, _, _)| f == "kind") {
            return Err("a template must map `kind`".into());
        }
        Ok(PayloadTemplate {
            name: name.to_owned(),
            fields: out,
        })
    }

    /// The event (as JSON, to be validated as any event is) the template makes of `payload`.
    pub fn apply(&self, payload: &Value) -> Result<Value, Problem> {
        let ctx = context_value(&json!({ "payload": payload }));
        let mut event = Map::new();
        let mut observables = Map::new();
        let mut data = Map::new();
        for (field, _, t) in &self.fields {
            let v = t.render(&ctx).map_err(|e| {
                let missing = missing_path(t, payload);
                Problem::bad_request(format!(
                    "template `{}`, field `{field}`: {}{}",
                    self.name,
                    e.message,
                    missing
                        .as_deref()
                        .map(|p| format!(" (the payload has no `{p}`)"))
                        .unwrap_or_default()
                ))
                .at_field(missing.unwrap_or_else(|| field.clone()))
            })?;
            if let Some(list) = field.strip_prefix("observables.") {
                observables.insert(list.to_owned(), Value::Array(items(v)));
            } else if let Some(key) = field.strip_prefix("data.") {
                data.insert(key.to_owned(), v);
            } else if field == "data" {
                match v {
                    Value::Object(m) => data.extend(m),
                    other => {
                        data.insert("value".into(), other);
                    }
                }
            } else {
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(Problem::bad_request(format!(
                            "template `{}`, field `{field}`: made {other} where text is needed",
                            self.name
                        ))
                        .at_field(field.clone()));
                    }
                };
                event.insert(field.clone(), Value::String(text));
            }
        }
        event.insert("observables".into(), Value::Object(observables));
        event.insert("data".into(), Value::Object(data));
        Ok(Value::Object(event))
    }
}

/// A list of observables from a template's result: strings and numbers, without the empty
/// ones (a `default('')` of an absent field).
fn items(v: Value) -> Vec<Value> {
    let list = match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    let mut out: Vec<Value> = Vec::new();
    for i in list {
        let s = match i {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if !s.trim().is_empty() && !out.iter().any(|o| o.as_str() == Some(s.as_str())) {
            out.push(Value::String(s));
        }
    }
    out
}

/// The first path an expression of `t` reads that the payload lacks, as `payload.a.b`.
fn missing_path(t: &Template, payload: &Value) -> Option<String> {
    for e in t.exprs() {
        for path in &e.paths {
            let Some(rest) = path.strip_prefix("payload") else {
                continue;
            };
            let mut at = payload;
            let mut walked = String::from("payload");
            for seg in rest.split('.').filter(|s| !s.is_empty()) {
                walked.push('.');
                walked.push_str(seg);
                match at.get(seg) {
                    Some(v) => at = v,
                    None => return Some(walked),
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_compile() {
        for name in ["splunk", "elastic", "suricata"] {
            PayloadTemplate::named(name).unwrap();
        }
        assert!(PayloadTemplate::named("qradar").is_err());
        let e = PayloadTemplate::compile(
            "x",
            &[("kind".into(), "a".into()), ("source".into(), "b".into())],
        )
        .unwrap_err();
        assert!(e.contains("`source`"), "{e}");
    }

    #[test]
    fn a_payload_is_data_never_an_expression() {
        let t = PayloadTemplate::named("splunk").unwrap();
        let payload = json!({ "sid": "${{ 7 * 7 }}", "search_name": "{{ 7*7 }}",
            "result": { "src_ip": "203.0.113.9", "severity": "high" } });
        let ev = t.apply(&payload).unwrap();
        assert_eq!(ev["id"], "splunk:${{ 7 * 7 }}");
        assert_eq!(ev["data"]["search_name"], "{{ 7*7 }}");
        assert_eq!(ev["observables"]["ips"], json!(["203.0.113.9"]));
    }
}
