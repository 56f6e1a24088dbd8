//! The change journal and rollback: a change, a run, or everything after a checkpoint. A
//! rollback first shows its dry run (what will be reverted, what is irreversible and kept,
//! what drifted), then the person confirms; `force` (undoing drifted targets) is offered to
//! admins only, and refused by `rollback_as` for anyone else.

use super::{Who, field, render, viewer, when, writer};
use crate::auth::Role;
use crate::routes::rollback::{RollbackRequest, rollback_as};
use crate::state::AppState;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use belay_engine::rollback::{Outcome, Report};
use belay_model::{ChangeRecord, ChangeStatus};
use maud::{Markup, html};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A rollback button for `name=value` (a preview first).
fn rollback_button(who: &Who, name: &str, value: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action="/console/rollback" {
            input type="hidden" name="csrf" value=(who.csrf);
            input type="hidden" name=(name) value=(value);
            button type="submit" data-rollback=(value) { (label) }
        }
    }
}

/// The journal's table; with `actions`, a rollback button per applied change.
pub(crate) fn table(who: &Who, changes: &[ChangeRecord], actions: bool) -> Markup {
    let may = actions && who.may(Role::Responder);
    html! {
        @if changes.is_empty() {
            p.muted { "No change recorded." }
        } @else {
            table.changes {
                thead { tr { th { "change" } th { "action" } th { "target" } th { "status" } th { "allowed by" } th { "when" } th { "run" } @if may { th {} } } }
                tbody {
                    @for c in changes {
                        tr id={ "change-" (c.id) } {
                            td { code { (c.id.get(..13).unwrap_or(&c.id)) } }
                            td { code { (c.action) } }
                            td { (c.target) }
                            td { span.badge.(c.status.as_str()) { (c.status.as_str()) } }
                            td { (c.allowed_by) }
                            td { (when(c.created_at)) }
                            td { a href={ "/console/runs/" (c.run_id) } { (c.run_id.get(..13).unwrap_or(&c.run_id)) } }
                            @if may {
                                td {
                                    @if matches!(c.status, ChangeStatus::Applied | ChangeStatus::Drifted) {
                                        (rollback_button(who, "change", &c.id, "Roll back…"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/changes`: the journal, newest first, with rollback of a change, a run or to a
/// checkpoint.
pub async fn journal(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let who = match viewer(&state, &headers, &addr).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let store = state.engine().store.clone();
    let mut changes = store.changes(None).await.unwrap_or_default();
    changes.reverse();
    changes.truncate(500);
    let checkpoints = store.checkpoints().await.unwrap_or_default();
    let mut runs: Vec<&str> = Vec::new();
    for c in &changes {
        if !runs.contains(&c.run_id.as_str()) && c.status == ChangeStatus::Applied {
            runs.push(&c.run_id);
        }
    }
    let body = html! {
        @if who.may(Role::Responder) {
            div.card {
                h3 { "Roll back a run or to a checkpoint" }
                p.muted { "Every rollback shows its dry run first; nothing changes until you confirm." }
                div.filters {
                    @for r in runs.iter().take(8) {
                        (rollback_button(&who, "run", r, &format!("Run {}…", r.get(..13).unwrap_or(r))))
                    }
                    @for cp in checkpoints.iter().rev().take(5) {
                        (rollback_button(&who, "to", &cp.name, &format!("To checkpoint {}…", cp.name)))
                    }
                }
            }
        }
        (table(&who, &changes, true))
    };
    render(&state, &who, "changes", "Changes", body).await
}

fn outcome_words(o: Outcome) -> &'static str {
    match o {
        Outcome::Reverted => "reverted and verified",
        Outcome::WouldRevert => "will be reverted",
        Outcome::Drifted => "drifted since: kept unless forced",
        Outcome::Failed => "cannot be reverted",
        Outcome::Unchanged => "left the target unchanged: nothing to undo",
        Outcome::Irreversible => "irreversible: kept",
    }
}

fn report_table(r: &Report) -> Markup {
    html! {
        table.rollback {
            thead { tr { th { "change" } th { "action" } th { "target" } th { "what happens" } th { "detail" } } }
            tbody {
                @for i in &r.items {
                    tr.(format!("{:?}", i.outcome).to_lowercase()) {
                        td { code { (i.change_id.get(..13).unwrap_or(&i.change_id)) } }
                        td { code { (i.action) } }
                        td { (i.target) }
                        td { strong { (outcome_words(i.outcome)) } }
                        td { (i.detail) }
                    }
                }
            }
        }
        @if r.already_reverted > 0 { p.muted { (r.already_reverted) " change(s) of the selection were reverted before." } }
    }
}

/// `POST /console/rollback`: without `confirm`, the dry run and a confirmation form; with it,
/// the rollback.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    addr: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match writer(&state, &headers, &addr, &form, Role::Responder).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let confirm = field(&form, "confirm") == Some("yes");
    let force = field(&form, "force") == Some("yes");
    let sel = |k: &str| field(&form, k).map(str::to_owned);
    let req = RollbackRequest {
        change: sel("change"),
        run: sel("run"),
        to: sel("to"),
        since: None,
        dry_run: !confirm,
        force,
    };
    let (kind, value) = ["change", "run", "to"]
        .into_iter()
        .find_map(|k| sel(k).map(|v| (k, v)))
        .unwrap_or(("change", String::new()));
    let report = match rollback_as(&state, &who.p, req).await {
        Ok(r) => r,
        Err(p) => return super::error_page(&p),
    };
    let title = if confirm {
        "Rollback done"
    } else {
        "Rollback preview"
    };
    let body = html! {
        p { "Selection: " strong { (kind) " " (value) } }
        @if confirm {
            p.notice id="rollback-done" {
                (report.count(Outcome::Reverted)) " change(s) reverted and verified"
                @if let Some(r) = &report.rollback_run { " by run " a href={ "/console/runs/" (r) } { (r) } }
                "."
            }
        } @else {
            p.sub id="rollback-preview" { "Dry run: nothing has changed yet." }
        }
        (report_table(&report))
        @if !report.demoted.is_empty() {
            p { "Demoted to approve: " @for (pb, st) in &report.demoted { (pb) "/" (st) " " } }
        }
        @if !confirm {
            form method="post" action="/console/rollback" {
                input type="hidden" name="csrf" value=(who.csrf);
                input type="hidden" name=(kind) value=(value);
                input type="hidden" name="confirm" value="yes";
                @if who.may(Role::Admin) && report.count(Outcome::Drifted) > 0 {
                    label { input type="checkbox" name="force" value="yes"; " force: undo drifted targets too (admin)" }
                }
                button.approve type="submit" id="confirm-rollback" { "Confirm rollback" }
                " " a href="/console/changes" { "Cancel" }
            }
        }
    };
    render(&state, &who, "changes", title, body).await
}
