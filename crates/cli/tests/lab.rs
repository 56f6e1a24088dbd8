//! `belay lab serve` and the HTTP connectors of `belay.toml`, through the real binary: a
//! playbook contains a host through the lab's EDR simulator with 20% injected faults, the run
//! is rolled back, and the lab token appears nowhere belay writes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

mod common;
use common::{json, text};

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `belay ARGS` in `dir` (see `common::command`), with the lab token as a secret and debug logs.
fn belay(dir: &Path, secret: &str, args: &[&str]) -> Output {
    common::command(dir)
        .env("BELAY_SECRET_LAB_TOKEN", secret)
        .env("BELAY_LOG", "debug")
        .args(args)
        .output()
        .expect("belay runs")
}

const PLAYBOOK: &str = r#"name: contain
on: { event: contain }
trust: log
steps:
  - id: isolate
    action: edr.isolate_host
    with: { host: "${{ event.data.host }}", reason: "lab test" }
  - id: watch
    action: edr.set_monitoring
    with: { host: "${{ event.data.host }}", level: high }
"#;

#[test]
fn a_playbook_reaches_the_lab_through_the_http_connector_and_no_secret_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = format!("lab-secret-{}", std::process::id());
    let mut child = Command::new(common::BIN)
        .args([
            "lab",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--fault-rate",
            "0.2",
            "--seed",
            "5",
        ])
        .env("BELAY_LAB_TOKEN", &secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("belay lab serve starts");
    let stdout = child.stdout.take().unwrap();
    let served = Served(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("first line names the URL: {first}"))
        .to_owned();
    let banner: Vec<String> = lines.by_ref().take(8).map(|l| l.unwrap()).collect();
    // Keep reading: a closed pipe would stop the server at its next line of output.
    std::thread::spawn(move || for _ in lines {});
    assert!(
        banner
            .iter()
            .any(|l| l.contains("EDR simulator") && l.contains("/edr/v1")),
        "{banner:?}"
    );
    assert!(
        !banner.iter().any(|l| l.contains(&secret)),
        "a given token is not echoed"
    );

    std::fs::write(
        d.join("belay.toml"),
        format!(
            "[connectors.edr]\nspec = \"edr-lab\"\nbase_url = \"{base}\"\nauth = {{ type = \"bearer\", token = \"${{{{ secrets.LAB_TOKEN }}}}\" }}\ntimeout = \"1s\"\nretries = 8\nbackoff = \"10ms\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("pbs")).unwrap();
    std::fs::write(d.join("pbs/contain.yaml"), PLAYBOOK).unwrap();
    std::fs::write(
        d.join("ev.json"),
        r#"{"kind": "contain", "data": {"host": "eng-ws-101"}}"#,
    )
    .unwrap();
    let mut produced = String::new();
    let o = belay(
        d,
        &secret,
        &[
            "run",
            "pbs/contain.yaml",
            "--event",
            "ev.json",
            "--format",
            "json",
        ],
    );
    produced.push_str(&text(&o));
    let report = json(&o);
    assert_eq!(report["status"], "succeeded", "{report}");
    let run = report["run_id"].as_str().unwrap().to_owned();
    let o = belay(d, &secret, &["rollback", "--run", &run, "--as", "alice"]);
    produced.push_str(&text(&o));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 reverted"), "{}", text(&o));
    let o = belay(d, &secret, &["audit", "export"]);
    produced.push_str(&text(&o));
    assert!(o.status.success(), "{}", text(&o));

    // A missing secret is a clear error naming it.
    let o = Command::new(common::BIN)
        .current_dir(d)
        .env_remove("BELAY_SECRET_LAB_TOKEN")
        .env_remove("LAB_TOKEN")
        .args(["runs", "list"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("secret `LAB_TOKEN` is not set"),
        "{}",
        text(&o)
    );

    drop(served);
    assert!(produced.contains(&run));
    assert!(
        !produced.contains(&secret),
        "the secret is in belay's output"
    );
    for entry in walk(&d.join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
