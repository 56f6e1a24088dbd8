//! Shared by the native connectors' end-to-end tests: calls checked against the catalog.

#![allow(dead_code)] // each test binary uses a different part

use belay_connectors::{ActionError, Call, Connector};
use serde_json::Value;

/// Whether a test can run: the component is usable, or the run is skipped with the reason
/// (a failure when `BELAY_REQUIRE_NATIVE=1`).
pub fn usable(component: &str, available: Result<(), String>) -> bool {
    match available {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("BELAY_REQUIRE_NATIVE").as_deref() == Ok("1") {
                panic!("{component} sandbox unavailable: {why}");
            }
            eprintln!("skipped: {why}");
            false
        }
    }
}

pub async fn call(c: &dyn Connector, action: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action,
        input: &input,
        idempotency_key: Some("test/key"),
    })
    .await
    .inspect(|out| check_outputs(action, out))
}

pub fn catalog() -> &'static belay_playbook::Catalog {
    static CATALOG: std::sync::OnceLock<belay_playbook::Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(belay_playbook::Catalog::builtin)
}

/// The output carries only fields the catalog declares for the action.
pub fn check_outputs(action: &str, out: &Value) {
    let spec = catalog().get(action).expect("action in the catalog");
    for key in out.as_object().expect("an object").keys() {
        assert!(
            spec.outputs["properties"].get(key).is_some(),
            "{action} returns undeclared `{key}`: {out}"
        );
    }
}

/// The catalog's undo of a change made with `input` on a target that was `before`, checked
/// against the undo action's input schema.
pub fn inverse(action: &str, input: &Value, before: &Value) -> (String, Value) {
    let spec = catalog().get(action).expect("action in the catalog");
    spec.validate_input(input).expect("valid input");
    let undo = spec
        .inverse
        .as_ref()
        .expect("an inverse")
        .resolve(input, before);
    let name = undo["action"].as_str().expect("action").to_owned();
    let with = undo["with"].clone();
    catalog()
        .get(&name)
        .expect("inverse in the catalog")
        .validate_input(&with)
        .expect("valid undo input");
    (name, with)
}
