//! One planned change checked against the guardrails on request (`belay guardrails check`,
//! `POST /api/v1/guardrails/check`): every governing guardrail's verdict, with the recent
//! counts and learned baselines the executor would use. It only asks: nothing is planned,
//! held or applied.

use super::{Context, Guardrails, Verdict};
use belay_playbook::Catalog;
use belay_store::Store;
use serde_json::Value;
use std::collections::HashMap;

/// Why a check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The catalog has no such action.
    #[error("no action `{0}`")]
    UnknownAction(String),
    /// The inputs do not fit the action: each problem.
    #[error("invalid inputs for `{action}`: {}", problems.join("; "))]
    Invalid {
        /// The action.
        action: String,
        /// What is wrong with the inputs.
        problems: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] belay_store::StoreError),
}

/// The verdict of every guardrail governing `action` with inputs `input`, as the executor
/// would decide it now.
pub async fn check_planned(
    store: &dyn Store,
    guardrails: &Guardrails,
    catalog: &Catalog,
    action: &str,
    input: &Value,
) -> Result<Vec<Verdict>, CheckError> {
    let spec = catalog
        .get(action)
        .ok_or_else(|| CheckError::UnknownAction(action.to_owned()))?;
    if let Err(problems) = spec.validate_input(input) {
        return Err(CheckError::Invalid {
            action: action.to_owned(),
            problems,
        });
    }
    let mut recent = HashMap::new();
    let mut baselines = HashMap::new();
    let now = belay_model::now_ms();
    for g in guardrails.governing(action, &[]) {
        let actions = guardrails.actions_of(g, catalog);
        let window = g.rate.map(|(_, per)| per).or(g.baseline.map(|b| b.per));
        if let Some(per) = window {
            let since = now - i64::try_from(per.as_millis()).unwrap_or(i64::MAX / 2);
            recent.insert(g.name.clone(), store.count_changes(&actions, since).await?);
        }
        if let Some(b) = &g.baseline {
            let since = now - i64::try_from(b.lookback().as_millis()).unwrap_or(i64::MAX / 2);
            let history = store.change_history(&actions, since).await?;
            baselines.insert(g.name.clone(), b.learn(&history, now));
        }
    }
    let targets = vec![spec.target_of(input)];
    Ok(guardrails.check(
        &[],
        &Context {
            action: spec,
            targets: &targets,
            recent: &recent,
            baselines: &baselines,
            identities: &Default::default(),
        },
    ))
}

impl crate::Engine {
    /// [`check_planned`] against this engine's store, guardrails and catalog.
    pub async fn check_planned(
        &self,
        action: &str,
        input: &Value,
    ) -> Result<Vec<Verdict>, CheckError> {
        check_planned(&*self.store, &self.guardrails, &self.catalog, action, input).await
    }
}
