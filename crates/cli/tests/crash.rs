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
