//! `belay serve` operations end to end, through the real binary on ephemeral ports: the
//! ingest queue's 429 under load, a client posting 10,000 events while the server is killed
//! with SIGKILL and restarted (every acknowledged event ran exactly once, no change applied
//! twice), SIGTERM under load, sources and feeds from belay.toml, HTTPS with certificate files,
//! and a real Prometheus scraping `/metrics`.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::server::{Answer, Server, call, exchange, token};
use common::{command, write_file};

fn get(port: u16, path: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    call(port, "GET", path, &[("authorization", &auth)], b"").expect("the server answers")
}

fn post_events(port: u16, token: &str, body: &str, ndjson: bool) -> std::io::Result<Answer> {
    let auth = format!("Bearer {token}");
    let ct = if ndjson {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    call(
        port,
        "POST",
        "/api/v1/events",
        &[("authorization", &auth), ("content-type", ct)],
        body.as_bytes(),
    )
}

/// Waits until `f` holds, up to `within`; whether it did.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn event(i: usize) -> String {
    json!({"id": format!("ev-{i}"), "kind": "test.alert",
        "observables": {"ips": [format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)]}})
    .to_string()
}

/// Every run in the store (through the CLI, beside the running server).
fn runs(dir: &Path) -> Vec<Value> {
    let o = command(dir)
        .args(["runs", "list", "--format", "json", "--limit", "1000000"])
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}

const BLOCK: &str = r#"name: block
on: { event: test.alert }
trust: log
steps:
  - id: block
    action: blocklist.add
    with: { list: blocked, entry: "${{ event.observables.ips[0] }}" }
"#;

