//! Behaviour of the run executor: step order and outputs, `for_each`, `if`, retries, timeouts,
//! `on_error`, sub-playbooks, trust levels and the change journal, resume without double
//! apply, strict inputs, trigger matching and duplicate events.
//!
//! Every test builds its own engine on a temporary SQLite store, with a recording connector
//! for the test action family `t` (`t.read`, `t.change` / `t.undo`). The connector's behaviour
//! is driven by the inputs of each call: `sleep_ms` sleeps, `fail_times: N` fails the first N
//! calls with the same inputs (transiently, or permanently with `permanent: true`).

use async_trait::async_trait;
use belay_connector_api::{ActionError, Call, Connector, Core, Registry};
use belay_engine::{Engine, EngineConfig, RunReport, new_run};
use belay_model::{
    ChangeRecord, ChangeStatus, Decision, Event, RunStatus, StepRecord, StepStatus, TrustLevel,
    now_ms,
};
use belay_playbook::{
    ActionKind, ActionSpec, Catalog, InverseSpec, PlaybookSet, TargetSpec, TargetType,
};
use belay_store::{Accepted, SqliteOptions, SqliteStore, Store};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The recording connector
// ---------------------------------------------------------------------------------------------

/// One call the connector received.
#[derive(Debug, Clone)]
struct Seen {
    action: String,
    input: Value,
    key: Option<String>,
    /// The before-state the engine handed the call.
    before: Option<Value>,
}

/// Connector of the `t` family: records calls, counts them per (action, input), fails, sleeps,
/// and keeps the state of change targets in a shared map.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Seen>>,
    per_input: Mutex<HashMap<(String, String), u64>>,
    /// `value` inputs of `t.read` calls, in the order the calls finished.
    finished: Mutex<Vec<Value>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Target → state, read by `read_state` and written by `t.change` / `t.undo`.
    state: Mutex<HashMap<String, Value>>,
    /// The store, to look at the journal while a change action is being called.
    store: OnceLock<Arc<dyn Store>>,
    /// The journal status of each change call's idempotency key, as seen during the call.
    journal_at_call: Mutex<Vec<Option<ChangeStatus>>>,
}

/// Decrements the in-flight counter even when the call is cancelled by a timeout.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Recorder {
    fn calls_of(&self, action: &str) -> Vec<Seen> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.action == action)
            .cloned()
            .collect()
    }

    fn all_calls(&self) -> Vec<Seen> {
        self.calls.lock().unwrap().clone()
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn set_state(&self, target: &str, v: Value) {
        self.state.lock().unwrap().insert(target.to_owned(), v);
    }
}

