//! Properties: whatever sequence of changes runs, rolling back to a checkpoint restores every
//! list file byte for byte, and the audit chain stays intact; and the `--dry-run` of a
//! rollback (`--to`, `--since`, `--run`) predicts the real rollback's outcome change by change.

use belay_connectors::{Blocklist, Core, Registry};
use belay_engine::rollback::{Outcome, RollbackOptions, Selection, rollback};
use belay_engine::{Engine, EngineConfig};
use belay_model::Event;
use belay_playbook::{Catalog, PlaybookSet};
use belay_store::{SqliteOptions, SqliteStore, Store, Synchronous};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const PLAYBOOK: &str = r#"name: churn
trust: log
steps:
  - id: add
    action: blocklist.add
    for_each: ${{ event.data.adds }}
    concurrency: 1
    with: { list: "${{ item.list }}", entry: "${{ item.entry }}" }
  - id: remove
    action: blocklist.remove
    for_each: ${{ event.data.removes }}
    concurrency: 1
    with: { list: "${{ item.list }}", entry: "${{ item.entry }}" }
"#;

#[derive(Debug, Clone)]
enum Op {
    Run {
        adds: Vec<(u8, u8)>,
        removes: Vec<(u8, u8)>,
    },
    Checkpoint,
    RollbackTo(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let pair = (0u8..2, 0u8..6);
    prop_oneof![
        4 => (prop::collection::vec(pair.clone(), 0..4), prop::collection::vec(pair, 0..3))
            .prop_map(|(adds, removes)| Op::Run { adds, removes }),
        1 => Just(Op::Checkpoint),
        1 => (0usize..8).prop_map(Op::RollbackTo),
    ]
}

fn snapshot(lists: &Path) -> HashMap<String, Vec<u8>> {
    ["a", "b"]
        .iter()
        .map(|l| {
            (
                l.to_string(),
                std::fs::read(lists.join(format!("{l}.txt"))).unwrap_or_default(),
            )
        })
        .collect()
}

/// A list directory with hand-kept files, an engine running `churn` on it, and its store.
struct Env {
    dir: tempfile::TempDir,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    pb: Arc<belay_playbook::Playbook>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    // Hand-kept files with comments and entries the playbook also touches.
    std::fs::write(lists.join("a.txt"), "# kept by hand\n10.0.0.3\nhost-1\n").unwrap();
    std::fs::write(lists.join("b.txt"), "10.0.0.5\n").unwrap();
    std::fs::write(dir.path().join("churn.yaml"), PLAYBOOK).unwrap();
    let catalog = Arc::new(Catalog::builtin());
    let set = PlaybookSet::load(&[dir.path().join("churn.yaml")], &catalog).unwrap();
    let pb = set.get("churn").unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &dir.path().join("data"),
            SqliteOptions {
                synchronous: Synchronous::Normal,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let mut reg = Registry::new();
    reg.register(Arc::new(Core));
    reg.register(Arc::new(Blocklist::new(&lists, HashMap::new())));
    let engine = Engine::new(
        store.clone(),
        Arc::new(set),
        catalog,
        reg,
        EngineConfig::default(),
    );
    Env {
        dir,
        engine,
        store,
        pb,
    }
}

impl Env {
    /// Runs `churn` once: adds then removes entries of list `a`; returns the run's id.
    async fn churn(&self, adds: &[&str], removes: &[&str]) -> String {
        let items = |v: &[&str]| -> Vec<Value> {
            v.iter()
                .map(|e| json!({ "list": "a", "entry": e }))
                .collect()
        };
        let ev = Event::from_json(json!({
            "kind": "churn", "data": { "adds": items(adds), "removes": items(removes) }
        }))
        .unwrap();
        let r = self.engine.run_once(&self.pb, ev, false).await.unwrap();
        assert_eq!(r.status, belay_model::RunStatus::Succeeded, "{:?}", r.error);
        r.run_id
    }

