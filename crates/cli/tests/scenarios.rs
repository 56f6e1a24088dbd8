//! The six shipped scenarios (and alert enrichment) end to end, through the real binary: `belay
//! lab up` starts the simulators and the system components (real where this machine can run
//! them), each test sends the triggering event (from the corpus where it has one), checks the
//! systems' state, the approvals and guardrail holds, rolls the run back to the prior state, and
//! verifies the audit chain.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use belay_testkit::corpus_if_set;

mod common;
use common::{assert_text_contains, json_lines, text};

struct Env {
    child: Child,
    dir: tempfile::TempDir,
    base: String,
    token: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Env {
    fn up(fault_rate: f64) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(common::BIN)
            .args(["lab", "up"])
            .arg(dir.path())
            .args(["--fault-rate", &fault_rate.to_string(), "--seed", "7"])
            .env_remove("BELAY_CONFIG")
            .env_remove("BELAY_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("belay lab up starts");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        loop {
            let line = lines.next().expect("lab up says ready").unwrap();
            if line.starts_with("ready: ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let toml = std::fs::read_to_string(dir.path().join("belay.toml")).unwrap();
        let base = toml
            .lines()
            .find_map(|l| l.strip_prefix("base_url = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        let secrets = std::fs::read_to_string(dir.path().join("secrets.toml")).unwrap();
        let token = secrets.split('"').nth(1).unwrap().to_owned();
        Env {
            child,
            dir,
            base,
            token,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn belay(&self, args: &[&str]) -> Output {
        Command::new(common::BIN)
            .current_dir(self.path())
            .env("BELAY_CONFIG", self.path().join("belay.toml"))
            .env_remove("BELAY_DATA")
            .env_remove("BELAY_DATABASE_URL")
            .env_remove("BELAY_GUARDRAILS")
            .args(args)
            .output()
            .expect("belay runs")
    }

    /// Imports a plain-text feed named `name` (which starts the feed playbooks).
    fn import_feed(&self, name: &str, text: &str) -> String {
        let f = self.path().join(name);
        std::fs::write(&f, text).unwrap();
        self.ok(&[
            "intel",
            "import",
            f.to_str().unwrap(),
            "--feed",
            name,
            "--format",
            "plain",
        ])
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.belay(args);
        assert!(o.status.success(), "belay {args:?} failed:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("belay {args:?}: not JSON ({e}):\n{out}"))
    }

    /// Runs a shipped playbook on an event; the run's JSON report.
    fn run(&self, playbook: &str, event: &Value) -> Value {
        let file = self.path().join(format!("event-{}.json", uuid()));
        std::fs::write(&file, event.to_string()).unwrap();
        let pb = format!("playbooks/{playbook}.yaml");
        self.json(&[
            "run",
            &pb,
            "--event",
            file.to_str().unwrap(),
            "--format",
            "json",
        ])
    }

    /// The simulators' state (`GET /_state`).
    fn lab(&self) -> Value {
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /_state HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.token
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    /// Whether a change of `action` on `target` is in effect: journaled as applied (not rolled
    /// back), with the state the connector read from the system after applying it. Real
    /// components and stand-ins alike are read through their connector.
    fn in_effect(&self, action: &str, target: &str) -> bool {
        self.json(&["changes", "list", "--format", "json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|c| {
                c["action"] == action
                    && c["target"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(target))
                    && c["status"] == "applied"
                    && !c["after"].is_null()
            })
    }

    /// Whether an applied set-level change of `action` holds `item` among its targets.
    fn in_effect_many(&self, action: &str, field: &str, item: &str) -> bool {
        self.json(&["changes", "list", "--format", "json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|c| {
                c["action"] == action
                    && c["status"] == "applied"
                    && c["with"][field]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == item))
            })
    }

    fn inbox(&self, target: &str) -> Vec<Value> {
        json_lines(
            &std::fs::read_to_string(self.path().join(format!("notify/{target}-inbox.jsonl")))
                .unwrap_or_default(),
        )
    }

    /// Rolls a run back as a person and checks the audit chain.
    fn rollback_and_verify(&self, run: &str) {
        self.ok(&["rollback", "--run", run, "--as", "soc-lead"]);
        self.ok(&["audit", "verify"]);
    }

    fn pending_approvals(&self) -> Vec<Value> {
        self.json(&["approvals", "list", "--format", "json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `belay approvals DECISION ID --as demo-analyst EXTRA…`, which must succeed.
    fn decide(&self, decision: &str, id: &str, extra: &[&str]) {
        let mut args = vec!["approvals", decision, id, "--as", "demo-analyst"];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// Every idempotency key the simulators saw was applied at most once.
    fn nothing_doubled(&self) {
        let lab = self.lab();
        for (key, v) in lab["idempotency"].as_object().unwrap() {
            assert!(
                v["applied"].as_u64().unwrap() <= 1,
                "{key} applied twice: {v}"
            );
        }
    }
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn step<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == key)
        .unwrap_or_else(|| panic!("no step {key} in {report:#}"))
}

/// Normalizes lines with `belay logs parse`; the events, in order.
fn parse_lines(env: &Env, name: &str, text: &str) -> Vec<Value> {
    let file = env.path().join(name);
    std::fs::write(&file, text).unwrap();
    json_lines(&env.ok(&["logs", "parse", file.to_str().unwrap()]))
}

#[test]
fn scenario_0_alert_enrichment_adds_intel_owner_edr_and_watch_status() {
    let env = Env::up(0.0);
    let feed = env.path().join("c2.txt");
    std::fs::create_dir_all(env.path().join("none")).unwrap();
    std::fs::write(&feed, "203.0.113.77\n").unwrap();
    env.ok(&[
        "intel",
        "import",
        feed.to_str().unwrap(),
        "--feed",
        "c2-list",
        "--format",
        "plain",
        "--playbooks",
        env.path().join("none").to_str().unwrap(),
    ]);
    let event = json!({"kind": "ids.alert", "severity": "high",
        "observables": {"ips": ["203.0.113.77", "192.0.2.1"], "hosts": ["fin-cfo-lt01", "no-such-host"], "users": ["mdubois"]},
        "data": {"signature": "ET MALWARE beacon"}});
    let r = env.run("enrich-alert", &event);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    let ctx = &step(&r, "context")["output"]["values"];
    assert_eq!(ctx["listed"], json!(["203.0.113.77"]));
    assert!(ctx["max_intel_score"].as_f64().unwrap() > 0.0);
    assert_eq!(ctx["devices"][0]["high_profile"], true, "{ctx:#}");
    assert_eq!(ctx["devices"][0]["department"], "Finance");
    assert_eq!(ctx["edr"][0]["known"], true);
    assert!(ctx["watched_users"][0]["watched"].is_boolean());
    env.rollback_and_verify(r["run_id"].as_str().unwrap());
}

#[test]
fn scenario_1_privilege_escalation_on_the_cfo_laptop_is_reverted_and_can_be_reapplied() {
    let env = Env::up(0.0);
    // A real gpasswd line from the corpus, on the CFO's laptop (its host name substituted).
    let line = corpus_if_set()
        .and_then(|c| {
            std::fs::read_to_string(c.join("logs/linux/wazuh-ruleset_decoder-comment-samples.log"))
                .ok()
        })
        .and_then(|t| {
            t.lines()
                .find(|l| l.contains("gpasswd") && l.contains("added by"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            "Dec  1 16:22:16 ip-10-0-0-220 gpasswd[3246]: user bart added by root to group sudo"
                .into()
        });
    let events = parse_lines(
        &env,
        "auth.log",
        &format!(
            "{}\n{line}\n",
            line.replace("ip-10-0-0-220", "fin-cfo-lt01")
        ),
    );
    assert_eq!(events.len(), 2);
    let r = env.run("privilege-escalation", &events[0]);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(step(&r, "revert")["status"], "succeeded", "{r:#}");
    assert!(env.in_effect("directory.remove_member", "bart"));
    let lab = env.lab();
    assert_eq!(
        lab["siem"]["alerts"].as_array().unwrap().len(),
        1,
        "{lab:#}"
    );
    let soc = env.inbox("soc");
    assert!(
        soc.iter()
            .any(|m| m["subject"].as_str().unwrap().contains("fin-cfo-lt01")),
        "{soc:?}"
    );
    // Not high-profile: alerted, not reverted.
    let r2 = env.run("privilege-escalation", &events[1]);
    assert_eq!(step(&r2, "revert")["status"], "skipped", "{r2:#}");
    // Legitimate after all: an approver rolls the revert back, which re-adds the user.
    env.rollback_and_verify(r["run_id"].as_str().unwrap());
    assert!(!env.in_effect("directory.remove_member", "bart"));
}

#[test]
fn scenario_2_a_rogue_device_is_quarantined_until_explained() {
    let env = Env::up(0.0);
    let lines = corpus_if_set()
        .and_then(|c| std::fs::read_to_string(c.join("logs/network/ossec_openbsd-dhcpd-samples.log")).ok())
        .unwrap_or_else(|| "Aug 10 09:45:28 junction dhcpd[2042]: DHCPACK on 192.168.17.154 to b4:b5:2f:15:4c:ec via sk0\n".into());
    let events = parse_lines(&env, "dhcpd.log", &lines);
    let unknown = events
        .iter()
        .find(|e| e["kind"] == "network.new_device")
        .expect("a device event");
    let mac = unknown["data"]["mac"].as_str().unwrap().to_owned();
    let r = env.run("rogue-device", unknown);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(step(&r, "quarantine")["status"], "succeeded", "{r:#}");
    assert!(env.in_effect("nac.quarantine", &mac));
    assert!(
        env.inbox("network-team")
            .iter()
            .any(|m| m["subject"].as_str().unwrap().contains(&mac))
    );
    // A device the CMDB knows (the CFO's laptop) is left alone.
    let known = json!({"kind": "network.new_device", "observables": {"macs": ["3c:22:fb:00:00:01"]},
        "data": {"mac": "3c:22:fb:00:00:01", "ip": "10.20.1.15", "vendor": "Dell"}});
    let r2 = env.run("rogue-device", &known);
    assert_eq!(step(&r2, "quarantine")["status"], "skipped", "{r2:#}");
    env.rollback_and_verify(r["run_id"].as_str().unwrap());
    assert!(!env.in_effect("nac.quarantine", &mac));
}

#[test]
fn scenario_3_feed_updates_block_automatically_but_protected_and_oversized_updates_are_held() {
    let env = Env::up(0.0);
    let import = |name: &str, text: &str| env.import_feed(name, text);
    let blocked = |ip: &str| env.in_effect_many("firewall.block_many", "addresses", ip);
    // A small update: blocked at once, at `guarded`, as one change per system.
    import("small-feed", "198.51.100.7\n192.0.2.0/28\n");
    assert!(blocked("198.51.100.7") && blocked("192.0.2.0/28"));
    assert!(env.in_effect_many("ips.dataset_add_many", "values", "198.51.100.7"));
    // `feed-baseline` has no history yet: it is learning, holds nothing, and the trail says so.
    let trail = env.ok(&["audit", "export"]);
    let learning: Vec<Value> = trail
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "guardrail.learning")
        .collect();
    assert!(
        learning
            .iter()
            .any(|e| e["detail"]["guardrail"] == "feed-baseline"
                && e["detail"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("7days needed")),
        "{learning:#?}"
    );
    // The CRM's network in an update: that address alone waits for a person (an item of the
    // set-level change), the rest is blocked, and the SOC admins hear of it.
    import("poisoned-feed", "203.0.113.9\n198.51.100.8\n");
    let held = env.pending_approvals();
    let crm = held
        .iter()
        .find(|a| a.to_string().contains("protected-networks"))
        .unwrap_or_else(|| panic!("{held:#?}"));
    let items = crm["with"].as_array().expect("held items");
    assert_eq!(items.len(), 1, "the protected address alone: {crm:#}");
    assert_eq!(items[0]["key"], "block[203.0.113.9]");
    assert!(!blocked("203.0.113.9"));
    assert!(blocked("198.51.100.8"), "the rest of the update applies");
    assert!(env.inbox("soc-admins").iter().any(|m| {
        m["subject"]
            .as_str()
            .unwrap()
            .contains("protected-networks")
    }));
    // A real feed far larger than allowed in one update (FireHOL's feodo list): held whole.
    if let Some(c) = corpus_if_set() {
        let feodo = std::fs::read_to_string(c.join("threat-intel/firehol/feodo.ipset")).unwrap();
        import("feodo", &feodo);
        let held = env.pending_approvals();
        assert!(
            held.iter().any(|a| a.to_string().contains("feed-batch")),
            "{held:#?}"
        );
    }
    // Deny the held ones; nothing of them is applied.
    for a in env.pending_approvals() {
        env.decide(
            "deny",
            a["id"].as_str().unwrap(),
            &["--comment", "CRM network"],
        );
    }
    assert!(!blocked("203.0.113.9"));
    let runs = env.json(&["runs", "list", "--format", "json"]);
    let first = runs
        .as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["playbook"] == "intel-blocklist")
        .unwrap()
        .clone();
    env.rollback_and_verify(first["id"].as_str().unwrap());
    assert!(!blocked("198.51.100.7"));
    assert!(!env.in_effect_many("ips.dataset_add_many", "values", "198.51.100.7"));
}

fn phish_event(env: &Env) -> Value {
    let message = corpus_if_set()
        .and_then(|c| std::fs::read(c.join("phishing/sample-432.eml")).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| {
            "From: \"IT Desk\" <it@corp-helpdesk.example>\r\nTo: akhan@corp.example\r\nSubject: Password expiry\r\n\r\nReset it at https://login.corp-helpdesk.example/reset?u=akhan today.\r\n".into()
        });
    let _ = env;
    // Reported from Aisha Khan's workstation, which the lab's EDR knows as compromised.
    json!({"kind": "phishing.reported", "severity": "high",
           "observables": {"hosts": ["eng-ws-101"], "users": ["akhan"], "emails": ["akhan@corp.example"]},
           "data": {"message": message}})
}

#[test]
fn scenario_4_phishing_is_sinkholed_watched_taken_down_and_a_compromise_opens_a_case() {
    let env = Env::up(0.0);
    let r = env.run("phishing-response", &phish_event(&env));
    assert_eq!(r["status"], "succeeded", "{r:#}");
    let domains: Vec<String> = step(&r, "parse")["output"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["registrable_domain"].as_str().map(str::to_owned))
        .collect();
    assert!(!domains.is_empty(), "{r:#}");
    for d in &domains {
        assert!(env.in_effect("dns.sinkhole_domain", d), "{d} not sinkholed");
    }
    let lab = env.lab();
    assert_eq!(
        lab["edr"]["monitoring_overrides"]["dev-0003"], "high",
        "{lab:#}"
    );
    assert_eq!(
        lab["siem"]["watchlists"]["phishing-recipients"],
        json!(["akhan"])
    );
    assert!(!lab["takedown"]["tickets"].as_array().unwrap().is_empty());
    // The EDR reports the workstation compromised: capture and case.
    assert_eq!(lab["pcap"]["captures"][0]["host"], "eng-ws-101");
    let case_id = step(&r, "case")["output"]["case"]
        .as_str()
        .unwrap()
        .to_owned();
    let case = env.json(&["cases", "show", &case_id, "--format", "json"]);
    assert_eq!(case["case"]["status"], "open");
    assert_eq!(case["evidence"][0]["kind"], "email");
    assert_eq!(case["runs"][0]["id"], r["run_id"]);
    env.rollback_and_verify(r["run_id"].as_str().unwrap());
    let lab = env.lab();
    assert!(
        lab["edr"]["monitoring_overrides"].get("dev-0003").is_none(),
        "{lab:#}"
    );
    assert_eq!(lab["siem"]["watchlists"]["phishing-recipients"], json!([]));
    assert_eq!(lab["pcap"]["captures"][0]["running"], false);
    assert_eq!(
        env.json(&["cases", "show", &case_id, "--format", "json"])["case"]["status"],
        "closed"
    );
    for d in &domains {
        assert!(
            !env.in_effect("dns.sinkhole_domain", d),
            "{d} still sinkholed"
        );
    }
    env.nothing_doubled();
}

fn dlp_events(env: &Env) -> (Value, Value) {
    let file = corpus_if_set().map(|c| c.join("dlp/azure-sentinel_SymantecDLP_selected.json"));
    let inadvertent = match file.filter(|f| f.exists()) {
        Some(f) => {
            let out = env.ok(&["logs", "parse", f.to_str().unwrap()]);
            serde_json::from_str(out.lines().next().unwrap()).unwrap()
        }
        None => json!({"kind": "dlp.alert", "observables": {"users": ["jsmith"]},
            "data": {"user": "jsmith", "channel": "SMTP", "encrypted": false, "file": "accounts.xlsx",
                     "data_types": ["bank_account_number"], "endpoint": "fin-ws-014"}}),
    };
    let mut malicious = inadvertent.clone();
    malicious["data"]["channel"] = json!("Network Gateway");
    malicious["data"]["encrypted"] = json!(true);
    malicious["data"]["file"] = json!("q3-export.7z");
    malicious["data"]["endpoint"] = json!("eng-ws-101");
    malicious["data"]["user"] = json!("akhan");
    malicious["observables"] = json!({"users": ["akhan"], "hosts": ["eng-ws-101"]});
    (inadvertent, malicious)
}

#[test]
fn scenario_5_exfiltration_inadvertent_trains_malicious_waits_for_approval_then_contains() {
    let env = Env::up(0.0);
    let (inadvertent, malicious) = dlp_events(&env);
    let r = env.run("exfiltration-response", &inadvertent);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(step(&r, "training")["status"], "succeeded");
    assert_eq!(step(&r, "scan")["status"], "skipped");
    assert_eq!(
        env.lab()["training"]["enrollments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.rollback_and_verify(r["run_id"].as_str().unwrap());

    let r = env.run("exfiltration-response", &malicious);
    assert_eq!(r["status"], "waiting_approval", "{r:#}");
    assert_eq!(step(&r, "training")["status"], "skipped");
    let pending = env.pending_approvals();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["action"], "nac.quarantine");
    let mac = pending[0]["target"].as_str().unwrap().to_owned();
    assert!(
        !env.in_effect("nac.quarantine", &mac),
        "nothing before approval"
    );
    let id = pending[0]["id"].as_str().unwrap();
    env.decide("approve", id, &["--comment", "confirmed"]);
    let run_id = r["run_id"].as_str().unwrap();
    let shown = env.ok(&["runs", "show", run_id]);
    assert!(shown.contains("succeeded"), "{shown}");
    let lab = env.lab();
    assert_eq!(
        lab["edr"]["captures"].as_array().unwrap().len(),
        2,
        "memory and disk: {lab:#}"
    );
    let case = env.json(&[
        "cases",
        "show",
        &format!("dlp-{}", r["event_id"].as_str().unwrap()),
        "--format",
        "json",
    ]);
    assert_text_contains(&case["notes"][0]["note"], "other endpoint");
    assert!(
        env.inbox("soc")
            .iter()
            .any(|m| m["subject"].as_str().unwrap().starts_with("URGENT"))
    );
    assert!(env.in_effect("nac.quarantine", &mac));
    env.rollback_and_verify(run_id);
    assert!(!env.in_effect("nac.quarantine", &mac));
    env.nothing_doubled();
}

#[test]
fn scenario_6_proxy_blocks_multi_feed_addresses_and_tightens_single_feed_ones() {
    let env = Env::up(0.0);
    let import = |name: &str, text: &str| env.import_feed(name, text);
    import("feed-a", "198.51.100.21\n198.51.100.22\n");
    import("feed-b", "198.51.100.21\n");
    let lab = env.lab();
    let proxy = lab["proxy"].to_string();
    assert!(
        proxy.contains("198.51.100.22"),
        "single-feed address tightened: {proxy}"
    );
    let blocked = &lab["proxy"]["lists"];
    assert!(
        blocked.to_string().contains("198.51.100.21"),
        "two feeds: blocked: {proxy}"
    );
    assert!(
        !blocked.to_string().contains("198.51.100.22"),
        "one feed: not blocked: {proxy}"
    );
    assert!(
        env.in_effect_many("proxy.block_many", "addresses", "198.51.100.21"),
        "blocked by one set-level change"
    );
    assert!(
        env.inbox("soc")
            .iter()
            .any(|m| m["subject"].as_str().unwrap().starts_with("Investigate"))
    );
    let runs = env.json(&["runs", "list", "--format", "json"]);
    for r in runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["playbook"] == "proxy-multi-feed")
    {
        env.rollback_and_verify(r["id"].as_str().unwrap());
    }
    let lab = env.lab();
    assert!(
        !lab["proxy"]["lists"].to_string().contains("198.51.100.21"),
        "{lab:#}"
    );
    env.nothing_doubled();
}

#[test]
fn scenarios_under_injected_faults_complete_or_hold_and_never_double_a_change() {
    // One request in five to the simulators fails: 503 or 429 with Retry-After before the
    // request is handled, a 500 or a stall after the change was made.
    let env = Env::up(0.2);
    let (inadvertent, malicious) = dlp_events(&env);
    let events = [
        (
            "enrich-alert",
            json!({"kind": "ids.alert", "observables": {"hosts": ["fin-cfo-lt01", "eng-ws-101"], "users": ["mdubois"]}}),
        ),
        (
            "privilege-escalation",
            json!({"kind": "auth.privilege_change", "data": {"action": "added", "privileged": true,
            "user": "bart", "group": "sudo", "host": "fin-cfo-lt01", "raw": "gpasswd: user bart added by root to group sudo"}}),
        ),
        (
            "rogue-device",
            json!({"kind": "network.new_device", "data": {"mac": "b4:b5:2f:15:4c:ec", "ip": "192.168.17.154", "vendor": "Hewlett Packard"}}),
        ),
        ("phishing-response", phish_event(&env)),
        ("exfiltration-response", inadvertent),
        ("exfiltration-response", malicious),
    ];
    for (playbook, event) in &events {
        let r = env.run(playbook, event);
        let status = r["status"].as_str().unwrap();
        match status {
            "succeeded" | "waiting_approval" => {}
            "failed" => assert!(
                !r["error"].as_str().unwrap_or("").is_empty(),
                "{playbook}: a failure says why: {r:#}"
            ),
            other => panic!("{playbook}: a run ends clearly, not {other}: {r:#}"),
        }
        if status == "waiting_approval" {
            let held: Vec<_> = r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["status"] == "held")
                .collect();
            assert!(!held.is_empty(), "{playbook}: waiting on something: {r:#}");
        }
    }
    // The feed scenarios (the web proxy is a simulator too).
    for (feed, text) in [
        ("feed-a", "198.51.100.31\n198.51.100.32\n"),
        ("feed-b", "198.51.100.31\n"),
    ] {
        env.import_feed(feed, text);
    }
    let runs = env.json(&["runs", "list", "--format", "json"]);
    let proxy_runs: Vec<&Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["playbook"] == "proxy-multi-feed")
        .collect();
    assert_eq!(proxy_runs.len(), 2);
    for r in proxy_runs {
        let status = r["status"].as_str().unwrap();
        assert!(
            matches!(status, "succeeded" | "waiting_approval")
                || (status == "failed" && !r["error"].as_str().unwrap_or("").is_empty()),
            "{r:#}"
        );
    }
    for a in env.pending_approvals() {
        env.decide("approve", a["id"].as_str().unwrap(), &[]);
    }
    env.nothing_doubled();
    // Nothing lost: every change the journal says a simulator applied is in its state, once.
    let lab_families = ["edr.", "siem.", "training.", "takedown.", "proxy.", "pcap."];
    let changes = env.json(&["changes", "list", "--format", "json"]);
    let lab = env.lab();
    let mut checked = 0;
    for c in changes.as_array().unwrap().iter().filter(|c| {
        c["status"] == "applied"
            && lab_families
                .iter()
                .any(|f| c["action"].as_str().unwrap().starts_with(f))
            && c["after"] != c["before"]
    }) {
        let key = c["idempotency_key"].as_str().unwrap();
        let seen = &lab["idempotency"][key];
        assert_eq!(seen["applied"], 1, "{key} ({}): {seen}", c["action"]);
        checked += 1;
    }
    assert!(
        checked >= 5,
        "the runs made changes in the simulators: {checked}"
    );
    env.ok(&["audit", "verify"]);
}

#[test]
fn the_demo_runs_every_scenario_holds_approves_rolls_back_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(common::BIN)
        .arg("demo")
        .current_dir(dir.path())
        .env_remove("BELAY_CONFIG")
        .env_remove("BELAY_DATA")
        .env_remove("BELAY_DATABASE_URL")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for playbook in [
        "enrich-alert",
        "privilege-escalation",
        "rogue-device",
        "intel-blocklist",
        "phishing-response",
        "exfiltration-response",
        "proxy-multi-feed",
    ] {
        assert!(
            out.contains(&format!("{playbook:<22} → succeeded")),
            "{playbook} did not succeed:\n{out}"
        );
    }
    assert!(
        out.contains("protected-networks: 198.51.100.70 is inside a protected network"),
        "CRM hold:\n{out}"
    );
    assert!(
        out.contains("feed-batch: batch of 40 changes"),
        "oversized feed hold:\n{out}"
    );
    assert!(
        out.contains("feed-baseline learned: p99 4 blocks per update")
            && out.contains("held for a person by guardrail — feed-baseline: batch of 20 changes is above 3 × the learned p99 of 4 per run")
            && out.contains("feed-baseline enforces from here on"),
        "learned-limit hold:\n{out}"
    );
    assert!(
        out.contains("→ DENIED by demo-analyst") && out.contains("→ APPROVED by demo-analyst"),
        "{out}"
    );
    assert!(
        out.contains("0 failed") && out.contains("verified: target is back to"),
        "{out}"
    );
    assert!(out.contains("audit chain intact"), "{out}");
    assert!(
        out.contains("simulated") && out.contains("real components:"),
        "says what is real:\n{out}"
    );
}

#[test]
fn the_lab_token_appears_nowhere_belay_writes() {
    let env = Env::up(0.1);
    let r = env.run("phishing-response", &phish_event(&env));
    assert!(r["run_id"].is_string());
    // The logs at their most verbose, with faults making the connector log its retries.
    let file = env.path().join("event-debug.json");
    std::fs::write(&file, phish_event(&env).to_string()).unwrap();
    let o = Command::new(common::BIN)
        .current_dir(env.path())
        .env("BELAY_CONFIG", env.path().join("belay.toml"))
        .env("BELAY_LOG", "debug")
        .args(["run", "playbooks/phishing-response.yaml", "--event"])
        .arg(&file)
        .output()
        .unwrap();
    let logs = text(&o);
    assert!(
        logs.contains("DEBUG") || logs.contains("WARN") || o.status.success(),
        "{logs}"
    );
    assert!(!logs.contains(&env.token), "the logs hold the token");
    let export = env.ok(&["audit", "export"]);
    assert!(
        !export.contains(&env.token),
        "the audit export holds the token"
    );
    let mut stack = vec![env.path().join("data"), env.path().join("notify")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let hit = bytes
                    .windows(env.token.len())
                    .any(|w| w == env.token.as_bytes());
                assert!(!hit, "{} holds the token", path.display());
            }
        }
    }
}

#[test]
fn the_shipped_playbooks_lint_clean_and_their_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run = |args: &[&str]| {
        let o = Command::new(common::BIN)
            .current_dir(&root)
            .env_remove("BELAY_CONFIG")
            .env_remove("BELAY_GUARDRAILS")
            .args(args)
            .output()
            .unwrap();
        let text = text(&o);
        assert!(o.status.success(), "belay {args:?}:\n{text}");
        text
    };
    assert!(run(&["lint", "playbooks"]).contains("7 playbook(s) OK"));
    let tests = run(&["test", "playbooks"]);
    assert!(tests.contains("11 passed, 0 failed"), "{tests}");
}
