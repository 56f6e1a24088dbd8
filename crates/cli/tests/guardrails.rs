//! Guardrails through the real binary: protected targets from a million-entry list, rate and
//! batch limits, hold versus deny, protected items held alone and blast-radius limits holding
//! whole batches.

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

mod common;
use common::{assert_text_contains, belay, json, listed, run_on, text};

/// A guardrail file with one guardrail `name` over `applies_to`, with its `rule` lines.
fn guardrail(name: &str, applies_to: &str, rule: &str) -> String {
    format!("guardrails:\n  - name: {name}\n    applies_to: [{applies_to}]\n    {rule}\n")
}

fn setup(guardrails: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pbs")).unwrap();
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    let playbook =
        common::block_every_ip("block", "block", "    guardrails: [protected-networks]\n");
    std::fs::write(d.join("pbs/block.yaml"), playbook).unwrap();
    std::fs::write(d.join("guardrails/policy.yaml"), guardrails).unwrap();
    dir
}

fn run(d: &Path, ips: &[&str]) -> Value {
    let ev = serde_json::json!({"kind": "block", "observables": {"ips": ips}});
    json(&run_on(d, "pbs/block.yaml", &ev, &[]))
}

#[test]
fn a_protected_address_from_a_million_entry_list_is_held_alone() {
    let dir = setup(
        "guardrails:\n  - name: protected-networks\n    applies_to: [\"blocklist.*\", firewall.block_ip]\n    never:\n      cidrs: [198.51.100.0/24]\n      domains: [crm.example.com]\n      lists: [protected-cidrs.txt]\n    on_violation: hold\n    alert: soc-admins\n",
    );
    let d = dir.path();
    // One million /30 networks across 10.0.0.0/8 and 100.64.0.0/10 (the customer's ranges).
    let mut cidrs = String::with_capacity(20_000_000);
    for i in 0..1_000_000u32 {
        let base = if i < 500_000 {
            0x0A00_0000u32 + i * 4
        } else {
            0x6440_0000u32 + (i - 500_000) * 4
        };
        let _ = writeln!(cidrs, "{}/30", std::net::Ipv4Addr::from(base));
    }
    std::fs::write(d.join("guardrails/protected-cidrs.txt"), cidrs).unwrap();
    // The guardrail's alert target is a webhook: a listener stands in for the chat integration.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        d.join("belay.toml"),
        format!(
            "[notify.soc-admins]\nwebhook = \"http://{}/hooks/soc\"\n",
            hook.local_addr().unwrap()
        ),
    )
    .unwrap();
    let delivered = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = hook.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&req).into_owned()
    });

    // 100.64.7.9 is in the list; the batch also has an address that is not protected.
    let report = run(d, &["203.0.113.50", "100.64.7.9"]);
    let request = delivered.join().unwrap();
    assert!(request.starts_with("POST /hooks/soc "), "{request}");
    assert!(
        request.contains("guardrail protected-networks held blocklist.add")
            && request.contains("100.64.7.9 is inside a protected network"),
        "the SOC admins are told: {request}"
    );
    assert_eq!(report["status"], "waiting_approval", "{report}");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        2,
        "every item of the batch is recorded: {report}"
    );
    assert_eq!(steps[0]["status"], "succeeded", "{report}");
    let held = &steps[1];
    assert_eq!(held["status"], "held", "{held}");
    assert_eq!(held["decision"], "guardrail_hold");
    assert_text_contains(
        &held["error"],
        "protected-networks: 100.64.7.9 is inside a protected network",
    );
    assert_eq!(
        listed(d),
        ["203.0.113.50"],
        "the protected address is held alone; the other is applied"
    );

    let report = run(d, &["203.0.113.51"]);
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(listed(d), ["203.0.113.50", "203.0.113.51"]);

    let o = belay(
        d,
        &[
            "guardrails",
            "check",
            "blocklist.add",
            "--with",
            r#"{"list":"egress","entry":"crm.example.com"}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("crm.example.com is protected"),
        "{}",
        text(&o)
    );
    let o = belay(
        d,
        &[
            "guardrails",
            "check",
            "blocklist.add",
            "--with",
            r#"{"list":"egress","entry":"192.0.2.1"}"#,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    let audit = text(&belay(d, &["audit", "export"]));
    assert!(
        audit.contains("\"kind\":\"guardrail.violation\"")
            && audit.contains("\"alert\":\"soc-admins\"")
            && audit.contains("\"kind\":\"guardrail.alert\"")
            && audit.contains("\"delivered\":true"),
        "{audit}"
    );
    assert!(text(&belay(d, &["audit", "verify"])).contains("audit chain intact"));
}

#[test]
fn the_51st_change_within_the_hour_is_held() {
    let dir = setup(&guardrail(
        "protected-networks",
        "blocklist.add",
        "rate: { max: 50, per: 1h }",
    ));
    let d = dir.path();
    let mut lines = String::new();
    for i in 0..51 {
        let _ = writeln!(
            lines,
            "{}",
            serde_json::json!({"id": format!("b{i}"), "kind": "block", "observables": {"ips": [format!("203.0.113.{i}")]}})
        );
    }
    std::fs::write(d.join("events.jsonl"), lines).unwrap();
    let o = belay(
        d,
        &["ingest", "events.jsonl", "--playbooks", "pbs", "--quiet"],
    );
    assert!(
        text(&o).contains("50 succeeded, 0 failed, 1 waiting"),
        "{}",
        text(&o)
    );
    assert_eq!(listed(d).len(), 50);
}

#[test]
fn a_batch_above_its_limit_is_held_whole_and_deny_fails_the_run() {
    let dir = setup(&guardrail(
        "protected-networks",
        "blocklist.add",
        "batch: { max: 3 }",
    ));
    let d = dir.path();
    let report = run(d, &["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]);
    assert_eq!(report["status"], "waiting_approval", "{report}");
    assert_text_contains(
        &report["steps"][0]["error"],
        "batch of 4 changes is above the limit of 3",
    );
    assert!(listed(d).is_empty());
    assert_eq!(run(d, &["192.0.2.1", "192.0.2.2"])["status"], "succeeded");

    std::fs::write(
        d.join("guardrails/policy.yaml"),
        guardrail(
            "protected-networks",
            "blocklist.add",
            "never: { cidrs: [192.0.2.0/24] }\n    on_violation: deny",
        ),
    )
    .unwrap();
    let report = run(d, &["192.0.2.9"]);
    assert_eq!(report["status"], "failed", "{report}");
    assert_text_contains(&report["error"], "denied by guardrail");
    assert_eq!(listed(d).len(), 2);
}

#[test]
fn a_step_naming_an_unknown_guardrail_is_refused() {
    let dir = setup(&guardrail(
        "other",
        "firewall.block_ip",
        "batch: { max: 3 }",
    ));
    let d = dir.path();
    std::fs::write(
        d.join("ev.json"),
        r#"{"kind":"block","observables":{"ips":["192.0.2.1"]}}"#,
    )
    .unwrap();
    let o = belay(d, &["run", "pbs/block.yaml", "--event", "ev.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("unknown guardrail `protected-networks`"),
        "{}",
        text(&o)
    );
    assert!(listed(d).is_empty());
}

#[test]
fn lint_warns_of_a_baseline_guardrail_that_nothing_caps_while_it_learns() {
    let baseline = "baseline: { per: 1h, factor: 3, min_history: 7d }";
    let dir = setup(&guardrail("feed-baseline", "firewall.block_ip", baseline));
    let d = dir.path();
    let o = belay(d, &["lint", "pbs"]);
    let out = text(&o);
    assert!(
        o.status.success(),
        "a warning does not fail the lint: {out}"
    );
    assert!(
        out.contains("warning: baseline guardrail `feed-baseline` has no `batch` or `rate` companion over firewall.block_ip"),
        "{out}"
    );
    // `guardrails check` says so too (on stderr), and the learning verdict passes.
    let o = belay(
        d,
        &[
            "guardrails",
            "check",
            "firewall.block_ip",
            "--with",
            r#"{"address":"192.0.2.7"}"#,
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("has no `batch` or `rate` companion"), "{err}");
    assert!(
        text(&o).contains("learning: 0s of recorded history, 7days needed"),
        "{}",
        text(&o)
    );

    // A batch guardrail over the same actions caps them while it learns: no warning.
    let batch = guardrail("feed-batch", "\"firewall.*\"", "batch: { max: 25 }");
    let both = format!(
        "{}{}",
        guardrail("feed-baseline", "firewall.block_ip", baseline),
        &batch["guardrails:\n".len()..]
    );
    std::fs::write(d.join("guardrails/policy.yaml"), both).unwrap();
    let out = text(&belay(d, &["lint", "pbs"]));
    assert!(!out.contains("warning"), "{out}");
    // Nor when the baseline holds while it learns.
    let hold = "baseline: { per: 1h, factor: 3, min_history: 7d, while_learning: hold }";
    std::fs::write(
        d.join("guardrails/policy.yaml"),
        guardrail("feed-baseline", "firewall.block_ip", hold),
    )
    .unwrap();
    let out = text(&belay(d, &["lint", "pbs"]));
    assert!(!out.contains("warning"), "{out}");
    // Any other value is a load error with file and line.
    let bad = "baseline: { per: 1h, factor: 3, min_history: 7d, while_learning: wait }";
    std::fs::write(
        d.join("guardrails/policy.yaml"),
        format!(
            "# feeds\n{}",
            guardrail("feed-baseline", "firewall.block_ip", bad)
        ),
    )
    .unwrap();
    let o = belay(d, &["lint", "pbs"]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("policy.yaml:3: guardrail `feed-baseline`: baseline while_learning must be `proceed` (the default) or `hold`, not `wait`"),
        "{out}"
    );
}
