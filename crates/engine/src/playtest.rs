//! Playbook tests (`*.test.yaml`): an event, mocked action outputs, and expectations about
//! the actions a run must and must not cause and how it ends.
//!
//! Tests run the real engine on a throw-away embedded store; every connector is replaced by
//! a recorder that answers with the mocks, so nothing outside belay is touched.

use crate::{Engine, EngineConfig};
use async_trait::async_trait;
use belay_connector_api::{ActionError, Call, Connector, Core, Registry};
use belay_model::{Event, RunStatus};
use belay_playbook::{Catalog, PlaybookSet, yaml};
use belay_store::{SqliteOptions, SqliteStore, Synchronous};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One playbook test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestCase {
    pub name: String,
    pub playbook: String,
    pub event: Value,
    /// Outputs of actions by name: one value for every call, or a list of
    /// `{with, output}` / `{with, error}` cases matched by inputs.
    #[serde(default)]
    pub mocks: Map<String, Value>,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    /// Whether the event starts the playbook through its trigger (`on.event` and `on.if`).
    #[serde(default = "yes")]
    pub triggered: bool,
    pub status: Option<RunStatus>,
    /// Calls that must happen; `with` matches when it is a subset of the call's inputs.
    #[serde(default)]
    pub actions: Vec<ActionMatch>,
    /// Calls that must not happen.
    #[serde(default, rename = "not")]
    pub not_actions: Vec<ActionMatch>,
    /// Change actions that must be held for approval.
    #[serde(default)]
    pub held: Vec<ActionMatch>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionMatch {
    pub action: String,
    pub with: Option<Value>,
    /// Exact number of matching calls.
    pub times: Option<usize>,
}

fn yes() -> bool {
    true
}

/// The verdict on one test.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The test file.
    pub file: PathBuf,
    /// The test's `name`, or the file's path when the file could not be read.
    pub name: String,
    /// Every expectation that did not hold, or the one reason the test could not run;
    /// empty when it passed.
    pub failures: Vec<String>,
}

impl TestResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

type Calls = Arc<Mutex<Vec<(String, Value)>>>;

struct Recorder {
    family: String,
    mocks: Arc<Map<String, Value>>,
    calls: Calls,
}

/// `true` when every key of `want` is in `have` with a matching value.
pub fn subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| subset(v, hv))),
        _ => want == have,
    }
}

#[async_trait]
impl Connector for Recorder {
    fn family(&self) -> &str {
        &self.family
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((call.action.to_owned(), call.input.clone()));
        match self.mocks.get(call.action) {
            Some(Value::Array(cases)) => {
                for c in cases {
                    let with = c.get("with").cloned().unwrap_or(Value::Object(Map::new()));
                    if subset(&with, call.input) {
                        if let Some(Value::String(e)) = c.get("error") {
                            return Err(ActionError::permanent(e.clone()));
                        }
                        return Ok(c.get("output").cloned().unwrap_or(Value::Null));
                    }
                }
                Err(ActionError::permanent(format!(
                    "no mock of `{}` matches inputs {}",
                    call.action, call.input
                )))
            }
            Some(v) => Ok(v.clone()),
            None if call.action.starts_with("core.") => Core.call(call).await,
            None => Ok(Value::Object(Map::new())),
        }
    }
}

