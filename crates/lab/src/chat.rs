//! The chat API simulator (`/chat/api`): a Slack-compatible Web API subset — `chat.postMessage`
//! and `chat.update` with a bot token, answering `{"ok": true, …}` or `{"ok": false, "error":
//! …}` as Slack does — that keeps every message with its updates. Control routes let a test
//! read the messages (`GET /_chat/messages`) and press a message's button as a chat user
//! (`POST /_chat/click`): the simulator then sends the app's interactivity callback the way
//! Slack does (form field `payload` holding JSON, `X-Slack-Request-Timestamp` and
//! `X-Slack-Signature: v0=HMAC-SHA256(signing secret, "v0:TS:BODY")`) and answers what the
//! callback answered. A click may sign with another secret or an old timestamp, to test that
//! such callbacks are refused.

use crate::Shared;
use axum::Json;
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;

/// The simulator's messages.
#[derive(Default)]
pub struct State {
    messages: Vec<Message>,
    next_ts: u64,
}

struct Message {
    channel: String,
    ts: String,
    text: String,
    blocks: Value,
    /// Earlier versions, oldest first (each update pushes the one it replaces).
    history: Vec<Value>,
}

impl Message {
    fn json(&self) -> Value {
        json!({ "channel": self.channel, "ts": self.ts, "text": self.text,
            "blocks": self.blocks, "updates": self.history.len(), "history": self.history })
    }
}

/// The Web API routes, under `/chat/api`.
pub fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route("/chat.postMessage", axum::routing::post(post_message))
        .route("/chat.update", axum::routing::post(update))
}

fn slack_error(error: &str) -> Response {
    Json(json!({ "ok": false, "error": error })).into_response()
}

fn chat(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.chat.lock().unwrap_or_else(|e| e.into_inner())
}

async fn post_message(AxState(s): AxState<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let Some(channel) = body["channel"].as_str().filter(|c| !c.is_empty()) else {
        return slack_error("channel_not_found");
    };
    let text = body["text"].as_str().unwrap_or_default();
    if text.is_empty() && !body["blocks"].is_array() {
        return slack_error("no_text");
    }
    let mut c = chat(&s);
    c.next_ts += 1;
    let ts = format!("{}.{:06}", 1_700_000_000 + c.next_ts, c.next_ts);
    let m = Message {
        channel: channel.to_owned(),
        ts: ts.clone(),
        text: text.to_owned(),
        blocks: body["blocks"].clone(),
        history: Vec::new(),
    };
    c.messages.push(m);
    Json(json!({ "ok": true, "channel": channel, "ts": ts,
        "message": { "text": text, "blocks": body["blocks"] } }))
    .into_response()
}

async fn update(AxState(s): AxState<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let (Some(channel), Some(ts)) = (body["channel"].as_str(), body["ts"].as_str()) else {
        return slack_error("invalid_arguments");
    };
    let mut c = chat(&s);
    let Some(m) = c
        .messages
        .iter_mut()
        .find(|m| m.channel == channel && m.ts == ts)
    else {
        return slack_error("message_not_found");
    };
    m.history
        .push(json!({ "text": m.text, "blocks": m.blocks }));
    if let Some(t) = body["text"].as_str() {
        m.text = t.to_owned();
    }
    if !body["blocks"].is_null() {
        m.blocks = body["blocks"].clone();
    }
    Json(json!({ "ok": true, "channel": channel, "ts": ts, "text": m.text })).into_response()
}

/// `GET /_chat/messages`: every message with its updates, oldest first.
pub async fn messages(AxState(s): AxState<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "messages": chat(&s).messages.iter().map(Message::json).collect::<Vec<_>>() }))
}

/// A button press to simulate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Click {
    /// The message (`ts`) whose button is pressed; default: the newest message.
    ts: Option<String>,
    /// The button: its `action_id`, or a suffix of it (`approve` for `belay_approve`).
    action: String,
    /// The chat user id pressing it.
    user: String,
    /// The app's interactivity request URL the callback is sent to.
    request_url: String,
    /// Signs with this secret instead of the lab's signing secret.
    secret: Option<String>,
    /// Seconds added to the callback's timestamp (negative: in the past).
    #[serde(default)]
    timestamp_offset: i64,
}

/// `POST /_chat/click`: presses a button and sends the signed callback; answers the callback's
/// status and body.
pub async fn click(AxState(s): AxState<Arc<Shared>>, Json(click): Json<Click>) -> Response {
    let (channel, ts, element) = {
        let c = chat(&s);
        let m = match &click.ts {
            Some(ts) => c.messages.iter().find(|m| &m.ts == ts),
            None => c.messages.last(),
        };
        let Some(m) = m else {
            return (
                axum::http::StatusCode::NOT_FOUND,
                Json(json!({ "error": "no such message" })),
            )
                .into_response();
        };
        let element = m
            .blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .find(|e| {
                e["action_id"].as_str().is_some_and(|id| {
                    id == click.action || id.ends_with(&format!("_{}", click.action))
                })
            });
        let Some(element) = element else {
            return (
                axum::http::StatusCode::NOT_FOUND,
                Json(json!({ "error": format!("message {} has no button `{}`", m.ts, click.action) })),
            )
                .into_response();
        };
        (m.channel.clone(), m.ts.clone(), element)
    };
    let payload = json!({
        "type": "block_actions",
        "user": { "id": click.user, "username": click.user.to_lowercase() },
        "api_app_id": "A0LAB",
        "container": { "type": "message", "message_ts": ts, "channel_id": channel },
        "channel": { "id": channel },
        "message": { "ts": ts },
        "trigger_id": "lab.trigger",
        "actions": [{ "type": "button", "action_id": element["action_id"],
            "value": element["value"], "action_ts": ts }],
    });
    let body = format!("payload={}", encode(&payload.to_string()));
    let timestamp = chrono::Utc::now().timestamp() + click.timestamp_offset;
    let secret = click
        .secret
        .unwrap_or_else(|| s.chat_signing_secret.clone());
    let signature = sign(secret.as_bytes(), timestamp, body.as_bytes());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sent = reqwest::Client::new()
        .post(&click.request_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", timestamp.to_string())
        .header("X-Slack-Signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Json(json!({ "status": status, "body": body })).into_response()
        }
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            Json(json!({ "error": format!("the request URL did not answer: {e}") })),
        )
            .into_response(),
    }
}

/// Slack's `v0=<hex>` signature.
fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(format!("v0:{timestamp}:").as_bytes());
    m.update(body);
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

/// Form encoding of `text` (unreserved characters kept, space as `+`).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
