//! Cases: the list, and one case file with its evidence (and their hashes), notes and the runs
//! linked to it.

use super::{render, viewer, when};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /console/cases`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cases = state.engine().store.cases(None).await.unwrap_or_default();
    let body = html! {
        table.cases {
            thead { tr { th { "case" } th { "title" } th { "severity" } th { "status" } th { "assignee" } th { "opened" } } }
            tbody {
                @for c in &cases {
                    tr {
                        td { a href={ "/console/cases/" (c.id) } { (c.id) } }
                        td { (c.title) }
                        td { (c.severity) }
                        td { span.badge { (c.status.as_str()) } }
                        td { (c.assignee.as_deref().unwrap_or("—")) }
                        td { (when(c.opened_at)) }
                    }
                }
            }
        }
        @if cases.is_empty() { p.muted { "No case is open." } }
    };
    render(&state, &who, "cases", "Cases", body).await
}

/// `GET /console/cases/{id}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(file) = state.engine().store.case_file(&id).await.ok().flatten() else {
        return super::error_page(&crate::problem::Problem::not_found(format!(
            "no case `{id}`"
        )));
    };
    let c = &file.case;
    let body = html! {
        dl.facts.card {
            dt { "title" } dd { (c.title) }
            dt { "severity" } dd { (c.severity) }
            dt { "status" } dd { (c.status.as_str()) @if let Some(r) = &c.resolution { " (" (r) ")" } }
            dt { "description" } dd { (c.description.as_deref().unwrap_or("")) }
            dt { "observables" } dd { (c.observables.join(", ")) }
        }
        h2 { "File" }
        ol.timeline {
            @for e in &file.entries {
                li {
                    strong { (e.kind.as_str()) } " " span.muted { (when(e.at)) }
                    @if let Some(r) = &e.run_id { " · run " a href={ "/console/runs/" (r) } { (r) } }
                    @if let Some(h) = e.body["sha256"].as_str() { br; "sha256 " code { (h) } }
                    pre { (serde_json::to_string_pretty(&e.body).unwrap_or_default()) }
                }
            }
        }
    };
    render(&state, &who, "cases", &format!("Case {}", c.id), body).await
}
