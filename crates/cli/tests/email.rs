//! End-to-end tests of `belay email`: a real Dovecot IMAP server on loopback, started by the
//! test with its own configuration in a temporary directory, fed with corpus messages.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use belay_testkit::{corpus, corpus_file};
use common::mail::{Dovecot, chown_tree, dovecot_binary, start_dovecot};
use common::{belay, json, json_lines, text};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/playbooks")
}

/// A playbook directory holding only the phishing triage example.
fn playbooks(dir: &Path) -> PathBuf {
    let pb = dir.join("playbooks");
    std::fs::create_dir_all(&pb).unwrap();
    std::fs::copy(
        examples().join("triage-reported-phish.yaml"),
        pb.join("triage-reported-phish.yaml"),
    )
    .unwrap();
    pb
}

impl Dovecot {
    /// Delivers a message into alice's INBOX the way an MDA does (tmp/, then new/).
    fn deliver(&self, name: &str, raw: &[u8]) {
        let tmp = self.maildir.join("tmp").join(name);
        std::fs::write(&tmp, raw).unwrap();
        chown_tree(&tmp, self.mail_owner);
        std::fs::rename(&tmp, self.maildir.join("new").join(name)).unwrap();
    }

    fn count(&self, folder: &str) -> usize {
        let base = if folder == "INBOX" {
            self.maildir.clone()
        } else {
            self.maildir.join(format!(".{folder}"))
        };
        ["new", "cur"]
            .iter()
            .map(|s| std::fs::read_dir(base.join(s)).map_or(0, |d| d.count()))
            .sum()
    }

    /// `belay email ingest --once` of INBOX's reports (handled ones moved to "Handled Reports"),
    /// logged in as alice with her password.
    fn ingest(&self, dir: &Path, pb: &Path) -> std::process::Output {
        let folders = ["--folder", "INBOX", "--move-to", "Handled Reports"];
        self.ingest_as_alice(dir, pb, "s3cret-pw", &folders)
    }

    /// `belay email ingest --once` from this server, logged in as alice with `password`, the
    /// playbooks in `pb`; `extra` arguments added.
    fn ingest_as_alice(
        &self,
        dir: &Path,
        pb: &Path,
        password: &str,
        extra: &[&str],
    ) -> std::process::Output {
        let imap = format!("imap://127.0.0.1:{}", self.port);
        common::command(dir)
            .env("PHISH_PW", password)
            .args(["email", "ingest", "--imap", &imap, "--user", "alice"])
            .args(["--password-env", "PHISH_PW", "--once"])
            .args(["--playbooks", pb.to_str().unwrap()])
            .args(extra)
            .output()
            .expect("belay runs")
    }
}

/// `belay email ingest SOURCE… --playbooks PB` in `dir`.
fn ingest_files(dir: &Path, source: &[&str], pb: &Path) -> std::process::Output {
    let mut args = vec!["email", "ingest"];
    args.extend_from_slice(source);
    args.extend(["--playbooks", pb.to_str().unwrap()]);
    belay(dir, &args)
}

fn acks(stdout: &[u8]) -> Vec<Value> {
    json_lines(&String::from_utf8_lossy(stdout))
}

fn event_id(raw: &[u8]) -> String {
    use sha2::Digest;
    format!("email-{}", hex::encode(sha2::Sha256::digest(raw)))
}

/// The corpus, a temporary directory with a Dovecot (in `dovecot/`) and the playbooks.
/// The corpus, a work folder, Dovecot serving a mailbox in it, and the playbooks; `None` when
/// the corpus is missing (the test is skipped).
fn imap_setup() -> Option<(PathBuf, tempfile::TempDir, Dovecot, PathBuf)> {
    let corpus = corpus()?;
    dovecot_binary()?;
    let dir = tempfile::tempdir().unwrap();
    let dovecot = start_dovecot(&dir.path().join("dovecot"));
    let pb = playbooks(dir.path());
    Some((corpus, dir, dovecot, pb))
}

const SAMPLES: [&str; 3] = ["sample-6229.eml", "sample-6532.eml", "sample-3277.eml"];

