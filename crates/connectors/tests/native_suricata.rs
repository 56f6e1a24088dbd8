//! `ips.*` against a real Suricata 7 (`suricata::Sandbox`): UDP probes in its namespace show
//! when a deployed rule alerts.

use belay_connectors::native::suricata::{Sandbox, Suricata};
use belay_connectors::{ActionError, Call, Connector, ErrorKind};
use serde_json::{Value, json};

async fn sandbox() -> Option<(Sandbox, Suricata)> {
    if let Err(why) = Sandbox::available() {
        assert!(
            std::env::var("BELAY_REQUIRE_NATIVE").as_deref() != Ok("1"),
            "Suricata is required (BELAY_REQUIRE_NATIVE=1): {why}"
        );
        eprintln!("skipped: {why}");
        return None;
    }
    let started = std::time::Instant::now();
    let sb = Sandbox::start().await.expect("suricata sandbox");
    eprintln!("suricata answered after {:?}", started.elapsed());
    let c = Suricata::new("ips", sb.config()).expect("connector");
    Some((sb, c))
}

async fn call(c: &Suricata, action: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action,
        input: &input,
        idempotency_key: Some("run/step"),
    })
    .await
}

const RULE: &str = r#"alert udp any any -> any 9999 (msg:"belay test"; content:"belay-probe-1"; sid:1000001; rev:1;)"#;

#[tokio::test]
async fn deploy_rule_alerts_until_removed() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    assert!(
        sb.probe(9999, "belay-probe-1")
            .await
            .expect("probe")
            .is_empty()
    );

    let input = json!({"sid": 1000001, "rule": RULE, "ruleset": "belay"});
    let before = ips
        .read_state("ips.deploy_rule", &input)
        .await
        .expect("state");
    assert_eq!(before, json!({"rule": null, "loaded": false}));
    let out = call(&ips, "ips.deploy_rule", input.clone())
        .await
        .expect("deploy");
    assert_eq!(out["changed"], json!(true));
    assert_eq!(
        out["rules_loaded"],
        json!(2),
        "the rule and the sandbox's sentinel"
    );
    assert_eq!(
        ips.read_state("ips.deploy_rule", &input)
            .await
            .expect("state"),
        json!({"rule": RULE, "loaded": true})
    );
    let alerts = sb.probe(9999, "belay-probe-1").await.expect("probe");
    assert!(
        !alerts.is_empty() && alerts.iter().all(|s| *s == 1000001),
        "{alerts:?}"
    );
    let status = call(&ips, "ips.status", json!({"sid": 1000001}))
        .await
        .expect("status");
    assert_eq!(status["loaded"], json!(true));
    assert_eq!(status["rule"], json!(RULE));
    assert_eq!(status["rules_failed"], json!(0));
    let reload = status["last_reload"].as_str().expect("last_reload");
    assert!(reload.ends_with("+00:00"), "{reload}");

    let again = call(&ips, "ips.deploy_rule", input.clone())
        .await
        .expect("deploy again");
    assert_eq!(
        again["changed"],
        json!(false),
        "the same rule again is a no-op"
    );

    // Roll back with the catalog's inverse.
    let out = call(&ips, "ips.remove_rule", input.clone())
        .await
        .expect("remove");
    assert_eq!(out["changed"], json!(true));
    assert_eq!(out["rule"], json!(RULE));
    assert_eq!(
        ips.read_state("ips.remove_rule", &input)
            .await
            .expect("state"),
        before
    );
    assert!(
        sb.probe(9999, "belay-probe-1")
            .await
            .expect("probe")
            .is_empty(),
        "no alert after removal"
    );
    let again = call(&ips, "ips.remove_rule", input)
        .await
        .expect("remove again");
    assert_eq!(again["changed"], json!(false));
}

#[tokio::test]
async fn rejected_rule_changes_nothing() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    call(
        &ips,
        "ips.deploy_rule",
        json!({"sid": 1000001, "rule": RULE}),
    )
    .await
    .expect("deploy");
    let rules = sb.config().rule_dir.join("belay.rules");
    let file_before = std::fs::read_to_string(&rules).expect("rule file");

    // Suricata parses this and answers "done" to the reload, but fails the rule.
    let bad = r#"alert udp any any -> any 9999 (msg:"bad"; contentx:"x"; sid:1000002; rev:1;)"#;
    let err = call(
        &ips,
        "ips.deploy_rule",
        json!({"sid": 1000002, "rule": bad}),
    )
    .await
    .expect_err("a rule Suricata rejects must fail");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("rejected"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&rules).expect("rule file"),
        file_before
    );
    let status = call(&ips, "ips.status", json!({})).await.expect("status");
    assert_eq!(
        status["rules_failed"],
        json!(0),
        "the previous rules were reloaded: {status}"
    );
    assert_eq!(status["rules_loaded"], json!(2));
    // The earlier rule still works.
    let alerts = sb.probe(9999, "belay-probe-1").await.expect("probe");
    assert!(
        !alerts.is_empty() && alerts.iter().all(|s| *s == 1000001),
        "{alerts:?}"
    );

    // Refused before Suricata sees them.
    for input in [
        json!({"sid": 5, "rule": RULE}),
        json!({"sid": 1000001, "rule": format!("{RULE}\nalert ip any any -> any any (sid:7;)")}),
        json!({"sid": 1000001, "rule": RULE, "ruleset": "other"}),
        json!({"sid": 1, "rule": "alert ip any any -> any any (msg:\"x\"; sid:1; sid:1;)"}),
    ] {
        let err = call(&ips, "ips.deploy_rule", input.clone())
            .await
            .expect_err("bad input must fail");
        assert_eq!(err.kind, ErrorKind::Permanent, "{input}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&rules).expect("rule file"),
        file_before
    );
}