/// SIGKILL at random moments while a client posts 10,000 events, retrying on connection
/// errors and 429 with the same event ids: at the end every acknowledged event ran exactly
/// once, and the journal and the block list hold each change once.
#[test]
fn a_server_killed_at_random_loses_no_acknowledged_event_and_applies_no_change_twice() {
    const EVENTS: usize = 10_000;
    const BATCH: usize = 100;
    const SINGLES: usize = 200;
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("playbooks")).unwrap();
    write_file(d, "playbooks/block.yaml", BLOCK);
    // A small queue so that the client also meets 429.
    write_file(
        d,
        "belay.toml",
        "playbooks = \"playbooks\"\n[serve]\nqueue = 300\n[engine]\nmax_concurrent_runs = 32\n",
    );
    let tok = token(d, "feeder", "responder");
    let first = Server::start(d);
    let port = first.port;
    let listen = format!("127.0.0.1:{port}");
    let server = Arc::new(Mutex::new(Some(first)));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The client: NDJSON batches, then single posts; each retried until it is acknowledged.
    let client = {
        let (tok, done) = (tok.clone(), done.clone());
        std::thread::spawn(move || {
            let mut acked: BTreeSet<String> = BTreeSet::new();
            let (mut refused_429, mut conn_errors, mut retry_after_seen) = (0, 0, false);
            let mut post = |body: String, ndjson: bool, ids: Vec<String>| loop {
                match post_events(port, &tok, &body, ndjson) {
                    Ok(a) if a.status == 202 => {
                        acked.extend(ids);
                        return;
                    }
                    Ok(a) if a.status == 429 => {
                        refused_429 += 1;
                        retry_after_seen |= a.headers.get("retry-after").is_some_and(|v| v == "1");
                        assert_eq!(a.json()["status"], 429, "{}", a.body);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Ok(a) => panic!("unexpected answer {}: {}", a.status, a.body),
                    Err(_) => {
                        conn_errors += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            };
            let batched = EVENTS - SINGLES;
            for start in (0..batched).step_by(BATCH) {
                let end = (start + BATCH).min(batched);
                let body: String = (start..end).map(|i| event(i) + "\n").collect();
                post(
                    body,
                    true,
                    (start..end).map(|i| format!("ev-{i}")).collect(),
                );
            }
            for i in batched..EVENTS {
                post(event(i), false, vec![format!("ev-{i}")]);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (acked, refused_429, conn_errors, retry_after_seen)
        })
    };

    // The killer: SIGKILL at random moments, then a restart on the same address.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = seed;
    let mut kills = 0;
    let mut logs = Vec::new();
    while kills < KILLS && !done.load(std::sync::atomic::Ordering::SeqCst) {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(300 + (rng >> 33) % 900));
        let mut s = server.lock().unwrap();
        if let Some(mut old) = s.take() {
            old.kill();
            kills += 1;
        }
        let next = Server::start_with(d, &listen, &[]);
        logs.push(next.log.clone());
        *s = Some(next);
    }
    let (acked, refused_429, conn_errors, retry_after_seen) =
        client.join().expect("the client ends");
    println!("killed {kills} times; {refused_429} answers 429, {conn_errors} connection errors");
    assert_eq!(
        kills, KILLS,
        "the server must be killed several times while the client posts"
    );
    assert_eq!(acked.len(), EVENTS);
    assert!(conn_errors > 0, "kills must land while the client posts");
    assert!(
        refused_429 > 0 && retry_after_seen,
        "a full queue answers 429 with Retry-After"
    );

    // The last server finishes every run; then each acknowledged event ran exactly once.
    let finished = eventually(Duration::from_secs(120), || {
        let r = runs(d);
        r.len() >= EVENTS && r.iter().all(|r| r["status"] == "succeeded")
    });
    let all = runs(d);
    assert!(
        finished,
        "runs left unfinished: {:?}",
        all.iter()
            .filter(|r| r["status"] != "succeeded")
            .take(5)
            .collect::<Vec<_>>()
    );
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for r in &all {
        *per_event
            .entry(r["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        per_event.keys().cloned().collect::<BTreeSet<_>>(),
        acked,
        "one run per acknowledged event, and no other"
    );
    assert!(per_event.values().all(|n| *n == 1), "an event ran twice");
    let resumed: usize = logs
        .iter()
        .flat_map(|l| l.lock().unwrap().clone())
        .filter_map(|l| {
            l.split("resuming ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    println!("{resumed} runs resumed after kills");
    assert!(
        resumed > 0,
        "kills must interrupt runs, which the restarts resume"
    );

    let o = command(d)
        .args(["changes", "list", "--format", "json"])
        .output()
        .unwrap();
    let changes: Vec<Value> = serde_json::from_slice(&o.stdout).expect("changes as JSON");
    let applied: Vec<&Value> = changes
        .iter()
        .filter(|c| c["status"] == "applied")
        .collect();
    let targets: BTreeSet<String> = applied
        .iter()
        .map(|c| c["with"]["entry"].to_string())
        .collect();
    assert_eq!(applied.len(), EVENTS, "one applied change per event");
    assert_eq!(targets.len(), EVENTS, "no change applied twice");
    let list = std::fs::read_to_string(d.join("data/lists/blocked.txt")).unwrap();
    let entries: BTreeSet<&str> = list.lines().collect();
    assert_eq!(list.lines().count(), EVENTS, "each address listed once");
    assert_eq!(entries.len(), EVENTS);
}

/// A full queue refuses with 429, Retry-After and a problem, and stores nothing; room comes
/// back when the runs finish.
#[test]
fn a_full_ingest_queue_answers_429_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("playbooks")).unwrap();
    write_file(
        d,
        "playbooks/slow.yaml",
        "name: slow\non: { event: test.alert }\ntrust: log\nsteps:\n  - id: wait\n    action: core.sleep\n    with: { duration: 3s }\n",
    );
    write_file(
        d,
        "belay.toml",
        "playbooks = \"playbooks\"\n[serve]\nqueue = 2\nlog_format = \"json\"\n",
    );
    let tok = token(d, "feeder", "responder");
    let s = Server::start(d);
    for i in 0..2 {
        let a = post_events(s.port, &tok, &event(i), false).unwrap();
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let a = post_events(s.port, &tok, &event(2), false).unwrap();
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.headers.get("retry-after").map(String::as_str), Some("1"));
    assert_eq!(
        a.headers.get("content-type").map(String::as_str),
        Some("application/problem+json")
    );
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap()
            .contains("ingest queue is full"),
        "{}",
        a.body
    );
    let r = get(s.port, "/api/v1/runs?event_id=ev-2", &tok);
    assert_eq!(
        r.json()["runs"],
        json!([]),
        "nothing stored for a refused event"
    );
    let m = get(s.port, "/metrics", &tok).body;
    assert!(
        m.contains("belay_events_rejected_total{source=\"api\",reason=\"queue_full\"} 1"),
        "{m}"
    );
    assert!(m.contains("belay_ingest_queue_depth 2"), "{m}");
    // Once the runs end there is room again.
    assert!(eventually(Duration::from_secs(30), || {
        post_events(s.port, &tok, &event(2), false).unwrap().status == 202
    }));
    // The logs are JSON lines; a run's lines carry its run and event ids.
    let ended = |id: &str| {
        s.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "run ended" && v["span"]["event_id"] == id)
    };
    assert!(
        eventually(Duration::from_secs(30), || ended("ev-0").is_some()),
        "{}",
        s.log()
    );
    let line = ended("ev-0").unwrap();
    assert_eq!(line["span"]["playbook"], "slow", "{line}");
    assert_eq!(line["fields"]["status"], "succeeded", "{line}");
    let run_id = line["span"]["run_id"]
        .as_str()
        .expect("the run id")
        .to_owned();
    let r = get(s.port, "/api/v1/runs?event_id=ev-0", &tok).json();
    assert_eq!(r["runs"][0]["id"], run_id.as_str());
}

/// SIGTERM with events in flight: the server exits within 10 s; the next start finishes every
/// acknowledged event's runs.
#[test]
fn sigterm_under_load_exits_within_ten_seconds_and_the_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("playbooks")).unwrap();
    write_file(
        d,
        "playbooks/slow.yaml",
        "name: slow\non: { event: test.alert }\ntrust: log\nsteps:\n  - id: block\n    action: blocklist.add\n    with: { list: blocked, entry: \"${{ event.observables.ips[0] }}\" }\n  - id: wait\n    action: core.sleep\n    with: { duration: 10s }\n  - id: note\n    action: core.log\n    with: { message: done }\n",
    );
    write_file(d, "belay.toml", "playbooks = \"playbooks\"\n");
    let tok = token(d, "feeder", "responder");
    let mut s = Server::start(d);
    let body: String = (0..200).map(|i| event(i) + "\n").collect();
    let a = post_events(s.port, &tok, &body, true).unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    // More posts keep coming while it stops.
    let port = s.port;
    let tok2 = tok.clone();
    let load = std::thread::spawn(move || {
        for i in 200..400 {
            if post_events(port, &tok2, &event(i), false).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let status = s.terminate();
    let took = asked.elapsed();
    load.join().unwrap();
    println!("exited {status} in {took:?}");
    assert!(status.success(), "{}", s.log());
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    assert!(s.log().contains("resume at the next start"), "{}", s.log());
    let unfinished = runs(d)
        .iter()
        .filter(|r| r["status"] != "succeeded")
        .count();
    assert!(unfinished > 0, "runs were in flight at SIGTERM");
    let acked: Vec<String> = runs(d)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    drop(s);

    // The restart resumes them; each acknowledged event's run finishes, once.
    let _s = Server::start(d);
    assert!(
        eventually(Duration::from_secs(60), || runs(d)
            .iter()
            .all(|r| r["status"] == "succeeded")),
        "the restart resumes every run"
    );
    let after = runs(d);
    assert_eq!(after.len(), acked.len(), "no run started twice");
    let list = std::fs::read_to_string(d.join("data/lists/blocked.txt")).unwrap();
    assert_eq!(
        list.lines().count(),
        acked.len(),
        "each change applied once"
    );
}

/// A plain feed served over HTTP by the test; each request answers the next version.
fn serve_feed(versions: Vec<String>) -> (u16, Arc<Mutex<usize>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let served = Arc::new(Mutex::new(0usize));
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let n = {
                let mut n = count.lock().unwrap();
                *n += 1;
                *n
            };
            let body = &versions[(n - 1).min(versions.len() - 1)];
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, served)
}

/// Sources and feeds declared in belay.toml run in the server: a feed with `every` is imported
/// on schedule and each import's `intel.update` triggers its playbook; a syslog TCP listener
/// and a tailed JSON-lines file hand their events to the engine; each one's last success is in
/// `GET /api/v1/sources` and `/metrics`. A bad entry is refused at start naming the file, the
/// key and the reason; SIGHUP with a broken playbook keeps the running set and says why.
#[test]
fn configured_sources_and_scheduled_feeds_run_in_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("playbooks")).unwrap();
    write_file(
        d,
        "playbooks/intel.yaml",
        "name: on-intel\non: { event: intel.update }\ntrust: log\nsteps:\n  - id: block\n    action: blocklist.add\n    for_each: ${{ event.observables.ips }}\n    with: { list: intel, entry: \"${{ item }}\" }\n",
    );
    write_file(d, "playbooks/block.yaml", BLOCK);
    write_file(
        d,
        "playbooks/syslog.yaml",
        "name: on-syslog\non: { event: syslog.message }\ntrust: log\nsteps:\n  - id: note\n    action: core.log\n    with: { message: seen }\n",
    );
    let (feed_port, served) = serve_feed(vec![
        "198.51.100.1\n".into(),
        "198.51.100.1\n198.51.100.2\n".into(),
    ]);
    write_file(d, "alerts.jsonl", &(event(1) + "\n"));
    let syslog_port = belay_testkit::net::free_port();
    let config = format!(
        "playbooks = \"playbooks\"\n\
         [[feeds]]\nname = \"local-feed\"\nsource = \"http://127.0.0.1:{feed_port}/feed.txt\"\nformat = \"plain\"\nevery = \"2s\"\n\
         [[sources]]\nname = \"fw\"\ntype = \"syslog\"\ntcp = \"127.0.0.1:{syslog_port}\"\n\
         [[sources]]\nname = \"alerts\"\ntype = \"file\"\npath = \"alerts.jsonl\"\npoll = \"200ms\"\n"
    );
    write_file(d, "belay.toml", &config);
    let viewer = token(d, "watcher", "viewer");
    let s = Server::start(d);

    // The feed: imported at start, then again after `every`, each import running the playbook.
    assert!(
        eventually(Duration::from_secs(30), || *served.lock().unwrap() >= 2),
        "the feed is imported on schedule: {}",
        s.log()
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            std::fs::read_to_string(d.join("data/lists/intel.txt"))
                .unwrap_or_default()
                .lines()
                .count()
                == 2
        }),
        "each import's intel.update ran the playbook: {}",
        s.log()
    );
    let intel_runs = runs(d)
        .into_iter()
        .filter(|r| r["playbook"] == "on-intel")
        .count();
    assert!(intel_runs >= 2, "one run per import: {intel_runs}");

    // Syslog over TCP, and lines appended to the tailed file.
    let mut tcp =
        TcpStream::connect(("127.0.0.1", syslog_port)).expect("the syslog source listens");
    tcp.write_all(b"<34>1 2026-01-01T00:00:00Z fw1 sshd - - - Failed password for root\n")
        .unwrap();
    drop(tcp);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("alerts.jsonl"))
        .unwrap();
    // Half a line first: it is not read until it is complete.
    let two = event(2);
    let (a, b) = two.split_at(20);
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    f.write_all(format!("{b}\n").as_bytes()).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || {
            let r = runs(d);
            r.iter().any(|r| r["playbook"] == "on-syslog")
                && ["ev-1", "ev-2"].iter().all(|e| {
                    r.iter()
                        .any(|r| r["event_id"] == *e && r["status"] == "succeeded")
                })
        }),
        "syslog and file events ran: {}",
        s.log()
    );
    assert!(
        !d.join("data/rejected.jsonl").exists()
            || std::fs::read_to_string(d.join("data/rejected.jsonl"))
                .unwrap()
                .is_empty(),
        "a half-written line is never read as a line"
    );

    // Status of each, through the API and the metrics.
    let a = get(s.port, "/api/v1/sources", &viewer);
    assert_eq!(a.status, 200, "{}", a.body);
    let sources = a.json()["sources"].as_array().cloned().unwrap();
    let by_name = |n: &str| {
        sources
            .iter()
            .find(|s| s["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {sources:?}"))
    };
    for (name, kind) in [("local-feed", "feed"), ("fw", "syslog"), ("alerts", "file")] {
        let st = by_name(name);
        assert_eq!(st["kind"], kind);
        assert_eq!(st["running"], true, "{st}");
        assert!(st["last_success"].is_string(), "{st}");
        assert!(st["last_error"].is_null(), "{st}");
    }
    let ready = call(s.port, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["sources"], 3, "{}", ready.body);
    assert!(
        by_name("local-feed")["last_summary"]
            .as_str()
            .unwrap()
            .contains("local-feed")
    );
    let m = get(s.port, "/metrics", &viewer).body;
    assert!(
        m.contains(
            "belay_source_last_success_timestamp_seconds{source=\"local-feed\",kind=\"feed\"}"
        ),
        "{m}"
    );
    assert!(
        m.contains("belay_events_accepted_total{source=\"fw\",status=\"new\"} 1"),
        "{m}"
    );

    // SIGHUP with a broken playbook: the running set stays, and standard error says why.
    write_file(d, "playbooks/block.yaml", "name: block\nsteps: [\n");
    s.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(20), || s
            .log()
            .contains("reload refused")),
        "{}",
        s.log()
    );
    let log = s.log();
    let refused = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(refused.contains("kept the running set"), "{log}");
    assert!(
        log.contains("block.yaml"),
        "the reason names the file: {log}"
    );
    let a = post_events(s.port, &token(d, "feeder", "responder"), &event(3), false).unwrap();
    assert_eq!(
        a.json()["run_ids"].as_array().map(Vec::len),
        Some(1),
        "the old set still runs: {}",
        a.body
    );
    drop(s);

    // A bad entry is refused at start, naming the file, the entry, the key and the reason.
    write_file(
        d,
        "belay.toml",
        "[[sources]]\nname = \"fw\"\ntype = \"syslog\"\nudp = \"not an address\"\n",
    );
    let log = Server::try_start(d, "127.0.0.1:0", &[])
        .err()
        .expect("a bad source is refused");
    assert!(
        log.contains("belay.toml")
            && log.contains("[[sources]] #1 (`fw`)")
            && log.contains("`udp`"),
        "{log}"
    );
    write_file(
        d,
        "belay.toml",
        "[[feeds]]\nname = \"f\"\nsource = \"feed.txt\"\nevery = \"hourly\"\n",
    );
    let log = Server::try_start(d, "127.0.0.1:0", &[])
        .err()
        .expect("a bad feed is refused");
    assert!(
        log.contains("belay.toml") && log.contains("[[feeds]] #1 (`f`): `every`"),
        "{log}"
    );
}

