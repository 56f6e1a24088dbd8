//! Where the test corpus (real logs, mail, feeds written by others) is: `BELAY_CORPUS`, else
//! `shared/corpus` beside the workspace's parent directory.
//!
//! This is the one place that decides what a test does when the corpus is missing: it is
//! skipped, saying where the corpus was looked for, or fails when `BELAY_REQUIRE_CORPUS=1`
//! (as in CI). It never copies or changes the corpus.

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

/// The corpus directory; `None` (the test is skipped, saying why) when it has no `README.md`.
pub fn corpus() -> Option<PathBuf> {
    let dir = location();
    if dir.join("README.md").is_file() {
        return Some(dir);
    }
    missing(&format!("{}/README.md", dir.display()));
    None
}

/// A file or directory of the corpus, e.g. `threat-intel` or `stix/taxii/data.json`; `None`
/// (the test is skipped, saying why) when it is not there.
pub fn corpus_file(rel: &str) -> Option<PathBuf> {
    let path = location().join(rel);
    if path.exists() {
        return Some(path);
    }
    missing(&path.display().to_string());
    None
}

fn missing(expected: &str) {
    crate::skip::unless_required(
        "BELAY_REQUIRE_CORPUS",
        &format!(
            "the test corpus is missing: expected {expected} (set BELAY_CORPUS to the corpus directory)"
        ),
    );
}

/// The corpus directory when `BELAY_CORPUS` is set, for tests that use the corpus's copy of an
/// input when there is one and a built-in copy otherwise.
pub fn corpus_if_set() -> Option<PathBuf> {
    std::env::var_os("BELAY_CORPUS").map(PathBuf::from)
}
