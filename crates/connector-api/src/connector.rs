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
    /// For a change's first attempt: the target's state as [`Connector::read_state`] gave it
    /// just before, under the engine's lock on the target, and journaled as the change's
    /// before-state. A connector may apply the change from it rather than read the target
    /// again (the engine reads the state after the call either way); absent on retries,
    /// resumes and rollbacks.
    pub before: Option<&'a Value>,
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

/// Implements [`Connector`] for a connector of one fixed family from its table of actions.
///
/// `family` is the family it serves and `named` how a refusal names it to users (an action
/// not in the table is refused with [`ActionError::no_action`]: "the dlp connector has no
/// action `dlp.x`"). The table is the arms of a `match` on the action's name (each ending
/// with a comma or a block), in which the first name given to `call` is the connector and the
/// second the [`Call`]. Any further trait items (a `read_state`) follow the table.
///
/// ```
/// use belay_connector_api::{Call, Connector};
///
/// struct Echo;
///
/// belay_connector_api::connector! {
///     impl Echo {
///         family: "echo",
///         named: "the echo connector",
///         call(_echo, call) {
///             "echo.say" => Ok(call.input.clone()),
///         }
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let input = serde_json::json!({ "text": "hi" });
/// let call = |action| Call { action, input: &input, idempotency_key: None, before: None };
/// assert_eq!(Echo.family(), "echo");
/// assert_eq!(Echo.call(call("echo.say")).await.unwrap(), input);
/// let refused = Echo.call(call("echo.shout")).await.unwrap_err();
/// assert_eq!(refused.message, "the echo connector has no action `echo.shout`");
/// # });
/// ```
#[macro_export]
macro_rules! connector {
    (
        impl $ty:ty {
            family: $family:literal,
            named: $named:literal,
            call($this:pat, $call:ident) {
                $($arms:tt)+
            }
            $($more:tt)*
        }
    ) => {
        #[$crate::__private::async_trait]
        impl $crate::Connector for $ty {
            fn family(&self) -> &str {
                $family
            }

            async fn call(
                &self,
                $call: $crate::Call<'_>,
            ) -> ::std::result::Result<$crate::__private::Value, $crate::ActionError> {
                let $this = self;
                match $call.action {
                    $($arms)+
                    other => Err($crate::ActionError::no_action($named, other)),
                }
            }

            $($more)*
        }
    };
}
