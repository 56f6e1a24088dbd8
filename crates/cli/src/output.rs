//! How commands print: the `--format` choice and a run's report in either form.
//!
//! Printing only: nothing here reads the store or decides an exit code.

use anyhow::Result;
use belay_engine::RunReport;
use clap::ValueEnum;

/// `ID [--format F]`: the arguments of a `show` subcommand.
#[derive(clap::Args)]
pub struct ShowArgs {
    /// Its id, or the first characters of it.
    pub id: String,
    /// Output: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `[--all] [--format F]`: the arguments of a `list` subcommand that lists open items unless
/// `--all`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Every one, not only those still open.
    #[arg(long)]
    pub all: bool,
    /// Output: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `--format`: a table or text for people, or JSON for programs.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// `value` as pretty-printed JSON on standard output (`--format json`).
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A listing: `items` as pretty JSON (each as `json` gives it), else one line each as `line`
/// gives it, or `empty` when there are none.
pub fn print_list<T>(
    items: &[T],
    format: Format,
    empty: &str,
    json: impl Fn(&T) -> serde_json::Value,
    line: impl Fn(&T) -> String,
) -> Result<()> {
    if format == Format::Json {
        print_json(&items.iter().map(json).collect::<Vec<_>>())
    } else {
        if items.is_empty() {
            println!("{empty}");
        }
        for item in items {
            println!("{}", line(item));
        }
        Ok(())
    }
}

/// `items` joined with commas, or `none` when there are none.
pub fn joined_or<S: std::borrow::Borrow<str>>(items: &[S], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items.join(", ")
    }
}

/// A run and its steps, as `belay run` and `belay runs show` print them.
pub fn print_report(report: &RunReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(&report_json(report));
    }
    print_report_text(report);
    Ok(())
}

/// A run report as `--format json` shows it.
pub fn report_json(report: &RunReport) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = report
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "step": s.key, "action": s.action, "with": s.with, "decision": s.decision,
                "trust": s.trust, "status": s.status, "output": s.output, "error": s.error,
            })
        })
        .collect();
    serde_json::json!({
        "run_id": report.run_id, "playbook": report.playbook, "event_id": report.event_id,
        "status": report.status, "error": report.error, "steps": steps,
    })
}

/// A run report as text: the run, then one line per step.
pub fn print_report_text(report: &RunReport) {
    println!(
        "run {} ({}) {}",
        report.run_id, report.playbook, report.status
    );
    if let Some(e) = &report.error {
        println!("  error: {e}");
    }
    for s in &report.steps {
        let trust = s.trust.map(|t| format!(" trust={t}")).unwrap_or_default();
        println!(
            "  {:<24} {:<22} {:<14} {:<10}{trust}",
            s.key,
            s.action,
            s.decision.as_str(),
            s.status.as_str()
        );
        println!("      with   {}", s.with);
        if !s.output.is_null() {
            println!("      output {}", s.output);
        }
        if let Some(e) = &s.error {
            println!("      error  {e}");
        }
    }
}
