//! Shared by the native connectors' end-to-end tests: calls checked against the catalog.

#![allow(dead_code)] // each test binary uses a different part

use belay_connectors::{ActionError, Call, Connector, ErrorKind};
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

/// `action` on `input` as a change step would call it, its outputs checked against the catalog.
pub async fn call(c: &dyn Connector, action: &str, input: Value) -> Result<Value, ActionError> {
    invoke(c, action, input)
        .await
        .inspect(|out| check_outputs(action, out))
}

/// `action` on `input` as a change step would call it, its outputs as they come (for the
/// connectors whose read actions return more than the catalog declares).
pub async fn invoke(c: &dyn Connector, action: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action,
        input: &input,
        idempotency_key: Some("test/key"),
        before: None,
    })
    .await
}

/// `action` on `input`, which must be refused as a permanent error whose message contains
/// `needle` (any message when it is empty): the error, for further checks.
pub async fn refused(c: &dyn Connector, action: &str, input: Value, needle: &str) -> ActionError {
    let what = format!("{action} {input}");
    let err = call(c, action, input)
        .await
        .expect_err(&format!("{what} must be refused"));
    assert_eq!(err.kind, ErrorKind::Permanent, "{what}: {err}");
    assert!(err.message.contains(needle), "{what}: {err}");
    err
}

/// `action` on `input`, which must succeed and report `changed` as given: its output.
pub async fn change(c: &dyn Connector, action: &str, input: Value, changed: bool) -> Value {
    let what = format!("{action} {input}");
    let out = call(c, action, input)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(out["changed"], changed, "{what}: {out}");
    out
}

/// What `c` reads of the target of `action` on `input`.
pub async fn state(c: &dyn Connector, action: &str, input: &Value) -> Value {
    c.read_state(action, input).await.expect("state reads")
}

/// The native connector `kind` named `name`, built from the TOML text of its settings.
pub fn build(
    name: &str,
    kind: &str,
    settings: &str,
) -> Result<std::sync::Arc<dyn Connector>, belay_connectors::http::ConfigError> {
    belay_connectors::native::build(name, kind, toml::from_str(settings).expect("toml"))
}

/// The built-in catalog, loaded once.
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
