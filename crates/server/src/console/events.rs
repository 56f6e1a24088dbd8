//! Events search: by kind, source and observable, over the last days. Every field is shown
//! as text: an event is data, never markup.

use super::{field, render, viewer};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// How far back the search looks.
const DAYS: i64 = 30;

/// `GET /console/events?kind=&source=&observable=`.
pub async fn search(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let kind = field(&q, "kind");
    let source = field(&q, "source");
    let observable = field(&q, "observable");
    let since = belay_model::now_ms() - DAYS * 86_400_000;
    let mut events = state
        .engine()
        .store
        .events_since(since, false, 20_000)
        .await
        .unwrap_or_default();
    events.retain(|e| {
        kind.is_none_or(|k| e.kind.contains(k))
            && source.is_none_or(|s| e.source.contains(s))
            && observable
                .is_none_or(|o| serde_json::to_string(&e.observables).is_ok_and(|t| t.contains(o)))
    });
    events.reverse();
    events.truncate(200);
    let body = html! {
        form.filters method="get" action="/console/events" {
            label { "kind" input type="text" name="kind" value=(kind.unwrap_or_default()); }
            label { "source" input type="text" name="source" value=(source.unwrap_or_default()); }
            label { "observable" input type="text" name="observable" value=(observable.unwrap_or_default()); }
            button type="submit" { "Search" }
        }
        table.events {
            thead { tr { th { "id" } th { "time" } th { "kind" } th { "source" } th { "severity" } th { "observables" } th { "data" } th {} } }
            tbody {
                @for e in &events {
                    tr.event data-event=(e.id) {
                        td { (e.id) }
                        td { (e.time.to_rfc3339()) }
                        td { (e.kind) }
                        td { (e.source) }
                        td { (e.severity.to_string()) }
                        td { (super::observables(&e.observables)) }
                        td { pre { (serde_json::to_string_pretty(&e.data).unwrap_or_default()) } }
                        td { a href={ "/console/runs?event_id=" (super::approvals::urlencode(&e.id)) } { "runs" } }
                    }
                }
            }
        }
        @if events.is_empty() { p.muted { "No event matches in the last " (DAYS) " days." } }
    };
    render(&state, &who, "events", "Events", body).await
}
