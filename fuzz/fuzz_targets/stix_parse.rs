//! Fuzzes the STIX reader: bundles, envelopes and indicator patterns.
//!
//! The input is read as a STIX document; whatever it yields is normalized as the import
//! would. Its UTF-8 reading is also parsed as a bare pattern, so the pattern tokenizer is
//! reached without a JSON wrapper.

#![no_main]

#[path = "watch.rs"]
mod watch;

use belay_intel::normalize;
use belay_intel::parse::{VecSink, stix};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: watch::Counting = watch::Counting;

fuzz_target!(|data: &[u8]| {
    watch::unit(data.len(), || {
        let mut sink = VecSink::default();
        if stix::parse_stix(data, &mut sink).is_ok() {
            for (value, hint, _) in &sink.records {
                let _ = normalize(value, *hint);
            }
        }
        let text = String::from_utf8_lossy(data);
        if let Ok(values) = stix::simple_pattern(&text) {
            assert!(!values.is_empty(), "a supported pattern yields a value");
            for (kind, value) in values {
                let _ = normalize(&value, Some(kind));
            }
        }
    });
});
