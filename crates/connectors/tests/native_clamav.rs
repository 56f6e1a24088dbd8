//! `scan.endpoint` against a real clamd (`clamav::Sandbox`) with a test signature.

use belay_connectors::native::clamav::{Clamav, Sandbox};
use belay_connectors::{ActionError, Call, Connector, ErrorKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod common;

const SAMPLE: &[u8] = b"belay-test-malware-7f3c2a\n";

async fn sandbox() -> Option<Sandbox> {
    if !common::usable("ClamAV", Sandbox::available()) {
        return None;
    }
    Some(
        Sandbox::start(&[("Belay.Test.Malware", SAMPLE)])
            .await
            .expect("clamd sandbox"),
    )
}

async fn scan(c: &Clamav, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action: "scan.endpoint",
        input: &input,
        idempotency_key: None,
        before: None,
    })
    .await
}

#[tokio::test]
async fn infected_and_clean_files() {
    let Some(sb) = sandbox().await else {
        return;
    };
    let laptop = sb.root().join("laptop-7");
    std::fs::create_dir_all(laptop.join("Downloads")).expect("mkdir");
    std::fs::write(laptop.join("notes.txt"), "nothing to see\n").expect("write");
    std::fs::write(laptop.join("Downloads/invoice.exe"), SAMPLE).expect("write");
    let mut config = sb.config();
    config.hosts.insert("laptop-7".into(), laptop.clone());
    let clam = Clamav::new("scan", config).expect("connector");

    let out = scan(&clam, json!({"host": "laptop-7"}))
        .await
        .expect("scan");
    let sha = hex::encode(Sha256::digest(SAMPLE));
    assert_eq!(out["verdict"], json!("infected"), "{out}");
    assert_eq!(out["infected"], json!(true));
    assert_eq!(out["scanned"], json!(2));
    assert_eq!(out["indicators"], json!([sha]));
    let d = &out["detections"][0];
    assert_eq!(
        d["path"],
        json!(
            laptop
                .join("Downloads/invoice.exe")
                .canonicalize()
                .expect("path")
        )
    );
    assert_eq!(d["signature"], json!("Belay.Test.Malware.UNOFFICIAL"));
    assert_eq!(d["sha256"], json!(sha));

    // A clean file, by path under the default root.
    let out = scan(&clam, json!({"path": laptop.join("notes.txt")}))
        .await
        .expect("scan");
    assert_eq!(out["verdict"], json!("clean"), "{out}");
    assert_eq!(out["infected"], json!(false));
    assert_eq!(out["scanned"], json!(1));
    assert_eq!(out["detections"], json!([]));
}

#[tokio::test]
async fn refused_and_missing_paths() {
    let Some(sb) = sandbox().await else {
        return;
    };
    let clam = Clamav::new("scan", sb.config()).expect("connector");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("x"), SAMPLE).expect("write");
    // A link inside the root to a file outside it is outside too.
    std::os::unix::fs::symlink(outside.path().join("x"), sb.root().join("link")).expect("link");
    for (input, want) in [
        (json!({"path": "/etc/passwd"}), "outside"),
        (json!({"path": outside.path().join("x")}), "outside"),
        (json!({"path": sb.root().join("link")}), "outside"),
        (json!({"path": sb.root().join("../db")}), "outside"),
        (json!({"path": sb.root().join("missing")}), "No such file"),
        (json!({"host": "unknown-host"}), "no scan root"),
    ] {
        let err = scan(&clam, input.clone()).await.expect_err("must fail");
        assert_eq!(err.kind, ErrorKind::Permanent, "{input}: {err}");
        assert!(err.message.contains(want), "{input}: {err}");
    }
    // The empty default root is clean.
    let out = scan(&clam, json!({})).await.expect("scan");
    assert_eq!(out["verdict"], json!("clean"), "{out}");
}

#[test]
fn built_from_configuration() {
    let settings = r#"
        socket = "/run/clamav/clamd.ctl"
        root = "/srv/endpoints"
        hosts = { "laptop-7" = "/srv/endpoints/laptop-7" }
    "#;
    let c = common::build("scan", "clamav", settings).expect("clamav connector");
    assert_eq!(c.family(), "scan");
    assert!(common::build("scan", "clamav", "socket = \"/s\"\nroot = \"srv\"").is_err());
}
