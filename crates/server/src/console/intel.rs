//! Intel lookup: a value against the loaded threat-intel feeds (`intel.lookup`, a read
//! action), with the feeds that list it and the score.

use super::{field, pretty, render, viewer};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /console/intel?value=`.
pub async fn lookup(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let value = field(&q, "value");
    let result = match value {
        Some(v) => Some(
            state
                .engine()
                .call_read("intel.lookup", &serde_json::json!({ "value": v }))
                .await,
        ),
        None => None,
    };
    let body = html! {
        form.filters method="get" action="/console/intel" {
            label { "address, domain, URL or hash" input type="text" name="value" value=(value.unwrap_or_default()) size="50"; }
            button type="submit" { "Look up" }
        }
        @match &result {
            Some(Ok(v)) => div.card {
                p.big { (v["value"].as_str().unwrap_or_default()) " — score " (v["score"].to_string()) }
                @if let Some(hits) = v["hits"].as_array() {
                    table {
                        thead { tr { th { "feed" } th { "matched" } th { "detail" } } }
                        tbody {
                            @for h in hits {
                                tr {
                                    td { (h["feed"].as_str().or(h["source"].as_str()).unwrap_or("?")) }
                                    td { (h["matched"].as_str().or(h["value"].as_str()).unwrap_or("")) }
                                    td { (h.to_string()) }
                                }
                            }
                        }
                    }
                }
                pre { (pretty(v)) }
            },
            Some(Err(e)) => p.problem { (e) },
            None => p.muted { "Look up a value in the threat-intel feeds belay has imported." },
        }
    };
    render(&state, &who, "intel", "Intel", body).await
}
