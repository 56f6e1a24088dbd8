//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use crate::routes::{
    approvals, audit, cases, catalog, checkpoints, control, directory, events, events_read,
    guardrails, health, hooks, intel, journal, playbooks, reads, replay, rollback, secrets,
    sources, trust,
};
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
        events_read::search,
        events_read::get_event,
        journal::list_changes,
        journal::get_change,
        checkpoints::list,
        checkpoints::create,
        reads::trust_report,
        trust::reset,
        replay::replay,
        reads::audit_verify,
        audit::export,
        guardrails::check,
        guardrails::holds,
        intel::lookup,
        intel::stats,
        intel::import,
        cases::list,
        cases::create,
        cases::show,
        cases::note,
        cases::evidence,
        playbooks::show,
        playbooks::lint,
        directory::list_users,
        directory::add_user,
        directory::disable_user,
        directory::list_tokens,
        directory::create_token,
        directory::revoke_token,
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
        sources::list,
        secrets::list,
        secrets::set,
        secrets::delete,
        crate::channels::chat::callback,
        crate::channels::email::confirm_page,
        crate::channels::email::decide,
    ),
    components(schemas(
        crate::problem::Problem,
        crate::state::EventAccepted,
        events::EventsAccepted,
        reads::RunsPage,
        reads::RunView,
        belay_model::RunRecord,
        belay_model::StepRecord,
        belay_model::ChangeRecord,
        belay_model::Event,
        belay_model::CaseRecord,
        approvals::Decision,
        rollback::RollbackRequest,
        control::PauseRequest,
        events_read::EventsPage,
        events_read::EventView,
        checkpoints::CheckpointRequest,
        guardrails::CheckRequest,
        guardrails::CheckAnswer,
        trust::ResetRequest,
        trust::ResetAnswer,
        replay::ReplayRequest,
        intel::ImportRequest,
        intel::ImportAnswer,
        cases::CaseRequest,
        cases::CaseWritten,
        cases::NoteRequest,
        cases::EvidenceRequest,
        playbooks::LintRequest,
        playbooks::LintAnswer,
        playbooks::LintProblem,
        directory::UserRequest,
        directory::UserSaved,
        directory::TokenRequest,
        directory::TokenCreated,
        sources::SourcesAnswer,
        crate::sources::SourceStatus,
        secrets::SecretValue,
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
