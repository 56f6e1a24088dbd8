//! Time-boxed changes through the real binary: `expires: 2s` on a block-list entry, a sinkhole
//! in a real Unbound and a NAC quarantine (the NAC stand-in): each is reverted and verified by
//! the scheduler (`belay changes expire --watch`), as `engine:expiry`, also when no scheduler
//! ran across the expiry time and one started later. Lint refuses `expires` where nothing can be
//! undone.

use belay_connectors::native::unbound::Sandbox;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{belay, json, listed, ok, text};

const PLAYBOOK: &str = r#"name: contain
on: { event: contain }
trust: log
steps:
  - id: block
    action: blocklist.add
    with: { list: egress, entry: "${{ event.observables.ips[0] }}" }
    expires: 2s
  - id: sinkhole
    action: dns.sinkhole_domain
    with: { domain: "${{ event.observables.domains[0] }}" }
    expires: 2s
  - id: quarantine
    action: nac.quarantine
    with: { device: "${{ event.observables.macs[0] }}" }
    expires: 2s
"#;

fn quarantined(d: &Path, mac: &str) -> bool {
    std::fs::read_to_string(d.join("standin/nac.json"))
        .unwrap_or_default()
        .contains(mac)
}

/// Starts `belay changes expire --watch` in `d`.
fn scheduler(d: &Path) -> Child {
    common::command(d)
        .args(["changes", "expire", "--watch", "--poll", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the scheduler starts")
}

/// Waits (bounded) until `done` holds; whether it did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn contain(d: &Path, n: u32) -> String {
    let ev = serde_json::json!({"kind": "contain", "observables": {
        "ips": [format!("203.0.113.{n}")],
        "domains": [format!("evil-{n}.example.com")],
        "macs": [format!("00:1a:2b:3c:4d:{n:02x}")],
    }});
    std::fs::write(d.join("ev.json"), ev.to_string()).unwrap();
    let o = belay(
        d,
        &["run", "pb.yaml", "--event", "ev.json", "--format", "json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&o);
    assert_eq!(r["status"], "succeeded", "{r}");
    r["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn time_boxed_changes_are_reverted_on_time_even_across_a_stop() {
    if let Err(why) = Sandbox::available() {
        belay_testkit::skip::unless_required("BELAY_REQUIRE_NATIVE", &why);
        return;
    }
    let sb = Sandbox::start().expect("unbound starts");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut dns = toml::Table::try_from(sb.config()).unwrap();
    dns.insert("type".into(), "unbound".into());
    let mut nac = toml::Table::new();
    nac.insert("type".into(), "standin".into());
    nac.insert("family".into(), "nac".into());
    nac.insert(
        "state_dir".into(),
        d.join("standin").display().to_string().into(),
    );
    let mut connectors = toml::Table::new();
    connectors.insert("dns".into(), dns.into());
    connectors.insert("nac".into(), nac.into());
    let mut root = toml::Table::new();
    root.insert("connectors".into(), connectors.into());
    std::fs::write(d.join("belay.toml"), toml::to_string(&root).unwrap()).unwrap();
    std::fs::write(d.join("pb.yaml"), PLAYBOOK).unwrap();

    // With the scheduler running: applied, listed as expiring, then reverted and verified.
    let mut watch = scheduler(d);
    let run = contain(d, 7);
    assert_eq!(listed(d), ["203.0.113.7"]);
    assert!(sb.sinkholed("www.evil-7.example.com"));
    assert!(quarantined(d, "00:1a:2b:3c:4d:07"));
    let expiring = json(&belay(
        d,
        &["changes", "list", "--expiring", "--format", "json"],
    ));
    assert_eq!(expiring.as_array().unwrap().len(), 3, "{expiring}");
    let reverted = eventually(|| {
        listed(d).is_empty()
            && !sb.sinkholed("www.evil-7.example.com")
            && !quarantined(d, "00:1a:2b:3c:4d:07")
    });
    if !reverted {
        watch.kill().unwrap();
        let out = watch.wait_with_output().unwrap();
        panic!(
            "the first run's changes were never reverted; the scheduler said: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let changes = json(&belay(
        d,
        &["changes", "list", "--run", &run, "--format", "json"],
    ));
    for c in changes.as_array().unwrap() {
        assert_eq!(c["status"], "reverted", "{c}");
    }
    watch.kill().unwrap();
    let _ = watch.wait();

    // Stopped across the expiry time: the next start reverts what came due meanwhile.
    let run = contain(d, 8);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        listed(d),
        ["203.0.113.8"],
        "nothing reverts while no scheduler runs"
    );
    let out = ok(&belay(d, &["changes", "expire"]));
    assert_eq!(out.matches("Reverted").count(), 3, "{out}");
    assert!(listed(d).is_empty());
    assert!(!sb.sinkholed("www.evil-8.example.com"));
    assert!(!quarantined(d, "00:1a:2b:3c:4d:08"));
    let changes = json(&belay(
        d,
        &["changes", "list", "--run", &run, "--format", "json"],
    ));
    for c in changes.as_array().unwrap() {
        assert_eq!(c["status"], "reverted", "{c}");
    }
    assert!(
        ok(&belay(d, &["changes", "list", "--expiring"])).contains("no change is waiting"),
        "nothing left to expire"
    );
    // The system's own rollback, in the trail.
    let trail = ok(&belay(d, &["audit", "export"]));
    assert!(trail.contains("engine:expiry"), "the expiries are audited");
    assert!(ok(&belay(d, &["audit", "verify"])).contains("audit chain intact"));
    drop(sb);
}

#[test]
fn lint_refuses_expires_where_nothing_can_be_undone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pb")).unwrap();
    std::fs::write(
        d.join("pb/p.yaml"),
        "name: p\non: { event: x }\nsteps:\n  - id: look\n    action: intel.lookup\n    with: { value: x }\n    expires: 1h\n  - id: fw\n    action: firewall.block_ip\n    with: { address: 192.0.2.1, timeout: 1h }\n    expires: 1h\n",
    )
    .unwrap();
    let o = belay(d, &["lint", "pb"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("`expires` needs a change that can be undone; `intel.lookup` changes nothing"),
        "{t}"
    );
    assert!(t.contains("sets both `expires` and input `timeout`"), "{t}");
}
