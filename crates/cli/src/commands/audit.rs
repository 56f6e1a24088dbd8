//! `belay audit verify|export`: checks the hash chain of the audit trail, and writes it out as
//! JSON lines or CEF.
//!
//! Read-only: it never appends to or repairs the trail. The CEF form is
//! `belay_model::audit_cef`'s.

use crate::context::Ctx;
use anyhow::{Context, Result};
use belay_model::audit_cef::cef_line;
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use std::process::ExitCode;

/// `belay audit …`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain; exit 1 naming the first broken entry.
    Verify,
    /// Write entries to standard output.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
}

/// `audit export --format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Cef,
}

/// Runs `belay audit …`.
pub async fn run(ctx: &Ctx, command: AuditCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        AuditCommand::Verify => match belay_store::verify_audit(store.as_ref()).await? {
            Ok(n) => {
                println!("audit chain intact: {n} entries");
                Ok(ExitCode::SUCCESS)
            }
            Err(b) => {
                println!("audit chain broken at entry {}: {}", b.seq, b.reason);
                Ok(ExitCode::from(1))
            }
        },
        AuditCommand::Export { format, since } => {
            let since_ms = since
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(&t)
                        .map(|d| d.timestamp_millis())
                        .with_context(|| format!("--since `{t}` is not an RFC 3339 time"))
                })
                .transpose()?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut after = 0;
            loop {
                let page = store.audit_entries(after, 5000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in page.iter().filter(|e| since_ms.is_none_or(|s| e.at >= s)) {
                    match format {
                        ExportFormat::Jsonl => writeln!(out, "{}", serde_json::to_string(e)?)?,
                        ExportFormat::Cef => {
                            writeln!(out, "{}", cef_line(e, env!("CARGO_PKG_VERSION")))?
                        }
                    }
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
