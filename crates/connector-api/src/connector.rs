//! The [`Connector`] trait and the [`Call`] it receives. A connector performs actions; it never
//! writes the journal, never decides trust and never logs secrets.

use crate::ActionError;
use async_trait::async_trait;
use serde_json::Value;

/// One action call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The full action name, family included, e.g. `blocklist.add`.
    pub action: &'a str,
    /// The step's rendered inputs, already validated against the action's input schema.
    pub input: &'a Value,
    /// Present for change actions: `run/step-key`, stable across retries and resumes.
    pub idempotency_key: Option<&'a str>,
}

/// The implementation of one family of actions.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The action family it serves, e.g. `blocklist` for `blocklist.add`.
    fn family(&self) -> &str;

    /// Performs an action with validated inputs and returns its outputs.
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError>;

    /// Reads the current state of a change action's target (before and after applying,
    /// and to detect drift at rollback). Null when the connector cannot read it.
    async fn read_state(&self, _action: &str, _input: &Value) -> Result<Value, ActionError> {
        Ok(Value::Null)
    }
}

/// A required string input (inputs were validated against the schema before the call).
pub fn input_str<'a>(input: &'a Value, name: &str) -> Result<&'a str, ActionError> {
    input
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::permanent(format!("missing text input `{name}`")))
}
