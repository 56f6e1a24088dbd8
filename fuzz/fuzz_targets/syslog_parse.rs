//! Fuzzes syslog handling end to end: the header parser, the TCP framer (the input fed in two
//! reads with a small message limit), and the normalizer on the whole input.

#![no_main]

#[path = "watch.rs"]
mod watch;

use belay_logs::framing::Framer;
use belay_logs::normalize::{Context, Normalizer};
use belay_logs::syslog;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static NORMALIZER: LazyLock<Normalizer> = LazyLock::new(Normalizer::builtin);

#[global_allocator]
static ALLOC: watch::Counting = watch::Counting;

fuzz_target!(|data: &[u8]| {
    watch::unit(data.len(), || {
        if let Ok(m) = syslog::parse(data) {
            let _ = m.header_json();
            let _ = NORMALIZER.syslog(&m, &Context::new("fuzz"));
        }
        let _ = NORMALIZER.line(data, &Context::new("fuzz"));

        // Framing: every frame within the limit, buffering bounded, whatever the split.
        const MAX: usize = 64;
        let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
        let mut framer = Framer::new(MAX);
        let mut frames = Vec::new();
        framer.push(&data[..cut], &mut frames);
        framer.push(&data[cut..], &mut frames);
        assert!(framer.pending() <= MAX + 8, "pending {}", framer.pending());
        framer.finish(&mut frames);
        for f in &frames {
            assert!(f.bytes.len() <= MAX, "frame of {} bytes", f.bytes.len());
        }
    });
});