#[test]
fn imap_reports_become_stored_events_and_move_to_the_handled_folder() {
    let Some((corpus, dir, dovecot, pb)) = imap_setup() else {
        return;
    };
    let work = dir.path().join("belay");
    std::fs::create_dir_all(&work).unwrap();

    for (i, name) in SAMPLES.iter().enumerate() {
        let raw = std::fs::read(corpus.join("phishing").join(name)).unwrap();
        dovecot.deliver(&format!("17000000{i:02}.M1P1.test,S={}", raw.len()), &raw);
    }
    assert_eq!(dovecot.count("INBOX"), 3);

    let o = dovecot.ingest(&work, &pb);
    assert!(
        o.status.success(),
        "{}\ndovecot log:\n{}",
        text(&o),
        std::fs::read_to_string(&dovecot.log).unwrap_or_default()
    );
    let acks = acks(&o.stdout);
    assert_eq!(acks.len(), 3, "{}", text(&o));
    assert!(acks.iter().all(|a| a["accepted"] == "new"), "{acks:?}");
    assert_eq!(
        dovecot.count("INBOX"),
        0,
        "handled messages leave the INBOX"
    );
    assert_eq!(
        dovecot.count("Handled Reports"),
        3,
        "and arrive in the move-to folder"
    );

    let ids: Vec<String> = SAMPLES
        .iter()
        .map(|n| event_id(&std::fs::read(corpus.join("phishing").join(n)).unwrap()))
        .collect();
    let mut got: Vec<String> = acks
        .iter()
        .map(|a| a["event"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        got, want,
        "one event per message, named by the hash of its bytes"
    );

    // Each stored event started the triage playbook, which re-parsed the stored message.
    let sample_6229 = acks.iter().find(|a| a["event"] == ids[0].as_str()).unwrap();
    assert_eq!(sample_6229["severity"], "high", "{sample_6229}");
    let run_id = sample_6229["runs"][0].as_str().expect("a run");
    let o = belay(&work, &["runs", "show", run_id, "--format", "json"]);
    let report: Value = json(&o);
    assert_eq!(report["status"], "succeeded", "{report}");
    let parse = &report["steps"][0]["output"];
    let urls = parse["urls"].as_array().unwrap();
    assert!(
        urls.iter()
            .any(|u| u.as_str().unwrap().starts_with("http://45.90.99.64/t/")),
        "the IP-literal link of sample-6229 is extracted: {urls:?}"
    );
    assert!(
        parse["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["text_mismatch"] == true && l["text"] == "https://bitcoinsuisse.com/"),
        "{parse}"
    );

    // Delivered again (a user reports the same message twice): acknowledged as a duplicate,
    // starts nothing, and is moved all the same.
    let raw = std::fs::read(corpus.join("phishing").join(SAMPLES[1])).unwrap();
    dovecot.deliver("1700000099.M2P1.test", &raw);
    let o = dovecot.ingest(&work, &pb);
    assert!(o.status.success(), "{}", text(&o));
    let again = self::acks(&o.stdout);
    assert_eq!(again.len(), 1, "{}", text(&o));
    assert_eq!(again[0]["accepted"], "duplicate");
    assert_eq!(again[0]["event"], ids[1].as_str());
    assert_eq!(again[0]["runs"].as_array().unwrap().len(), 0);
    assert_eq!(dovecot.count("INBOX"), 0);
    assert_eq!(dovecot.count("Handled Reports"), 4);
}

#[test]
fn a_wrong_imap_password_is_a_clear_error_and_moves_nothing() {
    let Some((corpus, dir, dovecot, pb)) = imap_setup() else {
        return;
    };
    let raw = std::fs::read(corpus.join("phishing").join(SAMPLES[0])).unwrap();
    dovecot.deliver("1700000000.M1P1.test", &raw);
    let o = dovecot.ingest_as_alice(dir.path(), &pb, "wrong", &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("login as alice"), "{}", text(&o));
    assert_eq!(dovecot.count("INBOX"), 1);
}

#[test]
fn eml_files_and_a_maildir_are_ingested_too() {
    let Some(corpus) = corpus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pb = playbooks(dir.path());
    let eml = corpus.join("phishing").join(SAMPLES[2]);
    let o = ingest_files(dir.path(), &["--eml", eml.to_str().unwrap()], &pb);
    assert!(o.status.success(), "{}", text(&o));
    let a = acks(&o.stdout);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["accepted"], "new");
    let o = ingest_files(dir.path(), &["--eml", eml.to_str().unwrap()], &pb);
    assert_eq!(
        acks(&o.stdout)[0]["accepted"],
        "duplicate",
        "same bytes from the same source, same event"
    );

    let md = dir.path().join("reports");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::copy(&eml, md.join("new/1700000000.1.host")).unwrap();
    std::fs::write(md.join("new/1700000001.2.host"), b"\r\n\r\n").unwrap();
    let o = ingest_files(
        dir.path(),
        &["--maildir", md.to_str().unwrap(), "--once"],
        &pb,
    );
    assert!(o.status.success(), "{}", text(&o));
    let a2 = acks(&o.stdout);
    assert_eq!(a2.len(), 1);
    assert_eq!(
        a2[0]["accepted"], "new",
        "ids are unique per source: the maildir's copy is its own report"
    );
    assert!(md.join(".Handled/cur/1700000000.1.host:2,S").is_file());
    assert!(
        md.join("new/1700000001.2.host").is_file(),
        "what is not a message stays where it was"
    );
    assert!(text(&o).contains("the message is empty"), "{}", text(&o));
}

#[test]
fn email_parse_prints_the_action_output() {
    let Some(eml) = corpus_file("phishing/sample-803.eml") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let o = belay(dir.path(), &["email", "parse", eml.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = json(&o);
    let links = out["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l["punycode"] == true), "{out}");
    let o = belay(
        dir.path(),
        &[
            "email",
            "parse",
            dir.path().join("nope.eml").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot read"), "{}", text(&o));
}

/// `belay serve` polls a mailbox declared in belay.toml (`[[sources]] type = "imap"`, the
/// password from a secret): each report becomes its stored event and leaves the folder, and
/// the source's last success is in `GET /api/v1/sources`.
#[test]
fn belay_serve_polls_an_imap_source_from_its_config() {
    let Some((corpus, dir, dovecot, pb)) = imap_setup() else {
        return;
    };
    let work = dir.path().join("belay");
    std::fs::create_dir_all(&work).unwrap();
    for (i, name) in SAMPLES.iter().enumerate() {
        let raw = std::fs::read(corpus.join("phishing").join(name)).unwrap();
        dovecot.deliver(&format!("17000000{i:02}.M1P1.test,S={}", raw.len()), &raw);
    }
    std::fs::write(
        work.join("belay.toml"),
        format!(
            "playbooks = \"{}\"\n[[sources]]\nname = \"phish\"\ntype = \"imap\"\n\
             url = \"imap://127.0.0.1:{}\"\nuser = \"alice\"\n\
             password = \"${{{{ secrets.PHISH_PW }}}}\"\nmove_to = \"Handled Reports\"\npoll = \"1s\"\n",
            pb.display(),
            dovecot.port
        ),
    )
    .unwrap();
    let viewer = {
        let o = common::command(&work)
            .args(["tokens", "create", "watcher", "--roles", "viewer"])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    let mut server = common::command(&work)
        .env("PHISH_PW", "s3cret-pw")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("belay serve starts");
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let port: u16 = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("belay serve says where it listens");
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while dovecot.count("Handled Reports") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(dovecot.count("Handled Reports"), 3, "every report handled");
    assert_eq!(dovecot.count("INBOX"), 0);
    for name in SAMPLES {
        let id = event_id(&std::fs::read(corpus.join("phishing").join(name)).unwrap());
        let o = belay(&work, &["logs", "event", &id]);
        assert!(o.status.success(), "event {id} stored: {}", text(&o));
    }
    // The source's status, over the API.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /api/v1/sources HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {viewer}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let phish = &body["sources"][0];
    assert_eq!(phish["name"], "phish", "{body}");
    assert_eq!(phish["kind"], "imap");
    assert_eq!(phish["events"], 3, "{body}");
    assert!(
        phish["last_success"].is_string() && phish["last_error"].is_null(),
        "{body}"
    );
    assert!(!answer.contains("s3cret-pw"), "the password is never shown");
    let _ = server.kill();
    let _ = server.wait();
}
