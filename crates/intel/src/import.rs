//! Importing a feed: fetch, parse, normalize, de-duplicate, replace the feed's set.
//!
//! An import always replaces the feed's whole set (values the feed no longer lists lose it as
//! a source) in one store transaction, and its [`ImportReport`] is what the `intel.update`
//! event is made of. Imports never touch other feeds' sightings.

use crate::fetch::{self, Source};
use crate::indicator::{Kind, NormalizeError, normalize};
use crate::parse::{self, Format, Sink, csv::CsvOptions};
use crate::store::{DEFAULT_HALF_LIFE_MS, FeedInfo, IntelStore, Listed};
use anyhow::{Context, Result, bail};
use belay_model::{Event, Observables, Severity};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::time::Instant;

/// How many examples of unsupported or invalid entries a report keeps.
pub const SAMPLES: usize = 10;
/// Largest score weight a feed may have (a finite but huge one would make scores infinite).
pub const MAX_WEIGHT: f64 = 1000.0;

/// The widest networks a feed may list: a feed listing `0.0.0.0/0` would make every address
/// score as listed and hand the whole Internet to blocklist playbooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideLimit {
    /// Shortest IPv4 prefix accepted (default 8: nothing wider than a /8).
    pub min_prefix_v4: u8,
    /// Shortest IPv6 prefix accepted (default 16).
    pub min_prefix_v6: u8,
    /// Accept any width (`--allow-wide`).
    pub allow_wide: bool,
}

impl Default for WideLimit {
    fn default() -> WideLimit {
        WideLimit {
            min_prefix_v4: 8,
            min_prefix_v6: 16,
            allow_wide: false,
        }
    }
}

impl WideLimit {
    /// Why `net` is too wide to import, if it is.
    fn refuses(&self, net: &ipnet::IpNet) -> Option<String> {
        let (min, family) = match net {
            ipnet::IpNet::V4(_) => (self.min_prefix_v4, "IPv4"),
            ipnet::IpNet::V6(_) => (self.min_prefix_v6, "IPv6"),
        };
        (!self.allow_wide && net.prefix_len() < min).then(|| {
            format!(
                "`{net}` is wider than the /{min} allowed for {family} networks (--allow-wide to import it)"
            )
        })
    }
}

/// What to import and how to count it.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The feed's name: 1 to 64 letters, digits, `.`, `_` or `-`.
    pub feed: String,
    /// `None` guesses the format from the source's name and content.
    pub format: Option<Format>,
    /// Score weight; `None` keeps the feed's current one (1 for a new feed).
    pub weight: Option<f64>,
    /// How long a listing counts after the feed last listed it; `None` keeps the current
    /// setting (never for a new feed), `Some(0)` clears it.
    pub expires_ms: Option<i64>,
    /// Score half-life; `None` keeps the current one (30 days for a new feed).
    pub half_life_ms: Option<i64>,
    /// How to read a CSV feed (ignored for other formats).
    pub csv: CsvOptions,
    /// Networks wider than this are refused and counted in [`ImportReport::too_wide`].
    pub wide: WideLimit,
}

/// The stages an import goes through, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the source: bytes of a file or URL, or objects of a TAXII collection.
    Download,
    /// Parsing and normalizing the bytes read (not a phase of its own for TAXII).
    Parse,
    /// Writing the feed's set to the store, in rows.
    Write,
}