/// With certificate files the server speaks HTTPS (a self-signed certificate made here); plain
/// HTTP is refused on an address that is not loopback unless `allow_plaintext` is set.
#[test]
fn https_with_certificate_files_and_no_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    write_file(d, "cert.pem", &cert.cert.pem());
    write_file(d, "key.pem", &cert.signing_key.serialize_pem());
    write_file(
        d,
        "belay.toml",
        "[serve]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
    );
    let viewer = token(d, "watcher", "viewer");
    let s = Server::start(d);
    assert!(s.log().contains("listening on https://"), "{}", s.log());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let https = |path: &str, auth: Option<&str>| {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        let bearer = auth.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        exchange(&mut tls, "GET", path, &headers, b"").expect("an HTTPS answer")
    };
    assert_eq!(https("/healthz", None).status, 200);
    let who = https("/api/v1/whoami", Some(&viewer));
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(who.json()["name"], "watcher");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = call(s.port, "GET", "/healthz", &[], b"");
    assert!(
        plain.map(|a| a.status != 200).unwrap_or(true),
        "plain HTTP is not served on the TLS port"
    );
    drop(s);

    // A key that does not match its certificate is refused at start, naming the files.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    write_file(d, "key.pem", &other.signing_key.serialize_pem());
    let log = Server::try_start(d, "127.0.0.1:0", &[])
        .err()
        .expect("a mismatched key is refused");
    assert!(log.contains("tls_cert") && log.contains("key.pem"), "{log}");

    // Without TLS: loopback is fine, any other address needs `allow_plaintext`.
    write_file(d, "belay.toml", "");
    let log = Server::try_start(d, "0.0.0.0:0", &[])
        .err()
        .expect("plain HTTP off loopback is refused");
    assert!(
        log.contains("refusing plain HTTP") && log.contains("allow_plaintext"),
        "{log}"
    );
    write_file(d, "belay.toml", "[serve]\nallow_plaintext = true\n");
    let s = Server::start_with(d, "0.0.0.0:0", &[]);
    assert_eq!(
        call(s.port, "GET", "/healthz", &[], b"").unwrap().status,
        200
    );
}

