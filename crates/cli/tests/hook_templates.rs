//! Payload templates of webhook sources through the real binary: a Splunk alert webhook and
//! Suricata EVE alert records (from `BELAY_CORPUS` when present, else a record this test
//! writes) are mapped to events by the shipped templates, an inline template from belay.toml
//! maps a payload of its own, a field that fails to map is a 400 naming the template field and
//! the payload path, and payload text that looks like an expression stays text.

use serde_json::{Value, json};
use std::path::Path;

mod common;
use common::server::{Server, now, wait_for};
use common::{command, write_file};

const SECRET: &str = "template-hook-secret-0123456789";

fn start(dir: &Path) -> Server {
    Server::start_with(dir, "127.0.0.1:0", &[("HOOK_SECRET", SECRET)])
}

/// A signed webhook to `/hooks/{source}`; the status and the JSON answer.
fn hook(server: &Server, source: &str, body: &str) -> (u16, Value) {
    let ts = now();
    let sig = belay_server::signature::BELAY.sign(SECRET.as_bytes(), ts, body.as_bytes());
    let ts = ts.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("x-belay-timestamp", ts.as_str()),
        ("x-belay-signature", sig.as_str()),
    ];
    server.call(
        "POST",
        &format!("/hooks/{source}"),
        &headers,
        body.as_bytes(),
    )
}

