//! Fuzzes the HTML link walker and the plain-text URL scanner of the e-mail parser, under
//! the time and memory watch: an HTML body, then the same bytes as text, and quoted-printable
//! decoding of them.

#![no_main]

#[path = "watch.rs"]
mod watch;

use belay_mail::links::{LinkSet, text_urls};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: watch::Counting = watch::Counting;

fuzz_target!(|data: &[u8]| {
    watch::unit(data.len(), || {
        let text = String::from_utf8_lossy(data);
        let mut set = LinkSet::default();
        let scan = set.add_html(&text, None);
        // Tags, text runs, comments, doctypes and parse errors: a few per input byte at most.
        assert!(scan.steps <= 4 * data.len() as u64 + 4, "{} steps", scan.steps);
        for url in text_urls(&text) {
            assert!(!url.chars().any(char::is_whitespace), "{url:?}");
        }
        let decoded = belay_mail::qp::decode(data);
        assert!(decoded.len() <= data.len());
    });
});
