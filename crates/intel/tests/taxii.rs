//! TAXII 2.1 import against a real server: OASIS's reference implementation, medallion
//! (`pip install medallion`), started on loopback with the corpus's data file.

use belay_intel::import::{ImportOptions, NoProgress, import};
use belay_intel::{Index, IntelStore, Kind};
use belay_testkit::corpus_file;
use belay_testkit::net::{Server, free_port};
use std::process::Command;
use std::time::Duration;

/// Starts medallion on a free loopback port with pages of `page_size` objects; `None` when the
/// corpus or medallion (PyPI) is missing (the test is skipped, saying why).
fn medallion(dir: &std::path::Path, page_size: usize) -> Option<(Server, u16)> {
    let data = corpus_file("stix/taxii/medallion-default_data.json")?;
    let installed = Command::new("medallion")
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !installed {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            "medallion (OASIS's TAXII 2.1 server) is not installed: `pip install medallion` (.ci/run installs it)",
        );
        return None;
    }
    let copy = dir.join("data.json");
    std::fs::copy(&data, &copy).expect("copy the TAXII data file");
    let config = serde_json::json!({
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": copy,
        },
        "users": {"analyst": "s3cret pass"},
        "taxii": {"max_page_size": page_size},
    });
    let config_path = dir.join("medallion.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let port = free_port();
    let server = Server::start(
        Command::new("medallion")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg(&config_path),
        port,
        Duration::from_secs(60),
    );
    Some((server, port))
}

const COLLECTION: &str = "91a7b528-80eb-42ed-a74d-c6fbd5a26116";

#[test]
fn a_taxii_collection_imports_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    // Two objects per page: the import must follow the server's paging to see all 8.
    let Some((_server, port)) = medallion(dir.path(), 2) else {
        return;
    };
    let data = dir.path().join("data");
    let source = format!(
        "taxii+http://analyst:s3cret%20pass@127.0.0.1:{port}/trustgroup1/collections/{COLLECTION}/"
    );
    let opts = ImportOptions {
        feed: "oasis-taxii".into(),
        ..Default::default()
    };
    let r = import(&data, &source, &opts, &mut NoProgress).unwrap();
    // The latest versions of the collection's indicators: a SHA-256 and a URL. (The URL
    // indicator has an older version with another URL, which TAXII does not return by
    // default.) The 7 objects come 2 per page: the first page holds only one indicator.
    assert_eq!(r.total, 2, "{:?}", r.added);
    assert!(
        !r.source.contains("s3cret"),
        "credentials leak: {}",
        r.source
    );
    let ix = Index::load(&IntelStore::open(&data).unwrap()).unwrap();
    let now = belay_model::now_ms();
    for (v, k) in [
        (
            "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c",
            Kind::Hash,
        ),
        ("http://x4z9arb.cn/4712", Kind::Url),
    ] {
        let found = ix.lookup(v, None, now).unwrap();
        assert!(found.found, "{v}");
        assert_eq!(found.kind, k);
        assert_eq!(found.sources, ["oasis-taxii"]);
    }
    assert!(
        !ix.lookup("http://z4z10farb.cn/4712", None, now)
            .unwrap()
            .found
    );

    // Wrong credentials are refused with the server's answer, and change nothing.
    let bad = format!(
        "taxii+http://analyst:wrong@127.0.0.1:{port}/trustgroup1/collections/{COLLECTION}/"
    );
    let err = import(&data, &bad, &opts, &mut NoProgress).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong"), "credentials leak: {text}");
    let again = Index::load(&IntelStore::open(&data).unwrap()).unwrap();
    assert!(
        again
            .lookup("http://x4z9arb.cn/4712", None, now)
            .unwrap()
            .found
    );
}
