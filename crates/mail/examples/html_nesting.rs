//! Benchmark: time to parse a reported message whose HTML opens `<div>` N times without
//! closing it, for N and 4N. Parsing is linear when the 4N time stays near 4x the N time
//! (the tree builder used before took 2.7 s for 40,000 and 10.9 s for 80,000).
//!
//! `cargo run --release -p belay-mail --example html_nesting [N]` (default 100,000).

use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut last = None;
    for count in [n, 4 * n] {
        let raw = format!(
            "From: a@sender.example\r\nSubject: nesting\r\nContent-Type: text/html\r\n\r\n\
             <html><body>{}<a href=\"https://evil.example/\">x</a></body></html>",
            "<div>".repeat(count)
        );
        // Best of three, to keep a busy machine's noise out.
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                let parsed = belay_mail::parse(raw.as_bytes()).expect("parsed");
                assert_eq!(parsed.urls, ["https://evil.example/"]);
                t.elapsed()
            })
            .min()
            .unwrap_or_default();
        let ratio = last.map(|l: std::time::Duration| best.as_secs_f64() / l.as_secs_f64());
        println!(
            "{count:>9} nested <div> ({:>8} bytes): {:>8.1} ms{}",
            raw.len(),
            best.as_secs_f64() * 1e3,
            ratio.map_or(String::new(), |r| format!(
                "  ({r:.2}x the time for 4x the input)"
            ))
        );
        last = Some(best);
    }
}
