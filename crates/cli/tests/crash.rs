//! Kill `belay ingest` with SIGKILL at random points, restart it, and check that every
//! accepted event ran exactly once and no change was applied twice.

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: usize = 300;
const KILLS: usize = 8;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn belay(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_belay"));
    c.current_dir(dir)
        .env("BELAY_DATA", dir.join("data"))
        .env_remove("BELAY_DATABASE_URL")
        .env_remove("BELAY_CONFIG");
    c
}

#[test]
fn killed_ingest_resumes_every_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pbs")).unwrap();
    std::fs::write(
        d.join("pbs/contain.yaml"),
        r#"name: contain
on: { event: test.alert }
trust: log
steps:
  - id: note
    action: core.log
    with: { message: "alert ${{ event.id }}" }
  - id: block
    action: blocklist.add
    with: { list: blocked, entry: "${{ event.observables.ips[0] }}" }
  - id: pause
    action: core.sleep
    with: { duration: 15ms }
  - id: watch
    action: blocklist.add
    for_each: ${{ event.observables.hosts }}
    with: { list: watched, entry: "${{ item }}" }
"#,
    )
    .unwrap();
    let batch = |from: usize, to: usize| {
        let mut lines = String::new();
        for i in from..to {
            lines.push_str(&format!(
                "{{\"id\":\"ev-{i}\",\"kind\":\"test.alert\",\"observables\":{{\"ips\":[\"10.{}.{}.1\"],\"hosts\":[\"host-{i}-a\",\"host-{i}-b\"]}}}}\n",
                i / 256,
                i % 256
            ));
        }
        lines
    };
    let mut events = EVENTS;
    std::fs::write(d.join("events.jsonl"), batch(0, events)).unwrap();
    // Few runs at once, so a kill lands while many are in flight.
    std::fs::write(d.join("belay.toml"), "[engine]\nmax_concurrent_runs = 24\n").unwrap();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = Lcg(seed);
    let mut kills = 0;
    let mut resumed = 0;
    // Keep killing until KILLS kills landed; when a pass finishes before its kill, append more
    // events so that every kill interrupts work (bounded, so a broken build cannot loop).
    let mut k = 0;
    while kills < KILLS && k < KILLS * 4 {
        k += 1;
        let log = std::fs::File::create(d.join(format!("ingest-{k}.log"))).unwrap();
        let mut child = belay(d)
            .args(["ingest", "events.jsonl", "--playbooks", "pbs", "--quiet"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + rng.next(400)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        } else {
            let more = batch(events, events + 100);
            events += 100;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(d.join("events.jsonl"))
                .unwrap();
            std::io::Write::write_all(&mut f, more.as_bytes()).unwrap();
        }
        child.wait().unwrap();
        let log = std::fs::read_to_string(d.join(format!("ingest-{k}.log"))).unwrap();
        resumed += log
            .lines()
            .filter_map(|l| {
                l.strip_prefix("resuming ")
                    .and_then(|r| r.split(' ').next()?.parse::<usize>().ok())
            })
            .sum::<usize>();
    }
    // A last, uninterrupted pass finishes whatever is left.
    let start = Instant::now();
    let o = belay(d)
        .args(["ingest", "events.jsonl", "--playbooks", "pbs", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        kills == KILLS,
        "the test must interrupt ingest several times (killed {kills})"
    );
    assert!(resumed > 0, "restarts must have resumed interrupted runs");
    println!(
        "killed {kills} times, {resumed} runs resumed; final pass {:?}: {}",
        start.elapsed(),
        String::from_utf8_lossy(&o.stderr)
    );

    let o = belay(d)
        .args(["runs", "list", "--format", "json", "--limit", "100000"])
        .output()
        .unwrap();
    let runs: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "run {r}");
        *per_event
            .entry(r["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), events, "every event was accepted");
    assert!(
        per_event.values().all(|n| *n == 1),
        "every event ran exactly once"
    );

    let blocked = std::fs::read_to_string(d.join("data/lists/blocked.txt")).unwrap();
    let watched = std::fs::read_to_string(d.join("data/lists/watched.txt")).unwrap();
    assert_eq!(blocked.lines().count(), events, "each address blocked once");
    assert_eq!(
        watched.lines().count(),
        events * 2,
        "each host watched once"
    );
    let mut uniq: Vec<&str> = watched.lines().collect();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), events * 2);
}

