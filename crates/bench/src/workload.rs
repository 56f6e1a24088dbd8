//! The benchmark's workloads: a three-step playbook (one read, two changes) on the no-op
//! connector of its `bench` action family, which touches no real system; and one
//! `blocklist.add` per run to a file list.

use async_trait::async_trait;
use belay_connector_api::{ActionError, Call, Connector};
use belay_playbook::{ActionKind, ActionSpec, Catalog, InverseSpec, TargetSpec, TargetType};
use serde_json::{Map, Value, json};

pub(crate) const PLAYBOOK: &str = r#"name: bench
description: Benchmark playbook - one read, two changes.
on:
  event: bench.event
trust: log
steps:
  - id: lookup
    action: bench.lookup
    with: { value: "${{ event.observables.ips[0] }}" }
  - id: block
    action: bench.block
    with: { target: "${{ event.observables.ips[0] }}", reason: "score ${{ steps.lookup.output.score }}" }
  - id: tag
    action: bench.block
    with: { target: "${{ event.observables.ips[0] }}", reason: "tagged" }
"#;

/// The list workload: each run adds its own address to one file list with the real
/// connector, so the list grows by one entry per run.
pub(crate) const LIST_PLAYBOOK: &str = r#"name: bench-list
description: Benchmark playbook - one blocklist.add per run, all to one list.
on:
  event: bench.event
trust: log
steps:
  - id: add
    action: blocklist.add
    with: { list: bench, entry: "${{ event.observables.ips[0] }}" }
"#;

/// The connector of the `bench` family: answers at once and changes nothing.
pub(crate) struct Noop;

#[async_trait]
impl Connector for Noop {
    fn family(&self) -> &str {
        "bench"
    }

    async fn call(&self, call: Call<'_>) -> std::result::Result<Value, ActionError> {
        Ok(match call.action {
            "bench.lookup" => json!({ "score": 2 }),
            _ => json!({ "changed": true }),
        })
    }

    async fn read_state(
        &self,
        _action: &str,
        _input: &Value,
    ) -> std::result::Result<Value, ActionError> {
        Ok(json!({ "present": false }))
    }
}

fn props(names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| (n.to_string(), json!({ "type": "string", "required": true })))
        .collect()
}

/// The built-in catalog plus the `bench.*` actions.
pub(crate) fn bench_catalog() -> std::result::Result<Catalog, String> {
    let mut c = Catalog::builtin();
    c.insert(ActionSpec::new(
        "bench.lookup",
        ActionKind::Read,
        "Benchmark read.",
        props(&["value"]),
        None,
        None,
    )?);
    let target = Some(TargetSpec {
        field: "target".into(),
        kind: TargetType::Ip,
    });
    let inverse = |a: &str| {
        Some(InverseSpec {
            action: a.into(),
            with: vec!["target".into(), "reason".into()],
            set: Map::new(),
            from_state: Default::default(),
        })
    };
    c.insert(ActionSpec::new(
        "bench.block",
        ActionKind::Change,
        "Benchmark change.",
        props(&["target", "reason"]),
        target.clone(),
        inverse("bench.unblock"),
    )?);
    c.insert(ActionSpec::new(
        "bench.unblock",
        ActionKind::Change,
        "Benchmark inverse.",
        props(&["target", "reason"]),
        target,
        inverse("bench.block"),
    )?);
    Ok(c)
}
