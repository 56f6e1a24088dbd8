//! Fuzzes the CEF parser: `locate` then `parse` on the input as text, the field accessors, and
//! the normalizer on the same text (CEF over syslog, and DLP products' CEF).

#![no_main]

#[path = "watch.rs"]
mod watch;

use belay_logs::cef;
use belay_logs::normalize::{Context, Normalizer};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static NORMALIZER: LazyLock<Normalizer> = LazyLock::new(Normalizer::builtin);

#[global_allocator]
static ALLOC: watch::Counting = watch::Counting;

fuzz_target!(|data: &[u8]| {
    watch::unit(data.len(), || {
        let text = String::from_utf8_lossy(data);
        let start = cef::locate(&text).unwrap_or(0);
        if let Ok(e) = cef::parse(&text[start..]) {
            for (k, _) in &e.extensions {
                assert!(e.get(k).is_some());
                let _ = e.labeled(k);
            }
        }
        let _ = cef::parse(&text);
        let _ = NORMALIZER.line(text.as_bytes(), &Context::new("fuzz"));
    });
});
