//! The in-memory lookup index and scoring.
//!
//! Built once from the store (and again when an import bumps the store's generation), it
//! answers lookups without touching disk: exact values in a hash map, IPv4 and IPv6 networks
//! in prefix tries, so an IP finds every network that contains it in one walk down the trie.
//!
//! **Score.** A value's score is the sum, over the distinct feeds that list it (directly or,
//! for an IP, through a network containing it) and whose listing has not expired, of
//! `weight × 0.5^(age / half_life)`, where `age` is the time since that feed last listed it,
//! and `weight` (default 1) and `half_life` (default 30 days) are the feed's settings. So with
//! default settings and fresh imports the score is the number of independent feeds listing
//! the value; a feed that stopped listing it no longer counts at all. Scores are rounded to
//! two decimals. A listing expires at the feed's own `valid_until` (STIX) or, when the feed
//! has `--expires`, that long after the feed last listed it, whichever is first.

use crate::indicator::{Indicator, Kind, NormalizeError, normalize};
use crate::store::{FeedInfo, IntelStore, StoreError};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
struct Sighting {
    feed: u32,
    first_seen: i64,
    last_seen: i64,
    /// The feed's own end of validity; `i64::MAX` when it gave none.
    valid_until: i64,
}

#[derive(Debug, Default)]
struct Entry {
    kind: Option<Kind>,
    sightings: Vec<Sighting>,
}

/// Lookups and scores over every feed's current set.
#[derive(Default)]
pub struct Index {
    feeds: Vec<FeedInfo>,
    exact: HashMap<Box<str>, Entry>,
    v4: PrefixMap<Ipv4Net, Entry>,
    v6: PrefixMap<Ipv6Net, Entry>,
    generation: i64,
    sightings: u64,
}

/// One feed's listing of a matched value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceView {
    /// The feed's name.
    pub feed: String,
    /// When the feed first listed the value (RFC 3339); kept across imports that list it again.
    pub first_seen: String,
    /// When the feed last listed it: its latest import that did (RFC 3339).
    pub last_seen: String,
    /// When this listing stops counting, if ever.
    pub expires_at: Option<String>,
    /// Whether `expires_at` is past at lookup time.
    pub expired: bool,
    /// What this listing adds to the score (0 when expired).
    pub contribution: f64,
}

/// A stored value that matches the looked-up one (itself, or a network containing it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Match {
    /// The stored value in canonical form (for a network, its CIDR text).
    pub value: String,
    /// The stored value's kind, serialized as `type`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Every feed's listing of it, expired ones included.
    pub sources: Vec<SourceView>,
}

/// The answer to a lookup.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Lookup {
    /// The looked-up value in canonical form.
    pub value: String,
    /// The looked-up value's kind (given or guessed), serialized as `type`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Whether at least one feed lists it now.
    pub found: bool,
    /// The score defined in the module docs, two decimals; 0 when not found.
    pub score: f64,
    /// The feeds that list it now (unexpired), by name.
    pub sources: Vec<String>,
    /// Earliest first listing among the live listings (RFC 3339); none when not found.
    pub first_seen: Option<String>,
    /// Latest listing among the live listings (RFC 3339); none when not found.
    pub last_seen: Option<String>,
    /// The stored values that match (the value itself, networks containing it), with every
    /// listing, expired ones included; empty when nothing is stored for it.
    pub matches: Vec<Match>,
}

fn iso(ms: i64) -> String {
    belay_model::ms_to_rfc3339(ms)
}

