//! Chat approvals: the held change as a Slack-compatible message with approve and deny
//! buttons (the approval id and change hash in each button's value), and the callback the chat
//! calls when someone presses one (`POST /hooks/chat/{target}`, Slack's interactivity payload:
//! a form field `payload` holding JSON). The callback is signed the way Slack signs
//! (`X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:" + X-Slack-Request-Timestamp + ":" +
//! body))`, 5-minute window, constant-time compare); the chat user is mapped to a belay user
//! through the configuration and decides through the approval policy like any other caller;
//! then the message is updated with the outcome and who decided.

use super::page::form_fields;
use super::{ChatApprovals, describe};
use crate::problem::Problem;
use crate::signature;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use belay_engine::approvals::{self, Ballot, DecisionError};
use belay_model::{ApprovalRecord, ApprovalStatus, AuditDraft, now_ms};
use serde_json::{Value, json};
use std::sync::Arc;

/// A plain-text block (chat markup in data is shown as typed, never interpreted).
fn text_block(text: &str) -> Value {
    let mut t: String = text.chars().take(2900).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    json!({ "type": "section", "text": { "type": "plain_text", "text": t, "emoji": false } })
}

/// The message of a held change: what, the planned change, the guardrails, who may decide,
/// and the buttons.
pub fn message(a: &ApprovalRecord) -> (String, Value) {
    let d = describe(a);
    let text = format!("Approval needed: {}", d.headline);
    let button = |decision: &str, label: &str, style: &str| {
        json!({
            "type": "button", "action_id": format!("belay_{decision}"), "style": style,
            "text": { "type": "plain_text", "text": label },
            "value": json!({ "approval": a.id, "change_hash": a.change_hash, "decision": decision }).to_string(),
        })
    };
    let blocks = json!([
        text_block(&format!("Approval needed: {}", d.headline)),
        text_block(&format!("Planned change:\n{}", d.planned)),
        text_block(&format!("Guardrails:\n{}", d.verdicts)),
        text_block(&d.terms),
        { "type": "actions", "block_id": format!("belay_approval_{}", a.id), "elements": [
            button("approve", "Approve", "primary"),
            button("deny", "Deny", "danger"),
        ]},
    ]);
    (text, blocks)
}

