//! `belay bench --feed N`: one import of a feed of N new addresses, through a guarded playbook
//! that adds the whole update to a file block list (`blocklist.add_many`) and, given a network
//! namespace, to an nftables block set (`firewall.block_many`), checked against a never-list
//! of many networks; then the run rolled back. Figures per stage and peak memory.
//!
//! Stages: parse and store are the import's own phases; guardrails is the guardrail check of
//! the update's targets, measured on its own with the engine's guardrails; the run is the whole
//! playbook run (render, guardrails, journal, apply), of which the connectors' time is split
//! out (state reads before and after, apply); journal and the engine's own work are the rest.

use async_trait::async_trait;
use belay_connector_api::{ActionError, Call, Connector, Registry};
use belay_connectors::Blocklist;
use belay_connectors::native::nftables::{Nftables, NftablesConfig};
use belay_engine::rollback::{RollbackOptions, Selection, rollback};
use belay_engine::{Engine, EngineConfig, EngineError, Result};
use belay_intel::{ImportOptions, Phase, Progress};
use belay_model::RunStatus;
use belay_playbook::{Catalog, PlaybookSet};
use belay_store::Store;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Feed benchmark settings.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// New addresses in the feed.
    pub addresses: usize,
    /// Networks in the never-list every address is checked against.
    pub never_networks: usize,
    /// Network namespace whose nftables the firewall step changes; no firewall step without.
    pub netns: Option<String>,
}

/// Feed benchmark figures, in seconds unless named otherwise (the JSON keys are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct FeedResult {
    /// Addresses imported, all of them in the list (and the set) afterwards.
    pub addresses: usize,
    /// Networks in the never-list.
    pub never_networks: usize,
    /// Whether the firewall step ran (a namespace was given).
    pub firewall: bool,
    /// Loading the guardrails (the never-list's index).
    pub guardrails_load: f64,
    /// Reading and parsing the feed.
    pub parse: f64,
    /// Writing the feed's set to the intel store.
    pub store: f64,
    /// Checking every address against the guardrails, as the guard gate does for one step.
    pub guardrails: f64,
    /// The playbook run, end to end.
    pub run: f64,
    /// Of `run`, the connectors reading targets' states (before and after each change).
    pub read_state: f64,
    /// Of `run`, the connectors applying the changes.
    pub apply: f64,
    /// Of `run`, everything else: rendering, guardrails, journal and audit writes.
    pub journal_and_engine: f64,
    /// Import and run: from the feed file to every address blocked and journaled.
    pub end_to_end: f64,
    /// Rolling the run back, verified.
    pub rollback: f64,
    /// Peak resident memory of the whole process in MiB.
    pub peak_rss_mb: f64,
}

/// Times the import's phases.
struct Phases {
    at: Vec<(Phase, Instant)>,
    done: Option<Instant>,
}

impl Progress for Phases {
    fn phase(&mut self, phase: Phase, _: Option<u64>) {
        self.at.push((phase, Instant::now()));
    }
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {
        self.done = Some(Instant::now());
    }
}

/// A connector whose calls and state reads are timed.
struct Timed {
    inner: Arc<dyn Connector>,
    call_ns: Arc<AtomicU64>,
    read_ns: Arc<AtomicU64>,
}

#[async_trait]
impl Connector for Timed {
    fn family(&self) -> &str {
        self.inner.family()
    }

    async fn call(&self, call: Call<'_>) -> std::result::Result<Value, ActionError> {
        let t = Instant::now();
        let r = self.inner.call(call).await;
        self.call_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
        r
    }

    async fn read_state(
        &self,
        action: &str,
        input: &Value,
    ) -> std::result::Result<Value, ActionError> {
        let t = Instant::now();
        let r = self.inner.read_state(action, input).await;
        self.read_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
        r
    }
}

fn other(e: impl std::fmt::Display) -> EngineError {
    EngineError::Other(e.to_string())
}

/// The `i`-th feed address: odd addresses of 100.64.0.0/10 (no two adjacent).
fn address(i: usize) -> String {
    let n = (2 * i + 1) as u32;
    std::net::Ipv4Addr::from(0x6440_0000u32 + n).to_string()
}

