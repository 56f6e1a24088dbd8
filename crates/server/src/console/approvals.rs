//! The approval queue — the big red button. Each held change with its before and after, the
//! resolved inputs (a held batch's items, any of which can be left out), the guardrail
//! verdicts, the step's record, quorum progress, who may decide and the time left. Decisions
//! go through the same `decide_as` as the API; new holds appear by server-sent events.

use super::{Who, diff, field, from_now, pretty, render, viewer, when, writer};
use crate::auth::Role;
use crate::routes::approvals::{Decision, decide_as};
use crate::state::AppState;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use belay_engine::approvals::expire_due;
use belay_model::{ApprovalRecord, ApprovalStatus};
use belay_store::{ApprovalFilter, Store};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The step's record over 30 days, in words: "40 approvals, 0 denials, 0 rollbacks".
async fn record(store: &dyn Store, a: &ApprovalRecord) -> String {
    let since = belay_model::now_ms() - 30 * 86_400_000;
    let Ok(stats) = store.trust_stats(since).await else {
        return "record unavailable".into();
    };
    let (mut granted, mut denied, mut rollbacks, mut changes) = (0u64, 0u64, 0u64, 0u64);
    for s in stats
        .iter()
        .filter(|s| s.playbook == a.playbook && s.step == a.step)
    {
        match (s.kind, s.status.as_str()) {
            ("approval", "approved") => granted += s.count,
            ("approval", "denied") => denied += s.count,
            ("change", "reverted") => rollbacks += s.count,
            ("change", "applied" | "drifted") => changes += s.count,
            _ => {}
        }
    }
    format!(
        "{granted} approvals, {denied} denials, {rollbacks} rollbacks, {changes} changes applied in 30 days"
    )
}

/// The triggering event of the run an approval waits in, as text facts.
async fn trigger(store: &dyn Store, run_id: &str) -> Option<belay_model::Event> {
    let mut run = store.get_run(run_id).await.ok().flatten();
    while let Some(parent) = run.as_ref().and_then(|r| r.parent_run.clone()) {
        run = store.get_run(&parent).await.ok().flatten();
    }
    let run = run?;
    store
        .get_event(run.trigger_source(), &run.event_id)
        .await
        .ok()
        .flatten()
}

