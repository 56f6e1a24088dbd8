//! Shared by the end-to-end tests: run the real binary in a directory of its own.

#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::process::{Command, Output};

/// `belay ARGS` in `dir`, with the data directory `dir/data` and no inherited settings.
pub fn belay(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_belay"))
        .current_dir(dir)
        .env("BELAY_DATA", dir.join("data"))
        .env_remove("BELAY_DATABASE_URL")
        .env_remove("BELAY_CONFIG")
        .env_remove("BELAY_GUARDRAILS")
        .args(args)
        .output()
        .expect("belay runs")
}

/// Standard output and error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
