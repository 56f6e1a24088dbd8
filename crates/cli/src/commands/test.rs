//! `belay test`: runs playbook tests (`*.test.yaml`) and prints PASS or FAIL for each.
//!
//! Glue only: cases run in `belay_engine::playtest`, on their own scratch stores, never on the
//! configured one.

use crate::context::Ctx;
use crate::paths::parent_dir;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay test PATH...`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  belay test examples/playbooks/")]
pub struct Args {
    /// Playbook test files or folders (every *.test.yaml in them, with the playbooks beside them).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `belay test`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let paths = &args.paths;
    let files = belay_engine::playtest::test_files(paths).context("cannot list test files")?;
    if files.is_empty() {
        bail!("no playbook tests (*.test.yaml) under the given paths");
    }
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        let dir = parent_dir(&f);
        let r = belay_engine::playtest::run_case(&f, &[dir], &ctx.catalog).await;
        if r.passed() {
            passed += 1;
            println!("PASS {} ({})", r.name, f.display());
        } else {
            failed += 1;
            println!("FAIL {} ({})", r.name, f.display());
            for m in &r.failures {
                println!("    {m}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
