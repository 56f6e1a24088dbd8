//! `belay backup` through the real binary: snapshots taken while another process ingests
//! thousands of events restore to stores that open and whose audit trail verifies.

use std::process::Stdio;

mod common;
use common::{belay, command, ok, refused, write_file};

const NOTE: &str = "name: note\non: { event: ids.alert }\ntrust: log\nsteps:\n  - id: note\n    action: core.log\n    with: { message: seen }\n";

#[test]
fn a_backup_taken_under_load_restores_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("playbooks")).unwrap();
    write_file(d, "playbooks/note.yaml", NOTE);
    write_file(d, "belay.toml", "playbooks = \"playbooks\"\n");
    let events: String = (0..4000)
        .map(|i| format!("{{\"id\":\"e{i}\",\"kind\":\"ids.alert\"}}\n"))
        .collect();
    write_file(d, "events.jsonl", &events);
    // The store exists before the load starts.
    ok(&belay(d, &["pause", "--list"]));

    let mut ingest = command(d)
        .args(["ingest", "events.jsonl", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("belay ingest starts");
    let mut backups = Vec::new();
    let mut under_load = 0;
    loop {
        let file = d.join(format!("backup-{}.db", backups.len()));
        let o = belay(d, &["backup", file.to_str().unwrap(), "--format", "json"]);
        ok(&o);
        backups.push(file);
        let running = ingest.try_wait().unwrap().is_none();
        if running {
            under_load += 1;
        }
        if !running || under_load >= 3 {
            break;
        }
    }
    let out = ingest.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        under_load >= 1,
        "no backup finished while ingest was writing"
    );

    // Each restores to a store that opens, verifies and holds a prefix of the load.
    let last = backups.last().unwrap().clone();
    for (i, b) in backups.iter().enumerate() {
        let restored = d.join(format!("restored-{i}"));
        std::fs::create_dir_all(restored.join("data")).unwrap();
        std::fs::copy(b, restored.join("data/belay.db")).unwrap();
        write_file(&restored, "belay.toml", "");
        let v = ok(&belay(&restored, &["audit", "verify"]));
        assert!(!v.contains("problem"), "{v}");
        ok(&belay(&restored, &["runs", "list", "--format", "json"]));
    }
    // A backup never overwrites a file.
    let o = refused(&belay(d, &["backup", last.to_str().unwrap()]));
    assert!(o.contains("exists already"), "{o}");
    // The complete store backs up too, with every run.
    let full = d.join("full.db");
    let summary: serde_json::Value = serde_json::from_str(&ok(&belay(
        d,
        &["backup", full.to_str().unwrap(), "--format", "json"],
    )))
    .unwrap();
    assert_eq!(summary["runs"], 4000, "{summary}");
}

#[test]
fn a_postgresql_store_is_backed_up_with_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let o = refused(
        &command(dir.path())
            .args(["backup", "x.db"])
            .env("BELAY_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap(),
    );
    assert!(o.contains("pg_dump"), "{o}");
}