fn verdicts(v: &Value) -> Markup {
    let list = v.as_array().cloned().unwrap_or_default();
    html! {
        @if list.is_empty() {
            p.muted { "No guardrail governs this change." }
        } @else {
            table {
                thead { tr { th { "guardrail" } th { "verdict" } th { "rule that fired" } } }
                tbody {
                    @for g in &list {
                        @let pass = g["pass"].as_bool().unwrap_or(false);
                        tr {
                            td { (g["guardrail"].as_str().unwrap_or("?")) }
                            td { span.badge.pass[pass].fail[!pass] { @if pass { "pass" } @else { "hold: " (g["on_violation"].as_str().unwrap_or("")) } } }
                            td { (g["reason"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

fn batch_items(a: &ApprovalRecord) -> Option<Vec<(String, Value)>> {
    if !a.key.ends_with("#batch") {
        return None;
    }
    a.with.as_array().map(|items| {
        items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or("?").to_owned(),
                    i["with"].clone(),
                )
            })
            .collect()
    })
}

async fn card(store: &dyn Store, who: &Who, a: &ApprovalRecord) -> Markup {
    let event = trigger(store, &a.run_id).await;
    let record = record(store, a).await;
    let pending = a.status == ApprovalStatus::Pending;
    let quorum = a.terms.quorum.max(1) as usize;
    let got = a.approvals();
    let items = batch_items(a);
    let may = pending && who.may(Role::Responder);
    let deciders = if a.terms.approvers.is_empty() {
        "any responder or admin".to_owned()
    } else {
        a.terms.approvers.join(", ")
    };
    html! {
        article.card.hold id={ "approval-" (a.id) } data-approval=(a.id) {
            h2 {
                (a.playbook) " / " (a.key) " — " (a.action) " " (a.target)
                " " span.badge.(a.status.to_string()) { (a.status.to_string()) }
            }
            p { (a.reason) }
            div.grid {
                dl.facts {
                    dt { "approval" } dd { code { (a.id) } }
                    dt { "run" } dd { a href={ "/console/runs/" (a.run_id) } { (a.run_id) } }
                    dt { "triggered by" } dd { (a.triggered_by.as_deref().unwrap_or("—")) }
                    dt { "trust" } dd { (a.trust.to_string()) }
                    dt { "quorum" } dd.quorum {
                        span.progress { span data-got=(got) data-of=(quorum) class={ "q" (got.min(quorum) * 4 / quorum) } {} }
                        " " (got) " of " (quorum) " approvals"
                    }
                    dt { "who may decide" } dd {
                        (deciders)
                        @if a.terms.separation { " (not who triggered the run: separation of duties)" }
                    }
                    dt { "time left" } dd {
                        span.big { (from_now(a.expires_at)) }
                        br;
                        span.muted { "expires " (when(a.expires_at)) ", then " (a.terms.on_timeout.to_string()) }
                    }
                    dt { "record" } dd.record { (record) }
                    dt { "change hash" } dd { code { (a.change_hash.get(..16).unwrap_or(&a.change_hash)) } }
                }
                div {
                    h3 { "Triggering event" }
                    @match &event {
                        Some(e) => dl.facts.event {
                            dt { "id" } dd { (e.id) }
                            dt { "kind" } dd { (e.kind) }
                            dt { "source" } dd { (e.source) }
                            dt { "severity" } dd { (format!("{:?}", e.severity).to_lowercase()) }
                            dt { "observables" } dd { pre { (super::observables(&e.observables)) } }
                        },
                        None => p.muted { "not found" },
                    }
                }
            }
            h3 { "Before and after" }
            @if items.is_some() {
                p.muted { "A held batch: each item below is applied as listed (its target's state read and journaled as it is), unless you leave it out." }
            } @else {
                (diff::table(&a.action, &a.target, &a.current_state, &a.with))
            }
            h3 { "Guardrail verdicts" }
            (verdicts(&a.guardrails))
            @if !a.votes.is_empty() {
                h3 { "Votes" }
                ul {
                    @for v in &a.votes {
                        li {
                            (if v.approve { "approved by " } else { "denied by " }) (v.user)
                            @if !v.without.is_empty() { " without " (v.without.join(", ")) }
                            " at " (when(v.at))
                            @if let Some(c) = &v.comment { ": " (c) }
                        }
                    }
                }
            }
            form.decide method="post" action={ "/console/approvals/" (a.id) "/decide" } {
                input type="hidden" name="csrf" value=(who.csrf);
                @match &items {
                    Some(items) => {
                        h3 { "Items of the held batch (" (items.len()) ")" }
                        table.items {
                            thead { tr { th { "item" } th { "inputs" } @if may { th { "leave out" } } } }
                            tbody {
                                @for (key, with) in items {
                                    tr {
                                        td { code { (key) } }
                                        td { (serde_json::to_string(with).unwrap_or_default()) }
                                        @if may {
                                            td { input type="checkbox" name={ "without:" (key) } value=(key) aria-label={ "leave out " (key) }; }
                                        }
                                    }
                                }
                            }
                        }
                    },
                    None => {
                        h3 { "Resolved inputs" }
                        pre.inputs { (pretty(&a.with)) }
                    },
                }
                @if may {
                    label { "Comment" textarea name="comment" placeholder="why (kept with your vote in the audit trail)" {} }
                    p {
                        button.approve type="submit" name="decision" value="approve" { "Approve" }
                        " "
                        button.deny type="submit" name="decision" value="deny" { "Deny" }
                    }
                }
            }
        }
    }
}

/// A short fingerprint of the waiting approvals (ids and versions): the page carries the one it
/// shows, and the feed says `holds` when it changes.
fn fingerprint(list: &[ApprovalRecord]) -> String {
    let text: Vec<String> = list
        .iter()
        .map(|a| format!("{}:{}", a.id, a.version))
        .collect();
    let hash = belay_model::sha256_hex(text.join(",").as_bytes());
    hash.get(..16).unwrap_or(&hash).to_owned()
}

async fn pending(store: &dyn Store) -> Vec<ApprovalRecord> {
    store
        .approvals(&ApprovalFilter {
            status: Some(ApprovalStatus::Pending),
            run_id: None,
        })
        .await
        .unwrap_or_default()
}

async fn cards(state: &AppState, who: &Who) -> Markup {
    let store = &*state.engine().store;
    if let Ok(expired) = expire_due(store).await
        && !expired.is_empty()
    {
        tracing::info!("{} approval(s) expired", expired.len());
    }
    let list = pending(store).await;
    let mut out = Vec::with_capacity(list.len());
    for a in &list {
        out.push(card(store, who, a).await);
    }
    html! {
        div.cards data-holds=(fingerprint(&list)) {
            @if list.is_empty() {
                p.notice id="empty-queue" { "Nothing is waiting for a decision." }
            }
            @for c in &out { (c) }
        }
    }
}

/// `GET /console/approvals`: the queue.
pub async fn page(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let body = html! {
        @if let Some(done) = field(&q, "done") {
            p.notice id="decided" { "Recorded: " (done) }
        }
        p.sub { "Held changes wait here for a person. This page updates itself when holds appear or are decided." }
        div id="queue" { (cards(&state, &who).await) }
    };
    render(&state, &who, "approvals", "Approval queue", body).await
}

/// `GET /console/approvals/queue`: the queue alone, for the page's script to swap in.
pub async fn queue(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match viewer(&state, &headers, &addr).await {
        Ok(who) => Html(cards(&state, &who).await.into_string()).into_response(),
        Err(r) => r,
    }
}

/// `GET /console/approvals/feed?since=FINGERPRINT`: server-sent events; `holds` each time the
/// waiting approvals differ from what the page shows (one appears, is decided or expires).
pub async fn feed(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = viewer(&state, &headers, &addr).await {
        return r;
    }
    let since = field(&q, "since").map(str::to_owned);
    let stream = futures::stream::unfold((state, since), |(state, last)| async move {
        loop {
            let list = pending(&*state.engine().store).await;
            let now = fingerprint(&list);
            if last.as_ref() != Some(&now) {
                let ev = SseEvent::default()
                    .event("holds")
                    .data(list.len().to_string());
                return Some((Ok::<_, std::convert::Infallible>(ev), (state, Some(now))));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `POST /console/approvals/{id}/decide`: approve (optionally without some batch items) or
/// deny, with a comment, as the signed-in responder.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match writer(&state, &headers, &addr, &form, Role::Responder).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let approve = match field(&form, "decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return super::error_page(&crate::problem::Problem::bad_request(
                "choose approve or deny",
            ));
        }
    };
    let mut without: Vec<String> = form
        .iter()
        .filter(|(k, _)| k.starts_with("without:"))
        .map(|(_, v)| v.clone())
        .collect();
    without.sort();
    let body = Decision {
        comment: field(&form, "comment").map(str::to_owned),
        without: if approve { without } else { Vec::new() },
    };
    match decide_as(&state, &who.p, &id, approve, body).await {
        Ok(a) => super::see_other(&format!(
            "/console/approvals?done={}",
            urlencode(&format!("{} {}", a.id, a.status))
        )),
        Err(p) => super::error_page(&p),
    }
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
