//! Normalizer throughput on real files: every record of the given files, `--repeat N` times.
//!
//! `cargo run --release -p belay-logs --example throughput -- --repeat 200 FILE...`

use belay_logs::normalize::{Context, Normalizer, split_records};
use std::time::Instant;

fn main() {
    let mut repeat = 100usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--repeat" {
            repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or(repeat);
        } else {
            files.push(a);
        }
    }
    let mut records = Vec::new();
    for f in &files {
        match std::fs::read(f) {
            Ok(bytes) => records.extend(split_records(&bytes).into_iter().map(|(_, r)| r)),
            Err(e) => {
                eprintln!("error: cannot read {f}: {e}");
                std::process::exit(1);
            }
        }
    }
    if records.is_empty() {
        eprintln!("usage: throughput [--repeat N] FILE...");
        std::process::exit(2);
    }
    let n = Normalizer::builtin();
    let ctx = Context::new("bench");
    let bytes: usize = records.iter().map(Vec::len).sum::<usize>() * repeat;
    let started = Instant::now();
    let mut events = 0usize;
    for _ in 0..repeat {
        for r in &records {
            events += usize::from(n.line(r, &ctx).is_some());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{events} events from {} records x {repeat} in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
        records.len(),
        events as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}
