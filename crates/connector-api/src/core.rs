//! `core.*`: actions with no effect outside belay. It must never touch a file, the network or
//! another process.

use crate::{ActionError, input_str};
use serde_json::json;
use std::time::Duration;

/// The built-in `core` connector.
#[derive(Debug, Default)]
pub struct Core;

/// Longest `core.sleep`.
const MAX_SLEEP: Duration = Duration::from_secs(600);

fn parse_sleep(text: &str) -> Result<Duration, ActionError> {
    let d = belay_model::parse_duration(text)
        .map_err(|e| ActionError::permanent(format!("duration `{text}`: {e}")))?;
    if d > MAX_SLEEP {
        return Err(ActionError::permanent(format!(
            "`{text}` is longer than ten minutes"
        )));
    }
    Ok(d)
}

crate::connector! {
    impl Core {
        family: "core",
        named: "`core`",
        call(_core, call) {
            "core.set" => {
                Ok(json!({ "values": call.input.get("values").cloned().unwrap_or(json!({})) }))
            }
            "core.log" => {
                let message = input_str(call.input, "message")?;
                tracing::info!(target: "belay::playbook", "{message}");
                Ok(json!({ "message": message }))
            }
            "core.fail" => Err(ActionError::permanent(input_str(call.input, "message")?)),
            "core.sleep" => {
                let d = parse_sleep(input_str(call.input, "duration")?)?;
                tokio::time::sleep(d).await;
                Ok(json!({ "slept_ms": d.as_millis() as u64 }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Call, Connector};
    use serde_json::Value;

    /// Calls `action` of the core connector with `input`.
    async fn call(action: &str, input: Value) -> Result<Value, ActionError> {
        Core.call(Call {
            action,
            input: &input,
            idempotency_key: None,
            before: None,
        })
        .await
    }

    #[tokio::test]
    async fn core_actions_behave() {
        let out = call("core.set", json!({"values": {"a": 1}})).await;
        assert_eq!(out.unwrap(), json!({"values": {"a": 1}}));
        let err = call("core.fail", json!({"message": "no"})).await;
        assert_eq!(err.unwrap_err().message, "no");
        let out = call("core.sleep", json!({"duration": "5ms"})).await;
        assert_eq!(out.unwrap(), json!({"slept_ms": 5}));
        assert!(parse_sleep("11m").is_err());
    }
}
