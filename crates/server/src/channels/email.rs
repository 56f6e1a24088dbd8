//! E-mail approvals: each approver gets a message of their own (SMTP through lettre) with one
//! signed link per decision. Mail scanners fetch links, so a GET only shows a confirmation page;
//! the decision is the POST of that page's form, which carries an anti-forgery token bound to
//! the link. The decider is the recipient the link was made for, and the approval policy
//! applies to them as to any other channel.

use super::links::{self, Claims, LinkError};
use super::page::{escape, form_fields, html};
use super::{EmailApprovals, describe};
use crate::problem::Problem;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use belay_engine::approvals::{self, Ballot, DecisionError};
use belay_model::{ApprovalRecord, ApprovalStatus, now_ms};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use std::sync::Arc;

/// Sends approval `a` to `user` at `address` with links under `base`; the Message-ID.
pub(crate) async fn send(
    mail: &EmailApprovals,
    base: &str,
    a: &ApprovalRecord,
    user: &str,
    address: &str,
) -> Result<String, String> {
    let nonce = links::nonce().map_err(|e| format!("no randomness: {e}"))?;
    let link = |decision: &str| {
        let claims = Claims {
            approval_id: a.id.clone(),
            change_hash: a.change_hash.clone(),
            decision: decision.into(),
            recipient: user.into(),
            expires_at: a.expires_at,
            nonce: nonce.clone(),
        };
        format!("{base}/approvals/email/{}", links::sign(&mail.key, &claims))
    };
    let d = describe(a);
    let body = format!(
        "Hello {user},\n\nA change waits for your decision.\n\n{}\n\nPlanned change:\n{}\n\n\
         Guardrails:\n{}\n\n{}\n\nTo approve, open:\n{}\n\nTo deny, open:\n{}\n\n\
         Each link opens a page where you confirm; it works once, for you only, until the \
         approval expires. Do not forward this message.\n",
        d.headline,
        d.planned,
        d.verdicts,
        d.terms,
        link("approve"),
        link("deny"),
    );
    let message_id = format!("<{}@belay>", belay_model::new_id());
    let subject: String = format!("Approval needed: {}", d.headline)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let msg = Message::builder()
        .from(mail.from.parse().map_err(|e| format!("`from`: {e}"))?)
        .to(address
            .parse()
            .map_err(|e| format!("{user}'s address `{address}`: {e}"))?)
        .subject(subject)
        .message_id(Some(message_id.clone()))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("building the message: {e}"))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&mail.smtp_host)
        .port(mail.smtp_port)
        .build();
    transport
        .send(msg)
        .await
        .map_err(|e| format!("SMTP {}:{}: {e}", mail.smtp_host, mail.smtp_port))?;
    Ok(message_id)
}

/// The link's claims, or the page saying why it is refused.
async fn check(state: &AppState, token: &str) -> Result<(EmailApprovals, Claims), Response> {
    let Some(mail) = state.config.channels.email.clone() else {
        return Err(html(
            StatusCode::UNAUTHORIZED,
            "Link refused",
            "<p>E-mail approvals are not configured here.</p>",
        ));
    };
    let claims = match links::verify(&mail.key, token, now_ms()) {
        Ok(c) => c,
        Err(e) => {
            let status = match e {
                LinkError::Invalid => StatusCode::UNAUTHORIZED,
                LinkError::Expired => StatusCode::GONE,
            };
            return Err(html(
                status,
                "Link refused",
                &format!("<p>{}.</p>", escape(&e.to_string())),
            ));
        }
    };
    match state.engine().store.link_used(&claims.nonce).await {
        Ok(false) => Ok((mail, claims)),
        Ok(true) => Err(html(
            StatusCode::GONE,
            "Link already used",
            "<p>This link was already used: each message decides once. Nothing was changed.</p>",
        )),
        Err(e) => Err(html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            &format!("<p>{}</p>", escape(&e.to_string())),
        )),
    }
}

/// `GET /approvals/email/{token}`: the confirmation page (changes nothing).
#[utoipa::path(get, path = "/approvals/email/{token}", tag = "approvals",
    params(("token" = String, Path, description = "the signed link token")),
    responses((status = 200, description = "the confirmation page (HTML)", body = String, content_type = "text/html"),
        (status = 401, description = "an altered or foreign link", body = String, content_type = "text/html"),
        (status = 410, description = "expired or already used", body = String, content_type = "text/html")))]
