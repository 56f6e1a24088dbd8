//! End-to-end: `belay logs listen` fed by the real `logger` (util-linux) over UDP and TCP, its
//! bounds (oversize messages, too many connections, a slow sender), and `belay logs parse`.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::{assert_contains_all, assert_text_contains, belay, json, json_lines, str_of, text};

/// Generous bound that only turns a hang into a failure; nothing here measures speed.
const HANG: Duration = Duration::from_secs(120);

struct Listening {
    child: Child,
    udp: Option<String>,
    tcp: Option<String>,
    acks: mpsc::Receiver<Value>,
    stderr: mpsc::Receiver<String>,
}

fn listen(dir: &Path, args: &[&str]) -> Listening {
    let mut child = common::command(dir)
        .args(["logs", "listen"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("belay starts");
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let stderr: ChildStderr = child.stderr.take().unwrap();
    let (ack_tx, acks) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).expect("acks are JSON lines");
            if ack_tx.send(v).is_err() {
                break;
            }
        }
    });
    let (err_tx, stderr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if err_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut l = Listening {
        child,
        udp: None,
        tcp: None,
        acks,
        stderr: stderr_rx,
    };
    let both = args.contains(&"--listen");
    let wants_udp = both || args.contains(&"--udp");
    let wants_tcp = both || args.contains(&"--tcp");
    while (wants_udp && l.udp.is_none()) || (wants_tcp && l.tcp.is_none()) {
        let line = l
            .stderr
            .recv_timeout(HANG)
            .expect("the listener says where it listens");
        if let Some(a) = line.strip_prefix("listening on udp ") {
            l.udp = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening on tcp ") {
            l.tcp = Some(a.to_owned());
        }
    }
    l
}

impl Listening {
    fn ack(&self) -> Value {
        self.acks.recv_timeout(HANG).expect("an event is stored")
    }

    /// SIGTERM, then everything it wrote to standard error after that.
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "belay logs listen exited with {status}");
        // Everything up to the end of the pipe: the reader thread may still be forwarding the
        // last lines when the process has already exited.
        std::iter::from_fn(|| self.stderr.recv_timeout(HANG).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("logger (util-linux) runs");
    assert!(out.status.success(), "logger {args:?}: {}", text(&out));
}

fn stored_event(dir: &Path, id: &str) -> Value {
    let o = belay(dir, &["logs", "event", id]);
    assert!(o.status.success(), "{}", text(&o));
    json(&o)
}

/// A counter from the listener's final `counters: {JSON}` line.
fn counter(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("counters: "))
        .unwrap_or_else(|| panic!("no counters line in:\n{stderr}"));
    let v: Value = serde_json::from_str(line).unwrap();
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter `{name}` in {line}"))
}

