//! Every never-list kind for every target: a host is held whether it is given by address, by
//! short or by fully qualified name, with the shipped guardrails; at `guarded`, a host target
//! that cannot be matched to every protected identity is held rather than passed.

use belay_engine::guard::{Context, Guardrails};
use belay_playbook::Catalog;
use std::collections::HashMap;
use std::path::Path;

/// Whether `guardrail` passes `target` through `action` (`guarded`: trust of the step).
fn passes(g: &Guardrails, guardrail: &str, action: &str, target: &str, guarded: bool) -> bool {
    let catalog = Catalog::builtin();
    let (recent, baselines) = (HashMap::new(), HashMap::new());
    let targets = vec![target.to_owned()];
    let ctx = Context {
        action: catalog.get(action).unwrap(),
        targets: &targets,
        recent: &recent,
        baselines: &baselines,
        identities: &Default::default(),
    };
    let v = g.check_at(&[], &ctx, guarded);
    let v = v.iter().find(|v| v.guardrail == guardrail).unwrap();
    v.pass
}

#[test]
fn the_cfo_laptop_is_held_by_address_short_and_full_name_with_the_shipped_guardrails() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guardrails");
    let g = Guardrails::load(&shipped).unwrap();
    for action in ["edr.isolate_host", "nac.quarantine"] {
        for host in [
            "10.20.1.15",
            "::ffff:10.20.1.15",
            "fin-cfo-lt01",
            "FIN-CFO-LT01",
            "fin-cfo-lt01.corp.example",
            "fin-cfo-lt01.corp.example.",
        ] {
            for guarded in [false, true] {
                assert!(
                    !passes(&g, "high-profile-devices", action, host, guarded),
                    "{action} of {host} passed"
                );
            }
        }
        for other in ["ws-042", "10.20.1.16", "ws-042.corp.example"] {
            assert!(
                passes(&g, "high-profile-devices", action, other, true),
                "{action} of {other} was held"
            );
        }
    }
}

#[test]
fn at_guarded_a_host_that_cannot_be_resolved_is_held() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.yaml"),
        "guardrails:
  - name: vips
    applies_to: [edr.isolate_host]
    never:
      hosts: [ceo-lt01, { name: cfo-lt01, addresses: [10.0.0.9] }]
      cidrs: [10.1.0.0/16]
",
    )
    .unwrap();
    let g = Guardrails::load(dir.path()).unwrap();
    // ceo-lt01's address is unknown: an address cannot be told apart from it at guarded.
    assert!(!passes(&g, "vips", "edr.isolate_host", "10.9.9.9", true));
    assert!(passes(&g, "vips", "edr.isolate_host", "10.9.9.9", false));
    // A name whose addresses are unknown cannot be checked against 10.1.0.0/16.
    assert!(!passes(&g, "vips", "edr.isolate_host", "ws-007", true));
    assert!(passes(&g, "vips", "edr.isolate_host", "ws-007", false));
    // Known identities are matched at every level.
    for t in ["10.0.0.9", "cfo-lt01.corp.example", "10.1.2.3", "CEO-LT01"] {
        assert!(!passes(&g, "vips", "edr.isolate_host", t, false), "{t}");
    }
}
