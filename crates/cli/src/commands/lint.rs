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
#[command(
    after_help = "Examples:\n  belay lint playbooks/\n  belay lint playbooks/block-malicious-ip.yaml"
)]
pub struct Args {
    /// Playbook files or folders (every *.yaml in them).
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
            let unknown = unknown_targets(ctx, &set);
            for (pos_file, line, col, message, error) in &unknown {
                let level = if *error { "error" } else { "warning" };
                println!("{pos_file}:{line}:{col}: {level}: {message}");
            }
            if unknown.iter().any(|u| u.4) {
                eprintln!("{} error(s)", unknown.iter().filter(|u| u.4).count());
                return Ok(ExitCode::from(1));
            }
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

/// `notify.send` steps whose literal `target` the configuration does not declare, as
/// `(file, line, column, message, is_error)`: an error when `[notify]` declares targets (the
/// step would fail at run time, after the changes before it were applied), a warning when it
/// declares none (this configuration may not be the one the playbooks run with).
fn unknown_targets(ctx: &Ctx, set: &PlaybookSet) -> Vec<(String, usize, usize, String, bool)> {
    let known: Vec<&str> = ctx.config.notify.keys().map(String::as_str).collect();
    let mut out = Vec::new();
    for pb in set.iter() {
        for step in &pb.steps {
            if step.call != belay_playbook::Call::Action("notify.send".into()) {
                continue;
            }
            for (key, pos, template) in step.with.entries() {
                let Some(serde_json::Value::String(target)) =
                    (key == "target").then(|| template.literal()).flatten()
                else {
                    continue;
                };
                if known.contains(&target.as_str()) {
                    continue;
                }
                let message = if known.is_empty() {
                    format!(
                        "step `{}` notifies `{target}`, but belay.toml declares no [notify] targets; the step fails at run time unless the configuration it runs with declares `[notify.{target}]`",
                        step.id
                    )
                } else {
                    format!(
                        "step `{}` notifies unknown target `{target}` (configured: {}); the step would fail at run time, after the changes before it",
                        step.id,
                        known.join(", ")
                    )
                };
                out.push((
                    pb.path.display().to_string(),
                    pos.line,
                    pos.col,
                    message,
                    !known.is_empty(),
                ));
            }
        }
    }
    out
}