#[test]
fn logger_over_udp_and_tcp_in_both_formats_reaches_the_store_and_the_playbooks() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("playbooks");
    std::fs::create_dir_all(&pb).unwrap();
    std::fs::write(
        pb.join("watch-admins.yaml"),
        "name: watch-admins\non:\n  event: auth.privilege_change\n  if: ${{ event.data.privileged }}\ntrust: log\nsteps:\n  - id: note\n    action: core.log\n    with: { message: \"${{ event.data.user }} joined ${{ event.data.group }}\" }\n",
    )
    .unwrap();
    let l = listen(
        dir.path(),
        // `--listen`: UDP and TCP on one address, as every belay listener takes it.
        &["--listen", "127.0.0.1:0", "--playbooks", "playbooks"],
    );
    let udp = port(l.udp.as_deref().unwrap()).to_owned();
    let tcp = port(l.tcp.as_deref().unwrap()).to_owned();
    let server = ["--server", "127.0.0.1"];
    let sends: [(&[&str], &str, &str); 5] = [
        (
            &[
                "--udp",
                "--port",
                &udp,
                "--rfc5424",
                "-t",
                "usermod",
                "-p",
                "authpriv.notice",
            ],
            "add 'mallory' to group 'sudo'",
            "auth.privilege_change",
        ),
        (
            &["--udp", "--port", &udp, "--rfc3164", "-t", "gpasswd"],
            "user bart added by root to group wheel",
            "auth.privilege_change",
        ),
        (
            &[
                "--tcp",
                "--port",
                &tcp,
                "--rfc5424",
                "--octet-count",
                "-t",
                "arpwatch",
            ],
            "new station 192.168.1.103 0:11:43:5e:5d:80 eth0",
            "network.new_device",
        ),
        (
            &["--tcp", "--port", &tcp, "--rfc3164", "-t", "dhcpd"],
            "DHCPACK on 10.0.0.7 to b4:b5:2f:15:4c:ec (printer) via eth0",
            "network.new_device",
        ),
        (
            &["--tcp", "--port", &tcp, "--rfc5424", "-t", "app"],
            "hello from a plain program",
            "syslog.message",
        ),
    ];
    let mut ids = Vec::new();
    for (args, message, kind) in sends {
        let mut all: Vec<&str> = server.to_vec();
        all.extend_from_slice(args);
        all.push(message);
        logger(&all);
        // One at a time, so each acknowledgement belongs to the message just sent.
        let ack = l.ack();
        assert_eq!(ack["kind"], kind, "{message}: {ack}");
        assert_eq!(ack["accepted"], "new");
        ids.push(ack["event"].as_str().unwrap().to_owned());
    }
    let stats = l.stop();
    assert_eq!(counter(&stats, "stored"), 5, "{stats}");
    assert_eq!(counter(&stats, "udp_messages"), 2, "{stats}");
    assert_eq!(counter(&stats, "tcp_messages"), 3, "{stats}");
    assert_eq!(counter(&stats, "parse_errors"), 0, "{stats}");

    // What is in the store, read back after the listener stopped.
    let e = stored_event(dir.path(), &ids[0]);
    assert_eq!(e["kind"], "auth.privilege_change");
    assert_eq!(e["data"]["user"], "mallory");
    assert_eq!(e["data"]["group"], "sudo");
    assert_eq!(e["data"]["protocol"], "rfc5424");
    assert_eq!(e["data"]["facility"], "authpriv");
    assert_eq!(e["severity"], "high");
    assert!(str_of(&e["data"]["peer"]).starts_with("udp:127.0.0.1:"));
    let e = stored_event(dir.path(), &ids[1]);
    assert_eq!(
        (e["data"]["user"].as_str(), e["data"]["group"].as_str()),
        (Some("bart"), Some("wheel"))
    );
    assert_eq!(e["data"]["actor"], "root");
    assert_eq!(e["data"]["protocol"], "rfc3164");
    let e = stored_event(dir.path(), &ids[2]);
    assert_eq!(e["data"]["mac"], "00:11:43:5e:5d:80");
    assert_eq!(e["data"]["vendor"], "Dell Inc.");
    assert!(str_of(&e["data"]["peer"]).starts_with("tcp:127.0.0.1:"));
    let e = stored_event(dir.path(), &ids[3]);
    assert_eq!(e["observables"]["macs"][0], "b4:b5:2f:15:4c:ec");
    assert_eq!(e["data"]["hostname"], "printer");
    let e = stored_event(dir.path(), &ids[4]);
    assert_eq!(e["data"]["message"], "hello from a plain program");
    assert_text_contains(&e["data"]["raw"], "hello from a plain program");

    // The two privileged group additions each ran the playbook.
    let o = belay(dir.path(), &["runs", "list", "--format", "json"]);
    let runs = json(&o);
    let mut events: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["playbook"] == "watch-admins" && r["status"] == "succeeded")
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    events.sort();
    let mut want = vec![ids[0].as_str(), ids[1].as_str()];
    want.sort();
    assert_eq!(events, want, "{runs}");
}

