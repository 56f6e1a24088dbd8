//! Chat notification targets: a Slack-compatible Web API (`chat.postMessage`, `chat.update`)
//! reached with a bot token. `notify.send` posts its message as text; `belay serve` posts held
//! changes with approve/deny buttons to the targets with `approvals = true` and verifies the
//! chat's signed callbacks with `signing_secret`.

use crate::ActionError;
use crate::secret::{Secret, SecretSource};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// `[notify.NAME.chat]`: where and how to post.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTarget {
    /// Base URL of the Web API (`https://slack.com/api`); the method name is appended.
    pub api: String,
    /// The channel id messages are posted to.
    pub channel: String,
    /// The bot token, usually `${{ secrets.NAME }}`; sent as `Authorization: Bearer`.
    pub token: String,
    /// The app's signing secret (`${{ secrets.NAME }}`) that interactivity callbacks are
    /// signed with; needed with `approvals`.
    pub signing_secret: Option<String>,
    /// Post every change held for approval here, with approve and deny buttons.
    #[serde(default)]
    pub approvals: bool,
}

/// A posted message: the channel and the message's `ts`, which names it for `chat.update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The channel id.
    pub channel: String,
    /// The message's timestamp id.
    pub ts: String,
}

/// A client of one chat API.
#[derive(Clone)]
pub struct ChatClient {
    api: String,
    token: Secret,
    http: reqwest::Client,
}

impl ChatClient {
    /// A client of `target`'s API, its token resolved from `secrets`.
    pub fn new(target: &ChatTarget, secrets: &SecretSource) -> Result<ChatClient, ActionError> {
        let token = secrets
            .resolve(&target.token)
            .map_err(|e| ActionError::permanent(format!("chat `token`: {e}")))?;
        let http = crate::http::client_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ActionError::permanent(format!("the HTTP client: {e}")))?;
        Ok(ChatClient {
            api: target.api.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// `chat.postMessage` of `text` (and Block Kit `blocks`, when given) to `channel`.
    pub async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<Posted, ActionError> {
        let mut body = json!({ "channel": channel, "text": text });
        if let Some(b) = blocks {
            body["blocks"] = b.clone();
        }
        let answer = self.call("chat.postMessage", &body).await?;
        let ts = answer["ts"]
            .as_str()
            .ok_or_else(|| ActionError::permanent("chat.postMessage answered no `ts`"))?;
        let channel = answer["channel"].as_str().unwrap_or(channel);
        Ok(Posted {
            channel: channel.to_owned(),
            ts: ts.to_owned(),
        })
    }

    /// `chat.update` of the message `ts` in `channel` to `text` and `blocks`.
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<(), ActionError> {
        let mut body = json!({ "channel": channel, "ts": ts, "text": text });
        if let Some(b) = blocks {
            body["blocks"] = b.clone();
        }
        self.call("chat.update", &body).await.map(|_| ())
    }

    /// One Web API call: JSON in, `{"ok": true, …}` out (`{"ok": false, "error": …}` is an
    /// error naming the method and the API's reason).
    async fn call(&self, method: &str, body: &Value) -> Result<Value, ActionError> {
        let resp = self
            .http
            .post(format!("{}/{method}", self.api))
            .bearer_auth(self.token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| {
                ActionError::transient(format!("chat API unreachable: {}", e.without_url()))
            })?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ActionError::transient(format!(
                "{method} answered {status}"
            )));
        }
        let answer: Value = resp
            .json()
            .await
            .map_err(|_| ActionError::permanent(format!("{method} answered {status}, not JSON")))?;
        if answer["ok"] != true {
            let why = answer["error"].as_str().unwrap_or("no reason given");
            return Err(ActionError::permanent(format!("{method} refused: {why}")));
        }
        Ok(answer)
    }
}