/// Runs the feed benchmark on `store`, with its files in `dir`.
pub async fn run(
    store: Arc<dyn Store>,
    dir: &std::path::Path,
    opts: FeedOptions,
) -> Result<FeedResult> {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("lists")).map_err(other)?;
    let feed: String = (0..opts.addresses).map(|i| address(i) + "\n").collect();
    std::fs::write(dir.join("feed.txt"), feed).map_err(other)?;
    // Every other /24 of 32.0.0.0/3, none adjacent (so none merge into a wider range), then
    // single addresses of 64.0.0.0/3 past 2^20; no feed address among them.
    let never: String = (0..opts.never_networks)
        .map(|i| {
            if i < 1 << 20 {
                let net = 0x2000_0000u32 + ((2 * i as u32) << 8);
                format!("{}/24\n", std::net::Ipv4Addr::from(net))
            } else {
                let addr = 0x4000_0000u32 + 2 * i as u32;
                format!("{}\n", std::net::Ipv4Addr::from(addr))
            }
        })
        .collect();
    std::fs::write(dir.join("never.txt"), never).map_err(other)?;
    let mut actions = vec!["blocklist.add_many"];
    if opts.netns.is_some() {
        actions.push("firewall.block_many");
    }
    std::fs::write(
        dir.join("guardrails.yaml"),
        format!(
            "guardrails:\n  - name: protected\n    applies_to: [{}]\n    never:\n      lists: [{}]\n",
            actions.join(", "),
            dir.join("never.txt").display()
        ),
    )
    .map_err(other)?;
    let mut playbook = String::from(
        "name: feed-block\non: { event: intel.update }\ntrust: guarded\nsteps:\n  - id: list\n    action: blocklist.add_many\n    with: { list: feed, entries: \"${{ event.observables.ips }}\" }\n",
    );
    if opts.netns.is_some() {
        playbook.push_str("  - id: firewall\n    action: firewall.block_many\n    with: { addresses: \"${{ event.observables.ips }}\", set: egress }\n");
    }
    std::fs::write(dir.join("feed-block.yaml"), playbook).map_err(other)?;

    let t = Instant::now();
    let guardrails = Arc::new(
        belay_engine::guard::Guardrails::load(&dir.join("guardrails.yaml")).map_err(other)?,
    );
    let guardrails_load = t.elapsed().as_secs_f64();
    let catalog = Arc::new(Catalog::builtin());
    let set = PlaybookSet::load(&[dir.join("feed-block.yaml")], &catalog).map_err(|e| {
        other(
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let (call_ns, read_ns) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let timed = |inner: Arc<dyn Connector>| {
        Arc::new(Timed {
            inner,
            call_ns: call_ns.clone(),
            read_ns: read_ns.clone(),
        })
    };
    let mut registry = Registry::new();
    registry.register(timed(Arc::new(Blocklist::new(
        data.join("lists"),
        HashMap::new(),
    ))));
    if let Some(ns) = &opts.netns {
        let fw = Nftables::new(
            "firewall",
            NftablesConfig {
                netns: Some(ns.clone()),
                timeout_secs: 300,
                ..NftablesConfig::default()
            },
        )
        .map_err(other)?;
        registry.register(timed(Arc::new(fw)));
    }
    let engine = Engine::with_guardrails(
        store,
        Arc::new(set),
        catalog.clone(),
        registry,
        EngineConfig::default(),
        guardrails.clone(),
    );

    let started = Instant::now();
    let mut phases = Phases {
        at: Vec::new(),
        done: None,
    };
    let source = dir.join("feed.txt").display().to_string();
    let import_opts = ImportOptions {
        feed: "bench".into(),
        ..Default::default()
    };
    let report = belay_intel::import(&data, &source, &import_opts, &mut phases).map_err(other)?;
    let at = |p: Phase| phases.at.iter().find(|(q, _)| *q == p).map(|(_, t)| *t);
    let (Some(parse_at), Some(write_at), Some(done)) =
        (at(Phase::Download), at(Phase::Write), phases.done)
    else {
        return Err(other("the import did not go through its phases"));
    };
    let parse = (write_at - parse_at).as_secs_f64();
    let store_s = (done - write_at).as_secs_f64();
    if report.added.len() != opts.addresses {
        return Err(other(format!(
            "the import added {} addresses, not {}",
            report.added.len(),
            opts.addresses
        )));
    }
    let event = report.event();
    // The import's own report is not what the run needs: it goes before the run starts.
    drop(report);

    // The guard gate's check, on its own, with the same guardrails and targets.
    let spec = catalog
        .get("blocklist.add_many")
        .ok_or_else(|| other("blocklist.add_many is not in the catalog"))?;
    let input = serde_json::json!({ "list": "feed", "entries": event.observables.ips });
    let t = Instant::now();
    let targets = spec.targets_of(&input);
    let verdicts = guardrails.check_at(
        &[],
        &belay_engine::guard::Context {
            action: spec,
            targets: &targets,
            recent: &HashMap::new(),
            baselines: &HashMap::new(),
            identities: &Default::default(),
        },
        true,
    );
    let guard_s = t.elapsed().as_secs_f64();
    if let Some(v) = verdicts.iter().find(|v| !v.pass) {
        return Err(other(format!("a guardrail held the feed: {}", v.reason)));
    }
    drop(input);
    drop(targets);

    let t = Instant::now();
    let mut run_id = None;
    for acc in engine.accept_batch(vec![(event, None)]).await? {
        for r in acc.runs {
            let report = engine.execute_new(r, acc.event.clone()).await?;
            if report.status != RunStatus::Succeeded {
                return Err(other(format!("the feed run ended {:?}", report.status)));
            }
            run_id = Some(report.run_id);
        }
    }
    let run_s = t.elapsed().as_secs_f64();
    let end_to_end = (done - started).as_secs_f64() + run_s;
    let run_id = run_id.ok_or_else(|| other("the update started no run"))?;
    let listed = std::fs::read_to_string(data.join("lists/feed.txt")).map_err(other)?;
    if listed.lines().count() != opts.addresses {
        return Err(other("the list does not hold every address"));
    }
    let apply = call_ns.load(Relaxed) as f64 / 1e9;
    let read_state = read_ns.load(Relaxed) as f64 / 1e9;

    let t = Instant::now();
    let undone = rollback(
        &engine,
        Selection::Run(run_id),
        RollbackOptions {
            dry_run: false,
            force: false,
            actor: "bench".into(),
        },
    )
    .await?;
    let rollback_s = t.elapsed().as_secs_f64();
    if undone
        .items
        .iter()
        .any(|i| i.outcome != belay_engine::rollback::Outcome::Reverted)
    {
        return Err(other("the rollback did not revert every change"));
    }
    Ok(FeedResult {
        addresses: opts.addresses,
        never_networks: opts.never_networks,
        firewall: opts.netns.is_some(),
        guardrails_load,
        parse,
        store: store_s,
        guardrails: guard_s,
        run: run_s,
        read_state,
        apply,
        journal_and_engine: (run_s - read_state - apply).max(0.0),
        end_to_end,
        rollback: rollback_s,
        peak_rss_mb: crate::peak_rss_mb(),
    })
}
