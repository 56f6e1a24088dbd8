//! Before the guard gate checks never-lists that name a `resolve` action (a CMDB lookup), the
//! step's targets are looked up there, so each is checked as every identity the directory
//! knows. Each distinct question is asked once per step, a few at a time.

use super::RunState;
use crate::guard::Guardrail;
use crate::guard::resolve::{self, Identities, Resolution};
use belay_connector_api::{Call as ConnectorCall, Connector};
use belay_playbook::TargetType;
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Lookups in flight at once for one step.
const CONCURRENT_LOOKUPS: usize = 8;

impl RunState {
    /// What each governing never-list's `resolve` action says of each target.
    pub(super) async fn identities(
        &self,
        governing: &[&Guardrail],
        kind: TargetType,
        targets: &[String],
    ) -> Identities {
        // (guardrail, target) → (action, input), and the distinct (action, input) questions.
        let mut wanted: Vec<((String, String), (String, Value))> = Vec::new();
        for g in governing {
            let Some(action) = g.never.as_ref().and_then(|n| n.resolve.as_deref()) else {
                continue;
            };
            for t in targets {
                if let Some(input) = resolve::lookup_input(kind, t) {
                    wanted.push(((g.name.clone(), t.clone()), (action.to_owned(), input)));
                }
            }
        }
        let mut questions: Vec<(String, Value)> = wanted.iter().map(|(_, q)| q.clone()).collect();
        questions.sort_by_cached_key(|(action, input)| (action.clone(), input.to_string()));
        questions.dedup();
        let mut answers: HashMap<(String, String), Resolution> = HashMap::new();
        let mut asking = futures::stream::iter(questions.into_iter().map(|(action, input)| {
            let key = (action.clone(), input.to_string());
            let conn = self.connector(&action);
            async move { (key, ask(conn, &action, &input).await) }
        }))
        .buffer_unordered(CONCURRENT_LOOKUPS);
        while let Some((key, r)) = asking.next().await {
            answers.insert(key, r);
        }
        wanted
            .into_iter()
            .filter_map(|(key, (action, input))| {
                answers
                    .get(&(action, input.to_string()))
                    .map(|r| (key, r.clone()))
            })
            .collect()
    }
}

/// Asks the directory one question.
async fn ask(
    conn: std::result::Result<Arc<dyn Connector>, String>,
    action: &str,
    input: &Value,
) -> Resolution {
    let conn = match conn {
        Ok(c) => c,
        Err(m) => return Resolution::Failed(m),
    };
    let call = ConnectorCall {
        action,
        input,
        idempotency_key: None,
        before: None,
    };
    match conn.call(call).await {
        Ok(answer) => resolve::read_answer(&answer),
        Err(e) => Resolution::Failed(e.message),
    }
}
