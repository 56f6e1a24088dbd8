//! Running the `belay` binary from a test and reading what it printed.
//!
//! The binary's path is `env!("CARGO_BIN_EXE_belay")`, known only to the tests of the crate
//! that builds it, so callers pass it in. This module never starts anything but the given
//! binary and never reads the caller's settings: every command is isolated from the
//! environment's belay configuration.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// `bin` run in `dir`, with the data directory `dir/data` and no inherited belay settings
/// (`BELAY_DATABASE_URL`, `BELAY_CONFIG`, `BELAY_GUARDRAILS`).
pub fn isolated(bin: &str, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .env("BELAY_DATA", dir.join("data"))
        .env_remove("BELAY_DATABASE_URL")
        .env_remove("BELAY_CONFIG")
        .env_remove("BELAY_GUARDRAILS")
        .env_remove("BELAY_SERVER")
        .env_remove("BELAY_TOKEN");
    c
}

/// Standard output and error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The output (as [`text`]) of a command that must have succeeded.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "belay failed: {}", text(o));
    text(o)
}

/// The output (as [`text`]) of a command that must have been refused (exit status 1).
pub fn refused(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a refusal (exit 1): {}",
        text(o)
    );
    text(o)
}

/// Standard output as one JSON document. Panics with everything printed when it is not.
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// One JSON document per line (acks, `logs parse`, inboxes). Panics naming the line that is
/// not JSON.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// Asserts that `text` contains every one of `wanted`; panics naming the first that is missing,
/// with the whole text.
pub fn assert_contains_all(text: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// The text of a JSON string; panics showing the value when it is not one.
pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not text: {v}"))
}

/// Asserts that the JSON value `v` is text that contains `wanted`; panics showing the value.
pub fn assert_text_contains(v: &Value, wanted: &str) {
    let text = str_of(v);
    assert!(text.contains(wanted), "missing {wanted:?} in {text:?}");
}
