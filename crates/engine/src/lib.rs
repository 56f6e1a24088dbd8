//! The engine: ingest → match → plan → (guard → approve) → apply → journal.
//!
//! It owns run execution and nothing else: playbooks come parsed from `belay-playbook`,
//! actions are performed by `belay-connectors`, and every transition is written through the
//! `belay-store` trait before the engine moves on. The executor never calls a change action
//! without its journal entry durable first, and never calls one again for an idempotency key
//! whose outcome is known.

pub mod approvals;
pub mod case_file;
pub mod cases;
mod exec;
pub mod expiry;
pub mod guard;
pub mod history;
pub mod ingest;
pub mod playtest;
pub mod reapply;
pub mod replay;
pub mod rollback;
pub mod trust;
mod versions;

pub use exec::{RunReport, StepReport};
pub use versions::{Version, version_info};

use belay_connector_api::Registry;
use belay_model::{Event, RunRecord, RunStatus, now_ms};
use belay_playbook::{Catalog, Playbook, PlaybookSet, context_value, event_value};
use belay_store::{Accepted, Incoming, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Runs executing at once in this process.
    pub max_concurrent_runs: usize,
    /// Timeout of one action attempt when the step sets none.
    pub action_timeout: Duration,
    /// SHA-256 over the guardrail files in force (empty when unknown), stored with every
    /// playbook version this engine stores.
    pub guardrails_hash: String,
    /// The guardrail files behind `guardrails_hash` (name, text), stored once under it.
    pub guardrail_files: Vec<(String, String)>,
    /// How long an event without an `id` (and without its own time) counts as a duplicate of
    /// the same content delivered earlier (see [`belay_model::Event::content_id`]).
    pub dedup_window: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent_runs: 256,
            action_timeout: Duration::from_secs(30),
            guardrails_hash: String::new(),
            guardrail_files: Vec::new(),
            dedup_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// An engine failure outside any one run (storage, unknown playbook).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A store operation failed; its error, shown as is.
    #[error(transparent)]
    Store(#[from] belay_store::StoreError),
    /// Anything else: an unknown run, change or checkpoint, an unreadable source...; the
    /// text is the whole message.
    #[error("{0}")]
    Other(String),
}

/// The engine's results: [`EngineError`] unless said otherwise.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The result of offering an event.
#[derive(Debug, Clone)]
pub struct Acceptance {
    /// The event as offered.
    pub event: Arc<Event>,
    /// The event's id (`event.id`).
    pub event_id: String,
    /// Whether it was stored now or had been before.
    pub accepted: Accepted,
    /// Runs started by the event (empty for a duplicate).
    pub runs: Vec<RunRecord>,
    /// Playbooks whose trigger condition could not be evaluated, with the reason.
    pub trigger_errors: Vec<(String, String)>,
}

/// Runs playbooks against one store with one set of connectors.
pub struct Engine {
    /// Where events, runs, steps, changes and approvals are journaled.
    pub store: Arc<dyn Store>,
    /// The loaded playbooks, indexed by trigger kind.
    pub playbooks: Arc<PlaybookSet>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) connectors: Registry,
    /// The settings it was built with.
    pub config: EngineConfig,
    pub(crate) guardrails: Arc<guard::Guardrails>,
    permits: Arc<Semaphore>,
    /// Serializes steps governed by a rate guardrail (see the executor).
    pub(crate) rate_gate: Arc<tokio::sync::Mutex<()>>,
    /// Striped locks by change target: a change's before-state read, journal entry, apply and
    /// after-state read happen without another change to the same target in between.
    target_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// Learned baseline figures by guardrail, with when they were learned.
    baselines: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, guard::BaselineFigures)>,
    >,
    /// Baseline guardrails whose first enforcement is in the audit trail (recorded by this
    /// process or found there).
    enforcing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Every recorded demotion, with when it was read.
    demotions: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<belay_model::Demotion>>)>>,
    /// The playbook versions stored or read so far.
    versions: versions::Versions,
}

