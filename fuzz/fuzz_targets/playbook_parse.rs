//! Fuzzes the playbook parser: positioned YAML, playbook structure, embedded expressions,
//! and lint against the built-in catalog. Any panic, hang or runaway allocation is a bug:
//! playbook files are user input and the parser must answer every text with diagnostics.

#![no_main]

mod common;

use belay_playbook::{Call, Catalog, Playbook, lint, yaml};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::builtin);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(node) = yaml::parse(&text) {
        let _ = node.to_json();
        let _ = node.describe();
    }

    let Ok(pb) = Playbook::parse(Path::new("fuzz.yaml"), &text) else {
        return;
    };

    // Lint as a lone playbook, as required ...
    let _ = lint::check(&pb, &CATALOG, &BTreeMap::new());
    // ... and as part of a set that knows it and its sub-playbook calls, so the
    // known-playbook and cycle checks run too.
    let calls: Vec<String> = pb
        .steps
        .iter()
        .filter_map(|s| match &s.call {
            Call::Playbook(p) => Some(p.clone()),
            Call::Action(_) => None,
        })
        .collect();
    let mut known = BTreeMap::new();
    for c in &calls {
        known.insert(c.clone(), vec![pb.name.clone()]);
    }
    known.insert(pb.name.clone(), calls);
    let _ = lint::check(&pb, &CATALOG, &known);

    // Render what the engine would render (every evaluation is fuel-bounded).
    let ctx = &*common::RICH;
    if let Some(c) = &pb.trigger.condition {
        let _ = c.eval_bool(ctx);
    }
    for step in &pb.steps {
        if let Some(c) = &step.condition {
            let _ = c.eval_bool(ctx);
        }
        if let Some(f) = &step.for_each {
            let _ = f.render(ctx);
        }
        let _ = step.with.render(ctx);
        let _ = step.with.literal();
    }
});
