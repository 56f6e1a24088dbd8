//! Fuzzes the e-mail parser: a raw message, parsed plainly and with report unwrapping, then
//! scored, turned into an event and serialized (what `belay email ingest` does with it).

#![no_main]

#[path = "watch.rs"]
mod watch;

use belay_mail::{ParseOptions, parse, parse_with, to_event};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: watch::Counting = watch::Counting;

fuzz_target!(|data: &[u8]| {
    watch::unit(data.len(), || {
        let plain = parse(data);
        let unwrapped = parse_with(
            data,
            &ParseOptions {
                unwrap: true,
                own_relays: vec!["10.0.0.0/8".parse().unwrap()],
                ..Default::default()
            },
        );
        for parsed in [plain, unwrapped].into_iter().flatten() {
            let event = to_event(data, &parsed, "fuzz");
            let _ = serde_json::to_string(&event);
        }
        let text = String::from_utf8_lossy(data);
        let _ = belay_mail::links::refang(&text);
    });
});
