//! `belay intel ...`: import threat-intel feeds, look values up, show statistics, benchmark.
//!
//! Glue only: parsing, storage and scoring live in `belay-intel`. After an import, the
//! `intel.update` event goes to the engine exactly like an ingested event.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result, anyhow, bail};
use belay_intel::Kind;
use belay_intel::import::{ImportOptions, Phase, Progress};
use belay_intel::parse::csv::CsvOptions;
use belay_playbook::PlaybookSet;
use clap::{Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay intel …`.
#[derive(Subcommand)]
pub enum IntelCommand {
    /// Import a feed (file, http(s) URL, or taxii+http(s)://HOST/API-ROOT/collections/ID/),
    /// replacing everything that feed listed before.
    Import {
        source: String,
        /// The feed's name; re-importing the same name replaces its set.
        #[arg(long)]
        feed: String,
        /// The feed's format (`auto`: detected from its content).
        #[arg(long, value_enum, default_value = "auto")]
        format: FeedFormat,
        /// Score weight of this feed (default 1; kept from the last import when omitted).
        #[arg(long)]
        weight: Option<f64>,
        /// A listing stops counting this long after the feed last listed it, e.g. `7d`
        /// (`0` clears it; kept from the last import when omitted).
        #[arg(long)]
        expires: Option<String>,
        /// After this long without being listed again a listing counts half (default 30d).
        #[arg(long)]
        half_life: Option<String>,
        /// CSV: the value column, by header name or 1-based number (default: `url`,
        /// `value`, `indicator`, `ioc`, `ip`, ... whichever the header has).
        #[arg(long)]
        csv_column: Option<String>,
        /// CSV: the column giving each value's type (`ip-dst`, `domain`, `url`, `md5`...).
        #[arg(long)]
        csv_type_column: Option<String>,
        /// Import networks of any width (without it, IPv4 networks wider than
        /// --min-prefix-v4 and IPv6 ones wider than --min-prefix-v6 are refused and counted).
        #[arg(long)]
        allow_wide: bool,
        /// Shortest IPv4 prefix imported without --allow-wide.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=32))]
        min_prefix_v4: u8,
        /// Shortest IPv6 prefix imported without --allow-wide.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(0..=128))]
        min_prefix_v6: u8,
        /// Playbooks that may react to the `intel.update` event (default: `playbooks` in
        /// belay.toml; without either the event is only recorded).
        #[arg(long)]
        playbooks: Option<PathBuf>,
    },
    /// Look a value up: an IP also matches every stored network containing it.
    Lookup {
        value: String,
        /// Force the value's type (ip, cidr, domain, url, hash, email).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Feeds, their settings and latest imports, and counts by type.
    Stats {
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Import N generated indicators through the real import path into a scratch store,
    /// then time lookups.
    Bench {
        /// How many generated indicators to import.
        #[arg(long, default_value_t = 1_000_000)]
        indicators: usize,
        /// How many lookups to time.
        #[arg(long, default_value_t = 1_000_000)]
        lookups: usize,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FeedFormat {
    Auto,
    Plain,
    Csv,
    Ipset,
    Hosts,
    Stix,
    Misp,
    Taxii,
}

impl FeedFormat {
    fn format(self) -> Option<belay_intel::Format> {
        use belay_intel::Format as F;
        match self {
            FeedFormat::Auto => None,
            FeedFormat::Plain => Some(F::Plain),
            FeedFormat::Csv => Some(F::Csv),
            FeedFormat::Ipset => Some(F::Ipset),
            FeedFormat::Hosts => Some(F::Hosts),
            FeedFormat::Stix | FeedFormat::Taxii => Some(F::Stix),
            FeedFormat::Misp => Some(F::Misp),
        }
    }
}

fn duration_ms(flag: &str, text: &str) -> Result<i64> {
    if text.trim() == "0" {
        return Ok(0);
    }
    let d = belay_model::parse_duration(text)
        .with_context(|| format!("--{flag} `{text}` is not a duration like 12h or 30d"))?;
    i64::try_from(d.as_millis()).map_err(|_| anyhow!("--{flag} `{text}` is too long"))
}

/// A progress bar on standard error, drawn only when it is a terminal.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    fn new() -> Bar {
        Bar {
            bar: std::io::stderr()
                .is_terminal()
                .then(indicatif::ProgressBar::hidden),
        }
    }
}

impl Progress for Bar {
    fn phase(&mut self, phase: Phase, total: Option<u64>) {
        let Some(old) = &self.bar else { return };
        old.finish_and_clear();
        let (label, unit) = match phase {
            Phase::Download => ("reading", "{bytes}"),
            Phase::Parse => ("parsing", "{bytes}/{total_bytes}"),
            Phase::Write => ("storing", "{pos}/{len} indicators"),
        };
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = match total {
            Some(_) => format!("{label:8} [{{bar:40}}] {unit} ({{eta}})"),
            None => format!(
                "{label:8} {{spinner}} {}",
                unit.replace("/{total_bytes}", "")
            ),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs `belay intel …`.
pub async fn run(ctx: &Ctx, command: IntelCommand) -> Result<ExitCode> {
    match command {
        IntelCommand::Import {
            source,
            feed,
            format,
            weight,
            expires,
            half_life,
            csv_column,
            csv_type_column,
            allow_wide,
            min_prefix_v4,
            min_prefix_v6,
            playbooks,
        } => {
            let opts = ImportOptions {
                feed,
                format: format.format(),
                weight,
                expires_ms: expires.map(|e| duration_ms("expires", &e)).transpose()?,
                half_life_ms: match half_life {
                    Some(h) => match duration_ms("half-life", &h)? {
                        0 => bail!("--half-life must be longer than 0"),
                        ms => Some(ms),
                    },
                    None => None,
                },
                csv: CsvOptions {
                    value_column: csv_column,
                    type_column: csv_type_column,
                },
                wide: belay_intel::WideLimit {
                    min_prefix_v4,
                    min_prefix_v6,
                    allow_wide,
                },
            };
            // The engine (and its playbooks and guardrails) is checked before the import, so a
            // bad playbook directory does not leave an import without its event.
            let set = match playbooks.or_else(|| ctx.config.playbooks.clone()) {
                Some(dir) => ctx.load_playbooks(std::slice::from_ref(&dir)).with_context(|| {
                    format!(
                        "nothing was imported: the playbooks that react to the feed ({}) did not \
                         load; fix them, or give another folder with --playbooks DIR",
                        dir.display()
                    )
                })?,
                None => PlaybookSet::default(),
            };
            let engine = ctx.engine(set).await?;
            let data = ctx.data.clone();
            let report = tokio::task::spawn_blocking(move || {
                belay_intel::import(&data, &source, &opts, &mut Bar::new())
            })
            .await
            .context("the import task ended abnormally")??;
            for e in &report.unsupported_examples {
                eprintln!("unsupported: {e}");
            }
            for e in &report.invalid_examples {
                eprintln!("invalid: {e}");
            }
            for e in &report.too_wide_examples {
                eprintln!("too wide: {e}");
            }
            let event = report.event();
            let accepted = engine.accept_batch(vec![(event, None)]).await?;
            println!("{}", report.summary());
            for acc in accepted {
                for (pb, msg) in &acc.trigger_errors {
                    eprintln!(
                        "event {}: trigger of `{pb}` not evaluated: {msg}",
                        acc.event_id
                    );
                }
                println!("event {} (intel.update)", acc.event_id);
                for run in acc.runs {
                    let r = engine.execute_new(run, acc.event.clone()).await?;
                    println!("run {} ({}) {}", r.run_id, r.playbook, r.status);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IntelCommand::Lookup {
            value,
            kind,
            format,
        } => {
            let hint = kind
                .map(|k| {
                    Kind::parse(&k).ok_or_else(|| {
                        anyhow!("--type must be ip, cidr, domain, url, hash or email, not `{k}`")
                    })
                })
                .transpose()?;
            let data = ctx.data.clone();
            let found = tokio::task::spawn_blocking(move || {
                belay_intel::query::lookup(&data, &value, hint, belay_model::now_ms())
            })
            .await
            .context("the lookup task ended abnormally")??;
            if format == Format::Json {
                print_json(&found)?;
            } else if !found.found {
                println!("{} ({}): not listed by any feed", found.value, found.kind);
            } else {
                println!(
                    "{} ({}): score {:.2}, listed by {}",
                    found.value,
                    found.kind,
                    found.score,
                    found.sources.join(", ")
                );
                for m in &found.matches {
                    for s in &m.sources {
                        println!(
                            "  {:<40} {:<16} first {} last {}{}",
                            m.value,
                            s.feed,
                            s.first_seen,
                            s.last_seen,
                            if s.expired { " (expired)" } else { "" }
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IntelCommand::Stats { format } => {
            let data = ctx.data.clone();
            let stats = tokio::task::spawn_blocking(move || belay_intel::query::stats(&data))
                .await
                .context("the stats task ended abnormally")??;
            if format == Format::Json {
                print_json(&stats)?;
            } else {
                println!(
                    "{:<20} {:<6} {:>6} {:>9} {:>8} {:>10} {:>11}  LAST IMPORT           SOURCE",
                    "FEED", "FORMAT", "WEIGHT", "HALF-LIFE", "EXPIRES", "INDICATORS", "UNSUPPORTED"
                );
                for f in &stats.feeds {
                    println!(
                        "{:<20} {:<6} {:>6} {:>9} {:>8} {:>10} {:>11}  {}  {}",
                        f.name,
                        f.format,
                        f.weight,
                        days(f.half_life_ms),
                        f.expires_ms.map(days).unwrap_or_else(|| "never".into()),
                        f.indicators,
                        f.unsupported,
                        belay_model::ms_to_rfc3339(f.last_import),
                        f.source
                    );
                }
                for (k, c) in &stats.by_type {
                    println!("{k:<8} {} values, {} listings", c.values, c.sightings);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IntelCommand::Bench {
            indicators,
            lookups,
            format,
        } => {
            let work = tempfile::tempdir().context("cannot create a scratch directory")?;
            let path = work.path().to_path_buf();
            let r = tokio::task::spawn_blocking(move || {
                belay_intel::bench::run(&path, indicators, lookups.max(1))
            })
            .await
            .context("the benchmark task ended abnormally")??;
            if format == Format::Json {
                print_json(&r)?;
            } else {
                println!(
                    "import:   {} indicators in {:.2}s (index built in {:.2}s)",
                    r.indicators, r.import_seconds, r.index_seconds
                );
                println!("peak RSS: {:.0} MB", r.peak_rss_mb);
                println!(
                    "lookup:   {:.0} ns hit, {:.0} ns miss, {:.0} ns IP in a network ({} each)",
                    r.ns_per_hit, r.ns_per_miss, r.ns_per_cidr_hit, r.lookups
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn days(ms: i64) -> String {
    let s = ms / 1000;
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}
