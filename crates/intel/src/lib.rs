//! Threat intel for belay: feed parsers, a scored indicator store, lookups, and the
//! `intel.lookup` action.
//!
//! The flow is visible in the modules: `fetch` reads a source (file, URL, TAXII
//! collection), [`parse`] turns a feed format into raw records, [`indicator`] brings each
//! value to one canonical spelling, [`import`] replaces the feed's set in the [`store`] and
//! reports what changed (the `intel.update` event), and [`index`] answers lookups and scores
//! from memory. This crate never runs playbooks: the CLI hands the update event to the engine.

pub mod bench;
pub mod connector;
pub(crate) mod fetch;
pub mod import;
pub mod index;
pub mod indicator;
pub mod parse;
pub mod query;
pub mod store;

pub use connector::Intel;
pub use import::{
    ImportOptions, ImportReport, MAX_WEIGHT, NoProgress, Phase, Progress, WideLimit, import,
};
pub use index::{Index, Lookup};
pub use indicator::{Indicator, Kind, normalize};
pub use parse::Format;
pub use store::{FeedInfo, IntelStore};