/// Receives progress; the CLI draws a bar on a terminal.
pub trait Progress {
    /// A phase starts; `total` in bytes (download, parse) or rows (write) when known.
    fn phase(&mut self, phase: Phase, total: Option<u64>);
    /// How far the current phase is, in its unit: a running total, not an increment.
    fn advance(&mut self, done: u64);
    /// The import is done (called once, after the write phase, only when the import succeeds).
    fn finish(&mut self);
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&mut self, _: Phase, _: Option<u64>) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The feed's name.
    pub feed: String,
    /// Where it was read, without credentials (as stored in [`FeedInfo::source`]).
    pub source: String,
    /// The format it was parsed as (given, or guessed).
    pub format: Format,
    /// Values the feed lists now and did not before, sorted.
    pub added: Vec<(String, Kind)>,
    /// Values the feed listed before and no longer does, sorted.
    pub removed: Vec<(String, Kind)>,
    /// Values the feed listed before and lists again.
    pub unchanged: u64,
    /// Entries of a kind belay cannot hold (see the parsers), with a few examples.
    pub unsupported: u64,
    /// Up to [`SAMPLES`] of those entries, each with why it is unsupported.
    pub unsupported_examples: Vec<String>,
    /// Entries that are not valid values of their kind, with a few examples.
    pub invalid: u64,
    /// Up to [`SAMPLES`] of those entries' errors.
    pub invalid_examples: Vec<String>,
    /// Networks refused as wider than the limit (see [`WideLimit`]), with a few examples.
    pub too_wide: u64,
    /// Up to [`SAMPLES`] of those refusals, naming the network and the limit.
    pub too_wide_examples: Vec<String>,
    /// Entries listed more than once in the feed.
    pub duplicates: u64,
    /// Distinct values the feed lists now.
    pub total: u64,
    /// Wall-clock seconds the whole import took.
    pub seconds: f64,
}

/// Normalizes and de-duplicates what a parser finds.
struct Collector {
    listed: HashMap<String, Listed>,
    unsupported: u64,
    unsupported_examples: Vec<String>,
    invalid: u64,
    invalid_examples: Vec<String>,
    too_wide: u64,
    too_wide_examples: Vec<String>,
    wide: WideLimit,
    duplicates: u64,
}

impl Collector {
    fn new(wide: WideLimit) -> Collector {
        Collector {
            listed: HashMap::new(),
            too_wide: 0,
            too_wide_examples: Vec::new(),
            wide,
            unsupported: 0,
            unsupported_examples: Vec::new(),
            invalid: 0,
            invalid_examples: Vec::new(),
            duplicates: 0,
        }
    }
}

impl Sink for Collector {
    fn record(&mut self, value: &str, hint: Option<Kind>, valid_until: Option<i64>) {
        let found = normalize(value, hint);
        let too_wide = match &found {
            Ok(ind) if ind.kind == Kind::Cidr => ind
                .value
                .parse::<ipnet::IpNet>()
                .ok()
                .and_then(|net| self.wide.refuses(&net)),
            _ => None,
        };
        if let Some(why) = too_wide {
            self.too_wide += 1;
            if self.too_wide_examples.len() < SAMPLES {
                self.too_wide_examples.push(why);
            }
            return;
        }
        match found {
            Ok(ind) => match self.listed.entry(ind.value) {
                Entry::Vacant(v) => {
                    v.insert(Listed {
                        kind: ind.kind,
                        valid_until,
                    });
                }
                Entry::Occupied(mut o) => {
                    self.duplicates += 1;
                    // Listed twice: valid as long as the longer-lived listing.
                    let l = o.get_mut();
                    l.valid_until = match (l.valid_until, valid_until) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
            },
            Err(NormalizeError::Empty) => {}
            Err(e) => {
                self.invalid += 1;
                if self.invalid_examples.len() < SAMPLES {
                    self.invalid_examples.push(e.to_string());
                }
            }
        }
    }

    fn unsupported(&mut self, what: String) {
        self.unsupported += 1;
        if self.unsupported_examples.len() < SAMPLES {
            self.unsupported_examples.push(what);
        }
    }
}

/// Checks a feed name.
pub fn valid_feed_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!("a feed name is 1 to 64 letters, digits, `.`, `_` or `-` (got `{name}`)");
    }
    Ok(())
}

