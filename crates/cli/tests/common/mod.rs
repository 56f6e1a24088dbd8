//! Shared by the end-to-end tests: run the real binary in a directory of its own. The binary's
//! path is known only here (`CARGO_BIN_EXE_belay`); the rest is `belay_testkit::cli`.

#![allow(dead_code)] // each test binary uses a different part

pub mod mail;
pub mod server;

use std::path::Path;
use std::process::{Command, Output};

#[allow(unused_imports)] // each test binary uses a different part
pub use belay_testkit::cli::{
    assert_contains_all, assert_text_contains, json, json_lines, ok, refused, str_of, text,
};

/// The `belay` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_belay");

/// `belay` in `dir`, with the data directory `dir/data` and no inherited settings; add the
/// arguments and run it.
pub fn command(dir: &Path) -> Command {
    belay_testkit::cli::isolated(BIN, dir)
}

/// `belay run PLAYBOOK --event ev.json --format json ARGS` in `dir`, after writing `event` to
/// `dir/ev.json`.
pub fn run_on(dir: &Path, playbook: &str, event: &serde_json::Value, args: &[&str]) -> Output {
    std::fs::write(dir.join("ev.json"), event.to_string()).unwrap();
    command(dir)
        .args(["run", playbook, "--event", "ev.json", "--format", "json"])
        .args(args)
        .output()
        .expect("belay runs")
}

/// `belay ARGS` in `dir` with no inherited settings at all (not even a data directory): it
/// reads `dir`'s belay.toml as a user's shell would.
pub fn bare(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env_remove("BELAY_DATA")
        .env_remove("BELAY_DATABASE_URL")
        .env_remove("BELAY_CONFIG")
        .env_remove("BELAY_GUARDRAILS")
        .args(args)
        .output()
        .expect("belay runs")
}

/// `belay ARGS` in `dir`, with the data directory `dir/data` and no inherited settings.
pub fn belay(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("belay runs")
}

/// A guarded playbook `name`, run on `event` events, that adds every address of the event to
/// the block list `egress` in one step `block`; the step goes on with `step_extra`.
pub fn block_every_ip(name: &str, event: &str, step_extra: &str) -> String {
    let steps = r#"trust: guarded
steps:
  - id: block
    action: blocklist.add
    for_each: ${{ event.observables.ips }}
    with: { list: egress, entry: "${{ item }}" }
"#;
    format!("name: {name}\non: {{ event: {event} }}\n{steps}{step_extra}")
}

/// A playbook `block-ip` written by carol, run on `ids.alert` events at `trust`, that adds the
/// alert's first address to the block list `egress` in one step `block`; the step goes on with
/// `step_extra` (approval options, say).
pub fn block_alert_ip(trust: &str, step_extra: &str) -> String {
    format!(
        r#"name: block-ip
author: carol
on:
  event: ids.alert
trust: {trust}
steps:
  - id: block
    action: blocklist.add
    with: {{ list: egress, entry: "${{{{ event.observables.ips[0] }}}}" }}
{step_extra}"#
    )
}

/// The entries of the block list `egress` in `dir`'s data directory (none when it has none).
pub fn listed(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("data/lists/egress.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `text` to the file `name` in `dir`.
pub fn write_file(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

/// `belay intel import feed.txt --feed FEED --playbooks pbs` in `dir`, which must succeed: the
/// run it started (from its `run ID … STATUS` line) and that run's status.
pub fn import_feed(dir: &Path, feed: &str) -> (String, String, String) {
    let out = belay_testkit::cli::ok(&belay(
        dir,
        &[
            "intel",
            "import",
            "feed.txt",
            "--feed",
            feed,
            "--playbooks",
            "pbs",
        ],
    ));
    let line = out
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap_or_else(|| panic!("the import started a run: {out}"));
    let mut words = line.split_whitespace().skip(1);
    let id = words.next().unwrap_or_default().to_owned();
    let status = words.last().unwrap_or_default().to_owned();
    (id, status, out)
}
