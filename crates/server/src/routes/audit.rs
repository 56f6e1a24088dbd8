//! `GET /api/v1/audit/export`: the audit trail as JSON lines or CEF, streamed a page at a
//! time (never held whole in memory), as `belay audit export`.

use super::params::bad_query;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use belay_model::audit_cef::cef_line;
use belay_store::Store;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// Entries read from the store at once.
const PAGE: usize = 2000;

/// How to export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `jsonl` (one entry per line, the default) or `cef` (for a SIEM).
    #[param(pattern = "^(jsonl|cef)$")]
    format: Option<String>,
    /// Only entries at or after this RFC 3339 time.
    since: Option<String>,
}

/// The audit trail, oldest first, streamed: `application/x-ndjson` (one entry per line) or
/// CEF lines (`text/plain`).
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", security(("bearer" = [])),
    params(ExportQuery),
    responses((status = 200, description = "the entries, one per line", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "a bad format or time", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn export(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(bad_query)?;
    let cef = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("cef") => true,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "`format` is `jsonl` or `cef`, not `{other}`"
            ))
            .at_field("format"));
        }
    };
    let since = q
        .since
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .map_err(|e| {
                    Problem::bad_request(format!("`since` is not an RFC 3339 time: {e}"))
                        .at_field("since")
                })
        })
        .transpose()?;
    let store: Arc<dyn Store> = state.engine().store.clone();
    // One page of entries per chunk: the next page is read only when the client has taken
    // the previous one.
    let pages = futures::stream::unfold(Some(0i64), move |after| {
        let store = store.clone();
        async move {
            let after = after?;
            match store.audit_entries(after, PAGE).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|e| e.seq);
                    let mut chunk = String::new();
                    for e in page.iter().filter(|e| since.is_none_or(|s| e.at >= s)) {
                        if cef {
                            chunk.push_str(&cef_line(e, env!("CARGO_PKG_VERSION")));
                        } else {
                            chunk.push_str(&serde_json::to_string(e).unwrap_or_default());
                        }
                        chunk.push('\n');
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), next))
                }
                Err(e) => {
                    // The status is sent already: end the body early, so the client sees a
                    // truncated export rather than a complete one.
                    tracing::error!("exporting the audit trail: {e}");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    let content_type = if cef {
        "text/plain; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(pages),
    )
        .into_response())
}
