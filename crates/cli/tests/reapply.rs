//! `belay reapply`: Unbound forgets its runtime local zones when it restarts; the journal puts
//! the sinkholes back, and only those still in effect (a rolled-back one stays gone).

use belay_connectors::native::unbound::Sandbox;

mod common;
use common::{belay, json, text};

const PLAYBOOK: &str = r#"name: sinkhole
on: { event: sinkhole }
trust: log
steps:
  - id: sinkhole
    action: dns.sinkhole_domain
    for_each: ${{ event.observables.domains }}
    with: { domain: "${{ item }}" }
"#;

#[test]
fn after_a_restart_the_journal_restores_the_sinkholes_in_effect() {
    if let Err(why) = Sandbox::available() {
        assert!(
            std::env::var_os("BELAY_REQUIRE_NATIVE").is_none(),
            "Unbound is required here: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let mut sb = Sandbox::start().expect("unbound starts");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = toml::Table::try_from(sb.config()).unwrap();
    config.insert("type".into(), "unbound".into());
    let mut connectors = toml::Table::new();
    connectors.insert("dns".into(), config.into());
    let mut root = toml::Table::new();
    root.insert("connectors".into(), connectors.into());
    let mut text_config = toml::to_string(&root).unwrap();
    text_config.push_str("\n[[users]]\nname = \"soc-lead\"\nroles = [\"admin\"]\n");
    std::fs::write(d.join("belay.toml"), text_config).unwrap();
    std::fs::write(d.join("pb.yaml"), PLAYBOOK).unwrap();
    let event = |file: &str, domains: &[&str]| {
        let ev = serde_json::json!({"kind": "sinkhole", "observables": {"domains": domains}});
        std::fs::write(d.join(file), ev.to_string()).unwrap();
    };
    event("a.json", &["evil-a.example.com", "evil-b.example.com"]);
    event("c.json", &["evil-c.example.com"]);
    let run = |file: &str| {
        let o = belay(d, &["run", "pb.yaml", "--event", file, "--format", "json"]);
        assert!(o.status.success(), "{}", text(&o));
        let r = json(&o);
        r["run_id"].as_str().unwrap().to_owned()
    };
    run("a.json");
    let c = run("c.json");
    assert!(sb.sinkholed("www.evil-a.example.com") && sb.sinkholed("evil-c.example.com"));
    let o = belay(d, &["rollback", "--run", &c, "--as", "soc-lead"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!sb.sinkholed("evil-c.example.com"));

    sb.restart().expect("unbound restarts");
    assert!(
        !sb.sinkholed("evil-a.example.com"),
        "runtime zones are gone"
    );

    let o = belay(d, &["reapply", "dns", "--as", "soc-lead"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 restored"), "{}", text(&o));
    assert!(sb.sinkholed("evil-a.example.com") && sb.sinkholed("mail.evil-b.example.com"));
    assert!(
        !sb.sinkholed("evil-c.example.com"),
        "a rolled-back sinkhole stays gone"
    );
    // Nothing lost this time: a second pass restores nothing.
    let o = belay(d, &["reapply", "dns", "--as", "soc-lead"]);
    assert!(text(&o).contains("0 restored"), "{}", text(&o));
    assert!(text(&belay(d, &["audit", "verify"])).contains("audit chain intact"));
}
