//! Fuzzes the CSV reader with a column mapping, and the line-list readers beside it.
//!
//! Input layout: the first byte picks the mapping (default, value column by number or by
//! name, with or without a type column); the rest is the feed text. Every record found is
//! normalized as the import would.

#![no_main]

#[path = "watch.rs"]
mod watch;

use belay_intel::normalize;
use belay_intel::parse::csv::{CsvOptions, parse_csv};
use belay_intel::parse::{VecSink, detect, lines};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: watch::Counting = watch::Counting;

fuzz_target!(|data: &[u8]| {
    watch::unit(data.len(), || {
        let Some((&selector, body)) = data.split_first() else {
            return;
        };
        let opts = match selector % 5 {
            0 => CsvOptions::default(),
            1 => CsvOptions {
                value_column: Some(((selector >> 3) % 4 + 1).to_string()),
                type_column: None,
            },
            2 => CsvOptions {
                value_column: Some("url".into()),
                type_column: Some("type".into()),
            },
            3 => CsvOptions {
                value_column: Some("value".into()),
                type_column: Some(((selector >> 3) % 3 + 1).to_string()),
            },
            _ => CsvOptions {
                value_column: None,
                type_column: Some("type".into()),
            },
        };
        let text = String::from_utf8_lossy(body);
        let mut sink = VecSink::default();
        let _ = parse_csv(&text, &opts, &mut sink);
        lines::parse_plain(&text, &mut sink);
        lines::parse_hosts(&text, &mut sink);
        let _ = detect("feed", body);
        for (value, hint, _) in &sink.records {
            let _ = normalize(value, *hint);
        }
    });
});