/// Imports `source` as feed `opts.feed` into the store in `data_dir`.
pub fn import(
    data_dir: &Path,
    source: &str,
    opts: &ImportOptions,
    progress: &mut dyn Progress,
) -> Result<ImportReport> {
    let started = Instant::now();
    valid_feed_name(&opts.feed)?;
    if let Some(w) = opts.weight
        && !(0.0..=MAX_WEIGHT).contains(&w)
    {
        bail!("--weight must be a number from 0 to {MAX_WEIGHT} (got {w})");
    }
    let src = Source::parse(&resolve_source(source))?;
    let shown = fetch::display_source(&src);
    let mut store = IntelStore::open(data_dir)?;
    let previous = store.feed(&opts.feed)?;
    let mut sink = Collector::new(opts.wide);
    let format = match &src {
        Source::Taxii(u) => {
            if opts.format.is_some_and(|f| f != Format::Stix) {
                bail!("a TAXII collection holds STIX; --format must be `taxii`, `stix` or `auto`");
            }
            progress.phase(Phase::Download, None);
            let mut objects = 0u64;
            fetch::taxii(u, &mut |envelope: &serde_json::Value| {
                objects += envelope
                    .get("objects")
                    .and_then(|o| o.as_array())
                    .map_or(0, |a| a.len() as u64);
                progress.advance(objects);
                parse::stix::parse_value(envelope, &mut sink)
                    .context("a TAXII page is not a STIX envelope")
            })
            .with_context(|| format!("cannot read TAXII collection {shown}"))?;
            Format::Stix
        }
        _ => {
            progress.phase(Phase::Download, None);
            let bytes = fetch::read(&src, &mut |done, total| {
                if done == 0 {
                    return;
                }
                let _ = total;
                progress.advance(done);
            })
            .with_context(|| format!("cannot read feed {shown}"))?;
            let format = opts
                .format
                .unwrap_or_else(|| parse::detect(&src.name(), &bytes));
            progress.phase(Phase::Parse, Some(bytes.len() as u64));
            parse_bytes(&src, format, &bytes, &opts.csv, &mut sink, progress)
                .with_context(|| format!("cannot parse {shown} as {format}"))?;
            format
        }
    };
    let feed = FeedInfo {
        name: opts.feed.clone(),
        weight: opts
            .weight
            .or(previous.as_ref().map(|p| p.weight))
            .unwrap_or(1.0),
        half_life_ms: opts
            .half_life_ms
            .or(previous.as_ref().map(|p| p.half_life_ms))
            .unwrap_or(DEFAULT_HALF_LIFE_MS)
            .max(1),
        expires_ms: match opts.expires_ms {
            Some(0) => None,
            Some(d) => Some(d),
            None => previous.as_ref().and_then(|p| p.expires_ms),
        },
        source: shown.clone(),
        format: format.as_str().to_owned(),
        last_import: 0,
        indicators: 0,
        unsupported: sink.unsupported,
    };
    let total_rows = sink.listed.len() as u64;
    progress.phase(Phase::Write, Some(total_rows));
    let now = belay_model::now_ms();
    let diff = store.replace_feed(&feed, &sink.listed, now, &mut |done, _| {
        progress.advance(done)
    })?;
    progress.finish();
    Ok(ImportReport {
        feed: opts.feed.clone(),
        source: shown,
        format,
        added: diff.added,
        removed: diff.removed,
        unchanged: diff.unchanged,
        unsupported: sink.unsupported,
        unsupported_examples: sink.unsupported_examples,
        invalid: sink.invalid,
        invalid_examples: sink.invalid_examples,
        too_wide: sink.too_wide,
        too_wide_examples: sink.too_wide_examples,
        duplicates: sink.duplicates,
        total: total_rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn parse_bytes(
    src: &Source,
    format: Format,
    bytes: &[u8],
    csv: &CsvOptions,
    sink: &mut Collector,
    progress: &mut dyn Progress,
) -> Result<()> {
    match format {
        Format::Plain | Format::Ipset | Format::Hosts => {
            let text = String::from_utf8_lossy(bytes);
            // In chunks of whole lines, so a long list shows progress.
            let mut rest: &str = &text;
            let mut done = 0u64;
            while !rest.is_empty() {
                let mut cut = rest.len().min(4 << 20);
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                let cut = match rest[..cut].rfind('\n') {
                    Some(i) if cut < rest.len() => i + 1,
                    _ => cut,
                };
                let (chunk, tail) = rest.split_at(cut);
                if format == Format::Hosts {
                    parse::lines::parse_hosts(chunk, sink);
                } else {
                    parse::lines::parse_plain(chunk, sink);
                }
                done += chunk.len() as u64;
                progress.advance(done);
                rest = tail;
            }
        }
        Format::Csv => {
            let text = String::from_utf8_lossy(bytes);
            parse::csv::parse_csv(&text, csv, sink)?;
        }
        Format::Stix => parse::stix::parse_stix(bytes, sink)?,
        Format::Misp => match parse::misp::read(bytes)? {
            parse::misp::MispDoc::Event(e) => {
                parse::misp::parse_event(&e, sink);
            }
            parse::misp::MispDoc::Manifest(uuids) => {
                for (i, uuid) in uuids.iter().enumerate() {
                    let name = format!("{uuid}.json");
                    let body = fetch::read_sibling(src, &name)
                        .with_context(|| format!("cannot read event {name} of the manifest"))?;
                    match parse::misp::read(&body)
                        .with_context(|| format!("event {name} of the manifest"))?
                    {
                        parse::misp::MispDoc::Event(e) => {
                            parse::misp::parse_event(&e, sink);
                        }
                        parse::misp::MispDoc::Manifest(_) => {
                            bail!("event {name} of the manifest is itself a manifest")
                        }
                    }
                    progress.advance(((i + 1) * bytes.len() / uuids.len().max(1)) as u64);
                }
            }
        },
    }
    Ok(())
}

/// Resolves a directory SOURCE holding a MISP feed to its `manifest.json`.
fn resolve_source(source: &str) -> String {
    let p = Path::new(source);
    if p.is_dir() && p.join("manifest.json").is_file() {
        return p.join("manifest.json").display().to_string();
    }
    source.to_owned()
}

impl ImportReport {
    /// The `intel.update` event summarising this import. It carries the update whole, never a
    /// part of it, so a playbook cannot apply a feed partially and succeed: the added values
    /// are its observables, by type (held once: a 200,000-address update is not copied into
    /// its data as well), the removed ones `data.removed`. A set-level action
    /// (`blocklist.add_many`, `firewall.block_many`) takes such a list in one journaled change.
    pub fn event(&self) -> Event {
        let mut obs = Observables::default();
        for (v, k) in &self.added {
            let list = match k {
                Kind::Ip => &mut obs.ips,
                Kind::Cidr => &mut obs.cidrs,
                Kind::Domain => &mut obs.domains,
                Kind::Url => &mut obs.urls,
                Kind::Hash => &mut obs.hashes,
                Kind::Email => &mut obs.emails,
            };
            list.push(v.clone());
        }
        Event {
            id: belay_model::new_id(),
            kind: "intel.update".into(),
            source: format!("intel:{}", self.feed),
            time: chrono::Utc::now(),
            severity: Severity::Low,
            observables: obs,
            data: json!({
                "feed": self.feed,
                "source": self.source,
                "format": self.format,
                "removed": self.removed.iter().map(|(v, _)| v).collect::<Vec<_>>(),
                "added_count": self.added.len(),
                "removed_count": self.removed.len(),
                "unchanged_count": self.unchanged,
                "unsupported_count": self.unsupported,
                "invalid_count": self.invalid,
                "too_wide_count": self.too_wide,
                "total": self.total,
            }),
        }
    }

    /// The one-line summary the CLI prints.
    pub fn summary(&self) -> String {
        format!(
            "intel import {}: {} added, {} removed, {} unchanged, {} unsupported, {} invalid, {} too wide, {} total ({}, {:.2}s)",
            self.feed,
            self.added.len(),
            self.removed.len(),
            self.unchanged,
            self.unsupported,
            self.invalid,
            self.too_wide,
            self.total,
            self.format,
            self.seconds
        )
    }
}
