//! Secrets at rest through the real binary: a secret set with `belay secrets set` (value on
//! standard input) is used by a connector (the lab's EDR simulator checks it as its bearer
//! token) through `belay serve` and `belay run`, survives a key rotation while the server
//! runs, and never appears in a file under the data directory, in the server's log, in an API
//! answer or in the audit export — neither as text nor in base64.

use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

mod common;
use common::{command, ok, text};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `belay lab serve` with `token`; its base URL.
fn lab(token: &str) -> (Killed, String) {
    let mut child = Command::new(common::BIN)
        .args(["lab", "serve", "--addr", "127.0.0.1:0"])
        .env("BELAY_LAB_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("belay lab serve starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("first line names the URL: {first}"))
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), base)
}

/// `belay serve` on an ephemeral port, its standard error (debug logs) written to `log`.
fn serve(dir: &Path, log: &Path) -> (Killed, u16) {
    let mut child = command(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("BELAY_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("belay serve starts");
    let stderr = child.stderr.take().unwrap();
    let killed = Killed(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut file = std::fs::File::create(log).unwrap();
    let port = loop {
        let line = lines
            .next()
            .expect("belay serve says where it listens")
            .unwrap();
        writeln!(file, "{line}").unwrap();
        if let Some(p) = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
        {
            break p;
        }
    };
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{l}");
        }
    });
    (killed, port)
}

