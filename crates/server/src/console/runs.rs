//! Runs: a filterable list, and one run as a timeline of its steps (inputs, outputs, errors,
//! decisions), with the triggering event and the changes it made.

use super::{field, pretty, render, viewer, when};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use belay_model::RunStatus;
use belay_store::RunFilter;
use maud::html;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /console/runs?status=&playbook=&event_id=`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let status = field(&q, "status").and_then(|s| s.parse::<RunStatus>().ok());
    let filter = RunFilter {
        status,
        playbook: field(&q, "playbook").map(str::to_owned),
        event_id: field(&q, "event_id").map(str::to_owned),
        limit: Some(200),
        before: None,
    };
    let runs = state
        .engine()
        .store
        .list_runs(&filter)
        .await
        .unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/runs" {
            label { "status"
                select name="status" {
                    option value="" { "any" }
                    @for s in RunStatus::ALL {
                        option value=(s.as_str()) selected[status == Some(*s)] { (s.as_str()) }
                    }
                }
            }
            label { "playbook" input type="text" name="playbook" value=(field(&q, "playbook").unwrap_or_default()); }
            label { "event" input type="text" name="event_id" value=(field(&q, "event_id").unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        table.runs {
            thead { tr { th { "run" } th { "playbook" } th { "status" } th { "event" } th { "started" } th { "error" } } }
            tbody {
                @for r in &runs {
                    tr {
                        td { a href={ "/console/runs/" (r.id) } { code { (r.id.get(..13).unwrap_or(&r.id)) } } }
                        td { (r.playbook) @if r.parent_run.is_some() { span.muted { " (sub-playbook)" } } }
                        td { span.badge.(r.status.as_str()) { (r.status.as_str()) } }
                        td { (r.event_id) }
                        td { (when(r.created_at)) }
                        td { (r.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if runs.is_empty() { p.muted { "No run matches." } }
    };
    render(&state, &who, "runs", "Runs", body).await
}

/// `GET /console/runs/{id}`: the timeline.
pub async fn timeline(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let store = state.engine().store.clone();
    let Some(run) = store.get_run(&id).await.ok().flatten() else {
        return super::error_page(&crate::problem::Problem::not_found(format!(
            "no run `{id}`"
        )));
    };
    let steps = store.steps(&id).await.unwrap_or_default();
    let event = store
        .get_event(run.trigger_source(), &run.event_id)
        .await
        .ok()
        .flatten();
    let changes = store.changes(Some(&id)).await.unwrap_or_default();
    let approvals = store
        .approvals(&belay_store::ApprovalFilter {
            status: None,
            run_id: Some(id.clone()),
        })
        .await
        .unwrap_or_default();
    let body = html! {
        div.grid {
            dl.facts.card {
                dt { "run" } dd { code { (run.id) } }
                dt { "playbook" } dd { (run.playbook) " " span.muted { (run.playbook_hash.get(..12).unwrap_or(&run.playbook_hash)) } }
                dt { "status" } dd { span.badge.(run.status.as_str()) { (run.status.as_str()) } }
                dt { "started" } dd { (when(run.created_at)) }
                dt { "updated" } dd { (when(run.updated_at)) }
                @if let Some(p) = &run.parent_run { dt { "called by" } dd { a href={ "/console/runs/" (p) } { (p) } } }
                @if let Some(e) = &run.error { dt { "error" } dd.problem { (e) } }
            }
            div.card {
                h3 { "Triggering event" }
                @match &event {
                    Some(e) => {
                        dl.facts {
                            dt { "id" } dd { (e.id) }
                            dt { "kind" } dd { (e.kind) }
                            dt { "source" } dd { (e.source) }
                            dt { "severity" } dd { (e.severity.to_string()) }
                            dt { "time" } dd { (e.time.to_rfc3339()) }
                        }
                        pre { (super::observables(&e.observables)) }
                    },
                    None => p.muted { "event " (run.event_id) " not found" },
                }
            }
        }
        h2 { "Steps" }
        ol.timeline {
            @for s in &steps {
                li.(s.status.as_str()) {
                    strong { (s.key) } " " code { (s.action) } " "
                    span.badge.(s.status.as_str()) { (s.status.as_str()) } " "
                    span.badge { "decision: " (s.decision.as_str()) }
                    @if let Some(t) = s.trust { " " span.muted { "trust " (t.as_str()) } }
                    " " span.muted { (when(s.started_at)) @if s.attempts > 1 { ", " (s.attempts) " attempts" } }
                    div.grid {
                        div { h3 { "inputs" } pre { (pretty(&s.with)) } }
                        div { h3 { "output" } pre { (pretty(&s.output)) } }
                    }
                    @if let Some(e) = &s.error { p.problem { (e) } }
                }
            }
        }
        @if !approvals.is_empty() {
            h2 { "Decisions" }
            table {
                thead { tr { th { "approval" } th { "step" } th { "status" } th { "votes" } } }
                tbody {
                    @for a in &approvals {
                        tr {
                            td { code { (a.id) } }
                            td { (a.key) }
                            td { span.badge.(a.status.to_string()) { (a.status.to_string()) } }
                            td {
                                @for v in &a.votes {
                                    (if v.approve { "approved by " } else { "denied by " }) (v.user)
                                    @if !v.without.is_empty() { " without " (v.without.join(", ")) }
                                    @if let Some(c) = &v.comment { ": " (c) }
                                    br;
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Changes" }
        (super::changes::table(&who, &changes, false))
    };
    render(&state, &who, "runs", &format!("Run {}", run.playbook), body).await
}