/// `GET /_state` of the lab at `base` (`http://127.0.0.1:PORT`) with `token`.
fn lab_state(base: &str, token: &str) -> Value {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /_state HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// Kills `belay run` while its change's call is in flight (the lab applied it and holds the
/// answer back), then lets `belay serve` resume the run: the change is recorded `unknown`,
/// verified against the target (the EDR shows the host isolated), recorded applied, and the
/// lab saw its idempotency key applied once and never again.
#[test]
fn a_change_in_flight_at_a_kill_is_verified_on_resume_and_never_applied_twice() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = format!("lab-{}", std::process::id());
    let mut lab = Command::new(env!("CARGO_BIN_EXE_belay"))
        .args([
            "lab",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--stall-changes",
            "1",
        ])
        .env("BELAY_LAB_TOKEN", &token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(lab.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first.rsplit(' ').next().unwrap().to_owned();
    std::thread::spawn(move || for _ in lines {});
    std::fs::create_dir(d.join("pbs")).unwrap();
    std::fs::write(
        d.join("pbs/contain.yaml"),
        "name: contain\non: { event: contain }\ntrust: log\nsteps:\n  - id: isolate\n    action: edr.isolate_host\n    with: { host: \"${{ event.data.host }}\", reason: crash test }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("belay.toml"),
        format!(
            "playbooks = \"pbs\"\n[connectors.edr]\nspec = \"edr-lab\"\nbase_url = \"{base}\"\n\
             auth = {{ type = \"bearer\", token = \"${{{{ secrets.LAB_TOKEN }}}}\" }}\ntimeout = \"60s\"\nretries = 0\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("ev.json"),
        r#"{"id":"ev-crash","kind":"contain","data":{"host":"eng-ws-101"}}"#,
    )
    .unwrap();
    let mut run = belay(d)
        .env("BELAY_SECRET_LAB_TOKEN", &token)
        .args(["run", "pbs/contain.yaml", "--event", "ev.json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the lab applied the change (its answer is being held back).
    let mut key = None;
    for _ in 0..400 {
        let state = lab_state(&base, &token);
        if let Some((k, v)) = state["idempotency"]
            .as_object()
            .and_then(|m| m.iter().next())
        {
            assert_eq!(v["applied"], 1);
            key = Some(k.clone());
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let key = key.expect("the lab received the change");
    run.kill().unwrap(); // SIGKILL while the call is in flight
    run.wait().unwrap();
    let changes = |d: &Path| -> Vec<Value> {
        let o = belay(d)
            .env("BELAY_SECRET_LAB_TOKEN", &token)
            .args(["changes", "list", "--format", "json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .cloned()
            .or_else(|| v["changes"].as_array().cloned())
            .unwrap()
    };
    let before = changes(d);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["status"], "pending", "{before:?}");

    // A restart resumes the run: the outcome is verified before anything else.
    let mut serve = belay(d)
        .env("BELAY_SECRET_LAB_TOKEN", &token)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let after = loop {
        let now = changes(d);
        if now[0]["status"] != "pending" && now[0]["status"] != "unknown" {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the change was not verified: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert_eq!(after.len(), 1, "one change, journaled once");
    assert_eq!(after[0]["status"], "applied", "{after:?}");
    let state = lab_state(&base, &token);
    assert_eq!(state["idempotency"][&key]["applied"], 1, "{state}");
    assert_eq!(
        state["idempotency"][&key]["replayed"], 0,
        "not called again: {state}"
    );
    let audit = belay(d)
        .env("BELAY_SECRET_LAB_TOKEN", &token)
        .args(["audit", "export"])
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    let unknown = audit.find("\"change.unknown\"").expect("marked unknown");
    let verified = audit.find("\"change.outcome_verified\"").expect("verified");
    let applied = audit.find("\"change.applied\"").expect("recorded applied");
    assert!(unknown < verified && verified < applied, "in this order");
    assert!(audit.contains("\"verdict\":\"applied\""), "{audit}");
    let _ = lab.kill();
    let _ = lab.wait();
}
