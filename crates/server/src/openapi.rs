//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use crate::routes::{approvals, catalog, control, events, health, hooks, reads, rollback};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "belay",
        description = "Trustable security automation: the engine as a service. Every route but \
            the health checks needs `Authorization: Bearer TOKEN` (`belay tokens create`) with \
            the role it names; webhooks authenticate per source. Errors are RFC 9457 problem \
            details."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        health::openapi,
        health::whoami,
        events::post_events,
        hooks::post_hook,
        reads::list_runs,
        reads::get_run,
        reads::list_changes,
        reads::trust_report,
        reads::audit_verify,
        approvals::list,
        approvals::show,
        approvals::approve,
        approvals::deny,
        rollback::rollback,
        catalog::playbooks,
        catalog::actions,
        control::pauses,
        control::pause,
        control::unpause,
        control::reload,
        crate::channels::chat::callback,
        crate::channels::email::confirm_page,
        crate::channels::email::decide,
    ),
    components(schemas(
        crate::problem::Problem,
        crate::state::EventAccepted,
        events::EventsAccepted,
        reads::RunsPage,
        approvals::Decision,
        rollback::RollbackRequest,
        control::PauseRequest,
    )),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

/// The document with each operation's required role (`x-required-role`) from the route table.
pub fn document_with_roles(routes: &[crate::RouteSpec]) -> serde_json::Value {
    let mut doc = document();
    for r in routes {
        let method = r.method.as_str().to_ascii_lowercase();
        if let Some(op) = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(r.path))
            .and_then(|p| p.get_mut(&method))
            .and_then(|o| o.as_object_mut())
        {
            let role = r.role.map_or("none", |role| role.as_str());
            op.insert("x-required-role".into(), role.into());
        }
    }
    doc
}
