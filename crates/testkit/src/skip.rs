//! Tests that need what the repository does not ship (the corpus, Debian packages) skip when
//! it is missing, saying why, unless the run requires it: `.ci/run` sets
//! `BELAY_REQUIRE_CORPUS=1` and `BELAY_REQUIRE_NATIVE=1`, so there a missing part fails.

use std::io::Write;

/// Says on standard error that a test is skipped and why (written past the test harness's
/// output capture, so `cargo test` shows it), or panics with the reason when the environment
/// variable `require` is `1`.
pub fn unless_required(require: &str, reason: &str) {
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{reason} ({require}=1: this run requires it)");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

/// Whether `path` is an installed program: a regular file with an execute bit (a path that
/// exists but cannot run counts as missing).
pub fn installed(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
