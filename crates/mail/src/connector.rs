//! The `email` connector: the `email.parse` action.
//!
//! Input `message` is the raw message as text; with `encoding: base64` it is the message's
//! bytes in base64 (for messages that are not valid UTF-8 — the events made by
//! [`crate::to_event`] say which in `data.message_encoding`). `unwrap` (default true) parses
//! the suspect message attached to a user's report instead of the report.

use crate::message::{ParseOptions, parse_with};
use crate::report::suspicion;
use base64::Engine as _;
use belay_connector_api::ActionError;
use ipnet::IpNet;
use serde_json::Value;

/// Serves the `email` family.
#[derive(Debug, Clone, Default)]
pub struct Email {
    /// Networks of our own mail relays (see [`crate::received`]).
    pub own_relays: Vec<IpNet>,
}

impl Email {
    /// The connector, skipping these relay networks when looking for a message's originating IP.
    pub fn new(own_relays: Vec<IpNet>) -> Self {
        Email { own_relays }
    }

    /// `email.parse` on a JSON input; the same output as the action.
    pub fn parse_action(&self, input: &Value) -> Result<Value, ActionError> {
        let text = input
            .get("message")
            .and_then(Value::as_str)
            .ok_or_else(|| ActionError::permanent("missing text input `message`"))?;
        let raw: Vec<u8> = match input.get("encoding").and_then(Value::as_str) {
            None | Some("text") => text.as_bytes().to_vec(),
            Some("base64") => {
                // Tolerate line breaks, as base64 from mail tools usually has them.
                let compact: String = text.split_ascii_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|e| {
                        ActionError::permanent(format!(
                            "`message` is not valid base64 (encoding: base64): {e}"
                        ))
                    })?
            }
            Some(other) => {
                return Err(ActionError::permanent(format!(
                    "`encoding` must be `text` or `base64`, not `{other}`"
                )));
            }
        };
        let options = ParseOptions {
            unwrap: input.get("unwrap").and_then(Value::as_bool).unwrap_or(true),
            own_relays: self.own_relays.clone(),
            ..Default::default()
        };
        let parsed = parse_with(&raw, &options)
            .map_err(|e| ActionError::permanent(format!("email.parse: {e}")))?;
        let score = suspicion(&parsed);
        let mut out = serde_json::to_value(&parsed)
            .map_err(|e| ActionError::permanent(format!("email.parse: cannot encode: {e}")))?;
        if let Value::Object(map) = &mut out {
            map.insert(
                "suspicion".into(),
                serde_json::to_value(score).unwrap_or(Value::Null),
            );
        }
        Ok(out)
    }
}

belay_connector_api::connector! {
    impl Email {
        family: "email",
        named: "the email connector",
        call(email, call) {
            "email.parse" => {
                // Parsing a 25 MB message with HTML takes a while: keep it off the async threads.
                let this = email.clone();
                let input = call.input.clone();
                tokio::task::spawn_blocking(move || this.parse_action(&input))
                    .await
                    .map_err(|e| {
                        ActionError::transient(format!("email.parse did not finish: {e}"))
                    })?
            }
        }
    }
}
