//! `belay lint`: checks playbooks and prints each problem as FILE:LINE:COL: error: MESSAGE;
//! then the configured guardrails, warning of a baseline guardrail that nothing caps while
//! it learns (a warning does not fail the lint).
//!
//! It only loads and checks; it never opens the store or runs anything.

use crate::context::Ctx;
use anyhow::{Context, Result, bail};
use belay_playbook::PlaybookSet;
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay lint PATH...`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `belay lint`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let paths = &args.paths;
    let mut files = Vec::new();
    for p in paths {
        files.extend(
            belay_playbook::playbook_files(p)
                .with_context(|| format!("cannot read {}", p.display()))?,
        );
    }
    if files.is_empty() {
        bail!("no playbook files (*.yaml) under the given paths");
    }
    let guardrails = match ctx.guardrails() {
        Ok(g) => g,
        Err(e) => {
            println!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    for w in guardrails.learning_warnings(&ctx.catalog) {
        println!("{}: warning: {w}", ctx.guardrails_path.display());
    }
    match PlaybookSet::load(&files, &ctx.catalog) {
        Ok(set) => {
            println!("{} playbook(s) OK", set.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            let mut n = 0;
            for e in &errs {
                n += e.diagnostics.len();
                println!("{e}");
            }
            eprintln!("{n} error(s) in {} file(s)", errs.len());
            Ok(ExitCode::from(1))
        }
    }
}