    /// The dry run's prediction and the real rollback's outcome of `sel`, by change.
    async fn preview_and_outcome(
        &self,
        sel: Selection,
    ) -> (Vec<(String, Outcome)>, Vec<(String, Outcome)>, String) {
        let opts = |dry_run| RollbackOptions {
            dry_run,
            force: false,
            actor: "prop".into(),
        };
        let dry = rollback(&self.engine, sel.clone(), opts(true))
            .await
            .unwrap();
        let real = rollback(&self.engine, sel, opts(false)).await.unwrap();
        let predicted = dry
            .items
            .iter()
            .map(|i| {
                let o = match i.outcome {
                    Outcome::WouldRevert => Outcome::Reverted,
                    o => o,
                };
                (i.change_id.clone(), o)
            })
            .collect();
        let happened = real
            .items
            .iter()
            .map(|i| (i.change_id.clone(), i.outcome))
            .collect();
        (
            predicted,
            happened,
            format!("{:#?}\n{:#?}", dry.items, real.items),
        )
    }
}

const ENTRIES: [&str; 5] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "host-1", "host-2"];

/// Which rollback to preview, then perform.
#[derive(Debug, Clone)]
enum Mode {
    To,
    Since,
    Run(usize),
}

async fn check_preview(
    runs: Vec<(Vec<usize>, Vec<usize>)>,
    mark: usize,
    mode: Mode,
) -> Result<(), TestCaseError> {
    let e = env();
    let mut ids = Vec::new();
    let mut since = 0;
    for (i, (adds, removes)) in runs.iter().enumerate() {
        if i == mark % (runs.len() + 1) {
            e.store.create_checkpoint("mark", "prop").await.unwrap();
            since = belay_model::now_ms();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let pick = |v: &[usize]| -> Vec<&str> { v.iter().map(|k| ENTRIES[*k]).collect() };
        ids.push(e.churn(&pick(adds), &pick(removes)).await);
    }
    if mark % (runs.len() + 1) == runs.len() {
        e.store.create_checkpoint("mark", "prop").await.unwrap();
        since = belay_model::now_ms();
    }
    let sel = match mode {
        Mode::To => Selection::Checkpoint("mark".into()),
        Mode::Since => Selection::Since(since),
        Mode::Run(k) => Selection::Run(ids[k % ids.len()].clone()),
    };
    let (predicted, happened, both) = e.preview_and_outcome(sel).await;
    prop_assert_eq!(predicted, happened, "preview, then outcome:\n{}", both);
    let _ = e.dir.path();
    Ok(())
}

#[tokio::test]
async fn the_preview_of_the_issue_sequence_matches_the_rollback() {
    // A checkpoint; a run adds two entries; a second removes a pre-existing entry and one of
    // the first run's; a third re-adds the pre-existing one.
    let e = env();
    e.store.create_checkpoint("cp", "prop").await.unwrap();
    e.churn(&["10.0.0.1", "10.0.0.2"], &[]).await;
    e.churn(&[], &["10.0.0.3", "10.0.0.1"]).await;
    e.churn(&["10.0.0.3"], &[]).await;
    let (predicted, happened, both) = e
        .preview_and_outcome(Selection::Checkpoint("cp".into()))
        .await;
    assert_eq!(predicted, happened, "{both}");
    assert_eq!(happened.len(), 5, "{both}");
    assert!(
        happened.iter().all(|(_, o)| *o == Outcome::Reverted),
        "{both}"
    );
}

async fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let Env {
        dir,
        engine,
        store,
        pb,
    } = env();
    let lists = dir.path().join("lists");
    let entry = |(l, e): &(u8, u8)| {
        let list = if *l == 0 { "a" } else { "b" };
        let entry = if *e < 3 {
            format!("10.0.0.{e}")
        } else {
            format!("host-{}", e - 2)
        };
        json!({ "list": list, "entry": entry })
    };
    let mut checkpoints: Vec<(String, HashMap<String, Vec<u8>>)> = Vec::new();
    let opts = RollbackOptions {
        dry_run: false,
        force: false,
        actor: "prop".into(),
    };
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Run { adds, removes } => {
                let ev = Event::from_json(json!({
                    "kind": "churn", "data": {
                        "adds": adds.iter().map(entry).collect::<Vec<_>>(),
                        "removes": removes.iter().map(entry).collect::<Vec<_>>(),
                    }
                }))
                .unwrap();
                let r = engine.run_once(&pb, ev, false).await.unwrap();
                prop_assert_eq!(r.status, belay_model::RunStatus::Succeeded, "{:?}", r.error);
            }
            Op::Checkpoint => {
                let name = format!("cp{i}");
                store.create_checkpoint(&name, "prop").await.unwrap();
                checkpoints.push((name, snapshot(&lists)));
            }
            Op::RollbackTo(k) if !checkpoints.is_empty() => {
                let k = k % checkpoints.len();
                let (name, snap) = checkpoints[k].clone();
                let report = rollback(&engine, Selection::Checkpoint(name.clone()), opts.clone())
                    .await
                    .unwrap();
                prop_assert_eq!(
                    report.count(Outcome::Failed) + report.count(Outcome::Drifted),
                    0,
                    "{:?}",
                    report.items
                );
                prop_assert_eq!(
                    snapshot(&lists),
                    snap,
                    "rollback to {} must restore every byte: {:?}",
                    name,
                    report.items
                );
                // A person's rollback demotes the step to `approve`; this test is about
                // restored bytes, so lift the demotion as an operator would.
                for step in ["add", "remove"] {
                    engine
                        .store
                        .reset_trust("churn", step, "prop")
                        .await
                        .unwrap();
                }
                // Later checkpoints describe states that no longer exist.
                checkpoints.truncate(k + 1);
            }
            Op::RollbackTo(_) => {}
        }
    }
    let verified = belay_store::verify_audit(store.as_ref()).await.unwrap();
    prop_assert!(verified.is_ok(), "{:?}", verified);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn rollback_to_a_checkpoint_restores_every_byte(ops in prop::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(ops))?;
    }
}

fn runs() -> impl Strategy<Value = Vec<(Vec<usize>, Vec<usize>)>> {
    prop::collection::vec(
        (
            prop::collection::vec(0usize..ENTRIES.len(), 0..3),
            prop::collection::vec(0usize..ENTRIES.len(), 0..3),
        ),
        1..6,
    )
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::To),
        Just(Mode::Since),
        (0usize..6).prop_map(Mode::Run),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn a_rollback_dry_run_predicts_the_rollback_change_by_change(
        runs in runs(),
        mark in 0usize..6,
        mode in mode(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check_preview(runs, mark, mode))?;
    }
}