/// The blocked list's lines once it holds `n` of them (runs finish in the background).
fn blocked(dir: &Path, n: usize) -> Vec<String> {
    wait_for(&format!("{n} blocked entries"), || {
        let lines: Vec<String> = std::fs::read_to_string(dir.join("data/lists/blocked.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
}

/// The first Suricata EVE `alert` record of the corpus, or one written here.
fn eve_alert() -> String {
    if let Ok(corpus) = std::env::var("BELAY_CORPUS") {
        let path = Path::new(&corpus).join("ids/suricata/eve-alerts.jsonl");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(line) = text
                .lines()
                .find(|l| l.contains("\"event_type\":\"alert\""))
        {
            return line.to_owned();
        }
        assert!(
            std::env::var("BELAY_REQUIRE_CORPUS").is_err(),
            "no EVE alert in {}",
            path.display()
        );
    }
    json!({"timestamp":"2026-12-05T10:00:00.000000+0000","flow_id":1234567,"event_type":"alert",
        "src_ip":"198.51.100.7","src_port":4444,"dest_ip":"10.16.1.11","dest_port":80,"proto":"TCP",
        "alert":{"action":"allowed","gid":1,"signature_id":2100498,"rev":7,
            "signature":"GPL ATTACK_RESPONSE id check returned root","category":"Potentially Bad Traffic","severity":2},
        "http":{"hostname":"www.testmyids.com","url":"/"}})
    .to_string()
}

const PLAYBOOKS: &[(&str, &str)] = &[
    (
        "playbooks/siem.yaml",
        "name: siem\non: { event: siem.alert }\ntrust: log\nsteps:\n  - id: block\n    action: blocklist.add\n    with: { list: blocked, entry: \"${{ event.observables.ips[0] }}\" }\n  - id: note\n    if: \"${{ event.data.note is defined }}\"\n    action: blocklist.add\n    with: { list: notes, entry: \"${{ event.data.note | replace(' ', '_') }}\" }\n",
    ),
    (
        "playbooks/ids.yaml",
        "name: ids\non: { event: ids.alert }\ntrust: log\nsteps:\n  - id: block\n    action: blocklist.add\n    with: { list: blocked, entry: \"${{ event.observables.ips[0] }}\" }\n",
    ),
];

fn setup(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("playbooks")).unwrap();
    for (name, text) in PLAYBOOKS {
        write_file(d, name, text);
    }
    write_file(
        d,
        "belay.toml",
        &format!(
            "playbooks = \"playbooks\"\n\
             [[hooks]]\nname = \"splunk\"\nsecrets = [\"${{{{ secrets.HOOK_SECRET }}}}\"]\ntemplate = \"splunk\"\n\
             [[hooks]]\nname = \"eve\"\nsecrets = [\"${{{{ secrets.HOOK_SECRET }}}}\"]\ntemplate = \"suricata\"\n\
             [[hooks]]\nname = \"custom\"\nsecrets = [\"${{{{ secrets.HOOK_SECRET }}}}\"]\n\
             [hooks.template]\nid = \"custom:${{{{ payload.ref }}}}\"\nkind = \"siem.alert\"\n\
             severity = \"${{{{ payload.level | default('low') }}}}\"\n\
             \"observables.ips\" = \"${{{{ payload.attacker }}}}\"\n\"data.note\" = \"${{{{ payload.note }}}}\"\n{extra}"
        ),
    );
    dir
}

#[test]
fn foreign_payloads_map_to_events_through_their_sources_templates() {
    let dir = setup("");
    let d = dir.path();
    let server = start(d);

    // Splunk's webhook alert action.
    let splunk = json!({
        "sid": "scheduler__admin__search__RMD5e4b1c0a2_at_1733392800_42",
        "search_name": "Brute force ${{ 7 * 7 }} {{ 7*7 }}",
        "app": "search", "owner": "admin",
        "results_link": "https://splunk.example:8000/app/search/@go?sid=scheduler__admin__search__RMD5e4b1c0a2_at_1733392800_42",
        "result": { "src_ip": "203.0.113.50", "dest_ip": "10.20.1.15", "user": "jdoe",
            "host": "web-01", "severity": "informational", "count": "57" }
    });
    let (status, answer) = hook(&server, "splunk", &splunk.to_string());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["event_id"],
        "splunk:scheduler__admin__search__RMD5e4b1c0a2_at_1733392800_42"
    );
    assert_eq!(answer["run_ids"].as_array().unwrap().len(), 1, "{answer}");
    // The same alert again is the same event: no second run.
    let (status, again) = hook(&server, "splunk", &splunk.to_string());
    assert_eq!(status, 202);
    assert_eq!(again["status"], "duplicate", "{again}");

    // A Suricata EVE alert record.
    let eve = eve_alert();
    let record: Value = serde_json::from_str(&eve).unwrap();
    let (status, answer) = hook(&server, "eve", &eve);
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["event_id"]
            .as_str()
            .unwrap()
            .starts_with("suricata:"),
        "{answer}"
    );

    // A template of belay.toml's own.
    let (status, answer) = hook(
        &server,
        "custom",
        &json!({ "ref": "T-17", "attacker": "192.0.2.44", "note": "${{ event }}" }).to_string(),
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["event_id"], "custom:T-17");

    let lines = blocked(d, 3);
    for ip in [
        "203.0.113.50",
        record["src_ip"].as_str().unwrap(),
        "192.0.2.44",
    ] {
        assert!(lines.iter().any(|l| l == ip), "{ip} not blocked: {lines:?}");
    }

    // A payload missing what the template reads: 400 naming the field and the payload path;
    // nothing stored.
    let mut broken = splunk.clone();
    broken.as_object_mut().unwrap().remove("sid");
    let (status, problem) = hook(&server, "splunk", &broken.to_string());
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "payload.sid", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("field `id`"),
        "{problem}"
    );
    let (status, problem) = hook(
        &server,
        "eve",
        r#"{"event_type":"alert","src_ip":"1.2.3.4"}"#,
    );
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["field"].as_str().unwrap().starts_with("payload."),
        "{problem}"
    );
    // Malformed JSON still names the position.
    let (status, problem) = hook(&server, "splunk", "{\"sid\": ");
    assert_eq!(status, 400);
    assert!(problem["line"].is_number(), "{problem}");
    // Text of the payload that looks like an expression is data: it reached the playbook as
    // it was sent, never evaluated (the note is the run's second step: wait for it).
    let notes = wait_for("the note step", || {
        std::fs::read_to_string(d.join("data/lists/notes.txt")).ok()
    });
    assert_eq!(notes.trim(), "${{_event_}}");
    drop(server);
    assert_eq!(blocked(d, 3).len(), 3, "no run for a refused payload");
}

#[test]
fn an_unknown_template_is_refused_at_start_naming_the_source() {
    let dir = setup(
        "[[hooks]]\nname = \"qr\"\nsecrets = [\"${{ secrets.HOOK_SECRET }}\"]\ntemplate = \"qradar\"\n",
    );
    let o = command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HOOK_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`qr`") && err.contains("template") && err.contains("qradar"),
        "{err}"
    );
}