/// How long the recorded demotions are reused before the store is read again.
const DEMOTION_TTL: Duration = Duration::from_secs(1);

/// The audit entry kind recording a baseline guardrail's first enforcement.
const ENFORCING: &str = "guardrail.enforcing";

/// How long learned baseline figures are reused before the history is read again.
const BASELINE_TTL: Duration = Duration::from_secs(60);

const TARGET_LOCK_STRIPES: usize = 1024;

impl Engine {
    /// An engine without guardrails. Like [`Engine::with_guardrails`], it serves `case.*`
    /// from its own store when no registered connector does.
    pub fn new(
        store: Arc<dyn Store>,
        playbooks: Arc<PlaybookSet>,
        catalog: Arc<Catalog>,
        connectors: Registry,
        config: EngineConfig,
    ) -> Arc<Engine> {
        Engine::with_guardrails(
            store,
            playbooks,
            catalog,
            connectors,
            config,
            Arc::default(),
        )
    }

    /// An engine whose changes are checked against `guardrails`.
    pub fn with_guardrails(
        store: Arc<dyn Store>,
        playbooks: Arc<PlaybookSet>,
        catalog: Arc<Catalog>,
        mut connectors: Registry,
        config: EngineConfig,
        guardrails: Arc<guard::Guardrails>,
    ) -> Arc<Engine> {
        // Case files live in the engine's own store unless a case-management product serves them.
        if connectors.resolve("case.open").is_none() {
            connectors.register(Arc::new(cases::Cases::new(store.clone())));
        }
        let permits = Arc::new(Semaphore::new(config.max_concurrent_runs.max(1)));
        let target_locks = Arc::new(
            (0..TARGET_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        );
        Arc::new(Engine {
            store,
            playbooks,
            catalog,
            connectors,
            config,
            guardrails,
            permits,
            rate_gate: Arc::default(),
            target_locks,
            baselines: Default::default(),
            enforcing: Default::default(),
            demotions: Default::default(),
            versions: Default::default(),
        })
    }

    /// An engine running `playbooks` under `guardrails` (described by `config`) in place of
    /// this one's: the same store and connectors, and the same locks and run permits, so
    /// runs of both (those already started keep this engine) never change one target at once.
    pub fn reloaded(
        &self,
        playbooks: Arc<PlaybookSet>,
        guardrails: Arc<guard::Guardrails>,
        config: EngineConfig,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store: self.store.clone(),
            playbooks,
            catalog: self.catalog.clone(),
            connectors: self.connectors.clone(),
            config,
            guardrails,
            permits: self.permits.clone(),
            rate_gate: self.rate_gate.clone(),
            target_locks: self.target_locks.clone(),
            baselines: Default::default(),
            enforcing: Default::default(),
            demotions: Default::default(),
            versions: Default::default(),
        })
    }

    /// The lock guarding changes to one target of one action family.
    pub(crate) fn target_lock(&self, family: &str, target: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (family, target).hash(&mut h);
        &self.target_locks[(h.finish() as usize) % self.target_locks.len()]
    }

    /// Trust ceilings recorded for the steps of one playbook, by step id: demotions of the
    /// same step definition (whatever the step or playbook is called now) or, for rows from
    /// before definitions were recorded, of the same names. Read from the store at most once
    /// per [`DEMOTION_TTL`], so a demotion recorded by another process applies to runs that
    /// start at most that long after it (one made through this engine applies at once).
    pub async fn demotions_for(
        &self,
        pb: &Playbook,
    ) -> Result<std::collections::HashMap<String, belay_model::TrustLevel>> {
        let cached = {
            let c = self.demotions.lock().unwrap_or_else(|p| p.into_inner());
            c.as_ref()
                .filter(|(at, _)| at.elapsed() < DEMOTION_TTL)
                .map(|(_, d)| d.clone())
        };
        let all = match cached {
            Some(d) => d,
            None => {
                let d = Arc::new(self.store.demotions().await?);
                *self.demotions.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), d.clone()));
                d
            }
        };
        if all.is_empty() {
            return Ok(Default::default());
        }
        Ok(pb
            .steps
            .iter()
            .filter_map(|s| {
                let definition = trust::step_definition(pb, s);
                trust::demotion_of(&all, pb, s, &definition).map(|d| (s.id.clone(), d.level))
            })
            .collect())
    }

    /// Records a demotion and makes this engine see it at once.
    pub async fn demote(&self, d: &belay_model::Demotion) -> Result<()> {
        self.store.demote(d).await?;
        *self.demotions.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Lifts a step's demotion (audited as `actor`) and makes this engine see it at once.
    pub async fn reset_trust(&self, playbook: &str, step: &str, actor: &str) -> Result<bool> {
        let lifted = self.store.reset_trust(playbook, step, actor).await?;
        *self.demotions.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(lifted)
    }

    /// The loaded guardrails.
    pub fn guardrails(&self) -> &guard::Guardrails {
        &self.guardrails
    }

    /// Calls a read action (never a change: those go through a run) with `input`, for a
    /// person looking something up (the console's intel lookup); the action's output.
    pub async fn call_read(
        &self,
        action: &str,
        input: &serde_json::Value,
    ) -> std::result::Result<serde_json::Value, String> {
        let spec = self
            .catalog
            .get(action)
            .ok_or_else(|| format!("no action `{action}` in the catalog"))?;
        if spec.kind != belay_playbook::ActionKind::Read {
            return Err(format!(
                "`{action}` changes something: only a run may call it"
            ));
        }
        let conn = self
            .connectors
            .resolve(action)
            .ok_or_else(|| format!("no connector serves `{action}` here"))?;
        conn.call(belay_connector_api::Call {
            action,
            input,
            idempotency_key: None,
            before: None,
        })
        .await
        .map_err(|e| e.message)
    }

    /// The catalog's actions a guardrail governs.
    pub fn guarded_actions(&self, g: &guard::Guardrail) -> Vec<String> {
        self.guardrails.actions_of(g, &self.catalog)
    }

    /// What a baseline guardrail has learned from the recorded changes (cached for a minute).
    pub async fn baseline(&self, g: &guard::Guardrail) -> Result<guard::BaselineFigures> {
        let Some(b) = &g.baseline else {
            return Ok(guard::BaselineFigures::default());
        };
        if let Some((at, f)) = self
            .baselines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&g.name)
            && at.elapsed() < BASELINE_TTL
        {
            return Ok(f.clone());
        }
        let now = now_ms();
        let actions = self.guardrails.actions_of(g, &self.catalog);
        let history = self
            .store
            .change_history(&actions, now - b.lookback().as_millis() as i64)
            .await?;
        let figures = b.learn(&history, now);
        // A learning baseline is read again each time, so that it enforces from the moment
        // its history suffices; what it learned is reused for a minute once it enforces.
        if b.learning(&figures).is_none() {
            self.baselines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(g.name.clone(), (std::time::Instant::now(), figures.clone()));
        }
        Ok(figures)
    }

    /// The `guardrail.enforcing` audit entry to record when baseline guardrail `g`, whose
    /// history now suffices (`figures`), enforces for the first time; none when the trail
    /// already has it. The trail is searched once per guardrail and process.
    pub(crate) async fn first_enforcing(
        &self,
        g: &guard::Guardrail,
        figures: &guard::BaselineFigures,
    ) -> Result<Option<belay_model::AuditDraft>> {
        let Some(b) = &g.baseline else {
            return Ok(None);
        };
        if b.learning(figures).is_some()
            || !self
                .enforcing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(g.name.clone())
        {
            return Ok(None);
        }
        let mut after = 0;
        loop {
            let page = match self.store.audit_entries(after, 1000).await {
                Ok(page) => page,
                Err(e) => {
                    // Not searched: the next check searches again.
                    self.enforcing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&g.name);
                    return Err(e.into());
                }
            };
            let Some(last) = page.last() else { break };
            after = last.seq;
            if page
                .iter()
                .any(|e| e.kind == ENFORCING && e.detail["guardrail"] == g.name.as_str())
            {
                return Ok(None);
            }
        }
        Ok(Some(belay_model::AuditDraft {
            kind: ENFORCING.into(),
            actor: format!("engine:{}", self.store.worker_id()),
            subject: format!("guardrail:{}", g.name),
            detail: json!({
                "guardrail": g.name,
                "applies_to": g.applies_to,
                "history_ms": figures.history_ms,
                "min_history_ms": i64::try_from(b.min_history.as_millis()).unwrap_or(i64::MAX),
                "runs": figures.runs,
                "p99_batch": figures.p99_batch,
                "windows": figures.windows,
                "p99_window": figures.p99_window,
                "factor": b.factor,
            }),
        }))
    }

    /// The runs an event starts: playbooks indexed under its kind whose `on.if` holds.
    pub fn plan_runs(&self, event: &Event) -> (Vec<RunRecord>, Vec<(String, String)>) {
        self.plan(event, None)
    }

    /// [`Engine::plan_runs`]; trigger conditions read `shared` (the same event) when given,
    /// else a shared copy made if some condition needs one.
    fn plan(
        &self,
        event: &Event,
        shared: Option<&Arc<Event>>,
    ) -> (Vec<RunRecord>, Vec<(String, String)>) {
        let mut runs = Vec::new();
        let mut errors = Vec::new();
        let candidates = self.playbooks.matching(&event.kind);
        if candidates.is_empty() {
            return (runs, errors);
        }
        // The event as expressions see it, only if some trigger has a condition to evaluate.
        let mut view = None;
        for pb in candidates {
            if let Some(cond) = &pb.trigger.condition {
                let view = view.get_or_insert_with(|| {
                    event_value(shared.cloned().unwrap_or_else(|| Arc::new(event.clone())))
                });
                let ctx =
                    minijinja::context! { event => view.clone(), vars => context_value(&pb.vars) };
                match cond.eval_bool(&ctx) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        errors.push((pb.name.clone(), e.message));
                        continue;
                    }
                }
            }
            runs.push(new_run(
                &pb,
                (&event.id, &event.source),
                None,
                Value::Null,
                false,
            ));
        }
        (runs, errors)
    }

    /// Matches a batch of events and stores them with their runs, durably, in order.
    /// Returns only after the commit: that is when a source may be acknowledged.
    pub async fn accept_batch(
        &self,
        events: Vec<(Event, Option<belay_store::Cursor>)>,
    ) -> Result<Vec<Acceptance>> {
        let mut incoming = Vec::with_capacity(events.len());
        let mut errors = Vec::with_capacity(events.len());
        let mut used: Vec<Arc<Playbook>> = Vec::new();
        for (event, cursor) in events {
            // Shared from here on: by the trigger conditions, the store and the runs.
            let event = Arc::new(event);
            let (runs, trigger_errors) = self.plan(&event, Some(&event));
            for r in &runs {
                if !used.iter().any(|p| p.name == r.playbook)
                    && let Some(pb) = self.playbooks.get(&r.playbook)
                {
                    used.push(pb);
                }
            }
            errors.push(trigger_errors);
            incoming.push(Incoming {
                event,
                runs,
                cursor,
            });
        }
        // The versions the runs use are stored before the runs.
        let used: Vec<&Playbook> = used.iter().map(|p| &**p).collect();
        self.keep_versions(&used).await?;
        let results = self.store.accept_batch(&incoming).await?;
        Ok(incoming
            .into_iter()
            .zip(results)
            .zip(errors)
            .map(|((inc, accepted), trigger_errors)| Acceptance {
                event_id: inc.event.id.clone(),
                event: inc.event,
                runs: if accepted == Accepted::New {
                    inc.runs
                } else {
                    Vec::new()
                },
                accepted,
                trigger_errors,
            })
            .collect())
    }

    /// Executes a stored run until it finishes or waits for a person; resumes where its
    /// records stop. Waits for a free execution slot first.
    pub async fn execute(self: &Arc<Self>, run: RunRecord) -> Result<RunReport> {
        self.execute_in_slot(run, None, false).await
    }

    /// Like [`Engine::execute`] for a run just accepted with `event`, saving a store read.
    pub async fn execute_new(
        self: &Arc<Self>,
        run: RunRecord,
        event: Arc<Event>,
    ) -> Result<RunReport> {
        self.execute_in_slot(run, Some(event), false).await
    }

    /// Like [`Engine::execute`], for a run that may have records from an earlier attempt.
    pub async fn execute_resumed(self: &Arc<Self>, run: RunRecord) -> Result<RunReport> {
        self.execute_in_slot(run, None, true).await
    }

    async fn execute_in_slot(
        self: &Arc<Self>,
        run: RunRecord,
        event: Option<Arc<Event>>,
        resumed: bool,
    ) -> Result<RunReport> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| EngineError::Other(e.to_string()))?;
        exec::execute(self.clone(), run, event, resumed).await
    }

    /// Claims unfinished runs (left by a crash, or by a worker that died) and executes them.
    /// `claimed` hears how many runs each claim took, before they execute. Returns the total.
    pub async fn resume(
        self: &Arc<Self>,
        claimed: &mut (dyn FnMut(usize) + Send),
    ) -> Result<usize> {
        let mut total = 0;
        loop {
            let runs = self.store.claim_runs(512).await?;
            if runs.is_empty() {
                return Ok(total);
            }
            claimed(runs.len());
            total += runs.len();
            self.execute_all_resumed(runs, "a run").await;
        }
    }

    /// Settles approvals past their deadline and executes the runs that people's decisions
    /// made resumable. Returns how many runs it executed.
    pub async fn pick_up_decisions(self: &Arc<Self>) -> Result<usize> {
        approvals::expire_due(&*self.store).await?;
        let mut total = 0;
        loop {
            let runs = self.store.claim_released(64).await?;
            if runs.is_empty() {
                return Ok(total);
            }
            total += runs.len();
            self.execute_all_resumed(runs, "a decided run").await;
        }
    }

    /// Executes claimed runs at once, each from where it stopped; a run that fails is logged
    /// as resuming `what` (a run, a decided run) and does not stop the others.
    async fn execute_all_resumed(self: &Arc<Self>, runs: Vec<RunRecord>, what: &str) {
        let mut tasks = tokio::task::JoinSet::new();
        for run in runs {
            let engine = self.clone();
            tasks.spawn(async move { engine.execute_resumed(run).await });
        }
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::error!("resuming {what} failed: {e}");
            }
        }
    }

    /// Why `event` would not start `pb` through trigger matching (its `on.event` kind or its
    /// `on.if`), if it would not. A playbook with no `on.event` (started only by other
    /// playbooks) has no trigger to hold against an event.
    pub fn trigger_mismatch(pb: &Playbook, event: &Event) -> Option<String> {
        let pattern = pb.trigger.event.as_deref()?;
        let kind_matches = globset::Glob::new(pattern)
            .map(|g| g.compile_matcher().is_match(&event.kind))
            .unwrap_or(pattern == event.kind);
        if !kind_matches {
            return Some(format!(
                "the event's kind `{}` does not match the playbook's `on.event: {pattern}`",
                event.kind
            ));
        }
        let cond = pb.trigger.condition.as_ref()?;
        let ctx = minijinja::context! {
            event => event_value(Arc::new(event.clone())),
            vars => context_value(&pb.vars),
        };
        match cond.eval_bool(&ctx) {
            Ok(true) => None,
            Ok(false) => Some("the playbook's `on.if` is false for this event".to_owned()),
            Err(e) => Some(format!("the playbook's `on.if` failed: {}", e.message)),
        }
    }

    /// Runs a stored event again through trigger matching: the loaded playbooks it triggers now
    /// and that have not run on it before (so nothing is applied twice); returns their reports.
    pub async fn rerun(self: &Arc<Self>, event: Event) -> Result<Vec<RunReport>> {
        let (planned, _) = self.plan_runs(&event);
        let earlier = self
            .store
            .list_runs(&belay_store::RunFilter {
                event_id: Some(event.id.clone()),
                ..Default::default()
            })
            .await?;
        let event = Arc::new(event);
        let mut reports = Vec::new();
        for run in planned {
            if earlier.iter().any(|r| {
                r.playbook == run.playbook
                    && !r.dry_run
                    && r.parent_run.is_none()
                    && r.trigger_source().is_none_or(|s| s == event.source)
            }) {
                continue;
            }
            if let Some(pb) = self.playbooks.get(&run.playbook) {
                self.keep_versions(&[&pb]).await?;
            }
            let run = self.store.insert_run(&run).await?;
            reports.push(self.execute_new(run, event.clone()).await?);
        }
        Ok(reports)
    }

    /// Runs one playbook on one event, outside trigger matching (`belay run`).
    pub async fn run_once(
        self: &Arc<Self>,
        pb: &Playbook,
        event: Event,
        dry_run: bool,
    ) -> Result<RunReport> {
        let run = new_run(pb, (&event.id, &event.source), None, Value::Null, dry_run);
        self.keep_versions(&[pb]).await?;
        let accepted = self
            .store
            .accept_event(&event, std::slice::from_ref(&run), None)
            .await?;
        let event = event;
        let run = match accepted {
            Accepted::New => run,
            // The event was seen before: start a run of its own for this explicit request.
            Accepted::Duplicate => self.store.insert_run(&run).await?,
        };
        self.execute_new(run, Arc::new(event)).await
    }

    /// The report of a stored run, with the steps of the sub-playbook runs it called.
    pub async fn report(&self, run_id: &str) -> Result<Option<RunReport>> {
        self.report_at(run_id.to_owned(), 0).await
    }

    fn report_at(
        &self,
        run_id: String,
        depth: usize,
    ) -> futures::future::BoxFuture<'_, Result<Option<RunReport>>> {
        Box::pin(async move {
            let Some(run) = self.store.get_run(&run_id).await? else {
                return Ok(None);
            };
            let steps = self.store.steps(&run_id).await?;
            let mut subs = std::collections::HashMap::new();
            for s in steps
                .iter()
                .filter(|s| s.decision == belay_model::Decision::SubPlaybook && depth < 8)
            {
                if let Some(child) = s.output.get("run_id").and_then(Value::as_str)
                    && let Some(r) = self.report_at(child.to_owned(), depth + 1).await?
                {
                    subs.insert(s.key.clone(), r.steps);
                }
            }
            Ok(Some(RunReport::with_subs(&run, steps, subs)))
        })
    }
}

/// A new run record, marked running and leased to this worker when stored.
pub fn new_run(
    pb: &Playbook,
    (event_id, event_source): (&str, &str),
    parent: Option<(&str, &str)>,
    inputs: Value,
    dry_run: bool,
) -> RunRecord {
    let now = now_ms();
    RunRecord {
        id: match parent {
            // Deterministic, so a resumed parent finds the child it started.
            Some((run, key)) => format!("{run}.{key}"),
            None => belay_model::new_id(),
        },
        event_id: event_id.to_owned(),
        event_source: event_source.to_owned(),
        playbook: pb.name.clone(),
        playbook_hash: pb.hash.clone(),
        parent_run: parent.map(|(r, _)| r.to_owned()),
        status: RunStatus::Running,
        dry_run,
        inputs,
        error: None,
        created_at: now,
        updated_at: now,
    }
}
