//! `belay audit verify|export|sign|keygen`: checks the hash chain of the audit trail (and
//! that it vouches for every applied change, and agrees with the heads signed outside the
//! database), writes it out as JSON lines or CEF, signs its head, makes a signing key.
//!
//! It never appends to or repairs the trail. The CEF form is `belay_model::audit_cef`'s;
//! signing is `head_signing.rs`'s, delivery `head_export.rs`'s.

use crate::context::Ctx;
use crate::head_signing;
use anyhow::{Context, Result, bail};
use belay_model::audit_cef::cef_line;
use belay_store::{SignedHead, head_signing::parse_lines};
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `belay audit …`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain, that every applied change has its authority in it and, with a
    /// public key, that it agrees with the signed heads; exit 1 naming the first problem.
    Verify {
        /// Public key the signed heads are checked with (default: `[audit] public_key`).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Signed heads (JSON lines, or syslog lines ending in one) to check the trail
        /// against (default: `[audit] signed_heads`).
        #[arg(long, value_name = "FILE")]
        signed_heads: Option<PathBuf>,
    },
    /// Write entries to standard output.
    Export {
        /// Export format: `jsonl` (one entry per line) or `cef` (for a SIEM).
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Sign the current head (seq, hash, time) and print it; also appended to `[audit]
    /// signed_heads` and sent to `[audit] syslog` when configured.
    Sign {
        /// Private key (default: `[audit] signing_key`); never inside the data directory.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Create an Ed25519 key pair for signing heads: FILE (mode 0600) and FILE.pub.
    Keygen {
        /// Where to write the private key; never inside the data directory.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
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
    let audit = &ctx.config.audit;
    match command {
        AuditCommand::Keygen { out } => {
            let public = head_signing::write_keypair(&out, &ctx.data)?;
            println!(
                "wrote private key {} (mode 0600; keep it outside the data directory) and public key {}",
                out.display(),
                public.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        AuditCommand::Sign { key } => {
            let Some(path) = key.or_else(|| audit.signing_key.clone()) else {
                bail!(
                    "no signing key: give --key FILE or set [audit] signing_key (create one with `belay audit keygen --out FILE`)"
                );
            };
            let key = head_signing::load_key(&path, &ctx.data)?;
            let sinks = head_signing::sinks(audit, &ctx.data)?;
            let store = ctx.store().await?;
            return match head_signing::sign_now(store.as_ref(), &key, &sinks, None).await? {
                Ok(h) => {
                    println!("{}", h.to_line());
                    Ok(ExitCode::SUCCESS)
                }
                Err(p) => {
                    println!("refusing to sign: {p}");
                    Ok(ExitCode::from(1))
                }
            };
        }
        AuditCommand::Verify {
            public_key,
            signed_heads,
        } if ctx.remote.is_some() => {
            if public_key.is_some() || signed_heads.is_some() {
                bail!(
                    "signed heads are checked by the local CLI: run `belay audit verify --public-key …` on the host that holds the store"
                );
            }
            let v = match &ctx.remote {
                Some(remote) => remote.get("/api/v1/audit/verify", &[]).await?,
                None => serde_json::Value::Null,
            };
            if v["intact"] == true {
                println!("audit chain intact: {} entries", v["entries"]);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{}",
                v["problem"].as_str().unwrap_or("the audit chain is broken")
            );
            return Ok(ExitCode::from(1));
        }
        _ => {}
    }
    let store = ctx.store().await?;
    match command {
        AuditCommand::Verify {
            public_key,
            signed_heads,
        } => {
            let public_key = public_key.or_else(|| audit.public_key.clone());
            let signed_heads = signed_heads.or_else(|| audit.signed_heads.clone());
            let (heads, bad) = match (&public_key, &signed_heads) {
                (Some(k), Some(f)) => read_signed(k, f)?,
                (None, None) => (Vec::new(), Vec::new()),
                (Some(_), None) => bail!(
                    "--public-key needs the signed heads to check: give --signed-heads FILE or set [audit] signed_heads"
                ),
                (None, Some(_)) => bail!(
                    "the signed heads need the public key to check them with: give --public-key FILE or set [audit] public_key"
                ),
            };
            let outcome = belay_store::verify_audit_against(store.as_ref(), &heads).await?;
            for line in &bad {
                println!("{line}");
            }
            match outcome {
                Ok(n) if bad.is_empty() => {
                    match heads.iter().max_by_key(|h| h.seq) {
                        Some(h) => println!(
                            "audit chain intact: {n} entries; {} signed head(s) match, the latest at entry {} signed {}",
                            heads.len(),
                            h.seq,
                            belay_model::ms_to_rfc3339(h.at)
                        ),
                        None => println!("audit chain intact: {n} entries"),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Ok(n) => {
                    println!(
                        "audit chain intact: {n} entries, but {} signed head line(s) do not verify",
                        bad.len()
                    );
                    Ok(ExitCode::from(1))
                }
                Err(p) => {
                    println!("{p}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Sign { .. } | AuditCommand::Keygen { .. } => Ok(ExitCode::SUCCESS),
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

/// The signed heads in `file` whose signatures verify with the public key in `key`, and one
/// message per line that does not.
fn read_signed(key: &Path, file: &Path) -> Result<(Vec<SignedHead>, Vec<String>)> {
    let key = head_signing::load_public(key)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read signed heads {}", file.display()))?;
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (line, parsed) in parse_lines(&text) {
        match parsed.and_then(|h| h.verify(&key).map(|()| h)) {
            Ok(h) => good.push(h),
            Err(e) => bad.push(format!(
                "signed head {}:{line} is not trustworthy: {e}",
                file.display()
            )),
        }
    }
    Ok((good, bad))
}
