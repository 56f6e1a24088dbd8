//! Fetched messages to events: the step `belay email ingest` and `belay serve`'s mailbox
//! source share. Each message that parses becomes its `phishing.reported` event (with where it
//! was read in `data.origin`); one that does not is named with the reason and left in place.

use crate::source::Fetched;
use crate::{ParseOptions, parse_with, to_event};
use belay_model::Event;
use serde_json::Value;
use std::collections::HashSet;

/// What one fetch gave.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The events, in the order of the messages.
    pub events: Vec<Event>,
    /// Each event's message: the source's handle on it and where it was read.
    pub messages: Vec<(String, String)>,
    /// Messages that are not messages: where they were read and why (left in place).
    pub rejected: Vec<(String, String)>,
}

/// The events of `fetched` from the source `name`. Messages in `skipped` (refused before) are
/// passed over; newly refused ones are added to it, so a poll names each only once.
pub fn prepare(
    fetched: Vec<Fetched>,
    options: &ParseOptions,
    name: &str,
    skipped: &mut HashSet<String>,
) -> Prepared {
    let mut out = Prepared::default();
    for f in fetched {
        if skipped.contains(&f.id) {
            continue;
        }
        match parse_with(&f.raw, options) {
            Ok(parsed) => {
                let mut event = to_event(&f.raw, &parsed, name);
                if let Value::Object(data) = &mut event.data {
                    data.insert("origin".into(), Value::String(f.origin.clone()));
                }
                out.events.push(event);
                out.messages.push((f.id, f.origin));
            }
            Err(e) => {
                out.rejected.push((f.origin, e.to_string()));
                skipped.insert(f.id);
            }
        }
    }
    out
}