#[tokio::test]
async fn datasets_add_and_remove() {
    let Some((_sb, ips)) = sandbox().await else {
        return;
    };
    for (dataset, kind, value) in [
        ("belay-ips", "ip", "198.51.100.7"),
        ("belay-ips", "ip", "2001:db8::7"),
        ("belay-strings", "string", "evil.example"),
        (
            "belay-sha256",
            "sha256",
            "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
        ),
    ] {
        let input = json!({"dataset": dataset, "value": value, "type": kind});
        let before = ips
            .read_state("ips.dataset_add", &input)
            .await
            .expect("state");
        assert_eq!(before, json!({"present": false}), "{input}");
        let out = call(&ips, "ips.dataset_add", input.clone())
            .await
            .expect("add");
        assert_eq!(out["changed"], json!(true), "{input}");
        assert_eq!(
            call(&ips, "ips.dataset_contains", input.clone())
                .await
                .expect("contains"),
            json!({"present": true})
        );
        let again = call(&ips, "ips.dataset_add", input.clone())
            .await
            .expect("add again");
        assert_eq!(again["changed"], json!(false));
        let out = call(&ips, "ips.dataset_remove", input.clone())
            .await
            .expect("remove");
        assert_eq!(out["changed"], json!(true));
        assert_eq!(
            ips.read_state("ips.dataset_remove", &input)
                .await
                .expect("state"),
            before
        );
        let again = call(&ips, "ips.dataset_remove", input)
            .await
            .expect("remove again");
        assert_eq!(again["changed"], json!(false));
    }
    for input in [
        json!({"dataset": "nope", "value": "198.51.100.7", "type": "ip"}),
        json!({"dataset": "belay-ips", "value": "198.51.100.300", "type": "ip"}),
        json!({"dataset": "belay-ips", "value": "evil.example", "type": "string"}),
        json!({"dataset": "belay-sha256", "value": "abc", "type": "sha256"}),
    ] {
        let err = call(&ips, "ips.dataset_add", input.clone())
            .await
            .expect_err("bad input must fail");
        assert_eq!(err.kind, ErrorKind::Permanent, "{input}: {err}");
    }
    assert_eq!(
        call(
            &ips,
            "ips.dataset_contains",
            json!({"dataset": "belay-ips", "value": "198.51.100.300", "type": "ip"})
        )
        .await
        .map_err(|e| e.kind),
        Err(ErrorKind::Permanent)
    );
}

#[tokio::test]
async fn dataset_drives_a_deployed_rule() {
    let Some((sb, ips)) = sandbox().await else {
        return;
    };
    let rule = r#"alert udp any any -> any 9998 (msg:"belay dataset"; ip.dst; dataset:isset,belay-ips,type ip; sid:1000010; rev:1;)"#;
    call(
        &ips,
        "ips.deploy_rule",
        json!({"sid": 1000010, "rule": rule}),
    )
    .await
    .expect("deploy a dataset rule");
    assert!(sb.probe(9998, "x").await.expect("probe").is_empty());
    let input = json!({"dataset": "belay-ips", "value": "127.0.0.1", "type": "ip"});
    call(&ips, "ips.dataset_add", input.clone())
        .await
        .expect("add");
    // The datagram alerts (and so may the ICMP error quoting it: loopback has no listener).
    assert!(sb.probe(9998, "x").await.expect("probe").contains(&1000010));
    call(&ips, "ips.dataset_remove", input)
        .await
        .expect("remove");
    assert!(sb.probe(9998, "x").await.expect("probe").is_empty());
}

#[test]
fn built_from_configuration() {
    let table: toml::Table = toml::from_str(
        r#"
        socket = "/run/suricata/suricata-command.socket"
        rule_dir = "/var/lib/suricata/rules"
        rulesets = ["belay", "intel"]
        "#,
    )
    .expect("toml");
    let c = belay_connectors::native::build("ips", "suricata", table).expect("suricata connector");
    assert_eq!(c.family(), "ips");
    let bad: toml::Table =
        toml::from_str("socket = \"/s\"\nrule_dir = \"/r\"\nrulesets = [\"../x\"]").expect("toml");
    assert!(belay_connectors::native::build("ips", "suricata", bad).is_err());
}