#[test]
fn oversize_messages_excess_connections_and_slow_senders_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let l = listen(
        dir.path(),
        &[
            "--tcp",
            "127.0.0.1:0",
            "--max-message",
            "100",
            "--max-connections",
            "3",
        ],
    );
    let addr = l.tcp.clone().unwrap();
    // A slow sender that never finishes its frame holds one slot, and nobody else up.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"<13>Nov 28 06:00:00 h slow: never fin")
        .unwrap();
    // An oversize message is truncated to the limit and flagged; the next one is intact.
    let mut big = TcpStream::connect(&addr).unwrap();
    let long = format!("<13>Nov 28 06:00:01 h big: {}\n", "A".repeat(300));
    big.write_all(long.as_bytes()).unwrap();
    let first = l.ack();
    big.write_all(b"<13>Nov 28 06:00:02 h big: after the long one\n")
        .unwrap();
    let second = l.ack();
    // A third connection fits; a fourth is refused (closed without reading).
    let mut third = TcpStream::connect(&addr).unwrap();
    third
        .write_all(b"<13>Nov 28 06:00:03 h third: while the slow one waits\n")
        .unwrap();
    let third_ack = l.ack();
    let mut fourth = TcpStream::connect(&addr).unwrap();
    fourth.set_read_timeout(Some(HANG)).unwrap();
    let mut buf = [0u8; 16];
    match fourth.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the fourth connection should be closed, got {other:?}"),
    }
    drop((big, third, fourth));
    let stats = l.stop();
    drop(slow);
    assert_eq!(counter(&stats, "truncated"), 1, "{stats}");
    assert_eq!(counter(&stats, "connections_refused"), 1, "{stats}");
    assert_eq!(counter(&stats, "stored"), 3, "{stats}");

    let e = stored_event(dir.path(), first["event"].as_str().unwrap());
    assert_eq!(e["data"]["truncated"], true);
    assert_eq!(e["data"]["raw"].as_str().unwrap().len(), 100);
    let e = stored_event(dir.path(), second["event"].as_str().unwrap());
    assert_eq!(e["data"]["message"], "after the long one");
    assert!(e["data"].get("truncated").is_none());
    let e = stored_event(dir.path(), third_ack["event"].as_str().unwrap());
    assert_eq!(e["data"]["appname"], "third");
}

#[test]
fn malformed_lines_over_tcp_are_kept_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let l = listen(dir.path(), &["--tcp", "127.0.0.1:0"]);
    let mut s = TcpStream::connect(l.tcp.as_deref().unwrap()).unwrap();
    // Octet counting chosen by the first byte; then a bad length falls back to lines.
    s.write_all(b"5 <1>hi").unwrap();
    let a = l.ack();
    s.write_all(b"<14>2010-08-30T23:00:05Z\n").unwrap();
    let b = l.ack();
    s.write_all(b"\xff\xfe not utf-8 \x00\n").unwrap();
    let c = l.ack();
    drop(s);
    let stats = l.stop();
    assert!(counter(&stats, "parse_errors") >= 2, "{stats}");
    assert_eq!(counter(&stats, "framing_errors"), 1, "{stats}");
    for ack in [&a, &b, &c] {
        assert_eq!(ack["kind"], "syslog.message");
    }
    let e = stored_event(dir.path(), b["event"].as_str().unwrap());
    assert_eq!(e["data"]["raw"], "<14>2010-08-30T23:00:05Z");
    assert!(e["data"]["parse_error"].is_string());
    let e = stored_event(dir.path(), c["event"].as_str().unwrap());
    assert_eq!(e["data"]["latin1"], true);
}