/// One HTTP/1.1 request; the status and the raw body.
fn call(port: u16, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// `belay ARGS` with `stdin` as standard input.
fn with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = command(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

const PLAYBOOK: &str = r#"name: contain
on: { event: contain }
trust: log
steps:
  - id: isolate
    action: edr.isolate_host
    with: { host: "${{ event.data.host }}", reason: "secrets test" }
"#;

#[test]
fn a_secret_set_through_the_cli_is_used_by_a_connector_and_stored_nowhere_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = format!("lab-bearer-{}-Zq9x", std::process::id());
    let other = format!("api-set-{}-Wk3v", std::process::id());
    let (_lab, base) = lab(&secret);
    std::fs::create_dir_all(d.join("playbooks")).unwrap();
    std::fs::create_dir_all(d.join("keys")).unwrap();
    std::fs::write(d.join("playbooks/contain.yaml"), PLAYBOOK).unwrap();
    std::fs::write(
        d.join("belay.toml"),
        format!(
            "playbooks = \"playbooks\"\n\
             [secrets]\nkey_file = \"keys/secrets.key\"\n\
             [[users]]\nname = \"ada\"\nroles = [\"admin\"]\n\
             [[users]]\nname = \"bob\"\nroles = [\"viewer\"]\n\
             [connectors.edr]\nspec = \"edr-lab\"\nbase_url = \"{base}\"\n\
             auth = {{ type = \"bearer\", token = \"${{{{ secrets.LAB_TOKEN }}}}\" }}\ntimeout = \"5s\"\n"
        ),
    )
    .unwrap();

    // Before the key and the secret exist, commands that build the connectors refuse.
    let o = command(d).args(["runs", "list"]).output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("keys/secrets.key"), "{}", text(&o));

    ok(&command(d).args(["secrets", "init-key"]).output().unwrap());
    let key_path = d.join("keys/secrets.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Never overwritten.
    assert!(
        !command(d)
            .args(["secrets", "init-key"])
            .output()
            .unwrap()
            .status
            .success()
    );

    // Admin only; the value comes from standard input.
    let refused = with_stdin(d, &["secrets", "set", "LAB_TOKEN", "--as", "bob"], &secret);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("admin"), "{}", text(&refused));
    let mut produced = String::new();
    let o = with_stdin(
        d,
        &["secrets", "set", "LAB_TOKEN", "--as", "ada"],
        &format!("{secret}\n"),
    );
    produced.push_str(&ok(&o));
    let listed = ok(&command(d)
        .args(["secrets", "list", "--format", "json"])
        .output()
        .unwrap());
    produced.push_str(&listed);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["secrets"][0]["name"], "LAB_TOKEN");
    assert!(listed["secrets"][0]["key_id"].as_str().unwrap().len() == 16);

    // The server resolves it for the connector (the lab refuses any other token).
    let token = ok(&command(d)
        .args(["tokens", "create", "ada", "--roles", "admin"])
        .output()
        .unwrap());
    let token = token.lines().next().unwrap().trim().to_owned();
    let log = d.join("serve.log");
    let (server, port) = serve(d, &log);
    let mut answers = String::new();
    let run_to_success = |host: &str, answers: &mut String| {
        let (status, body) = call(
            port,
            "POST",
            "/api/v1/events",
            &token,
            Some(&json!({ "kind": "contain", "data": { "host": host } })),
        );
        answers.push_str(&body);
        assert_eq!(status, 202, "{body}");
        let run = serde_json::from_str::<Value>(&body).unwrap()["run_ids"][0]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..300 {
            let (_, body) = call(port, "GET", &format!("/api/v1/runs/{run}"), &token, None);
            answers.push_str(&body);
            let v: Value = serde_json::from_str(&body).unwrap();
            match v["run"]["status"].as_str().or(v["status"].as_str()) {
                Some("succeeded") => return,
                Some("failed") => panic!("the run failed: {v}"),
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        panic!("the run did not finish");
    };
    run_to_success("eng-ws-101", &mut answers);

    // The API: names only; a secret set through it is sealed too; deleting is audited.
    let (status, body) = call(port, "GET", "/api/v1/secrets", &token, None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("LAB_TOKEN"), "{body}");
    answers.push_str(&body);
    let (status, body) = call(
        port,
        "POST",
        "/api/v1/secrets/OTHER_TOKEN",
        &token,
        Some(&json!({ "value": other })),
    );
    assert_eq!(status, 200, "{body}");
    answers.push_str(&body);
    let (status, body) = call(
        port,
        "POST",
        "/api/v1/secrets/bad-name",
        &token,
        Some(&json!({ "value": "x" })),
    );
    assert_eq!(status, 400, "{body}");

    // Rotating the key while the server runs: it keeps working, and a new process opens the
    // secret under the new key.
    let old_key = std::fs::read_to_string(&key_path).unwrap();
    produced.push_str(&ok(&command(d)
        .args(["secrets", "rotate-key", "--as", "ada"])
        .output()
        .unwrap()));
    let new_key = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(old_key, new_key);
    assert_eq!(
        new_key.lines().count(),
        1,
        "the old key is dropped once every secret moved"
    );
    let listed: Value = serde_json::from_str(&ok(&command(d)
        .args(["secrets", "list", "--format", "json"])
        .output()
        .unwrap()))
    .unwrap();
    for s in listed["secrets"].as_array().unwrap() {
        assert!(s["rotated_at"].is_i64(), "{s}");
    }
    run_to_success("eng-ws-102", &mut answers);
    std::fs::write(
        d.join("ev.json"),
        r#"{"kind":"contain","data":{"host":"fin-ws-014"}}"#,
    )
    .unwrap();
    let o = command(d)
        .args([
            "run",
            "playbooks/contain.yaml",
            "--event",
            "ev.json",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    produced.push_str(&text(&o));
    assert!(text(&o).contains("\"succeeded\""), "{}", text(&o));
    produced.push_str(&ok(&command(d)
        .args(["secrets", "delete", "OTHER_TOKEN", "--as", "ada"])
        .output()
        .unwrap()));
    drop(server);

    let audit = ok(&command(d).args(["audit", "export"]).output().unwrap());
    for kind in ["secret.set", "secret.deleted", "secrets.key_rotated"] {
        assert!(audit.contains(kind), "no {kind} in the audit trail");
    }
    let serve_log = std::fs::read_to_string(&log).unwrap();
    assert!(!serve_log.is_empty());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for value in [&secret, &other] {
        for needle in [value.clone(), b64(value)] {
            assert!(!audit.contains(&needle), "in the audit export");
            assert!(!serve_log.contains(&needle), "in the server's log");
            assert!(!answers.contains(&needle), "in an API answer");
            assert!(!produced.contains(&needle), "in the CLI's output");
            for f in files_under(&d.join("data")) {
                let bytes = std::fs::read(&f).unwrap();
                assert!(!contains(&bytes, &needle), "in {}", f.display());
            }
        }
    }
}
