//! Where the test corpus (real logs, mail, feeds written by others) is: `BELAY_CORPUS`, else
//! `shared/corpus` beside the workspace's parent directory.
//!
//! This is the one place that decides what a test does when the corpus is missing (today: it
//! fails, saying where it looked). It never copies or changes the corpus.

use std::path::PathBuf;

/// `BELAY_CORPUS`, or `../shared/corpus` beside the workspace; not checked.
fn location() -> PathBuf {
    std::env::var_os("BELAY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/corpus"
            ))
        })
}

/// The corpus directory. Panics ("the test corpus is missing") when it has no `README.md`.
pub fn corpus() -> PathBuf {
    let dir = location();
    assert!(
        dir.join("README.md").is_file(),
        "the test corpus is missing: expected {}/README.md (set BELAY_CORPUS to the corpus directory)",
        dir.display()
    );
    dir
}

/// A file or directory of the corpus, e.g. `threat-intel` or `stix/taxii/data.json`. Panics
/// ("the test corpus is missing") when it is not there.
pub fn corpus_file(rel: &str) -> PathBuf {
    let path = location().join(rel);
    assert!(
        path.exists(),
        "the test corpus is missing: expected {} (set BELAY_CORPUS to the corpus directory)",
        path.display()
    );
    path
}

/// The corpus directory when `BELAY_CORPUS` is set, for tests that use the corpus's copy of an
/// input when there is one and a built-in copy otherwise.
pub fn corpus_if_set() -> Option<PathBuf> {
    std::env::var_os("BELAY_CORPUS").map(PathBuf::from)
}
