//! Property: whatever sequence of changes runs, rolling back to a checkpoint restores every
//! list file byte for byte, and the audit chain stays intact.

use belay_connectors::{Blocklist, Core, Registry};
use belay_engine::rollback::{Outcome, RollbackOptions, Selection, rollback};
use belay_engine::{Engine, EngineConfig};
use belay_model::Event;
use belay_playbook::{Catalog, PlaybookSet};
use belay_store::{SqliteOptions, SqliteStore, Store, Synchronous};
use proptest::prelude::*;
use serde_json::json;
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

async fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
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
