//! Guardrail files that would silently protect nothing do not load: an entry that can never
//! match is an error naming the file and line. A list file with a byte-order mark keeps its
//! first entry.

use belay_engine::guard::{Context, Guardrails};
use belay_playbook::Catalog;
use std::collections::HashMap;

fn load(yaml: &str, list: Option<&[u8]>) -> Result<Guardrails, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.yaml"), yaml).unwrap();
    if let Some(l) = list {
        std::fs::write(dir.path().join("list.txt"), l).unwrap();
    }
    Guardrails::load(dir.path())
}

const HEAD: &str = "guardrails:\n  - name: p\n    applies_to: [blocklist.add]\n    never:\n";

#[test]
fn an_entry_that_can_never_match_is_a_load_error_with_file_and_line() {
    for (entry, want) in [
        (
            "      domains: [crm.example.com, .example-crm.com]\n",
            "starts with a dot",
        ),
        (
            "      domains:\n        - crm.example.com\n        - .example-crm.com\n",
            "starts with a dot",
        ),
        (
            "      cidrs: [203.0.113.0/24, 203.0.113.0/33]\n",
            "prefix length",
        ),
        ("      cidrs: [010.0.0.0/8]\n", "ambiguous"),
        ("      users: [root, \"\"]\n", "empty entry"),
        ("      hosts: [10.20.1.15]\n", "is an address"),
    ] {
        let e = load(&format!("{HEAD}{entry}"), None).unwrap_err();
        let line = if entry.contains("\n        - .") {
            7
        } else {
            5
        };
        assert!(e.contains(&format!("g.yaml:{line}:")), "{entry}: {e}");
        assert!(e.contains(want), "{entry}: {e}");
    }
}

#[test]
fn a_bad_line_of_a_list_file_names_the_list_and_line() {
    let e = load(
        &format!("{HEAD}      lists: [list.txt]\n"),
        Some(b"# protected\n203.0.113.0/24\n.crm.example.com\n"),
    )
    .unwrap_err();
    assert!(
        e.contains("list.txt:3:") && e.contains("starts with a dot"),
        "{e}"
    );
}

#[test]
fn a_list_file_with_a_byte_order_mark_keeps_its_first_entry() {
    let g = load(
        &format!("{HEAD}      lists: [list.txt]\n"),
        Some("\u{feff}203.0.113.0/24\r\ncrm.example.com\r\n".as_bytes()),
    )
    .unwrap();
    let catalog = Catalog::builtin();
    let (recent, baselines) = (HashMap::new(), HashMap::new());
    for t in ["203.0.113.9", "crm.example.com"] {
        let targets = vec![t.to_owned()];
        let ctx = Context {
            action: catalog.get("blocklist.add").unwrap(),
            targets: &targets,
            recent: &recent,
            baselines: &baselines,
            identities: &Default::default(),
        };
        assert!(!g.check(&[], &ctx)[0].pass, "{t} passed");
    }
}