/// Test files under the given paths (`*.test.yaml`, directories searched one level deep).
pub fn test_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
            continue;
        }
        let mut dirs = vec![p.clone()];
        for entry in std::fs::read_dir(p)? {
            let e = entry?.path();
            if e.is_dir() {
                dirs.push(e);
            }
        }
        for d in dirs {
            for entry in std::fs::read_dir(&d)? {
                let e = entry?.path();
                let name = e.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.ends_with(".test.yaml") || name.ends_with(".test.yml") {
                    out.push(e);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses a test file.
pub(crate) fn load_case(path: &Path) -> Result<TestCase, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let node = yaml::parse(&text).map_err(|d| d.to_string())?;
    serde_json::from_value(node.to_json()).map_err(|e| format!("invalid test file: {e}"))
}

/// Runs one test file against the playbooks in `playbooks`.
pub async fn run_case(path: &Path, playbooks: &[PathBuf], catalog: &Arc<Catalog>) -> TestResult {
    let name = path.display().to_string();
    let fail = |name: String, msg: String| TestResult {
        file: path.to_owned(),
        name,
        failures: vec![msg],
    };
    let case = match load_case(path) {
        Ok(c) => c,
        Err(e) => return fail(name, e),
    };
    match run_loaded(&case, playbooks, catalog).await {
        Ok(failures) => TestResult {
            file: path.to_owned(),
            name: case.name,
            failures,
        },
        Err(e) => fail(case.name, e),
    }
}

async fn run_loaded(
    case: &TestCase,
    playbooks: &[PathBuf],
    catalog: &Arc<Catalog>,
) -> Result<Vec<String>, String> {
    let set = PlaybookSet::load_paths(playbooks, catalog).map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let pb = set
        .get(&case.playbook)
        .ok_or_else(|| format!("no playbook named `{}`", case.playbook))?;
    for action in case.mocks.keys() {
        if catalog.get(action).is_none() {
            return Err(format!("mock for unknown action `{action}`"));
        }
    }
    let event = Event::from_json(case.event.clone()).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary store: {e}"))?;
    let store = SqliteStore::open(
        dir.path(),
        SqliteOptions {
            synchronous: Synchronous::Normal,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let calls: Calls = Arc::default();
    let mocks = Arc::new(case.mocks.clone());
    let mut registry = Registry::new();
    let families: BTreeSet<String> = catalog
        .iter()
        .filter_map(|a| a.name.split_once('.').map(|(f, _)| f.to_owned()))
        .collect();
    for family in families {
        registry.register(Arc::new(Recorder {
            family,
            mocks: mocks.clone(),
            calls: calls.clone(),
        }));
    }
    let engine = Engine::new(
        Arc::new(store),
        Arc::new(set),
        catalog.clone(),
        registry,
        EngineConfig::default(),
    );
    let (planned, trigger_errors) = engine.plan_runs(&event);
    if let Some((_, e)) = trigger_errors.iter().find(|(p, _)| p == &pb.name) {
        return Ok(vec![format!("the trigger condition failed: {e}")]);
    }
    let triggered = planned.iter().any(|r| r.playbook == pb.name);
    if triggered != case.expect.triggered {
        return Ok(vec![if triggered {
            "the event triggered the playbook, expected it not to".to_string()
        } else {
            "the event did not trigger the playbook (check `on.event` and `on.if`)".to_string()
        }]);
    }
    if !triggered {
        return Ok(Vec::new());
    }
    let report = engine
        .run_once(&pb, event, false)
        .await
        .map_err(|e| e.to_string())?;
    let calls = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let held: Vec<(String, Value)> = report
        .steps
        .iter()
        .filter(|s| s.status == belay_model::StepStatus::Held)
        .map(|s| (s.action.clone(), s.with.clone()))
        .collect();
    let mut failures = Vec::new();
    if let Some(want) = case.expect.status
        && report.status != want
    {
        let mut why = report
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        if report.status == belay_model::RunStatus::WaitingApproval {
            // Which step waits, and why: the trust level or the guardrail that held it.
            let waiting: Vec<String> = report
                .steps
                .iter()
                .filter(|s| s.status == belay_model::StepStatus::Held)
                .map(|s| match &s.error {
                    Some(e) => format!("`{}` {} {} ({e})", s.key, s.action, s.with),
                    None => format!("`{}` {} {} (trust level approve)", s.key, s.action, s.with),
                })
                .take(3)
                .collect();
            why = format!(" (held: {})", waiting.join("; "));
        }
        failures.push(format!("run ended {}, expected {want}{why}", report.status));
    }
    let count = |m: &ActionMatch, pool: &[(String, Value)]| {
        pool.iter()
            .filter(|(a, w)| a == &m.action && m.with.as_ref().is_none_or(|x| subset(x, w)))
            .count()
    };
    let describe = |m: &ActionMatch| match &m.with {
        Some(w) => format!("`{}` with {w}", m.action),
        None => format!("`{}`", m.action),
    };
    let summary = |pool: &[(String, Value)]| {
        let mut by: HashMap<&str, usize> = HashMap::new();
        pool.iter()
            .for_each(|(a, _)| *by.entry(a.as_str()).or_default() += 1);
        let mut v: Vec<String> = by.into_iter().map(|(a, n)| format!("{a}×{n}")).collect();
        v.sort();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    for m in &case.expect.actions {
        let n = count(m, &calls);
        match m.times {
            Some(t) if n != t => failures.push(format!(
                "expected {} {t} time(s), it happened {n} time(s)",
                describe(m)
            )),
            None if n == 0 => failures.push(format!(
                "expected {}; calls made: {}",
                describe(m),
                summary(&calls)
            )),
            _ => {}
        }
    }
    for m in &case.expect.not_actions {
        let n = count(m, &calls);
        if n > 0 {
            failures.push(format!(
                "{} must not happen, it happened {n} time(s)",
                describe(m)
            ));
        }
    }
    for m in &case.expect.held {
        if count(m, &held) == 0 {
            failures.push(format!(
                "expected {} to be held for approval; held: {}",
                describe(m),
                summary(&held)
            ));
        }
    }
    Ok(failures)
}
