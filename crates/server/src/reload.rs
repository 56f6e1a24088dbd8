//! Reloading playbooks and guardrails (`SIGHUP`, `POST /api/v1/reload`): all of them load
//! clean or the running set stays, with the reason. A reload that raises a step's trust level
//! or changes the guardrails needs an admin. Runs already started keep their engine (and their
//! stored playbook version); every reload is audited with the versions before and after.

use crate::problem::Problem;
use crate::state::AppState;
use axum::http::StatusCode;
use belay_engine::guard::Guardrails;
use belay_engine::{Engine, EngineConfig};
use belay_model::AuditDraft;
use belay_playbook::PlaybookSet;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a reload loads from disk: the playbooks, the guardrails and the engine settings that
/// describe them; or every reason it could not (one per line).
pub type Loaded = Result<(PlaybookSet, Guardrails, EngineConfig), String>;

/// Loads the playbooks and guardrails again (given by `belay serve`).
#[derive(Clone)]
pub struct Reloader(pub Arc<dyn Fn() -> Loaded + Send + Sync>);

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloader")
    }
}

/// Each playbook's version hash, by name, and the guardrails' hash.
fn versions(e: &Engine) -> Value {
    let playbooks: BTreeMap<&str, &str> = e
        .playbooks
        .iter()
        .map(|p| (p.name.as_str(), p.hash.as_str()))
        .collect();
    json!({ "playbooks": playbooks, "guardrails": e.config.guardrails_hash })
}

/// Why the new set needs an admin: each step whose trust level rises, and guardrails changed.
fn needs_admin(old: &Engine, new: &PlaybookSet, new_config: &EngineConfig) -> Vec<String> {
    let mut why = Vec::new();
    if old.config.guardrails_hash != new_config.guardrails_hash {
        why.push("the guardrails change".to_owned());
    }
    for pb in new.iter() {
        let Some(before) = old.playbooks.get(&pb.name) else {
            continue;
        };
        for step in &pb.steps {
            let now = step.trust.unwrap_or(pb.trust);
            let was = before
                .steps
                .iter()
                .find(|s| s.id == step.id)
                .map(|s| s.trust.unwrap_or(before.trust));
            if let Some(was) = was
                && now > was
            {
                why.push(format!(
                    "step `{}` of `{}` rises from {was} to {now}",
                    step.id, pb.name
                ));
            }
        }
    }
    why
}

impl AppState {
    /// Reloads as `actor` (an admin when `admin`); the versions before and after, or why the
    /// running set stays.
    pub async fn reload(&self, actor: &str, admin: bool, via: Value) -> Result<Value, Problem> {
        let Some(reloader) = self.config.reload.clone() else {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "this server was started without a playbook directory to reload",
            ));
        };
        let _one = self.reloading.lock().await;
        let old = self.engine();
        let before = versions(&old);
        let loaded = match tokio::task::spawn_blocking(move || (reloader.0)()).await {
            Ok(l) => l,
            Err(e) => Err(format!("the reload task failed: {e}")),
        };
        let refusal = match &loaded {
            Err(reason) => Some((StatusCode::UNPROCESSABLE_ENTITY, reason.clone())),
            Ok((set, _, config)) => {
                let why = needs_admin(&old, set, config);
                (!why.is_empty() && !admin).then(|| {
                    let why = why.join("; ");
                    (
                        StatusCode::FORBIDDEN,
                        format!("only an admin may reload this: {why}"),
                    )
                })
            }
        };
        let (set, guardrails, config) = match (refusal, loaded) {
            (None, Ok(l)) => l,
            (refusal, loaded) => {
                let (status, reason) = refusal.unwrap_or_else(|| {
                    let reason = loaded.err().unwrap_or_default();
                    (StatusCode::UNPROCESSABLE_ENTITY, reason)
                });
                self.audit_reload(actor, &before, None, Some(&reason), &via)
                    .await;
                tracing::warn!("reload refused; kept the running set: {reason}");
                return Err(Problem::new(
                    status,
                    format!("kept the running set: {reason}"),
                ));
            }
        };
        let new = old.reloaded(Arc::new(set), Arc::new(guardrails), config);
        let after = versions(&new);
        self.swap_engine(new);
        self.audit_reload(actor, &before, Some(&after), None, &via)
            .await;
        Ok(json!({ "reloaded": true, "before": before, "after": after }))
    }

    async fn audit_reload(
        &self,
        actor: &str,
        before: &Value,
        after: Option<&Value>,
        refused: Option<&str>,
        via: &Value,
    ) {
        let draft = AuditDraft {
            kind: if refused.is_some() {
                "engine.reload_refused"
            } else {
                "engine.reloaded"
            }
            .into(),
            actor: actor.into(),
            subject: "playbooks".into(),
            detail: json!({ "before": before, "after": after, "reason": refused, "via": via }),
        };
        if let Err(e) = self.engine().store.append_audit(vec![draft]).await {
            tracing::error!("recording a reload in the audit trail: {e}");
        }
    }
}
