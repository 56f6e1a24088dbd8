//! The event as expressions see it: a view over the shared event that converts only what an
//! expression reaches, instead of a copy of the whole event per run or per trigger condition.
//! An `intel.update` of 200,000 addresses is then held once, by the event itself.
//!
//! It reads exactly as the event's JSON would (`context_value(&event.to_value())`): the same
//! keys in the same order, the same values, sequences and maps compared, iterated, sliced and
//! serialized the same way.

use belay_model::{Event, Observables};
use minijinja::Value as MjValue;
use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Serde};
use serde_json::Value;
use std::sync::Arc;

/// The expression value of `event`.
pub fn event_value(event: Arc<Event>) -> MjValue {
    MjValue::from_object(EventView(event))
}

#[derive(Debug)]
struct EventView(Arc<Event>);

impl Object for EventView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let e = &self.0;
        Some(match key.as_str()? {
            "id" => MjValue::from(e.id.as_str()),
            "kind" => MjValue::from(e.kind.as_str()),
            "source" => MjValue::from(e.source.as_str()),
            "time" => MjValue::from(Serde(e.time)),
            "severity" => MjValue::from(Serde(e.severity)),
            "observables" => MjValue::from_object(ObservablesView(e.clone())),
            "data" => json_value(e, &e.data, Vec::new()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(Event::KEYS)
    }
}

#[derive(Debug)]
struct ObservablesView(Arc<Event>);

impl Object for ObservablesView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        // The key as a `'static` name the list view keeps (an unknown key is no list).
        let key = key.as_str()?;
        let key = Observables::KEYS.iter().find(|k| **k == key)?;
        Some(MjValue::from_object(ListView(self.0.clone(), key)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(Observables::KEYS)
    }
}

/// One list of the observables: `event.observables.<key>`.
#[derive(Debug)]
struct ListView(Arc<Event>, &'static str);

impl ListView {
    fn list(&self) -> &[String] {
        self.0.observables.list(self.1).unwrap_or_default()
    }
}

impl Object for ListView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let i = key.as_usize()?;
        self.list().get(i).map(|s| MjValue::from(s.as_str()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.list().len())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.list().len())
    }
}

/// One step from `event.data` down to a nested value.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// A nested array or object of `event.data`, by its path from there.
#[derive(Debug)]
struct JsonView {
    event: Arc<Event>,
    path: Vec<Step>,
}

impl JsonView {
    /// The value at the path (the event does not change, so it is always there).
    fn node(&self) -> &Value {
        let mut v = &self.event.data;
        for step in &self.path {
            v = match step {
                Step::Key(k) => &v[k.as_str()],
                Step::Index(i) => &v[*i],
            };
        }
        v
    }

    fn child(&self, step: Step, v: &Value) -> MjValue {
        let mut path = self.path.clone();
        path.push(step);
        json_value(&self.event, v, path)
    }
}

/// `v` (found at `path` under `event.data`): scalars as they are, arrays and objects as views.
fn json_value(event: &Arc<Event>, v: &Value, path: Vec<Step>) -> MjValue {
    match v {
        Value::Array(_) | Value::Object(_) => MjValue::from_object(JsonView {
            event: event.clone(),
            path,
        }),
        scalar => MjValue::from(Serde(scalar)),
    }
}

impl Object for JsonView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        match self.node() {
            Value::Array(items) => {
                let i = key.as_usize()?;
                Some(self.child(Step::Index(i), items.get(i)?))
            }
            Value::Object(map) => {
                let k = key.as_str()?;
                let (k, v) = map.get_key_value(k)?;
                Some(self.child(Step::Key(k.clone()), v))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Value::Array(items) => Enumerator::Seq(items.len()),
            Value::Object(_) => self.mapped_enumerator(|this| {
                let keys: Box<dyn Iterator<Item = MjValue> + Send + Sync> = match this.node() {
                    Value::Object(map) => Box::new(map.keys().map(|k| MjValue::from(k.as_str()))),
                    _ => Box::new(std::iter::empty()),
                };
                keys
            }),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.node() {
            Value::Array(items) => Some(items.len()),
            Value::Object(map) => Some(map.len()),
            _ => Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Expr, context_value};
    use crate::yaml::Pos;
    use serde_json::json;

    fn event() -> Arc<Event> {
        let mut e =
            Event::from_json(json!({"kind": "intel.update", "source": "intel:test"})).unwrap();
        e.observables.ips = vec!["192.0.2.1".into(), "192.0.2.2".into(), "192.0.2.3".into()];
        e.observables.domains = vec!["evil.example".into()];
        e.data = json!({
            "feed": "test",
            "count": 3,
            "ratio": 0.5,
            "big": 18446744073709551615u64,
            "neg": -4,
            "flag": true,
            "none": null,
            "removed": ["198.51.100.7"],
            "nested": {"z": [1, {"a": "b"}], "a": {}},
            "empty": [],
        });
        Arc::new(e)
    }

    /// Every expression reads the same through the view as through a copy of the event's JSON.
    #[test]
    fn the_view_reads_as_the_event_s_json_does() {
        let e = event();
        let copy = context_value(&json!({ "event": e.to_value() }));
        let view = minijinja::context! { event => event_value(e.clone()) };
        for src in [
            "event",
            "event.id",
            "event.time",
            "event.severity",
            "event.observables",
            "event.observables.ips",
            "event.observables.ips[1]",
            "event.observables.ips[-1]",
            "event.observables.ips[1:]",
            "event.observables.ips | length",
            "event.observables.ips | first",
            "event.observables.users",
            "'192.0.2.2' in event.observables.ips",
            "'192.0.2.9' in event.observables.ips",
            "event.observables.ips == ['192.0.2.1', '192.0.2.2', '192.0.2.3']",
            "event.observables.ips != ['192.0.2.1']",
            "event.observables.ips + event.observables.domains",
            "event.observables.ips | join(',')",
            "event.observables | length",
            "event.data",
            "event.data.big",
            "event.data.ratio * 2",
            "event.data.neg",
            "event.data.none",
            "event.data.nested.z[1].a",
            "event.data.nested.a",
            "event.data.nested == {'z': [1, {'a': 'b'}], 'a': {}}",
            "event.data.empty",
            "event.data.empty | length",
            "event.data | length",
            "'feed' in event.data",
            "event.data.removed | tojson",
            "event.data.missing is defined",
            "event.observables.missing is defined",
            "event.data.nested.z[5] is defined",
            "event.data | items | list",
            "event | tojson",
            "event.data.nested | string",
            "event.observables.ips | string",
        ] {
            let expr = Expr::compile(src, Pos { line: 1, col: 1 }).unwrap();
            let want = expr.eval_json(&copy).map_err(|e| e.message);
            let got = expr.eval_json(&view).map_err(|e| e.message);
            assert_eq!(got, want, "{src}");
            let want = expr.eval_bool(&copy).map_err(|e| e.message);
            let got = expr.eval_bool(&view).map_err(|e| e.message);
            assert_eq!(got, want, "{src} as a condition");
        }
    }
}
