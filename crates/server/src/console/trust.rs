//! The trust report: per change step its declared and effective level, its record and the
//! recommendation in words; admins lift a demotion from here (audited).

use super::{field, render, viewer, writer};
use crate::auth::Role;
use crate::state::AppState;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /console/trust`.
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
    let engine = state.engine();
    let playbooks: Vec<_> = if !engine.playbooks.is_empty() {
        engine.playbooks.iter().cloned().collect()
    } else {
        engine.stored_playbooks().await.unwrap_or_default()
    };
    let report =
        match belay_engine::trust::report_on(&engine, &playbooks, &state.config.trust).await {
            Ok(r) => r,
            Err(e) => return super::error_page(&e.into()),
        };
    let body = html! {
        @if let Some(done) = field(&q, "reset") { p.notice id="reset-done" { "Demotion lifted: " (done) } }
        p.sub { "Each change step's trust: what its playbook declares, what is in force, and its record." }
        table.trust {
            thead { tr { th { "playbook / step" } th { "action" } th { "declared" } th { "effective" } th { "record" } th { "recommendation" } @if who.may(Role::Admin) { th {} } } }
            tbody {
                @for s in &report {
                    tr id={ "trust-" (s.playbook) "-" (s.step) } {
                        td { strong { (s.playbook) } " / " (s.step) }
                        td { code { (s.action) } }
                        td { (s.declared.as_str()) }
                        td {
                            span.badge.shadow[s.effective != s.declared] { (s.effective.as_str()) }
                            @if let Some(d) = &s.demotion { br; span.muted { "demoted: " (d.reason) } }
                        }
                        td {
                            (s.runs) " runs, " (s.changes) " changes, " (s.approvals_granted) " approvals, "
                            (s.approvals_denied) " denials, " (s.approvals_expired) " expired, "
                            (s.guardrail_holds) " guardrail holds, " (s.rollbacks) " rollbacks, " (s.failures) " failures"
                        }
                        td { strong { (s.recommendation) } br; span.muted { (s.reason) } }
                        @if who.may(Role::Admin) {
                            td {
                                @if s.demotion.is_some() {
                                    form.inline method="post" action="/console/trust/reset" {
                                        input type="hidden" name="csrf" value=(who.csrf);
                                        input type="hidden" name="playbook" value=(s.playbook);
                                        input type="hidden" name="step" value=(s.step);
                                        button type="submit" { "Reset demotion" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if report.is_empty() { p.muted { "No change step is loaded." } }
    };
    render(&state, &who, "trust", "Trust report", body).await
}

/// `POST /console/trust/reset` (admin): lifts the demotion of one step.
pub async fn reset(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match writer(&state, &headers, &addr, &form, Role::Admin).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (Some(pb), Some(step)) = (field(&form, "playbook"), field(&form, "step")) else {
        return super::error_page(&crate::problem::Problem::bad_request(
            "name the playbook and the step",
        ));
    };
    let lifted = match state.engine().reset_trust(pb, step, &who.p.name).await {
        Ok(l) => l,
        Err(e) => return super::error_page(&e.into()),
    };
    let subject = format!("{pb}/{step}");
    state
        .audit_request(
            &who.p,
            "trust.reset",
            &subject,
            if lifted { "lifted" } else { "was not demoted" },
        )
        .await;
    super::see_other(&format!(
        "/console/trust?reset={}",
        super::approvals::urlencode(&subject)
    ))
}