/// A real Prometheus scrapes `/metrics` with a bearer token, and a query through its HTTP API
/// returns belay's accepted-events series.
#[test]
fn a_real_prometheus_scrapes_the_metrics() {
    let Some(prometheus) = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| belay_testkit::skip::installed(Path::new(p)))
    else {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            "prometheus is not installed (Debian package `prometheus`)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("playbooks")).unwrap();
    write_file(d, "playbooks/block.yaml", BLOCK);
    write_file(d, "belay.toml", "playbooks = \"playbooks\"\n");
    let viewer = token(d, "prometheus", "viewer");
    let feeder = token(d, "feeder", "responder");
    let s = Server::start(d);
    let body: String = (0..5).map(|i| event(i) + "\n").collect();
    assert_eq!(
        post_events(s.port, &feeder, &body, true).unwrap().status,
        202
    );
    assert!(eventually(Duration::from_secs(30), || runs(d)
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .count()
        == 5));

    let m = get(s.port, "/metrics", &viewer).body;
    for series in [
        "belay_events_accepted_total{source=\"api\",status=\"new\"} 5",
        "belay_step_duration_seconds_bucket",
        "belay_action_duration_seconds_bucket{action=\"blocklist.add\"",
        "belay_store_commit_seconds_bucket",
        "belay_store_commit_batch_size_bucket",
        "belay_runs_finished_total{status=\"succeeded\"} 5",
        "belay_approvals_pending 0",
        "belay_approvals_oldest_pending_age_seconds 0",
        "belay_ingest_queue_depth 0",
    ] {
        assert!(m.contains(series), "no {series} in:\n{m}");
    }

    std::fs::write(d.join("token"), &viewer).unwrap();
    let prom_port = belay_testkit::net::free_port();
    write_file(
        d,
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: belay\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            d.join("token").display(),
            s.port
        ),
    );
    let _prom = belay_testkit::net::Server::start(
        std::process::Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        prom_port,
        Duration::from_secs(60),
    );
    let mut last = String::new();
    let found = eventually(Duration::from_secs(60), || {
        let Ok(a) = call(
            prom_port,
            "GET",
            "/api/v1/query?query=belay_events_accepted_total",
            &[],
            b"",
        ) else {
            return false;
        };
        last = a.body.clone();
        let v = a.json();
        v["data"]["result"].as_array().is_some_and(|r| {
            r.iter().any(|s| {
                s["metric"]["source"] == "api"
                    && s["metric"]["status"] == "new"
                    && s["value"][1] == "5"
            })
        })
    });
    assert!(
        found,
        "Prometheus has belay's accepted-events series: {last}"
    );
}