pub async fn confirm_page(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Response {
    let (mail, claims) = match check(&state, &token).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let a = match state.engine().store.get_approval(&claims.approval_id).await {
        Ok(Some(a)) => a,
        _ => {
            return html(
                StatusCode::NOT_FOUND,
                "Not found",
                "<p>No such approval.</p>",
            );
        }
    };
    let d = describe(&a);
    let verb = if claims.decision == "approve" {
        "Approve"
    } else {
        "Deny"
    };
    let body = format!(
        "<p>{user}, you are about to <strong>{verb_l}</strong> this change:</p>\
         <pre>{headline}</pre><h2>Planned change</h2><pre>{planned}</pre>\
         <h2>Guardrails</h2><pre>{verdicts}</pre><p>{terms}</p><p>Status: {status}</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>Comment (optional)<br><textarea name=\"comment\" rows=\"3\" cols=\"50\"></textarea></label></p>\
         <p><button type=\"submit\">{verb}</button></p></form>",
        user = escape(&claims.recipient),
        verb_l = verb.to_lowercase(),
        headline = escape(&d.headline),
        planned = escape(&d.planned),
        verdicts = escape(&d.verdicts),
        terms = escape(&d.terms),
        status = escape(&a.status.to_string()),
        csrf = links::form_token(&mail.key, &token),
    );
    html(StatusCode::OK, &format!("{verb} this change?"), &body)
}

/// `POST /approvals/email/{token}`: the decision, from the confirmation page's form.
#[utoipa::path(post, path = "/approvals/email/{token}", tag = "approvals",
    params(("token" = String, Path, description = "the signed link token")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`csrf` (from the confirmation page) and an optional `comment`"),
    responses((status = 200, description = "decided (HTML)", body = String, content_type = "text/html"),
        (status = 401, description = "an altered or foreign link", body = String, content_type = "text/html"),
        (status = 403, description = "a missing or wrong form token, or the approval policy refuses", body = String, content_type = "text/html"),
        (status = 409, description = "the approval is no longer pending", body = String, content_type = "text/html"),
        (status = 410, description = "expired or already used", body = String, content_type = "text/html")))]
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let (mail, claims) = match check(&state, &token).await {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    let fields = form_fields(&body);
    let csrf_ok = fields
        .get("csrf")
        .is_some_and(|c| links::form_token_ok(&mail.key, &token, c));
    let actor = claims.recipient.clone();
    let refuse = |status: StatusCode, why: String| {
        let state = state.clone();
        let (id, actor) = (claims.approval_id.clone(), actor.clone());
        async move {
            super::chat::refused(&state, &id, "email", &actor, &why, json!({})).await;
            Ok(html(status, "Refused", &format!("<p>{}</p>", escape(&why))))
        }
    };
    if !csrf_ok {
        return refuse(
            StatusCode::FORBIDDEN,
            "the form token is missing or wrong: open the link from your message and confirm there; nothing was recorded".into(),
        )
        .await;
    }
    let store = state.engine().store.clone();
    // The link is spent before the decision: a second POST, even concurrent, finds it used.
    if !store
        .use_link(
            &claims.nonce,
            &claims.approval_id,
            &claims.recipient,
            &claims.decision,
            now_ms(),
        )
        .await?
    {
        return Ok(html(
            StatusCode::GONE,
            "Link already used",
            "<p>This link was already used: each message decides once. Nothing was changed.</p>",
        ));
    }
    let dir = crate::auth::directory(&*store, state.config.config_users.clone()).await?;
    let comment = fields
        .get("comment")
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let ballot = Ballot {
        channel: Some("email"),
        change_hash: Some(&claims.change_hash),
    };
    let result = approvals::cast(
        &*store,
        &dir,
        &claims.approval_id,
        &claims.recipient,
        claims.decision == "approve",
        comment,
        &[],
        ballot,
    )
    .await;
    let a = match result {
        Ok(a) => a,
        Err(DecisionError::Store(e)) => return Err(e.into()),
        Err(e @ (DecisionError::NotPending { .. } | DecisionError::Conflict(_))) => {
            return refuse(StatusCode::CONFLICT, e.to_string()).await;
        }
        Err(e) => return refuse(StatusCode::FORBIDDEN, e.to_string()).await,
    };
    if a.status != ApprovalStatus::Pending {
        state.pick_up_decisions();
    }
    Ok(html(
        StatusCode::OK,
        "Recorded",
        &format!(
            "<p>Your decision ({}) was recorded as {}. Approval {} is now {}.</p>",
            escape(&claims.decision),
            escape(&claims.recipient),
            escape(&a.id),
            escape(&a.status.to_string())
        ),
    ))
}