/// The message after a vote: the same summary without buttons, and the outcome.
fn decided_message(a: &ApprovalRecord) -> (String, Value) {
    let d = describe(a);
    let voters: Vec<String> = a
        .votes
        .iter()
        .map(|v| {
            format!(
                "{} {} via {}",
                if v.approve {
                    "approved by"
                } else {
                    "denied by"
                },
                v.user,
                v.channel.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let outcome = match a.status {
        ApprovalStatus::Pending => format!(
            "{} of {} approvals: {}",
            a.approvals(),
            a.terms.quorum,
            voters.join(", ")
        ),
        _ => format!(
            "{}: {}",
            a.status.to_string().to_uppercase(),
            voters.join(", ")
        ),
    };
    let text = format!("{outcome} — {}", d.headline);
    let mut blocks = vec![
        text_block(&format!("{} — {}", outcome, d.headline)),
        text_block(&format!("Planned change:\n{}", d.planned)),
    ];
    if a.status == ApprovalStatus::Pending {
        blocks.push(message(a).1[4].clone());
    }
    (text, Value::Array(blocks))
}

/// An answer to the chat: the text shown to the person who pressed the button.
fn reply(status: StatusCode, text: &str) -> Response {
    (
        status,
        axum::Json(
            json!({ "response_type": "ephemeral", "replace_original": false, "text": text }),
        ),
    )
        .into_response()
}

/// `POST /hooks/chat/{target}`: a button pressed in chat.
#[utoipa::path(post, path = "/hooks/chat/{target}", tag = "approvals",
    params(("target" = String, Path, description = "the chat notification target")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Slack's interactivity payload: `payload=<JSON>`, signed with X-Slack-Signature and X-Slack-Request-Timestamp"),
    responses((status = 200, description = "the decision, or why it was refused", body = Object),
        (status = 400, description = "no payload, or not a button", body = Problem),
        (status = 401, description = "no, bad or stale signature, or no such chat target; nothing changed", body = Problem)))]
pub async fn callback(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let channels = state.config.channels.clone();
    // An unknown target is refused as an unsigned request is (no oracle of target names).
    let chat = channels.chat_target(&target);
    let secrets = chat.map_or(&[][..], |c| c.signing_secrets.as_slice());
    if let Err(why) = signature::SLACK.verify(secrets, &headers, &body, now_ms() / 1000) {
        return Err(Problem::new(StatusCode::UNAUTHORIZED, why));
    }
    let Some(chat) = chat else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "the signature does not match",
        ));
    };
    let fields = form_fields(&body);
    let payload: Value = fields
        .get("payload")
        .and_then(|p| serde_json::from_str(p).ok())
        .ok_or_else(|| {
            Problem::bad_request("the body has no JSON `payload` field").at_field("payload")
        })?;
    let action = &payload["actions"][0];
    let value: Value = action["value"]
        .as_str()
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(|| {
            Problem::bad_request("the payload is not a belay button").at_field("actions[0].value")
        })?;
    let (Some(id), Some(hash), Some(decision)) = (
        value["approval"].as_str(),
        value["change_hash"].as_str(),
        value["decision"]
            .as_str()
            .filter(|d| matches!(*d, "approve" | "deny")),
    ) else {
        return Err(
            Problem::bad_request("the button names no approval, change hash and decision")
                .at_field("actions[0].value"),
        );
    };
    let chat_user = payload["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refuse = |why: String| {
        let state = state.clone();
        let (id, chat_user, target) = (id.to_owned(), chat_user.clone(), target.clone());
        async move {
            refused(
                &state,
                &id,
                "chat",
                &format!("chat:{chat_user}"),
                &why,
                json!({ "target": target, "chat_user": chat_user }),
            )
            .await;
            Ok(reply(StatusCode::OK, &format!("Refused: {why}")))
        }
    };
    let Some(user) = channels.chat_users.get(&chat_user).cloned() else {
        return refuse(format!(
            "chat user `{chat_user}` is not mapped to a belay user ([[chat.users]] in belay.toml); nothing was recorded"
        ))
        .await;
    };
    let store = state.engine().store.clone();
    let dir = crate::auth::directory(&*store, state.config.config_users.clone()).await?;
    let ballot = Ballot {
        channel: Some("chat"),
        change_hash: Some(hash),
    };
    let comment = Some(format!("via chat target {target} as {chat_user}"));
    let result = approvals::cast(
        &*store,
        &dir,
        id,
        &user,
        decision == "approve",
        comment,
        &[],
        ballot,
    )
    .await;
    let a = match result {
        Ok(a) => a,
        Err(DecisionError::Store(e)) => return Err(e.into()),
        Err(e) => return refuse(e.to_string()).await,
    };
    if a.status != ApprovalStatus::Pending {
        state.pick_up_decisions();
    }
    update(chat, &payload, &a).await;
    Ok(reply(
        StatusCode::OK,
        &format!("{} as {user}: approval {} is {}", decision, a.id, a.status),
    ))
}

/// Updates the message the button was on with the approval's state now.
async fn update(chat: &ChatApprovals, payload: &Value, a: &ApprovalRecord) {
    let channel = payload["channel"]["id"]
        .as_str()
        .or_else(|| payload["container"]["channel_id"].as_str())
        .unwrap_or(&chat.channel);
    let Some(ts) = payload["message"]["ts"]
        .as_str()
        .or_else(|| payload["container"]["message_ts"].as_str())
    else {
        return;
    };
    let (text, blocks) = decided_message(a);
    if let Err(e) = chat.client.update(channel, ts, &text, Some(&blocks)).await {
        tracing::warn!(
            "updating the chat message of approval {}: {}",
            a.id,
            e.message
        );
    }
}

/// Records a refused answer in the audit trail (`approval.refused`) with its channel.
pub(crate) async fn refused(
    state: &AppState,
    approval_id: &str,
    channel: &str,
    actor: &str,
    reason: &str,
    extra: Value,
) {
    let mut detail = json!({ "channel": channel, "reason": reason });
    if let (Some(d), Value::Object(more)) = (detail.as_object_mut(), extra) {
        d.extend(more);
    }
    let draft = AuditDraft {
        kind: "approval.refused".into(),
        actor: actor.into(),
        subject: approval_id.into(),
        detail,
    };
    if let Err(e) = state.engine().store.append_audit(vec![draft]).await {
        tracing::error!("recording a refused answer in the audit trail: {e}");
    }
}
