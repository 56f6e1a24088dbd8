//! The audit trail: whether the hash chain verifies, its head, and the export (JSON lines).

use super::{render, viewer, when};
use crate::state::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /console/audit`.
pub async fn page(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let store = state.engine().store.clone();
    let verified = belay_store::verify_audit(&*store).await;
    let head = store.audit_head().await.ok().flatten();
    let recent = match &head {
        Some((seq, _)) => store
            .audit_entries((seq - 30).max(0), 30)
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let body = html! {
        div.card {
            @match &verified {
                Ok(Ok(n)) => p.notice id="audit-intact" { "The audit chain is intact: " (n) " entries verified." },
                Ok(Err(problem)) => p.problem id="audit-broken" { "The audit chain does not verify: " (problem.to_string()) },
                Err(e) => p.problem { "The audit chain could not be read: " (e.to_string()) },
            }
            @if let Some((seq, hash)) = &head {
                p { "Head: entry " (seq) ", hash " code { (hash) } }
            }
            p { a href="/console/audit/export" download="belay-audit.jsonl" { "Download the export (JSON lines)" } }
        }
        h2 { "Latest entries" }
        table {
            thead { tr { th { "#" } th { "when" } th { "kind" } th { "actor" } th { "subject" } th { "detail" } } }
            tbody {
                @for e in recent.iter().rev() {
                    tr {
                        td { (e.seq) }
                        td { (when(e.at)) }
                        td { code { (e.kind) } }
                        td { (e.actor) }
                        td { (e.subject) }
                        td { (e.detail.to_string()) }
                    }
                }
            }
        }
    };
    render(&state, &who, "audit", "Audit trail", body).await
}

/// `GET /console/audit/export`: every entry as JSON lines, a download.
pub async fn export(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = viewer(&state, &headers, &addr).await {
        return r;
    }
    let store = state.engine().store.clone();
    let mut out = String::new();
    let mut after = 0;
    loop {
        let batch = match store.audit_entries(after, 1000).await {
            Ok(b) => b,
            Err(e) => return super::error_page(&e.into()),
        };
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for e in &batch {
            out.push_str(&serde_json::to_string(e).unwrap_or_default());
            out.push('\n');
        }
    }
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"belay-audit.jsonl\"",
            ),
        ],
        out,
    )
        .into_response()
}
