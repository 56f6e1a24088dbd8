//! Reading the intel store of a data directory as people ask (`belay intel lookup|stats`,
//! `/api/v1/intel/…`): one value looked up, and the feeds with counts by type. Blocking: call
//! from a blocking task.

use crate::index::{Index, Lookup};
use crate::indicator::{Kind, NormalizeError};
use crate::store::{FeedInfo, IntelStore, StoreError};
use serde::Serialize;
use std::path::Path;

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The value is not an indicator of the kind given (or of any kind).
    #[error(transparent)]
    Value(#[from] NormalizeError),
    /// The intel store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Looks `value` up in the intel store under `data` at `now` (an empty answer when no feed was
/// ever imported); `hint` forces its kind.
pub fn lookup(
    data: &Path,
    value: &str,
    hint: Option<Kind>,
    now: i64,
) -> Result<Lookup, QueryError> {
    let index = if IntelStore::exists(data) {
        Index::load(&IntelStore::open(data)?)?
    } else {
        Index::default()
    };
    Ok(index.lookup(value, hint, now)?)
}

/// The values and listings of one indicator type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TypeCount {
    /// Listings (one per feed and value).
    pub sightings: u64,
    /// Distinct values.
    pub values: u64,
}

/// The feeds imported into a data directory, and what they list by type.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Stats {
    /// Each feed, its settings and latest import.
    pub feeds: Vec<FeedInfo>,
    /// Counts by indicator type (`ip`, `domain`, …).
    pub by_type: std::collections::BTreeMap<String, TypeCount>,
}

/// The feeds and counts of the intel store under `data` (empty when none was imported).
pub fn stats(data: &Path) -> Result<Stats, StoreError> {
    if !IntelStore::exists(data) {
        return Ok(Stats::default());
    }
    let store = IntelStore::open(data)?;
    let feeds = store.feeds()?.into_iter().map(|(_, f)| f).collect();
    let by_type = store
        .counts()?
        .into_iter()
        .map(|(k, sightings, values)| (k.to_string(), TypeCount { sightings, values }))
        .collect();
    Ok(Stats { feeds, by_type })
}
