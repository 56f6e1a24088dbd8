//! `belay backup FILE`: a consistent online snapshot of the embedded store, safe while other
//! processes (`belay serve`, `belay ingest`) write to it. Restore by copying FILE into an
//! empty data directory as `belay.db`. A PostgreSQL store is backed up with `pg_dump`.
//!
//! Glue only: the snapshot is `belay_store::backup_sqlite`.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay backup`.
#[derive(ClapArgs)]
pub struct Args {
    /// Where to write the snapshot (a new file).
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Runs `belay backup`.
pub async fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    if ctx.database_url.is_some() {
        bail!(
            "the store is PostgreSQL: back it up with `pg_dump` (e.g. `pg_dump --format=custom \
             --file {} DATABASE_URL`), which takes a consistent snapshot while belay runs",
            args.file.display()
        );
    }
    let data = ctx.data.clone();
    let file = args.file.clone();
    let summary = tokio::task::spawn_blocking(move || belay_store::backup_sqlite(&data, &file))
        .await
        .context("the backup task failed")?
        .with_context(|| format!("cannot back up the store in {}", ctx.data.display()))?;
    if args.format == Format::Json {
        print_json(&summary)?;
    } else {
        println!(
            "backed up the store to {} ({} bytes, schema {}, {} runs, {} audit entries); \
             restore by copying it into an empty data directory as belay.db",
            args.file.display(),
            summary.bytes,
            summary.schema_version,
            summary.runs,
            summary.audit_entries
        );
    }
    Ok(ExitCode::SUCCESS)
}