impl Index {
    /// Loads every sighting of the store.
    pub fn load(store: &IntelStore) -> Result<Index, StoreError> {
        let generation = store.generation()?;
        let feeds = store.feeds()?;
        let slot: HashMap<i64, u32> = feeds
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i as u32))
            .collect();
        let mut index = Index {
            feeds: feeds.into_iter().map(|(_, f)| f).collect(),
            generation,
            ..Index::default()
        };
        store.for_each_sighting(|row| {
            let Some(&feed) = slot.get(&row.feed_id) else {
                return;
            };
            let s = Sighting {
                feed,
                first_seen: row.first_seen,
                last_seen: row.last_seen,
                valid_until: row.valid_until.unwrap_or(i64::MAX),
            };
            index.insert(&row.value, row.kind, s);
        })?;
        Ok(index)
    }

    fn insert(&mut self, value: &str, kind: Kind, s: Sighting) {
        self.sightings += 1;
        let entry = if kind == Kind::Cidr {
            match value.parse::<IpNet>() {
                Ok(IpNet::V4(n)) => entry_in(&mut self.v4, n),
                Ok(IpNet::V6(n)) => entry_in(&mut self.v6, n),
                Err(_) => return,
            }
        } else {
            match self.exact.get_mut(value) {
                Some(e) => e,
                None => self.exact.entry(value.into()).or_default(),
            }
        };
        entry.kind = Some(kind);
        entry.sightings.push(s);
    }

    /// The store generation this index reflects.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Distinct values held (exact values and networks).
    pub fn len(&self) -> usize {
        self.exact.len() + self.v4.iter().count() + self.v6.iter().count()
    }

    /// Whether it holds no value at all (an empty or missing store).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.v4.iter().next().is_none() && self.v6.iter().next().is_none()
    }

    /// The feeds as they were when the index was loaded, by name.
    pub fn feeds(&self) -> &[FeedInfo] {
        &self.feeds
    }

    /// Looks a raw value up at time `now` (milliseconds since the epoch). `hint` forces a kind.
    pub fn lookup(
        &self,
        raw: &str,
        hint: Option<Kind>,
        now: i64,
    ) -> Result<Lookup, NormalizeError> {
        let ind = normalize(raw, hint)?;
        Ok(self.lookup_normalized(&ind, now))
    }

    /// Looks a canonical indicator up.
    pub fn lookup_normalized(&self, ind: &Indicator, now: i64) -> Lookup {
        let mut hits: Vec<(String, &Entry)> = Vec::new();
        match ind.kind {
            Kind::Ip => {
                if let Some(e) = self.exact.get(ind.value.as_str()) {
                    hits.push((ind.value.clone(), e));
                }
                match ind.value.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) => {
                        for (net, e) in self.v4.cover(&Ipv4Net::from(a)) {
                            hits.push((net.to_string(), e));
                        }
                    }
                    Ok(IpAddr::V6(a)) => {
                        for (net, e) in self.v6.cover(&Ipv6Net::from(a)) {
                            hits.push((net.to_string(), e));
                        }
                    }
                    Err(_) => {}
                }
            }
            Kind::Cidr => match ind.value.parse::<IpNet>() {
                // A network matches the stored networks that contain it (itself included).
                Ok(IpNet::V4(n)) => {
                    for (net, e) in self.v4.cover(&n) {
                        hits.push((net.to_string(), e));
                    }
                }
                Ok(IpNet::V6(n)) => {
                    for (net, e) in self.v6.cover(&n) {
                        hits.push((net.to_string(), e));
                    }
                }
                Err(_) => {}
            },
            _ => {
                if let Some(e) = self.exact.get(ind.value.as_str()) {
                    hits.push((ind.value.clone(), e));
                }
            }
        }
        self.answer(ind, hits, now)
    }

    fn answer(&self, ind: &Indicator, hits: Vec<(String, &Entry)>, now: i64) -> Lookup {
        // Per feed, the best (freshest) live contribution across all matches.
        let mut best: Vec<(u32, f64)> = Vec::new();
        let mut first_seen = i64::MAX;
        let mut last_seen = i64::MIN;
        let mut matches = Vec::with_capacity(hits.len());
        for (value, entry) in hits {
            let mut sources = Vec::with_capacity(entry.sightings.len());
            for s in &entry.sightings {
                let Some(feed) = self.feeds.get(s.feed as usize) else {
                    continue;
                };
                let expires_at = match feed.expires_ms {
                    Some(d) => s.valid_until.min(s.last_seen.saturating_add(d)),
                    None => s.valid_until,
                };
                let expired = now >= expires_at;
                let contribution = if expired {
                    0.0
                } else {
                    let age = (now - s.last_seen).max(0) as f64;
                    let half = feed.half_life_ms.max(1) as f64;
                    feed.weight * 0.5f64.powf(age / half)
                };
                if !expired {
                    first_seen = first_seen.min(s.first_seen);
                    last_seen = last_seen.max(s.last_seen);
                    match best.iter_mut().find(|(f, _)| *f == s.feed) {
                        Some((_, c)) => *c = c.max(contribution),
                        None => best.push((s.feed, contribution)),
                    }
                }
                sources.push(SourceView {
                    feed: feed.name.clone(),
                    first_seen: iso(s.first_seen),
                    last_seen: iso(s.last_seen),
                    expires_at: (expires_at != i64::MAX).then(|| iso(expires_at)),
                    expired,
                    contribution: round2(contribution),
                });
            }
            matches.push(Match {
                value,
                kind: entry.kind.unwrap_or(ind.kind),
                sources,
            });
        }
        let mut names: Vec<String> = best
            .iter()
            .filter_map(|(f, _)| self.feeds.get(*f as usize).map(|f| f.name.clone()))
            .collect();
        names.sort_unstable();
        let found = !best.is_empty();
        Lookup {
            value: ind.value.clone(),
            kind: ind.kind,
            found,
            score: round2(best.iter().map(|(_, c)| c).sum()),
            sources: names,
            first_seen: found.then(|| iso(first_seen)),
            last_seen: found.then(|| iso(last_seen)),
            matches,
        }
    }

    /// Whether any live listing matches; the cheapest form of a lookup.
    pub fn contains(&self, ind: &Indicator) -> bool {
        match ind.kind {
            Kind::Ip => {
                self.exact.contains_key(ind.value.as_str())
                    || match ind.value.parse::<IpAddr>() {
                        Ok(IpAddr::V4(a)) => self.v4.cover(&Ipv4Net::from(a)).next().is_some(),
                        Ok(IpAddr::V6(a)) => self.v6.cover(&Ipv6Net::from(a)).next().is_some(),
                        Err(_) => false,
                    }
            }
            _ => self.exact.contains_key(ind.value.as_str()),
        }
    }

    /// Sightings loaded.
    pub fn sightings(&self) -> u64 {
        self.sightings
    }
}

fn entry_in<P: prefix_trie::Prefix>(map: &mut PrefixMap<P, Entry>, net: P) -> &mut Entry {
    map.entry(net).or_default()
}

/// Two decimals; never `-0` (an empty sum of floats is `-0.0`, which JSON prints as `-0.0`).
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0 + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_score_is_zero_not_negative_zero() {
        let none: [f64; 0] = [];
        let score = round2(none.iter().sum());
        assert!(score == 0.0 && score.is_sign_positive(), "{score}");
        assert_eq!(serde_json::json!(score).to_string(), "0.0");
    }
}
