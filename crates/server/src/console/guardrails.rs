//! Guardrails: what each one limits, the holds and denials it caused, and for each baseline
//! guardrail a chart of the changes per window over the last 30 days against its learned limit.

use super::{chart, render, viewer, when};
use crate::state::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use belay_engine::guard::Guardrail;
use belay_store::ApprovalFilter;
use maud::{Markup, html};
use std::net::SocketAddr;
use std::sync::Arc;

const DAY_MS: i64 = 86_400_000;
/// At most this many bars per chart (windows are merged beyond it).
const MAX_BARS: usize = 240;

fn limits(g: &Guardrail) -> String {
    let mut out = Vec::new();
    if g.never.is_some() {
        out.push("never-list".to_owned());
    }
    if let Some((n, per)) = g.rate {
        out.push(format!("at most {n} per {}", humantime(per)));
    }
    if let Some(n) = g.batch {
        out.push(format!("at most {n} per run"));
    }
    if let Some(b) = &g.baseline {
        out.push(format!("baseline per {} × {}", humantime(b.per), b.factor));
    }
    out.join("; ")
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The chart of one baseline guardrail.
async fn baseline_chart(state: &AppState, g: &Guardrail) -> Markup {
    let Some(b) = &g.baseline else {
        return html! {};
    };
    let engine = state.engine();
    let now = belay_model::now_ms();
    let since = now - 30 * DAY_MS;
    let actions = engine.guarded_actions(g);
    let history = match engine.store.change_history(&actions, since).await {
        Ok(h) => h,
        Err(e) => return html! { p.problem { "history unavailable: " (e.to_string()) } },
    };
    let figures = engine.baseline(g).await.unwrap_or_default();
    let per = (b.per.as_millis() as i64).max(1);
    let windows = ((now - since) / per).max(1) as usize;
    let merge = windows.div_ceil(MAX_BARS).max(1);
    let mut counts = vec![0u64; windows.div_ceil(merge)];
    for &(at, n) in &history.batches {
        let w = (at - since) / per;
        if w >= 0 && (w as usize) < windows {
            counts[w as usize / merge] += n;
        }
    }
    let learning = b.learning(&figures);
    let limit = (learning.is_none() && figures.p99_window > 0)
        .then_some(figures.p99_window as f64 * b.factor * merge as f64);
    let per_label = humantime(b.per * merge as u32);
    html! {
        div.chart data-guardrail=(g.name) {
            (chart::bars(
                &format!("changes per {per_label} over 30 days under {}", g.name),
                &counts,
                limit,
                &when(since),
                &when(now),
            ))
            p.muted {
                "Changes per " (per_label) " over the last 30 days (" (actions.join(", ")) "). "
                @match &learning {
                    Some(l) => { "Still learning: " (l.describe()) "." },
                    None => { "Learned: 99th percentile " (figures.p99_window) " per window, " (figures.p99_batch) " per run; the limit is " (b.factor) " times that." },
                }
            }
        }
    }
}

/// `GET /console/guardrails`.
pub async fn page(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let engine = state.engine();
    let approvals = engine
        .store
        .approvals(&ApprovalFilter::default())
        .await
        .unwrap_or_default();
    let holds: Vec<_> = approvals
        .iter()
        .rev()
        .filter_map(|a| {
            let fired: Vec<String> = a
                .guardrails
                .as_array()?
                .iter()
                .filter(|v| v["pass"] == false)
                .map(|v| {
                    format!(
                        "{}: {}",
                        v["guardrail"].as_str().unwrap_or("?"),
                        v["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            (!fired.is_empty()).then_some((a, fired))
        })
        .take(100)
        .collect();
    let mut charts = Vec::new();
    for g in &engine.guardrails().list {
        charts.push((g, baseline_chart(&state, g).await));
    }
    let body = html! {
        h2 { "Guardrails" }
        @if charts.is_empty() { p.muted { "No guardrail is loaded." } }
        @for (g, chart) in &charts {
            section.card id={ "guardrail-" (g.name) } {
                h3 { (g.name) }
                p { "Governs " code { (g.applies_to.join(", ")) } ": " (limits(g)) "; on violation: " (format!("{:?}", g.on_violation).to_lowercase()) "." }
                (chart)
            }
        }
        h2 { "Holds and denials" }
        @if holds.is_empty() { p.muted { "No guardrail has held a change." } }
        @else {
            table {
                thead { tr { th { "when" } th { "run" } th { "step" } th { "rule that fired" } th { "outcome" } } }
                tbody {
                    @for (a, fired) in &holds {
                        tr {
                            td { (when(a.created_at)) }
                            td { a href={ "/console/runs/" (a.run_id) } { (a.playbook) } }
                            td { (a.key) }
                            td { @for f in fired { (f) br; } }
                            td { span.badge.(a.status.to_string()) { (a.status.to_string()) } }
                        }
                    }
                }
            }
        }
    };
    render(&state, &who, "guardrails", "Guardrails", body).await
}
