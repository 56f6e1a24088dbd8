//! The page shell: navigation, who is signed in, sign-out, the pauses in force and (for
//! admins) the pause switch on every page; and the security headers of every console answer.

use super::Who;
use crate::auth::Role;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use belay_store::PauseRecord;
use maud::{DOCTYPE, Markup, html};

const NAV: &[(&str, &str)] = &[
    ("approvals", "Approvals"),
    ("runs", "Runs"),
    ("changes", "Changes"),
    ("guardrails", "Guardrails"),
    ("trust", "Trust"),
    ("audit", "Audit"),
    ("events", "Events"),
    ("intel", "Intel"),
    ("cases", "Cases"),
];

/// Content-Security-Policy of every console answer: scripts, styles and everything else only
/// from this server's files (no inline script, no inline style), no framing, forms only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to a console answer.
pub(crate) async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · belay" }
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

/// A page without navigation (sign-in, errors).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { (body) }
        }
    }
}

/// A console page: `active` is the navigation entry it belongs to.
pub(crate) fn page(
    who: &Who,
    active: &str,
    title: &str,
    pauses: &[PauseRecord],
    body: Markup,
) -> Markup {
    let roles: Vec<&str> = who.p.roles.iter().map(|r| r.as_str()).collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-csrf=(who.csrf) {
                header.top {
                    a.brand href="/console/approvals" { "belay" }
                    nav {
                        @for (slug, label) in NAV {
                            a class=@if *slug == active { "active" } href={ "/console/" (slug) } { (label) }
                        }
                    }
                    span.who { (who.p.name) " (" (roles.join(", ")) ")" }
                    form.inline method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(who.csrf);
                        button.link type="submit" { "Sign out" }
                    }
                }
                (pause_bar(who, pauses))
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The pauses in force, and for admins the switch to pause or resume all automation.
fn pause_bar(who: &Who, pauses: &[PauseRecord]) -> Markup {
    let all = pauses.iter().find(|p| p.playbook.is_none());
    html! {
        @if !pauses.is_empty() || who.may(Role::Admin) {
            section.pausebar.paused[all.is_some()] {
                @for p in pauses {
                    span.pause {
                        "Paused: " (p.playbook.as_deref().unwrap_or("all automation"))
                        " by " (p.paused_by) " — " (p.reason)
                    }
                }
                @if who.may(Role::Admin) {
                    @if all.is_some() {
                        form.inline method="post" action="/console/unpause" {
                            input type="hidden" name="csrf" value=(who.csrf);
                            input type="text" name="reason" placeholder="why resume";
                            button type="submit" id="resume-all" { "Resume all automation" }
                        }
                    } @else {
                        form.inline method="post" action="/console/pause" {
                            input type="hidden" name="csrf" value=(who.csrf);
                            input type="text" name="playbook" placeholder="playbook (empty: all)";
                            input type="text" name="reason" placeholder="why (required)" required;
                            button.warn type="submit" id="pause" { "Pause automation" }
                        }
                        @for p in pauses.iter().filter(|p| p.playbook.is_some()) {
                            form.inline method="post" action="/console/unpause" {
                                input type="hidden" name="csrf" value=(who.csrf);
                                input type="hidden" name="playbook" value=(p.playbook.as_deref().unwrap_or_default());
                                button type="submit" { "Resume " (p.playbook.as_deref().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}
