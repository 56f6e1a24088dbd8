//! Feeds over HTTP: a FireHOL list and a MISP feed (manifest, then each event beside it),
//! served from the corpus by Python's `http.server` on loopback.

use belay_intel::import::{ImportOptions, NoProgress, import};
use belay_intel::{Format, Index, IntelStore};
use belay_testkit::corpus_file;
use belay_testkit::net::{Server, free_port};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn serve(dir: PathBuf) -> (Server, u16) {
    let port = free_port();
    let server = Server::start(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg("--directory")
            .arg(dir),
        port,
        Duration::from_secs(30),
    );
    (server, port)
}

#[test]
fn feeds_import_over_http_and_misp_events_are_fetched_beside_the_manifest() {
    let Some(feeds) = corpus_file("threat-intel") else {
        return;
    };
    let (_server, port) = serve(feeds);
    let dir = tempfile::tempdir().unwrap();
    let opts = |feed: &str| ImportOptions {
        feed: feed.into(),
        ..Default::default()
    };
    let base = format!("http://127.0.0.1:{port}");
    let r = import(
        dir.path(),
        &format!("{base}/firehol/feodo.ipset"),
        &opts("feodo"),
        &mut NoProgress,
    )
    .unwrap();
    assert_eq!(r.format, Format::Ipset);
    assert!(r.total > 1000, "{}", r.total);

    let r = import(
        dir.path(),
        &format!("{base}/misp-feed-digitalside/manifest.json"),
        &opts("digitalside"),
        &mut NoProgress,
    )
    .unwrap();
    assert_eq!((r.format, r.total), (Format::Misp, 15));
    let ix = Index::load(&IntelStore::open(dir.path()).unwrap()).unwrap();
    let hit = ix
        .lookup("107.158.154.68", None, belay_model::now_ms())
        .unwrap();
    assert_eq!(hit.sources, ["digitalside"]);

    // A missing file is an HTTP error naming the status, and the feed keeps its set.
    let err = import(
        dir.path(),
        &format!("{base}/firehol/nope.ipset"),
        &opts("feodo"),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("404"), "{err:#}");
    let ix = Index::load(&IntelStore::open(dir.path()).unwrap()).unwrap();
    assert!(
        ix.feeds()
            .iter()
            .any(|f| f.name == "feodo" && f.indicators > 1000)
    );
}
