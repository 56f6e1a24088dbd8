//! `belay intel bench`: import N generated indicators through the real import path, then
//! time lookups that hit, miss, and hit through a containing network.

use crate::import::{ImportOptions, NoProgress, import};
use crate::index::Index;
use crate::store::IntelStore;
use anyhow::{Context, Result};
use serde::Serialize;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Indicators generated and imported (a tenth each /24 networks, domains and SHA-256
    /// hashes, the rest IPv4 addresses).
    pub indicators: usize,
    /// Wall-clock seconds of the import (parse, normalize, write the store).
    pub import_seconds: f64,
    /// Wall-clock seconds to load the lookup index from the store.
    pub index_seconds: f64,
    /// Peak resident memory of the process (Linux `VmHWM`), in MiB.
    pub peak_rss_mb: f64,
    /// Lookups timed in each of the three series.
    pub lookups: usize,
    /// Mean nanoseconds of a lookup of an imported address.
    pub ns_per_hit: f64,
    /// Mean nanoseconds of a lookup of an address in no imported network or list.
    pub ns_per_miss: f64,
    /// Mean nanoseconds of a lookup of an address found only through an imported /24.
    pub ns_per_cidr_hit: f64,
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn v4(x: u32) -> String {
    std::net::Ipv4Addr::from(x).to_string()
}

/// Networks are /24s from 10.0.0.0 upwards; single IPs avoid 10-12/8 and 198.18.0.0/15
/// (where the misses are drawn from).
fn is_reserved(x: u32) -> bool {
    let a = x >> 24;
    matches!(a, 0 | 10..=12 | 127 | 224..) || x >> 17 == (198 << 7 | 18 >> 1)
}

/// Writes the generated feed: 70 % IPv4 addresses, 10 % /24 networks, 10 % domains,
/// 10 % SHA-256 hashes. Returns a sample of the single IPs written.
fn generate(path: &Path, n: usize) -> Result<Vec<String>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut rng = SplitMix(42);
    let mut ip_counter: u32 = 1;
    let mut sample = Vec::new();
    for i in 0..n {
        match i % 10 {
            0 => writeln!(out, "{}/24", v4(0x0A00_0000 + ((i as u32 / 10) << 8)))?,
            1 => writeln!(out, "host{i}.example{}.com", i % 977)?,
            2 => writeln!(
                out,
                "{:016x}{:016x}{:016x}{:016x}",
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next()
            )?,
            _ => {
                let ip = loop {
                    // An odd multiplier is a bijection on u32: no duplicates.
                    let x = ip_counter.wrapping_mul(2_654_435_761);
                    ip_counter = ip_counter.wrapping_add(1);
                    if !is_reserved(x) {
                        break x;
                    }
                };
                let s = v4(ip);
                if sample.len() < 100_000 && i % 7 == 0 {
                    sample.push(s.clone());
                }
                writeln!(out, "{s}")?;
            }
        }
    }
    out.flush()?;
    Ok(sample)
}

/// Runs the benchmark in `work` (a scratch directory).
pub fn run(work: &Path, n: usize, lookups: usize) -> Result<BenchReport> {
    let feed = work.join("generated.txt");
    let hits = generate(&feed, n)?;
    let data = work.join("data");
    let started = Instant::now();
    let opts = ImportOptions {
        feed: "bench".into(),
        ..Default::default()
    };
    let report = import(&data, &feed.display().to_string(), &opts, &mut NoProgress)?;
    let import_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.total as usize == n,
        "the import kept {} of {n} generated indicators",
        report.total
    );
    drop(report);
    let started = Instant::now();
    let index = Index::load(&IntelStore::open(&data)?)?;
    let index_seconds = started.elapsed().as_secs_f64();
    let now = belay_model::now_ms();
    let cidr_count = n.div_ceil(10) as u32;
    let mut rng = SplitMix(7);
    let hit_q: Vec<String> = (0..lookups)
        .map(|i| hits[i % hits.len().max(1)].clone())
        .collect();
    let miss_q: Vec<String> = (0..lookups)
        .map(|_| v4((198 << 24) | (18 << 16) | (rng.next() as u32 & 0x1_ffff)))
        .collect();
    let cidr_q: Vec<String> = (0..lookups)
        .map(|_| {
            let net = (rng.next() as u32) % cidr_count.max(1);
            v4(0x0A00_0000 + (net << 8) + (rng.next() as u32 & 0xff))
        })
        .collect();
    let time = |queries: &[String], want: bool| -> Result<f64> {
        let started = Instant::now();
        for q in queries {
            let r = index.lookup(black_box(q), None, now)?;
            anyhow::ensure!(r.found == want, "lookup of {q}: found={} ", r.found);
            black_box(r);
        }
        Ok(started.elapsed().as_nanos() as f64 / queries.len().max(1) as f64)
    };
    let ns_per_hit = time(&hit_q, !hits.is_empty())?;
    let ns_per_miss = time(&miss_q, false)?;
    let ns_per_cidr_hit = time(&cidr_q, n > 0)?;
    Ok(BenchReport {
        indicators: n,
        import_seconds,
        index_seconds,
        peak_rss_mb: peak_rss_mb(),
        lookups,
        ns_per_hit,
        ns_per_miss,
        ns_per_cidr_hit,
    })
}

/// Peak resident memory of this process, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_benchmark_finds_what_it_generated() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(dir.path(), 2000, 500).unwrap();
        assert_eq!(r.indicators, 2000);
        assert!(r.peak_rss_mb > 0.0);
    }
}