#[async_trait]
impl Connector for Recorder {
    fn family(&self) -> &str {
        "t"
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let n = {
            let mut counts = self.per_input.lock().unwrap();
            let c = counts
                .entry((call.action.to_owned(), call.input.to_string()))
                .or_default();
            *c += 1;
            *c
        };
        self.calls.lock().unwrap().push(Seen {
            action: call.action.to_owned(),
            input: call.input.clone(),
            key: call.idempotency_key.map(str::to_owned),
            before: call.before.cloned(),
        });
        if let (Some(key), Some(store)) = (call.idempotency_key, self.store.get()) {
            let journaled = store.change_by_key(key).await.unwrap();
            self.journal_at_call
                .lock()
                .unwrap()
                .push(journaled.map(|c| c.status));
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight(&self.in_flight);
        if let Some(ms) = call.input.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        drop(guard);
        let fail_times = call
            .input
            .get("fail_times")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if n <= fail_times {
            let msg = format!("{} failed on call {n}", call.action);
            return Err(if call.input.get("permanent") == Some(&Value::Bool(true)) {
                ActionError::permanent(msg)
            } else {
                ActionError::transient(msg)
            });
        }
        let value = call.input.get("value").cloned().unwrap_or(Value::Null);
        let target = call.input.get("target").and_then(Value::as_str);
        match call.action {
            "t.read" => {
                self.finished.lock().unwrap().push(value.clone());
                Ok(json!({ "value": value }))
            }
            "t.change" | "t.isolate" => {
                let target = target.expect("a change has a target");
                self.state.lock().unwrap().insert(target.into(), value);
                Ok(json!({ "changed": true }))
            }
            "t.undo" => {
                let target = target.expect("t.undo has a target");
                self.state.lock().unwrap().remove(target);
                Ok(json!({ "changed": true }))
            }
            other => Err(ActionError::permanent(format!("no action `{other}`"))),
        }
    }

    async fn read_state(&self, _action: &str, input: &Value) -> Result<Value, ActionError> {
        let target = input.get("target").and_then(Value::as_str).unwrap_or("");
        let v = self
            .state
            .lock()
            .unwrap()
            .get(target)
            .cloned()
            .unwrap_or(Value::Null);
        Ok(json!({ "value": v }))
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

fn inputs(spec: &[(&str, Value)]) -> Map<String, Value> {
    spec.iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .collect()
}

fn test_catalog() -> Catalog {
    let mut c = Catalog::builtin();
    let knobs = [
        ("sleep_ms", json!({ "type": "integer" })),
        ("fail_times", json!({ "type": "integer" })),
        ("permanent", json!({ "type": "boolean" })),
    ];
    let mut read = vec![("value", json!({}))];
    read.extend(knobs.clone());
    c.insert(
        ActionSpec::new(
            "t.read",
            ActionKind::Read,
            "Test read: echoes `value`.",
            inputs(&read),
            None,
            None,
        )
        .unwrap(),
    );
    let target = Some(TargetSpec {
        field: "target".into(),
        kind: TargetType::Generic,
    });
    let mut change = vec![
        ("target", json!({ "type": "string", "required": true })),
        ("value", json!({})),
    ];
    change.extend(knobs);
    c.insert(
        ActionSpec::new(
            "t.change",
            ActionKind::Change,
            "Test change: sets the target's state to `value`.",
            inputs(&change),
            target.clone(),
            Some(InverseSpec {
                action: "t.undo".into(),
                with: vec!["target".into()],
                set: inputs(&[("reason", json!("rollback"))]),
                from_state: Default::default(),
            }),
        )
        .unwrap()
        .with_applied_state(inputs(&[("value", json!("input.value"))])),
    );
    c.insert(
        ActionSpec::new(
            "t.isolate",
            ActionKind::Change,
            "Test change on a host: sets the host's state to `value`.",
            inputs(&[
                ("target", json!({ "type": "string", "required": true })),
                ("value", json!({})),
            ]),
            Some(TargetSpec {
                field: "target".into(),
                kind: TargetType::Host,
            }),
            Some(InverseSpec {
                action: "t.undo".into(),
                with: vec!["target".into()],
                set: inputs(&[("reason", json!("rollback"))]),
                from_state: Default::default(),
            }),
        )
        .unwrap(),
    );
    c.insert(
        ActionSpec::new(
            "t.undo",
            ActionKind::Change,
            "Test inverse: clears the target's state.",
            inputs(&[
                ("target", json!({ "type": "string", "required": true })),
                ("reason", json!({ "type": "string" })),
            ]),
            target,
            Some(InverseSpec {
                action: "t.change".into(),
                with: vec!["target".into()],
                set: Map::new(),
                from_state: Default::default(),
            }),
        )
        .unwrap(),
    );
    c
}

struct Harness {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    rec: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

/// An engine with the given playbooks (YAML texts), a fresh store and a fresh recorder.
fn harness(playbooks: &[&str]) -> Harness {
    harness_guarded(playbooks, None)
}

/// Like [`harness`], with the guardrails of one YAML file.
fn harness_guarded(playbooks: &[&str], guardrails: Option<&str>) -> Harness {
    harness_with(playbooks, guardrails, Vec::new())
}

/// Like [`harness_guarded`], with more connectors registered beside the recorder.
fn harness_with(
    playbooks: &[&str],
    guardrails: Option<&str>,
    more: Vec<Arc<dyn Connector>>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let pb_dir = dir.path().join("playbooks");
    std::fs::create_dir_all(&pb_dir).unwrap();
    for (i, text) in playbooks.iter().enumerate() {
        std::fs::write(pb_dir.join(format!("pb{i}.yaml")), text).unwrap();
    }
    let catalog = Arc::new(test_catalog());
    let set = PlaybookSet::load_paths(&[pb_dir], &catalog).unwrap_or_else(|errs| {
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        panic!("test playbooks do not load:\n{}", text.join("\n"))
    });
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("data"), SqliteOptions::default()).unwrap());
    let rec = Arc::new(Recorder::default());
    let _ = rec.store.set(store.clone());
    let mut registry = Registry::new();
    registry.register(Arc::new(Core));
    registry.register(rec.clone());
    for c in more {
        registry.register(c);
    }
    let guardrails = match guardrails {
        Some(text) => {
            let path = dir.path().join("guardrails.yaml");
            std::fs::write(&path, text).unwrap();
            belay_engine::guard::Guardrails::load(&path).unwrap()
        }
        None => Default::default(),
    };
    let engine = Engine::with_guardrails(
        store.clone(),
        Arc::new(set),
        catalog,
        registry,
        EngineConfig::default(),
        Arc::new(guardrails),
    );
    Harness {
        engine,
        store,
        rec,
        _dir: dir,
    }
}

fn event(kind: &str, extra: Value) -> Event {
    let mut v = json!({ "kind": kind, "source": "test" });
    if let Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    Event::from_json(v).unwrap()
}

impl Harness {
    async fn run_with(&self, playbook: &str, ev: Event, dry_run: bool) -> RunReport {
        let pb = self
            .engine
            .playbooks
            .get(playbook)
            .unwrap_or_else(|| panic!("playbook `{playbook}` is not loaded"));
        self.engine.run_once(&pb, ev, dry_run).await.unwrap()
    }

    async fn run(&self, playbook: &str, data: Value) -> RunReport {
        self.run_with(playbook, event("t.event", json!({ "data": data })), false)
            .await
    }

    async fn steps(&self, run_id: &str) -> Vec<StepRecord> {
        self.store.steps(run_id).await.unwrap()
    }

    async fn step(&self, run_id: &str, key: &str) -> StepRecord {
        self.steps(run_id)
            .await
            .into_iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("run {run_id} has no step record `{key}`"))
    }

    async fn stored_status(&self, run_id: &str) -> RunStatus {
        self.store.get_run(run_id).await.unwrap().unwrap().status
    }
}

/// The `value` inputs of every `t.read` call, in call order.
fn read_values(rec: &Recorder) -> Vec<Value> {
    rec.calls_of("t.read")
        .into_iter()
        .map(|c| c.input.get("value").cloned().unwrap_or(Value::Null))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Order and outputs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn steps_run_in_order_and_later_steps_see_typed_outputs() {
    let h = harness(&[r#"
name: chain
steps:
  - id: first
    action: t.read
    with: { value: { list: [1, 2, 3], count: 3, name: "x" } }
  - id: second
    action: t.read
    with: { value: "${{ steps.first.output.value.list }}" }
  - id: third
    action: t.read
    with:
      value:
        n: "${{ steps.first.output.value.count }}"
        status: "${{ steps.first.status }}"
        text: "n=${{ steps.first.output.value.count }} of ${{ steps.second.output.value | length }}"
"#]);
    let report = h.run("chain", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(
        read_values(&h.rec),
        vec![
            json!({ "list": [1, 2, 3], "count": 3, "name": "x" }),
            json!([1, 2, 3]),
            json!({ "n": 3, "status": "succeeded", "text": "n=3 of 3" }),
        ],
        "steps run in order; a whole `${{ }}` keeps its type (list stays a list, number a number)"
    );
    let order: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(order, ["first", "second", "third"]);
    let second = h.step(&report.run_id, "second").await;
    assert_eq!(second.with, json!({ "value": [1, 2, 3] }));
    assert_eq!(second.output, json!({ "value": [1, 2, 3] }));
    assert_eq!(h.stored_status(&report.run_id).await, RunStatus::Succeeded);
}

// ---------------------------------------------------------------------------------------------
// 2. for_each
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn for_each_outputs_keep_item_order_when_items_finish_out_of_order() {
    let h = harness(&[r#"
name: fan
steps:
  - id: fan
    action: t.read
    for_each: ${{ event.data.items }}
    concurrency: 3
    with: { value: "${{ item.v }}-${{ index }}", sleep_ms: "${{ item.ms }}" }
  - id: collect
    action: t.read
    with: { value: "${{ steps.fan.output }}" }
"#]);
    let items = json!([{ "v": "a", "ms": 150 }, { "v": "b", "ms": 75 }, { "v": "c", "ms": 0 }]);
    let report = h.run("fan", json!({ "items": items })).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let finished = h.rec.finished.lock().unwrap().clone();
    assert_eq!(
        &finished[..3],
        &[json!("c-2"), json!("b-1"), json!("a-0")],
        "the items really finished out of order (the test relies on it)"
    );
    assert_eq!(
        h.rec.calls_of("t.read").len(),
        4,
        "every item ran, then collect"
    );
    let collect = h.step(&report.run_id, "collect").await;
    assert_eq!(
        collect.with,
        json!({ "value": [{ "value": "a-0" }, { "value": "b-1" }, { "value": "c-2" }] }),
        "outputs are in item order"
    );
    let keys: Vec<(String, Option<i64>)> = h
        .steps(&report.run_id)
        .await
        .into_iter()
        .filter(|s| s.step == "fan")
        .map(|s| (s.key, s.item))
        .collect();
    assert_eq!(
        keys,
        [
            ("fan[0]".to_string(), Some(0)),
            ("fan[1]".to_string(), Some(1)),
            ("fan[2]".to_string(), Some(2)),
        ]
    );
}

const CONCURRENCY_PB: &str = r#"
name: conc
steps:
  - id: fan
    action: t.read
    for_each: ${{ event.data.items }}
    concurrency: ${CONC}
    with: { value: "${{ item }}", sleep_ms: 30 }
"#;

#[tokio::test]
async fn for_each_with_concurrency_one_runs_items_one_at_a_time() {
    let h = harness(&[&CONCURRENCY_PB.replace("${CONC}", "1")]);
    let report = h.run("conc", json!({ "items": [1, 2, 3, 4] })).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(
        read_values(&h.rec),
        [json!(1), json!(2), json!(3), json!(4)]
    );
    assert_eq!(h.rec.max_in_flight(), 1);
}

#[tokio::test]
async fn for_each_with_higher_concurrency_runs_items_at_once() {
    let h = harness(&[&CONCURRENCY_PB.replace("${CONC}", "4")]);
    let report = h.run("conc", json!({ "items": [1, 2, 3, 4] })).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(h.rec.calls_of("t.read").len(), 4);
    let max = h.rec.max_in_flight();
    assert!(
        (2..=4).contains(&max),
        "up to 4 items at once, observed {max}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. if
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn if_false_skips_the_step_without_calling_the_connector() {
    let h = harness(&[r#"
name: cond
steps:
  - id: never
    action: t.read
    if: ${{ event.severity == "critical" }}
    with: { value: never }
  - id: always
    action: t.read
    if: ${{ steps.never.status == "skipped" }}
    with: { value: always }
"#]);
    let report = h.run("cond", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(read_values(&h.rec), [json!("always")]);
    let never = h.step(&report.run_id, "never").await;
    assert_eq!(never.status, StepStatus::Skipped);
    assert_eq!(never.decision, Decision::Skip);
    assert_eq!(
        h.step(&report.run_id, "always").await.status,
        StepStatus::Succeeded
    );
}

// ---------------------------------------------------------------------------------------------
// 4. retry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retry_recovers_from_transient_failures_on_the_third_attempt() {
    let h = harness(&[r#"
name: retry
steps:
  - id: flaky
    action: t.read
    retry: { attempts: 3, backoff: 10ms }
    with: { value: ok, fail_times: 2 }
"#]);
    let report = h.run("retry", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(h.rec.calls_of("t.read").len(), 3);
    let rec = h.step(&report.run_id, "flaky").await;
    assert_eq!(rec.status, StepStatus::Succeeded);
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.output, json!({ "value": "ok" }));
}

#[tokio::test]
async fn a_change_is_called_with_its_journaled_before_state_and_retried_without_it() {
    let h = harness(&[r#"
name: retry-change
trust: log
steps:
  - id: apply
    action: t.change
    retry: { attempts: 2, backoff: 10ms }
    with: { target: h1, value: blocked, fail_times: 1 }
"#]);
    h.rec.set_state("h1", json!("open"));
    let report = h.run("retry-change", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let calls = h.rec.calls_of("t.change");
    let journaled = h.store.changes(Some(&report.run_id)).await.unwrap();
    assert_eq!(journaled[0].before, json!({ "value": "open" }));
    assert_eq!(
        calls.iter().map(|c| c.before.clone()).collect::<Vec<_>>(),
        [Some(journaled[0].before.clone()), None],
        "the first attempt gets the state read under the lock; a retry reads afresh"
    );
}

#[tokio::test]
async fn retry_gives_up_after_the_last_attempt() {
    let h = harness(&[r#"
name: retry
steps:
  - id: flaky
    action: t.read
    retry: { attempts: 3, backoff: 10ms }
    with: { value: ok, fail_times: 9 }
"#]);
    let report = h.run("retry", json!({})).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert_eq!(h.rec.calls_of("t.read").len(), 3);
    let rec = h.step(&report.run_id, "flaky").await;
    assert_eq!(rec.attempts, 3);
    let err = rec.error.unwrap_or_default();
    assert!(err.contains("after 3 attempts"), "{err}");
}

#[tokio::test]
async fn retry_does_not_repeat_permanent_errors() {
    let h = harness(&[r#"
name: retry
steps:
  - id: broken
    action: t.read
    retry: { attempts: 3, backoff: 10ms }
    with: { value: ok, fail_times: 9, permanent: true }
"#]);
    let report = h.run("retry", json!({})).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert_eq!(h.rec.calls_of("t.read").len(), 1);
    let rec = h.step(&report.run_id, "broken").await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.attempts, 1);
}

// ---------------------------------------------------------------------------------------------
// 5. timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn timeout_fails_a_step_whose_call_takes_too_long() {
    let h = harness(&[r#"
name: slow
steps:
  - id: slow
    action: t.read
    timeout: 50ms
    with: { value: late, sleep_ms: 1000 }
"#]);
    let t0 = Instant::now();
    let report = h.run("slow", json!({})).await;
    let took = t0.elapsed();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(took < Duration::from_millis(800), "took {took:?}");
    let rec = h.step(&report.run_id, "slow").await;
    assert_eq!(rec.status, StepStatus::Failed);
    let err = rec.error.unwrap_or_default();
    assert!(err.contains("timed out"), "{err}");
    assert!(h.rec.finished.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. on_error
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn on_error_continue_keeps_the_run_going_and_exposes_the_failure() {
    let h = harness(&[r#"
name: cont
steps:
  - id: x
    action: t.read
    on_error: continue
    with: { value: x, fail_times: 1, permanent: true }
  - id: y
    action: t.read
    if: ${{ steps.x.status == "failed" }}
    with: { value: "x was ${{ steps.x.status }}" }
"#]);
    let report = h.run("cont", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(read_values(&h.rec), [json!("x"), json!("x was failed")]);
    assert_eq!(h.step(&report.run_id, "x").await.status, StepStatus::Failed);
    assert_eq!(
        h.step(&report.run_id, "y").await.status,
        StepStatus::Succeeded
    );
    assert_eq!(h.stored_status(&report.run_id).await, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_failed_step_stops_the_run_by_default() {
    let h = harness(&[r#"
name: stop
steps:
  - id: x
    action: t.read
    with: { value: x, fail_times: 1, permanent: true }
  - id: y
    action: t.read
    with: { value: y }
"#]);
    let report = h.run("stop", json!({})).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert_eq!(read_values(&h.rec), [json!("x")], "y is never called");
    let err = report.error.clone().unwrap_or_default();
    assert!(err.contains("step `x` failed"), "{err}");
    assert!(err.contains("t.read failed on call 1"), "{err}");
    let run = h.store.get_run(&report.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.error.as_deref(), Some(err.as_str()));
    assert!(h.steps(&report.run_id).await.iter().all(|s| s.step != "y"));
}

// ---------------------------------------------------------------------------------------------
// 7. sub-playbooks
// ---------------------------------------------------------------------------------------------

const CHILD: &str = r#"
name: child
steps:
  - id: echo
    action: t.read
    with: { value: "hello ${{ inputs.who }}", sleep_ms: "${{ inputs.n }}" }
"#;

const FAILING_CHILD: &str = r#"
name: failing_child
steps:
  - id: boom
    action: t.read
    with: { value: "${{ inputs.who }}", fail_times: 1, permanent: true }
"#;

#[tokio::test]
async fn sub_playbook_sees_inputs_and_returns_its_run_and_step_outputs() {
    let h = harness(&[
        CHILD,
        r#"
name: parent
steps:
  - id: sub
    playbook: child
    with: { who: "${{ event.data.who }}", n: 1 }
  - id: after
    action: t.read
    with: { value: "${{ steps.sub.output }}" }
"#,
    ]);
    let report = h.run("parent", json!({ "who": "alice" })).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let calls = read_values(&h.rec);
    assert_eq!(calls[0], json!("hello alice"), "the child sees `inputs.*`");
    let child_id = format!("{}.sub", report.run_id);
    assert_eq!(
        calls[1],
        json!({
            "run_id": child_id,
            "status": "succeeded",
            "steps": { "echo": { "status": "succeeded", "output": { "value": "hello alice" } } },
        })
    );
    let child = h.store.get_run(&child_id).await.unwrap().unwrap();
    assert_eq!(child.parent_run.as_deref(), Some(report.run_id.as_str()));
    assert_eq!(child.status, RunStatus::Succeeded);
    assert_eq!(child.inputs, json!({ "who": "alice", "n": 1 }));
    let sub = h.step(&report.run_id, "sub").await;
    assert_eq!(sub.decision, Decision::SubPlaybook);
    assert_eq!(sub.status, StepStatus::Succeeded);
}

#[tokio::test]
async fn a_failing_sub_playbook_fails_the_parent_step() {
    let h = harness(&[
        FAILING_CHILD,
        r#"
name: parent
steps:
  - id: sub
    playbook: failing_child
    with: { who: bob }
  - id: after
    action: t.read
    with: { value: after }
"#,
    ]);
    let report = h.run("parent", json!({})).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert_eq!(read_values(&h.rec), [json!("bob")], "`after` never runs");
    let sub = h.step(&report.run_id, "sub").await;
    assert_eq!(sub.status, StepStatus::Failed);
    let err = sub.error.unwrap_or_default();
    assert!(err.contains("sub-playbook `failing_child`"), "{err}");
    assert!(err.contains("step `boom` failed"), "{err}");
    let child = h
        .store
        .get_run(&format!("{}.sub", report.run_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.status, RunStatus::Failed);
}

// ---------------------------------------------------------------------------------------------
// 8. trust levels and the journal
// ---------------------------------------------------------------------------------------------

fn change_pb(trust: Option<&str>) -> String {
    let trust = trust.map_or(String::new(), |t| format!("trust: {t}\n"));
    format!(
        r#"
name: chg
{trust}steps:
  - id: look
    action: t.read
    with: {{ value: seen }}
  - id: apply
    action: t.change
    with: {{ target: h1, value: blocked }}
  - id: after
    action: t.read
    with: {{ value: "after ${{{{ steps.apply.status }}}}" }}
"#
    )
}

#[tokio::test]
async fn shadow_change_is_recorded_as_planned_and_not_called() {
    let h = harness(&[&change_pb(Some("shadow"))]);
    let report = h.run("chg", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(h.rec.calls_of("t.change").is_empty());
    let apply = h.step(&report.run_id, "apply").await;
    assert_eq!(apply.decision, Decision::Shadow);
    assert_eq!(apply.status, StepStatus::Planned);
    assert_eq!(apply.trust, Some(TrustLevel::Shadow));
    assert_eq!(apply.with, json!({ "target": "h1", "value": "blocked" }));
    assert!(
        h.store
            .changes(Some(&report.run_id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(read_values(&h.rec), [json!("seen"), json!("after planned")]);
}

#[tokio::test]
async fn approve_change_is_held_and_the_run_waits() {
    // No `trust:` line: `approve` is the default.
    let h = harness(&[&change_pb(None)]);
    let report = h.run("chg", json!({})).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert_eq!(
        h.stored_status(&report.run_id).await,
        RunStatus::WaitingApproval
    );
    assert!(h.rec.calls_of("t.change").is_empty());
    let apply = h.step(&report.run_id, "apply").await;
    assert_eq!(apply.decision, Decision::AwaitApproval);
    assert_eq!(apply.status, StepStatus::Held);
    assert_eq!(
        read_values(&h.rec),
        [json!("seen")],
        "nothing after the hold runs"
    );
    assert!(
        h.store
            .changes(Some(&report.run_id))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn log_change_is_applied_and_journaled_with_before_after_and_inverse() {
    let h = harness(&[&change_pb(Some("log"))]);
    h.rec.set_state("h1", json!("open"));
    let report = h.run("chg", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let key = format!("{}/apply", report.run_id);
    let calls = h.rec.calls_of("t.change");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].key.as_deref(), Some(key.as_str()));
    assert_eq!(
        calls[0].input,
        json!({ "target": "h1", "value": "blocked" })
    );
    assert_eq!(
        *h.rec.journal_at_call.lock().unwrap(),
        [Some(ChangeStatus::Pending)],
        "the journal entry is durable before the change action is called"
    );

    let changes = h.store.changes(Some(&report.run_id)).await.unwrap();
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(c.action, "t.change");
    assert_eq!(c.target, "h1");
    assert_eq!(c.step_key, "apply");
    assert_eq!(c.idempotency_key, key);
    assert_eq!(c.with, json!({ "target": "h1", "value": "blocked" }));
    assert_eq!(c.before, json!({ "value": "open" }));
    assert_eq!(c.after, json!({ "value": "blocked" }));
    assert_eq!(
        c.inverse,
        json!({ "action": "t.undo", "with": { "target": "h1", "reason": "rollback" } })
    );
    assert_eq!(c.trust, TrustLevel::Log);
    assert_eq!(c.allowed_by, "trust:log");
    assert_eq!(c.status, ChangeStatus::Applied);
    assert_eq!(h.store.change_by_key(&key).await.unwrap().as_ref(), Some(c));

    let apply = h.step(&report.run_id, "apply").await;
    assert_eq!(apply.decision, Decision::Apply);
    assert_eq!(apply.status, StepStatus::Succeeded);
    assert_eq!(apply.output, json!({ "changed": true }));
    assert_eq!(
        read_values(&h.rec),
        [json!("seen"), json!("after succeeded")]
    );
}

#[tokio::test]
async fn log_change_items_of_for_each_get_their_own_idempotency_keys() {
    let h = harness(&[r#"
name: many
trust: log
steps:
  - id: block
    action: t.change
    for_each: ${{ event.data.hosts }}
    with: { target: "${{ item }}", value: on }
"#]);
    let report = h.run("many", json!({ "hosts": ["a", "b", "c"] })).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let mut keys: Vec<String> = h
        .rec
        .calls_of("t.change")
        .into_iter()
        .filter_map(|c| c.key)
        .collect();
    keys.sort();
    let want: Vec<String> = (0..3)
        .map(|i| format!("{}/block[{i}]", report.run_id))
        .collect();
    assert_eq!(keys, want);
    let changes = h.store.changes(Some(&report.run_id)).await.unwrap();
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| c.status == ChangeStatus::Applied));
}

#[tokio::test]
async fn dry_run_calls_no_change_action() {
    let h = harness(&[&change_pb(Some("log"))]);
    let report = h.run_with("chg", event("t.event", json!({})), true).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(h.rec.calls_of("t.change").is_empty());
    let apply = h.step(&report.run_id, "apply").await;
    assert_eq!(apply.decision, Decision::DryRun);
    assert_eq!(apply.status, StepStatus::Planned);
    assert!(
        h.store
            .changes(Some(&report.run_id))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.store
            .get_run(&report.run_id)
            .await
            .unwrap()
            .unwrap()
            .dry_run
    );
}

// ---------------------------------------------------------------------------------------------
// 9. resume without double apply
// ---------------------------------------------------------------------------------------------

const RESUME_PB: &str = r#"
name: resume
trust: log
steps:
  - id: look
    action: t.read
    with: { value: on }
  - id: apply
    action: t.change
    with: { target: h9, value: "${{ steps.look.output.value }}" }
"#;

/// Stores an event and a run of `resume` for it, as if a crash happened mid-run, and
/// journals the `apply` change with `status`. Returns the run and the change's key.
async fn crashed_run(h: &Harness, status: ChangeStatus) -> (belay_model::RunRecord, String) {
    let pb = h.engine.playbooks.get("resume").unwrap();
    let ev = event("t.event", json!({}));
    let run = new_run(&pb, (&ev.id, &ev.source), None, Value::Null, false);
    let accepted = h
        .store
        .accept_event(&ev, std::slice::from_ref(&run), None)
        .await
        .unwrap();
    assert_eq!(accepted, Accepted::New);
    let key = format!("{}/apply", run.id);
    let now = now_ms();
    let change = ChangeRecord {
        id: belay_model::new_id(),
        run_id: run.id.clone(),
        step_key: "apply".into(),
        idempotency_key: key.clone(),
        action: "t.change".into(),
        target: "h9".into(),
        with: json!({ "target": "h9", "value": "on" }),
        before: json!({ "value": null }),
        after: Value::Null,
        inverse: json!({ "action": "t.undo", "with": { "target": "h9", "reason": "rollback" } }),
        trust: TrustLevel::Log,
        guardrails: Vec::new(),
        allowed_by: "trust:log".into(),
        status,
        error: None,
        created_at: now,
        updated_at: now,
        expires_at: None,
        items: 1,
    };
    let stored = h.store.begin_change(None, &change).await.unwrap();
    assert_eq!(stored.status, status);
    (run, key)
}

#[tokio::test]
async fn resume_reissues_a_pending_change_once_with_its_idempotency_key() {
    let h = harness(&[RESUME_PB]);
    let (run, key) = crashed_run(&h, ChangeStatus::Pending).await;
    let report = h.engine.execute_resumed(run.clone()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let calls = h.rec.calls_of("t.change");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].key.as_deref(), Some(key.as_str()));
    let change = h.store.change_by_key(&key).await.unwrap().unwrap();
    assert_eq!(change.status, ChangeStatus::Applied);
    assert_eq!(change.after, json!({ "value": "on" }));
    assert_eq!(h.store.changes(Some(&run.id)).await.unwrap().len(), 1);
    assert_eq!(h.stored_status(&run.id).await, RunStatus::Succeeded);
}

/// The `change.outcome_verified` verdicts the trail holds for `change_id`, after a
/// `change.unknown` entry for it.
async fn verdicts(h: &Harness, change_id: &str) -> Vec<String> {
    let entries = h.store.audit_entries(0, 10_000).await.unwrap();
    let unknown = entries
        .iter()
        .position(|e| e.kind == "change.unknown" && e.subject == change_id)
        .expect("the change was marked unknown first");
    entries[unknown..]
        .iter()
        .filter(|e| e.kind == "change.outcome_verified" && e.subject == change_id)
        .map(|e| e.detail["verdict"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_unknown_outcome_the_target_shows_applied_is_recorded_without_a_second_call() {
    let h = harness(&[RESUME_PB]);
    let (run, key) = crashed_run(&h, ChangeStatus::Pending).await;
    // The call reached the target before the process died.
    h.rec.state.lock().unwrap().insert("h9".into(), json!("on"));
    let report = h.engine.execute_resumed(run.clone()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(
        h.rec.calls_of("t.change").is_empty(),
        "applied once already"
    );
    let change = h.store.change_by_key(&key).await.unwrap().unwrap();
    assert_eq!(change.status, ChangeStatus::Applied);
    assert_eq!(change.after, json!({ "value": "on" }));
    assert_eq!(verdicts(&h, &change.id).await, ["applied"]);
}

#[tokio::test]
async fn an_unknown_outcome_the_target_shows_not_applied_is_applied_once() {
    let h = harness(&[RESUME_PB]);
    let (run, key) = crashed_run(&h, ChangeStatus::Pending).await;
    let report = h.engine.execute_resumed(run.clone()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(h.rec.calls_of("t.change").len(), 1);
    let change = h.store.change_by_key(&key).await.unwrap().unwrap();
    assert_eq!(change.status, ChangeStatus::Applied);
    assert_eq!(verdicts(&h, &change.id).await, ["not_applied"]);
}

#[tokio::test]
async fn an_unknown_outcome_with_a_drifted_target_is_held_for_a_person() {
    let h = harness(&[RESUME_PB]);
    let (run, key) = crashed_run(&h, ChangeStatus::Pending).await;
    // Someone else set the target to a third state meanwhile.
    h.rec
        .state
        .lock()
        .unwrap()
        .insert("h9".into(), json!("off"));
    let report = h.engine.execute_resumed(run.clone()).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(
        h.rec.calls_of("t.change").is_empty(),
        "never applied blindly"
    );
    let change = h.store.change_by_key(&key).await.unwrap().unwrap();
    assert_eq!(change.status, ChangeStatus::Unknown);
    let apply = h.step(&run.id, "apply").await;
    assert!(
        apply
            .error
            .as_deref()
            .unwrap_or("")
            .contains("unknown outcome"),
        "{apply:?}"
    );
    assert_eq!(verdicts(&h, &change.id).await, ["drift"]);
    assert_eq!(h.rec.state.lock().unwrap()["h9"], json!("off"));
}

#[tokio::test]
async fn resume_never_reapplies_a_change_whose_outcome_is_recorded() {
    let h = harness(&[RESUME_PB]);
    let (run, key) = crashed_run(&h, ChangeStatus::Applied).await;
    let now = now_ms();
    h.store
        .put_step(&StepRecord {
            run_id: run.id.clone(),
            key: "look".into(),
            step: "look".into(),
            seq: 0,
            item: None,
            action: "t.read".into(),
            with: json!({ "value": "on" }),
            decision: Decision::Read,
            trust: None,
            guardrails: Vec::new(),
            status: StepStatus::Succeeded,
            output: json!({ "value": "on" }),
            error: None,
            attempts: 1,
            started_at: now,
            finished_at: Some(now),
        })
        .await
        .unwrap();
    let report = h.engine.execute_resumed(run.clone()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(
        h.rec.calls_of("t.change").is_empty(),
        "applied once already"
    );
    assert!(
        h.rec.calls_of("t.read").is_empty(),
        "the recorded read is reused"
    );
    let apply = h.step(&run.id, "apply").await;
    assert_eq!(apply.status, StepStatus::Succeeded);
    assert_eq!(apply.with, json!({ "target": "h9", "value": "on" }));
    assert_eq!(
        h.store.change_by_key(&key).await.unwrap().unwrap().status,
        ChangeStatus::Applied
    );
    assert_eq!(h.store.changes(Some(&run.id)).await.unwrap().len(), 1);
    assert_eq!(h.stored_status(&run.id).await, RunStatus::Succeeded);
}

// ---------------------------------------------------------------------------------------------
// 10. strict inputs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_field_in_with_fails_the_step_naming_the_path() {
    let h = harness(&[r#"
name: strict
steps:
  - id: x
    action: t.read
    with: { value: "${{ event.data.nope }}" }
"#]);
    let report = h.run("strict", json!({ "present": 1 })).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(h.rec.all_calls().is_empty());
    let rec = h.step(&report.run_id, "x").await;
    assert_eq!(rec.status, StepStatus::Failed);
    let err = rec.error.unwrap_or_default();
    assert!(err.contains("`event.data.nope` is not defined"), "{err}");
    assert!(err.contains("it has: present"), "{err}");
    let run_err = report.error.unwrap_or_default();
    assert!(
        run_err.contains("`event.data.nope` is not defined"),
        "{run_err}"
    );
}

// ---------------------------------------------------------------------------------------------
// 11. trigger matching
// ---------------------------------------------------------------------------------------------

fn trigger_pb(name: &str, on: &str) -> String {
    format!(
        "name: {name}\non:\n{on}\nsteps:\n  - id: s\n    action: t.read\n    with: {{ value: 1 }}\n"
    )
}

fn planned(h: &Harness, ev: &Event) -> (Vec<String>, Vec<(String, String)>) {
    let (runs, errors) = h.engine.plan_runs(ev);
    let mut names: Vec<String> = runs.into_iter().map(|r| r.playbook).collect();
    names.sort();
    (names, errors)
}

#[tokio::test]
async fn plan_runs_matches_exact_kinds_globs_and_conditions() {
    let h = harness(&[
        &trigger_pb("exact", "  event: dlp.alert"),
        &trigger_pb("glob", "  event: dlp.*"),
        &trigger_pb(
            "high_only",
            "  event: dlp.alert\n  if: ${{ event.severity == \"high\" }}",
        ),
        &trigger_pb("other", "  event: ids.alert"),
    ]);
    let high = event("dlp.alert", json!({ "severity": "high" }));
    assert_eq!(
        planned(&h, &high),
        (
            vec!["exact".into(), "glob".into(), "high_only".into()],
            vec![]
        )
    );
    let low = event("dlp.alert", json!({ "severity": "low" }));
    assert_eq!(
        planned(&h, &low),
        (vec!["exact".into(), "glob".into()], vec![])
    );
    let upload = event("dlp.upload", json!({}));
    assert_eq!(planned(&h, &upload), (vec!["glob".into()], vec![]));
    let unrelated = event("net.flow", json!({}));
    assert_eq!(planned(&h, &unrelated), (vec![], vec![]));
    let runs = h.engine.plan_runs(&high).0;
    let pb = h.engine.playbooks.get("high_only").unwrap();
    let run = runs.iter().find(|r| r.playbook == "high_only").unwrap();
    assert_eq!(run.event_id, high.id);
    assert_eq!(run.playbook_hash, pb.hash);
    assert_eq!(run.status, RunStatus::Running);
}

#[tokio::test]
async fn plan_runs_reports_a_trigger_condition_on_a_missing_field() {
    let h = harness(&[
        &trigger_pb("ok", "  event: dlp.alert"),
        &trigger_pb(
            "broken",
            "  event: dlp.alert\n  if: ${{ event.data.missing }}",
        ),
    ]);
    let ev = event("dlp.alert", json!({ "data": { "here": true } }));
    let (names, errors) = planned(&h, &ev);
    assert_eq!(names, ["ok"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "broken");
    assert!(
        errors[0].1.contains("`event.data.missing` is not defined"),
        "{}",
        errors[0].1
    );
}

#[tokio::test]
async fn plan_runs_reports_a_comparison_with_a_missing_field() {
    let h = harness(&[&trigger_pb(
        "broken",
        "  event: dlp.alert\n  if: ${{ event.data.missing == 1 }}",
    )]);
    let ev = event("dlp.alert", json!({ "data": { "here": true } }));
    let (names, errors) = planned(&h, &ev);
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].1.contains("`event.data.missing` is not defined"),
        "{}",
        errors[0].1
    );
}

// ---------------------------------------------------------------------------------------------
// 12. duplicate events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn accept_batch_of_the_same_event_twice_accepts_it_once() {
    let h = harness(&[&trigger_pb("exact", "  event: dlp.alert")]);
    let ev = event("dlp.alert", json!({ "id": "evt-1" }));
    let acc = h
        .engine
        .accept_batch(vec![(ev.clone(), None), (ev.clone(), None)])
        .await
        .unwrap();
    assert_eq!(acc.len(), 2);
    assert_eq!(acc[0].accepted, Accepted::New);
    assert_eq!(acc[0].runs.len(), 1);
    assert_eq!(acc[1].accepted, Accepted::Duplicate);
    assert!(acc[1].runs.is_empty());
    assert_eq!(acc[1].event_id, "evt-1");

    let again = h.engine.accept_batch(vec![(ev, None)]).await.unwrap();
    assert_eq!(again[0].accepted, Accepted::Duplicate);
    assert!(again[0].runs.is_empty());

    let counts = h.store.counts().await.unwrap();
    assert_eq!((counts.events, counts.runs), (1, 1));
    assert!(h.rec.all_calls().is_empty(), "accepting runs nothing");
}

#[tokio::test]
async fn resume_reissues_a_pending_change_with_its_journaled_inputs() {
    // The crash happened after `apply` was journaled for target h9 but before its outcome was
    // recorded. On resume the (allowed) repeated read now answers differently, so the
    // re-rendered inputs name another target. The re-issued change must be the journaled
    // one: otherwise the journal (target, before-state, inverse) describes h9 while h-other
    // is the one changed, under h9's idempotency key, and a rollback undoes the wrong target.
    let h = harness(&[r#"
name: resume
trust: log
steps:
  - id: look
    action: t.read
    with: { value: h-other }
  - id: apply
    action: t.change
    with: { target: "${{ steps.look.output.value }}", value: on }
"#]);
    let (run, key) = crashed_run(&h, ChangeStatus::Pending).await;
    let report = h.engine.execute_resumed(run.clone()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let calls = h.rec.calls_of("t.change");
    assert_eq!(calls.len(), 1);
    let journaled = h.store.change_by_key(&key).await.unwrap().unwrap();
    assert_eq!(journaled.target, "h9");
    assert_eq!(
        calls[0].input, journaled.with,
        "the change applied under key {key} is not the one journaled under it"
    );
}

#[tokio::test]
async fn resumed_parent_sees_outputs_of_a_finished_sub_playbook() {
    // The crash happened after the child run finished but before the parent's `sub` step
    // record was committed (step records are queued until the next durable write).
    let h = harness(&[
        CHILD,
        r#"
name: parent
steps:
  - id: sub
    playbook: child
    with: { who: alice, n: 1 }
  - id: after
    action: t.read
    with: { value: "${{ steps.sub.output.steps.echo.output.value }}" }
"#,
    ]);
    let parent_pb = h.engine.playbooks.get("parent").unwrap();
    let child_pb = h.engine.playbooks.get("child").unwrap();
    let ev = event("t.event", json!({}));
    let parent = new_run(&parent_pb, (&ev.id, &ev.source), None, Value::Null, false);
    h.store
        .accept_event(&ev, std::slice::from_ref(&parent), None)
        .await
        .unwrap();
    let inputs = json!({ "who": "alice", "n": 1 });
    let mut child = new_run(
        &child_pb,
        (&ev.id, &ev.source),
        Some((&parent.id, "sub")),
        inputs.clone(),
        false,
    );
    child.status = RunStatus::Succeeded;
    h.store.insert_run(&child).await.unwrap();
    let now = now_ms();
    h.store
        .put_step(&StepRecord {
            run_id: child.id.clone(),
            key: "echo".into(),
            step: "echo".into(),
            seq: 0,
            item: None,
            action: "t.read".into(),
            with: json!({ "value": "hello alice", "sleep_ms": 1 }),
            decision: Decision::Read,
            trust: None,
            guardrails: Vec::new(),
            status: StepStatus::Succeeded,
            output: json!({ "value": "hello alice" }),
            error: None,
            attempts: 1,
            started_at: now,
            finished_at: Some(now),
        })
        .await
        .unwrap();

    let report = h.engine.execute_resumed(parent.clone()).await.unwrap();
    assert_eq!(
        read_values(&h.rec),
        [json!("hello alice")],
        "the finished child is not run again; `after` sees its output"
    );
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// 13. trust flows down to sub-playbooks
// ---------------------------------------------------------------------------------------------

/// A child declared at `log` that changes `h1`.
const LOG_CHILD: &str = r#"
name: log_child
trust: log
steps:
  - id: block
    action: t.change
    with: { target: h1, value: blocked }
"#;

fn calling_parent(trust: &str) -> String {
    format!(
        r#"
name: parent
trust: {trust}
on:
  event: t.event
steps:
  - id: sub
    playbook: log_child
"#
    )
}

#[tokio::test]
async fn a_shadow_parent_gets_no_change_applied_through_a_child_at_log() {
    let h = harness(&[LOG_CHILD, &calling_parent("shadow")]);
    let report = h.run("parent", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(h.rec.calls_of("t.change").is_empty(), "nothing is applied");
    let child = h.step(&format!("{}.sub", report.run_id), "block").await;
    assert_eq!(child.decision, Decision::Shadow);
    assert_eq!(child.trust, Some(TrustLevel::Shadow));
    assert!(h.store.changes(None).await.unwrap().is_empty());
    let shown = report
        .steps
        .iter()
        .find(|s| s.key == "sub/block")
        .expect("the run's report shows the child's step");
    assert_eq!(shown.decision, Decision::Shadow);
    let stored = h.engine.report(&report.run_id).await.unwrap().unwrap();
    assert_eq!(
        stored, report,
        "the stored run's report shows the same steps"
    );
}

#[tokio::test]
async fn an_approve_parent_holds_a_child_change_at_log_for_approval() {
    let h = harness(&[LOG_CHILD, &calling_parent("approve")]);
    let report = h.run("parent", json!({})).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert!(h.rec.calls_of("t.change").is_empty(), "nothing is applied");
    let child_id = format!("{}.sub", report.run_id);
    let block = h.step(&child_id, "block").await;
    assert_eq!(block.decision, Decision::AwaitApproval);
    assert_eq!(block.status, StepStatus::Held);
    assert_eq!(block.trust, Some(TrustLevel::Approve));
    let pending = h
        .store
        .approvals(&belay_store::ApprovalFilter {
            run_id: Some(child_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        pending.len(),
        1,
        "one approval is asked for the child's change"
    );
    // Resuming the parent (as a worker would) still applies nothing without a decision.
    let again = h
        .engine
        .execute_resumed(h.store.get_run(&report.run_id).await.unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(again.status, RunStatus::WaitingApproval, "{again:?}");
    assert!(h.rec.calls_of("t.change").is_empty());
}

#[tokio::test]
async fn a_child_run_executed_on_its_own_keeps_its_callers_level() {
    let h = harness(&[LOG_CHILD, &calling_parent("shadow")]);
    let report = h.run("parent", json!({})).await;
    let child = h
        .store
        .get_run(&format!("{}.sub", report.run_id))
        .await
        .unwrap()
        .unwrap();
    // Executing the child directly (not through its parent) still finds the parent's level.
    h.store
        .set_run_status(&child.id, RunStatus::Running, None)
        .await
        .unwrap();
    let _ = h.engine.execute_resumed(child).await.unwrap();
    assert!(h.rec.calls_of("t.change").is_empty(), "nothing is applied");
}

#[tokio::test]
async fn a_dry_run_and_replay_report_what_a_sub_playbook_would_change() {
    let h = harness(&[LOG_CHILD, &calling_parent("log")]);
    let report = h
        .run_with("parent", event("t.event", json!({})), true)
        .await;
    let shown = report
        .steps
        .iter()
        .find(|s| s.key == "sub/block")
        .expect("the dry run's report shows the child's change");
    assert_eq!(shown.decision, Decision::DryRun);
    assert_eq!(shown.with, json!({ "target": "h1", "value": "blocked" }));
    assert!(h.rec.calls_of("t.change").is_empty());

    let pb = h.engine.playbooks.get("parent").unwrap();
    let replayed = h
        .engine
        .replay(&pb, event("t.event", json!({})))
        .await
        .unwrap();
    let run = replayed.run.expect("the parent has no trigger filter");
    assert_eq!(run.changes.len(), 1, "{run:?}");
    assert_eq!(run.changes[0].step, "sub/block");
    assert_eq!(run.changes[0].would, belay_engine::replay::Would::Apply);
}

// ---------------------------------------------------------------------------------------------
// 14. limits hold across sub-playbook calls
// ---------------------------------------------------------------------------------------------

const BATCH_OF_TWO: &str = r#"
guardrails:
  - name: two-at-most
    applies_to: ["t.change"]
    batch: { max: 2 }
    on_violation: deny
"#;

const ONE_CHANGE_CHILD: &str = r#"
name: one_change
trust: log
steps:
  - id: block
    action: t.change
    with: { target: "${{ inputs.host }}", value: blocked }
"#;

#[tokio::test]
async fn a_batch_guardrail_denies_a_fan_out_through_sub_playbooks_like_the_direct_batch() {
    let direct = harness_guarded(
        &[r#"
name: direct
trust: log
steps:
  - id: block
    action: t.change
    for_each: ${{ event.data.hosts }}
    with: { target: "${{ item }}", value: blocked }
"#],
        Some(BATCH_OF_TWO),
    );
    let hosts = json!({ "hosts": ["a", "b", "c", "d"] });
    let report = direct.run("direct", hosts.clone()).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(direct.rec.calls_of("t.change").is_empty());

    let fanned = harness_guarded(
        &[
            ONE_CHANGE_CHILD,
            r#"
name: fanned
trust: log
steps:
  - id: each
    playbook: one_change
    for_each: ${{ event.data.hosts }}
    concurrency: 1
    with: { host: "${{ item }}" }
"#,
        ],
        Some(BATCH_OF_TWO),
    );
    let report = fanned.run("fanned", hosts.clone()).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(
        fanned.rec.calls_of("t.change").is_empty(),
        "the fan-out is denied whole, before any child applies a change"
    );
    let each = fanned.step(&report.run_id, "each[0]").await;
    assert_eq!(each.decision, Decision::GuardrailDeny);
    let why = each.error.unwrap_or_default();
    assert!(
        why.contains("two-at-most") && why.contains("run tree"),
        "{why}"
    );
}

#[tokio::test]
async fn the_run_tree_count_stops_a_fan_out_it_cannot_count_up_front() {
    // The child's change is conditional, so it cannot be counted before the children run.
    let h = harness_guarded(
        &[
            r#"
name: one_change
trust: log
steps:
  - id: block
    action: t.change
    if: ${{ inputs.host != "" }}
    with: { target: "${{ inputs.host }}", value: blocked }
"#,
            r#"
name: fanned
trust: log
steps:
  - id: each
    playbook: one_change
    for_each: ${{ event.data.hosts }}
    concurrency: 1
    with: { host: "${{ item }}" }
"#,
        ],
        Some(BATCH_OF_TWO),
    );
    let report = h
        .run("fanned", json!({ "hosts": ["a", "b", "c", "d"] }))
        .await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let applied = h.rec.calls_of("t.change").len();
    assert!(
        applied <= 2,
        "the run tree applied {applied} changes under a batch limit of 2"
    );
    let denied: Vec<_> = report
        .steps
        .iter()
        .filter(|s| s.decision == Decision::GuardrailDeny)
        .collect();
    assert!(!denied.is_empty(), "{report:?}");
    let why = denied[0].error.clone().unwrap_or_default();
    assert!(why.contains("run tree"), "{why}");
}

#[tokio::test]
async fn a_held_fan_out_through_sub_playbooks_applies_once_a_person_approves_it() {
    let h = harness_guarded(
        &[
            ONE_CHANGE_CHILD,
            r#"
name: fanned
trust: log
steps:
  - id: each
    playbook: one_change
    for_each: ${{ event.data.hosts }}
    with: { host: "${{ item }}" }
"#,
        ],
        Some(&BATCH_OF_TWO.replace("deny", "hold")),
    );
    let report = h.run("fanned", json!({ "hosts": ["a", "b", "c"] })).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert!(h.rec.calls_of("t.change").is_empty(), "held whole");
    let approvals = h
        .store
        .approvals(&belay_store::ApprovalFilter {
            run_id: Some(report.run_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(approvals.len(), 1, "one approval decides the fan-out");
    let directory = belay_engine::approvals::Directory::new([(
        "alice".to_string(),
        vec!["responder".to_string()],
    )]);
    belay_engine::approvals::decide(&*h.store, &directory, &approvals[0].id, "alice", true, None)
        .await
        .unwrap();
    h.engine.pick_up_decisions().await.unwrap();
    assert_eq!(h.stored_status(&report.run_id).await, RunStatus::Succeeded);
    assert_eq!(
        h.rec.calls_of("t.change").len(),
        3,
        "the approved fan-out's children are not held again by the tree count"
    );
}

#[tokio::test]
async fn a_resumed_run_counts_the_changes_its_finished_sub_playbooks_made() {
    let h = harness_guarded(
        &[
            ONE_CHANGE_CHILD,
            r#"
name: parent
trust: log
steps:
  - id: sub
    playbook: one_change
    with: { host: a }
  - id: more
    action: t.change
    for_each: ${{ event.data.hosts }}
    with: { target: "${{ item }}", value: blocked }
"#,
        ],
        Some(BATCH_OF_TWO),
    );
    // A crash after the child applied its change and the parent recorded its `sub` step.
    let ev = event("t.event", json!({ "data": { "hosts": ["b", "c"] } }));
    let parent_pb = h.engine.playbooks.get("parent").unwrap();
    let child_pb = h.engine.playbooks.get("one_change").unwrap();
    let parent = new_run(&parent_pb, (&ev.id, &ev.source), None, Value::Null, false);
    h.store
        .accept_event(&ev, std::slice::from_ref(&parent), None)
        .await
        .unwrap();
    let mut child = new_run(
        &child_pb,
        (&ev.id, &ev.source),
        Some((&parent.id, "sub")),
        json!({ "host": "a" }),
        false,
    );
    child.status = RunStatus::Succeeded;
    h.store.insert_run(&child).await.unwrap();
    let now = now_ms();
    let record = |run_id: &str, key: &str, action: &str, decision, output| StepRecord {
        run_id: run_id.into(),
        key: key.into(),
        step: key.into(),
        seq: 0,
        item: None,
        action: action.into(),
        with: Value::Null,
        decision,
        trust: Some(TrustLevel::Log),
        guardrails: Vec::new(),
        status: StepStatus::Succeeded,
        output,
        error: None,
        attempts: 1,
        started_at: now,
        finished_at: Some(now),
    };
    h.store
        .put_step(&record(
            &child.id,
            "block",
            "t.change",
            Decision::Apply,
            json!({}),
        ))
        .await
        .unwrap();
    h.store
        .put_step(&record(
            &parent.id,
            "sub",
            "playbook:one_change",
            Decision::SubPlaybook,
            json!({ "run_id": child.id, "status": "succeeded", "steps": {} }),
        ))
        .await
        .unwrap();

    let report = h.engine.execute_resumed(parent).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(
        h.rec.calls_of("t.change").is_empty(),
        "1 change by the child + 2 now is above the limit of 2 per run tree"
    );
}

// ---------------------------------------------------------------------------------------------
// 15. demotions follow the step's definition
// ---------------------------------------------------------------------------------------------

fn blocking_pb(name: &str, step: &str) -> String {
    format!(
        r#"
name: {name}
trust: log
steps:
  - id: {step}
    action: t.change
    with: {{ target: h1, value: blocked }}
"#
    )
}

/// Runs `chg` once and has a person roll its change back, which demotes its step.
async fn demote_by_rollback(h: &Harness) {
    let report = h.run("chg", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let rb = belay_engine::rollback::rollback(
        &h.engine,
        belay_engine::rollback::Selection::Run(report.run_id.clone()),
        belay_engine::rollback::RollbackOptions {
            dry_run: false,
            force: false,
            actor: "alice".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(rb.count(belay_engine::rollback::Outcome::Reverted), 1);
}

#[tokio::test]
async fn a_demoted_step_renamed_with_its_playbook_is_still_held() {
    let h = harness(&[
        &blocking_pb("chg", "apply"),
        &blocking_pb("renamed", "block_host"),
    ]);
    demote_by_rollback(&h).await;
    let calls = h.rec.calls_of("t.change").len();
    let report = h.run("renamed", json!({})).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    let step = h.step(&report.run_id, "block_host").await;
    assert_eq!(step.decision, Decision::AwaitApproval);
    assert_eq!(step.trust, Some(TrustLevel::Approve));
    assert_eq!(
        h.rec.calls_of("t.change").len(),
        calls,
        "nothing is applied"
    );
}

#[tokio::test]
async fn a_demotion_recorded_by_name_only_still_holds_the_step() {
    let h = harness(&[&blocking_pb("chg", "apply")]);
    h.engine
        .demote(&belay_model::Demotion {
            playbook: "chg".into(),
            step: "apply".into(),
            level: TrustLevel::Approve,
            reason: "recorded before definitions".into(),
            change_id: None,
            by: "alice".into(),
            at: now_ms(),
            definition: None,
        })
        .await
        .unwrap();
    let report = h.run("chg", json!({})).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert!(h.rec.calls_of("t.change").is_empty());
}

#[tokio::test]
async fn a_different_step_is_not_held_by_another_steps_demotion() {
    let h = harness(&[
        &blocking_pb("chg", "apply"),
        r#"
name: other
trust: log
steps:
  - id: block_host
    action: t.change
    with: { target: h2, value: blocked }
"#,
    ]);
    demote_by_rollback(&h).await;
    let report = h.run("other", json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// 16. never-lists check every identity a device directory gives
// ---------------------------------------------------------------------------------------------

/// A device directory (the `cmdb` family): answers `cmdb.lookup_device` by IP address or host
/// name from a fixed table, or fails every call when `down`.
struct Directory {
    devices: Vec<(&'static str, &'static str)>,
    down: bool,
    asked: Mutex<Vec<Value>>,
}

impl Directory {
    fn new(down: bool) -> Arc<Directory> {
        Arc::new(Directory {
            devices: vec![
                ("cfo-lt01", "10.20.0.15"),
                ("ws-007", "10.50.3.3"),
                ("ws-042", "10.20.0.42"),
            ],
            down,
            asked: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl Connector for Directory {
    fn family(&self) -> &str {
        "cmdb"
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        assert_eq!(call.action, "cmdb.lookup_device");
        self.asked.lock().unwrap().push(call.input.clone());
        if self.down {
            return Err(ActionError::transient("cmdb: 503 Service Unavailable"));
        }
        let by = |field: &str| call.input.get(field).and_then(Value::as_str);
        let found = self
            .devices
            .iter()
            .find(|(name, ip)| by("hostname") == Some(*name) || by("ip") == Some(*ip));
        Ok(match found {
            Some((name, ip)) => json!({ "known": true, "hostname": name, "ip": ip }),
            None => json!({ "known": false }),
        })
    }
}

const VIPS_RESOLVED: &str = r#"
guardrails:
  - name: vips
    applies_to: ["t.isolate"]
    never:
      hosts: [cfo-lt01]
      cidrs: [10.50.0.0/16]
      resolve: cmdb.lookup_device
"#;

fn isolating(trust: &str) -> String {
    format!(
        r#"
name: isolate
trust: {trust}
steps:
  - id: isolate
    action: t.isolate
    for_each: ${{{{ event.data.hosts }}}}
    with: {{ target: "${{{{ item }}}}", value: isolated }}
"#
    )
}

async fn isolate(h: &Harness, hosts: &[&str]) -> RunReport {
    h.run("isolate", json!({ "hosts": hosts })).await
}

#[tokio::test]
async fn a_protected_host_listed_by_name_is_held_when_a_change_names_its_address() {
    let dir = Directory::new(false);
    let h = harness_with(&[&isolating("log")], Some(VIPS_RESOLVED), vec![dir.clone()]);
    let report = isolate(&h, &["10.20.0.15"]).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert!(h.rec.calls_of("t.isolate").is_empty(), "nothing is applied");
    let held = h.step(&report.run_id, "isolate[0]").await;
    let why = held.error.unwrap_or_default();
    assert!(
        why.contains("10.20.0.15 is cfo-lt01 by cmdb.lookup_device"),
        "{why}"
    );
    assert_eq!(*dir.asked.lock().unwrap(), [json!({ "ip": "10.20.0.15" })]);

    // The same guardrail without `resolve` cannot know: at log the change goes through.
    let unresolved = VIPS_RESOLVED.replace("      resolve: cmdb.lookup_device\n", "");
    let h = harness_with(
        &[&isolating("log")],
        Some(&unresolved),
        vec![Directory::new(false)],
    );
    let report = isolate(&h, &["10.20.0.15"]).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
}

#[tokio::test]
async fn a_host_named_by_name_is_checked_as_its_address_against_protected_networks() {
    let h = harness_with(
        &[&isolating("log")],
        Some(VIPS_RESOLVED),
        vec![Directory::new(false)],
    );
    let report = isolate(&h, &["WS-007"]).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    let why = h
        .step(&report.run_id, "isolate[0]")
        .await
        .error
        .unwrap_or_default();
    assert!(why.contains("10.50.3.3"), "{why}");
    assert!(h.rec.calls_of("t.isolate").is_empty());
}

#[tokio::test]
async fn at_guarded_a_resolved_host_proceeds_and_an_unresolvable_one_is_held() {
    // ws-042 has no address in the guardrail, so on its own it cannot be checked against
    // 10.50.0.0/16 and is held at guarded; the directory says 10.20.0.42: it proceeds.
    let h = harness_with(
        &[&isolating("guarded")],
        Some(VIPS_RESOLVED),
        vec![Directory::new(false)],
    );
    let report = isolate(&h, &["ws-042"]).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(h.rec.calls_of("t.isolate").len(), 1);

    // With the directory down, the same change is held, saying why.
    let h = harness_with(
        &[&isolating("guarded")],
        Some(VIPS_RESOLVED),
        vec![Directory::new(true)],
    );
    let report = isolate(&h, &["ws-042"]).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    let why = h
        .step(&report.run_id, "isolate[0]")
        .await
        .error
        .unwrap_or_default();
    assert!(
        why.contains("cmdb.lookup_device could not resolve it: cmdb: 503"),
        "{why}"
    );
    assert!(h.rec.calls_of("t.isolate").is_empty());
}

#[tokio::test]
async fn each_distinct_target_is_looked_up_once_per_step() {
    let dir = Directory::new(false);
    let h = harness_with(
        &[&isolating("guarded")],
        Some(VIPS_RESOLVED),
        vec![dir.clone()],
    );
    let report = isolate(&h, &["ws-042", "ws-042", "10.20.0.42"]).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let mut asked: Vec<String> = dir
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        [r#"{"hostname":"ws-042"}"#, r#"{"ip":"10.20.0.42"}"#]
    );
}

// ---------------------------------------------------------------------------------------------
// 17. a baseline learns, then enforces
// ---------------------------------------------------------------------------------------------

const FEED: &str = r#"
name: feed
trust: guarded
steps:
  - id: block
    action: t.change
    for_each: ${{ event.data.hosts }}
    with: { target: "${{ item }}", value: blocked }
"#;

fn feed_baseline(while_learning: &str) -> String {
    format!(
        r#"
guardrails:
  - name: feed-baseline
    applies_to: ["t.change"]
    baseline: {{ per: 1h, factor: 3, min_history: 7d{while_learning} }}
    on_violation: hold
"#
    )
}

fn hosts(prefix: &str, n: usize) -> Value {
    json!({ "hosts": (0..n).map(|i| format!("{prefix}-{i}")).collect::<Vec<_>>() })
}

/// The audit entries of one kind, oldest first.
async fn audit_of(h: &Harness, kind: &str) -> Vec<belay_model::AuditEntry> {
    let all = h.store.audit_entries(0, 100_000).await.unwrap();
    all.into_iter().filter(|e| e.kind == kind).collect()
}

#[tokio::test]
async fn a_baseline_learns_without_holding_then_holds_a_batch_ten_times_its_p99() {
    let h = harness_guarded(&[FEED], Some(&feed_baseline("")));
    // No history at all: the baseline is learning, says so, and holds nothing, however large.
    let report = h.run("feed", hosts("early", 30)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(h.rec.calls_of("t.change").len(), 30);
    let learning = audit_of(&h, "guardrail.learning").await;
    assert_eq!(learning.len(), 1, "{learning:?}");
    let d = &learning[0].detail;
    assert_eq!(d["guardrail"], "feed-baseline");
    assert_eq!(d["changes"], 30);
    assert_eq!(d["min_history_ms"], 7 * 86_400_000i64);
    assert_eq!(d["while_learning"], "proceed");
    assert!(d["history_ms"].as_i64().unwrap() < 60_000, "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .starts_with("learning: 0s of recorded history, 7days needed"),
        "{d}"
    );
    assert!(audit_of(&h, "guardrail.enforcing").await.is_empty());
    assert!(audit_of(&h, "guardrail.violation").await.is_empty());

    // Eight days of past feed updates of three changes each, journaled at their time.
    let now = belay_model::now_ms();
    let past: Vec<belay_engine::history::PastRun> = (0..120)
        .map(|u| belay_engine::history::PastRun {
            at: now - 8 * 86_400_000 + u * 5_400_000,
            action: "t.change".into(),
            targets: (0..3).map(|i| format!("past-{u}-{i}")).collect(),
        })
        .collect();
    let n = belay_engine::history::import(&*h.store, "test", TrustLevel::Guarded, &past)
        .await
        .unwrap();
    assert_eq!(n, 360);

    // Now it enforces: a batch ten times the learned p99 of 3 is held whole, nothing applied.
    let report = h.run("feed", hosts("big", 30)).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert_eq!(h.rec.calls_of("t.change").len(), 30, "nothing more applied");
    let held = h.step(&report.run_id, "block[0]").await;
    assert_eq!(held.decision, Decision::GuardrailHold);
    let why = held.error.unwrap_or_default();
    assert!(
        why.contains("batch of 30 changes is above 3 × the learned p99 of 3 per run"),
        "{why}"
    );
    let violations = audit_of(&h, "guardrail.violation").await;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].detail["guardrail"], "feed-baseline");
    // The switch is in the trail, with what it learned, recorded once.
    let enforcing = audit_of(&h, "guardrail.enforcing").await;
    assert_eq!(enforcing.len(), 1, "{enforcing:?}");
    let d = &enforcing[0].detail;
    assert_eq!(d["guardrail"], "feed-baseline");
    assert_eq!(d["p99_batch"], 3);
    assert!(
        d["history_ms"].as_i64().unwrap() >= 8 * 86_400_000 - 60_000,
        "{d}"
    );
    assert!(
        enforcing[0].seq < violations[0].seq,
        "the switch is recorded before the hold it causes"
    );
    // The window counts too: the 30 changes made while learning, within the hour, and 2 more
    // are above 3 × the learned p99 of 3 per hour. The switch is not recorded again, here or
    // by a new engine.
    let report = h.run("feed", hosts("usual", 2)).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    let why = h
        .step(&report.run_id, "block[0]")
        .await
        .error
        .unwrap_or_default();
    assert!(
        why.contains("32 change(s) within 1h would be above 3 × the learned p99 of 3 per window"),
        "{why}"
    );
    assert_eq!(audit_of(&h, "guardrail.enforcing").await.len(), 1);
    assert_eq!(audit_of(&h, "guardrail.learning").await.len(), 1);
    let again = Engine::with_guardrails(
        h.store.clone(),
        h.engine.playbooks.clone(),
        Arc::new(test_catalog()),
        {
            let mut r = Registry::new();
            r.register(Arc::new(Core));
            r.register(h.rec.clone());
            r
        },
        EngineConfig::default(),
        Arc::new(
            belay_engine::guard::Guardrails::load(&h._dir.path().join("guardrails.yaml")).unwrap(),
        ),
    );
    let pb = again.playbooks.get("feed").unwrap();
    let report = again
        .run_once(
            &pb,
            event("t.event", json!({ "data": hosts("later", 2) })),
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert_eq!(audit_of(&h, "guardrail.enforcing").await.len(), 1);
    // Every verdict is consistent with the chain.
    assert!(
        belay_store::verify_audit(h.store.as_ref())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn while_learning_hold_holds_every_change_until_the_history_suffices() {
    let h = harness_guarded(&[FEED], Some(&feed_baseline(", while_learning: hold")));
    let report = h.run("feed", hosts("early", 2)).await;
    assert_eq!(report.status, RunStatus::WaitingApproval, "{report:?}");
    assert!(h.rec.calls_of("t.change").is_empty(), "nothing applied");
    let held = h.step(&report.run_id, "block[0]").await;
    assert_eq!(held.decision, Decision::GuardrailHold);
    let why = held.error.unwrap_or_default();
    assert!(
        why.contains("baseline is still learning: 0s of recorded history, 7days needed"),
        "{why}"
    );
    // The approval shows the verdict, failing, with how far the learning is.
    let approvals = h
        .store
        .approvals(&belay_store::ApprovalFilter::default())
        .await
        .unwrap();
    assert_eq!(approvals.len(), 1);
    let v = &approvals[0].guardrails[0];
    assert_eq!(v["guardrail"], "feed-baseline");
    assert_eq!(v["pass"], false);
    assert_eq!(v["learning"]["while_learning"], "hold");
    assert_eq!(v["learning"]["min_history_ms"], 7 * 86_400_000i64);
    assert!(audit_of(&h, "guardrail.learning").await.is_empty());
    assert_eq!(audit_of(&h, "guardrail.violation").await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 18. playbook versions: a resumed run executes the version it was planned with
// ---------------------------------------------------------------------------------------------

/// A parent at `log` changing `target` to `value`, then calling `versioned_child`.
fn versioned_parent(value: &str) -> String {
    format!(
        r#"
name: versioned
trust: log
on:
  event: t.event
steps:
  - id: apply
    action: t.change
    with: {{ target: h7, value: {value} }}
  - id: sub
    playbook: versioned_child
"#
    )
}

fn versioned_child(value: &str) -> String {
    format!(
        r#"
name: versioned_child
trust: log
steps:
  - id: apply
    action: t.change
    with: {{ target: h8, value: {value} }}
"#
    )
}

/// Another engine over `h`'s store and recorder, with `playbooks` loaded (as a process
/// started later, after the playbook folder was edited).
fn engine_over(h: &Harness, playbooks: &[&str]) -> Arc<Engine> {
    let pb_dir = h
        ._dir
        .path()
        .join(format!("playbooks-{}", belay_model::new_id()));
    std::fs::create_dir_all(&pb_dir).unwrap();
    for (i, text) in playbooks.iter().enumerate() {
        std::fs::write(pb_dir.join(format!("pb{i}.yaml")), text).unwrap();
    }
    let catalog = Arc::new(test_catalog());
    let set = PlaybookSet::load_paths(&[pb_dir], &catalog).unwrap();
    let mut registry = Registry::new();
    registry.register(Arc::new(Core));
    registry.register(h.rec.clone());
    Engine::new(
        h.store.clone(),
        Arc::new(set),
        catalog,
        registry,
        EngineConfig::default(),
    )
}

/// The `value` of every `t.change` call, in call order.
fn changed_values(rec: &Recorder) -> Vec<Value> {
    rec.calls_of("t.change")
        .into_iter()
        .map(|c| c.input["value"].clone())
        .collect()
}

#[tokio::test]
async fn a_run_resumed_after_its_playbooks_were_edited_executes_the_stored_version() {
    let (parent, child) = (versioned_parent("old"), versioned_child("old"));
    let h = harness(&[&parent, &child]);
    // Accepted (its version stored with it), then the process dies before executing it.
    let accepted = h
        .engine
        .accept_batch(vec![(event("t.event", json!({})), None)])
        .await
        .unwrap();
    let run = accepted[0].runs[0].clone();
    let stored = h.store.playbook_version(&run.playbook_hash).await.unwrap();
    let stored = stored.expect("the run's version is stored with it");
    assert!(stored.verify());
    assert_eq!(stored.name, "versioned");
    let child_hash = h
        .engine
        .playbooks
        .get("versioned_child")
        .unwrap()
        .hash
        .clone();
    assert_eq!(stored.calls.get("versioned_child"), Some(&child_hash));
    assert!(
        h.store
            .playbook_version(&child_hash)
            .await
            .unwrap()
            .is_some()
    );

    // A new process whose folder holds only the parent, edited (it no longer calls the child):
    // the run resumes with the version it was planned with, and starts its sub-playbook with
    // the version stored with that one.
    let edited =
        versioned_parent("new").replace("  - id: sub\n    playbook: versioned_child\n", "");
    assert!(!edited.contains("versioned_child"));
    let later = engine_over(&h, &[&edited]);
    assert_ne!(
        later.playbooks.get("versioned").unwrap().hash,
        run.playbook_hash
    );
    // (The later process would claim it once the dead worker's lease is released; claiming is
    // the store's conformance suite's to test. Here the same worker's store is shared, so the
    // run is handed over as the claim would.)
    let stored_run = h.store.get_run(&run.id).await.unwrap().unwrap();
    let report = later.execute_resumed(stored_run).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(h.stored_status(&run.id).await, RunStatus::Succeeded);
    assert_eq!(changed_values(&h.rec), [json!("old"), json!("old")]);
}

#[tokio::test]
async fn a_run_whose_version_is_neither_stored_nor_loaded_fails_naming_it() {
    let h = harness(&[RESUME_PB]);
    // Recorded as before versions were stored: the run alone.
    let (run, _) = crashed_run(&h, ChangeStatus::Pending).await;
    assert_eq!(
        h.store.playbook_version(&run.playbook_hash).await.unwrap(),
        None
    );
    let edited = RESUME_PB.replace("value: on", "value: off");
    let later = engine_over(&h, &[&edited]);
    let report = later.execute_resumed(run.clone()).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let err = report.error.unwrap();
    for part in [
        run.id.as_str(),
        "playbook `resume`",
        run.playbook_hash.as_str(),
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
    assert!(h.rec.calls_of("t.change").is_empty());
    assert!(h.rec.calls_of("t.read").is_empty());
}
