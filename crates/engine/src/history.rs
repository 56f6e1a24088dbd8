//! Importing past changes into the journal, so that a `baseline` guardrail can learn from
//! what happened before belay ran them (a feed's past updates, a migration from another tool).
//! Imported changes are journaled as applied, at their original time, with `allowed_by`
//! naming the import; nothing is applied to any system and no connector is called.

use crate::Result;
use belay_model::{ChangeRecord, ChangeStatus, TrustLevel, new_id};
use belay_store::{Store, Write};
use serde_json::{Value, json};

/// One past run's changes of one action: what a baseline counts as one batch.
#[derive(Debug, Clone)]
pub struct PastRun {
    /// When the run made its changes, in Unix milliseconds.
    pub at: i64,
    /// The change action (`firewall.block_ip`).
    pub action: String,
    /// The target of each change.
    pub targets: Vec<String>,
}

/// Journals `runs` as applied changes at `trust` (`log` or `guarded`: the levels baselines
/// learn from), allowed by `import:SOURCE`; returns how many changes were journaled. Each
/// run gets a run id of its own (no run record: the run happened elsewhere).
pub async fn import(
    store: &dyn Store,
    source: &str,
    trust: TrustLevel,
    runs: &[PastRun],
) -> Result<u64> {
    let mut n = 0;
    for run in runs {
        let run_id = new_id();
        let writes: Vec<Write> = run
            .targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                Write::BeginChange(ChangeRecord {
                    id: new_id(),
                    run_id: run_id.clone(),
                    step_key: format!("import[{i}]"),
                    idempotency_key: format!("{run_id}/import/{i}"),
                    action: run.action.clone(),
                    target: target.clone(),
                    with: json!({ "target": target }),
                    before: Value::Null,
                    after: Value::Null,
                    inverse: Value::Null,
                    trust,
                    guardrails: Vec::new(),
                    allowed_by: format!("import:{source}"),
                    status: ChangeStatus::Applied,
                    error: None,
                    created_at: run.at,
                    updated_at: run.at,
                    expires_at: None,
                    items: 1,
                })
            })
            .collect();
        n += writes.len() as u64;
        store.write(writes).await?;
    }
    Ok(n)
}