#[test]
fn logs_parse_prints_one_event_per_record() {
    let Some(corpus) = belay_testkit::corpus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dlp = corpus.join("dlp/azure-sentinel_SymantecDLP_selected.json");
    let eve = corpus.join("ids/suricata/eve-alerts.jsonl");
    let o = belay(
        dir.path(),
        &[
            "logs",
            "parse",
            dlp.to_str().unwrap(),
            eve.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let events = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(events.len(), 4 + 13);
    assert!(events[..4].iter().all(|e| e["kind"] == "dlp.alert"));
    assert!(events[4..].iter().all(|e| e["kind"] == "ids.alert"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("17 event(s): 4 dlp.alert, 13 ids.alert"));
    // Suricata's records say so in `source` (playbooks match `event.source == "suricata"`),
    // and parsing the same file again gives the same ids.
    assert!(
        events[4..].iter().all(|e| e["source"] == "suricata"),
        "{:?}",
        events[4]
    );
    assert!(
        events[4]["data"]["received_from"]
            .as_str()
            .unwrap()
            .contains("eve-alerts.jsonl")
    );
    let again = belay(dir.path(), &["logs", "parse", eve.to_str().unwrap()]);
    let again = json_lines(&String::from_utf8_lossy(&again.stdout));
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&events[4..]), "stable ids across parses");
    let o = belay(dir.path(), &["logs", "parse", "missing.log"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("cannot read missing.log"));
}

/// rsyslog as a relay: `logger` → rsyslog (UDP, RFC 3164) → belay (TCP, octet-counted
/// RFC 5424, as rsyslog's `omfwd` writes it).
#[test]
fn rsyslog_forwarding_over_octet_counted_tcp_reaches_the_store() {
    let Some(rsyslogd) = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| belay_testkit::skip::installed(Path::new(p)))
    else {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            "rsyslogd is not installed (apt-get install rsyslog; .ci/run does it)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let l = listen(dir.path(), &["--tcp", "127.0.0.1:0"]);
    let belay_port = port(l.tcp.as_deref().unwrap()).to_owned();
    // A free UDP port for rsyslog's input (rsyslog cannot bind port 0 and report it).
    let relay_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = dir.path().join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{w}\")\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{relay_port}\")\n\
             action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{belay_port}\" protocol=\"tcp\" \
             TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
            w = work.display()
        ),
    )
    .unwrap();
    let mut relay = Command::new(rsyslogd)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsyslogd starts");
    // Ready when its UDP port is taken.
    let deadline = std::time::Instant::now() + HANG;
    while std::net::UdpSocket::bind(("127.0.0.1", relay_port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "rsyslogd never bound its port"
        );
        if let Ok(Some(status)) = relay.try_wait() {
            let mut err = String::new();
            relay
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("rsyslogd exited with {status}: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let relay_port = relay_port.to_string();
    logger(&[
        "--server",
        "127.0.0.1",
        "--port",
        &relay_port,
        "--udp",
        "--rfc3164",
        "-t",
        "gpasswd",
        "user eve added by root to group docker",
    ]);
    let ack = l.ack();
    let _ = relay.kill();
    let _ = relay.wait();
    let stats = l.stop();
    assert_eq!(ack["kind"], "auth.privilege_change", "{ack}");
    assert_eq!(counter(&stats, "framing_errors"), 0, "{stats}");
    let e = stored_event(dir.path(), ack["event"].as_str().unwrap());
    assert_eq!(e["data"]["user"], "eve");
    assert_eq!(e["data"]["group"], "docker");
    assert_eq!(e["data"]["actor"], "root");
    assert_eq!(
        e["data"]["protocol"], "rfc5424",
        "rsyslog re-wrote it as RFC 5424"
    );
    assert_eq!(e["severity"], "high");
}

/// A line of NUL bytes, and one starting with `-`, are parse errors that `belay logs parse`
/// counts and names, not lines dropped or shortened in silence.
#[test]
fn parse_reports_nul_lines_and_a_leading_dash() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("odd.log");
    std::fs::write(&log, b"\0\0\0\0\n-1 failed logins for root\n").unwrap();
    let o = belay(dir.path(), &["logs", "parse", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_contains_all(
        &err,
        &[
            "odd.log:1: the message is 4 NUL byte(s) and no text",
            "odd.log:2: no header field found, and `-`",
            "2 line(s) with a parse error",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["data"]["message"], "-1 failed logins for root");
}
