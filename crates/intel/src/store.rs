//! The intel store: `<data dir>/intel.sqlite` (SQLite, WAL).
//!
//! It owns two tables: `feed` (name, weight, half-life, expiry, last import) and `sighting`
//! (one row per feed and canonical value: kind, first and last seen, the feed's own
//! `valid_until`). A feed's import replaces all its sightings in one transaction, so a reader
//! sees the feed before or after an import, never half of one. Lookups do not query this
//! store row by row: they go through an [`Index`](crate::Index) built from it.

use crate::indicator::Kind;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// File name of the store inside the data directory.
pub const FILE_NAME: &str = "intel.sqlite";

/// Default half-life of a sighting's contribution to a score: 30 days.
pub const DEFAULT_HALF_LIFE_MS: i64 = 30 * 24 * 3600 * 1000;

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("intel store {path}: {what}: {source}")]
pub struct StoreError {
    /// The store file (or the data directory, when it could not be created).
    pub path: String,
    /// What was being done, e.g. `cannot begin the import`.
    pub what: &'static str,
    /// SQLite's error (an I/O error wrapped as a conversion failure for the directory).
    #[source]
    pub source: rusqlite::Error,
}

/// A feed's settings and latest import.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeedInfo {
    /// The feed's name, unique in the store.
    pub name: String,
    /// Multiplies the feed's contribution to scores (default 1).
    pub weight: f64,
    /// After this long without being listed again, a sighting counts half.
    pub half_life_ms: i64,
    /// A sighting stops counting this long after the feed last listed it (none: never).
    pub expires_ms: Option<i64>,
    /// Where the latest import read it: a file path (made absolute when the file exists), or a
    /// URL without its credentials (`taxii+` prefixed for a TAXII collection).
    pub source: String,
    /// The format of the latest import, as [`Format::as_str`](crate::Format::as_str) names it.
    pub format: String,
    /// When the latest import ran, in milliseconds since the epoch.
    pub last_import: i64,
    /// Distinct values the latest import listed.
    pub indicators: u64,
    /// Entries of the latest import of a kind belay cannot hold.
    pub unsupported: u64,
}

/// One value a feed lists now, as the import hands it to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listed {
    pub kind: Kind,
    pub valid_until: Option<i64>,
}

/// What replacing a feed's set changed.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    pub added: Vec<(String, Kind)>,
    pub removed: Vec<(String, Kind)>,
    pub unchanged: u64,
}

/// A sighting row, as the index loads it.
pub(crate) struct Row {
    pub value: String,
    pub kind: Kind,
    pub feed_id: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub valid_until: Option<i64>,
}

/// The SQLite intel store.
pub struct IntelStore {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feed (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    weight REAL NOT NULL,
    half_life_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    last_import INTEGER NOT NULL,
    indicators INTEGER NOT NULL,
    unsupported INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sighting (
    feed_id INTEGER NOT NULL REFERENCES feed(id),
    value TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    valid_until INTEGER,
    PRIMARY KEY (feed_id, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
";

/// The error of `what` failing on the store at `path`, for `map_err`.
fn error_at<'a>(
    path: &'a str,
    what: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError {
        path: path.to_owned(),
        what,
        source,
    }
}

impl IntelStore {
    /// Opens (creating when absent) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<IntelStore, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let err = |what| {
            let p = path.display().to_string();
            move |source| StoreError {
                path: p,
                what,
                source,
            }
        };
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            return Err(StoreError {
                path: data_dir.display().to_string(),
                what: "cannot create the data directory",
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            });
        }
        let conn = Connection::open(&path).map_err(err("cannot open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err("cannot set the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("cannot enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("cannot set synchronous"))?;
        conn.execute_batch(SCHEMA)
            .map_err(err("cannot create the schema"))?;
        Ok(IntelStore { conn, path })
    }

    /// Whether a store exists in `data_dir` (lookups on a missing store find nothing).
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join(FILE_NAME).is_file()
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError {
            path: self.path.display().to_string(),
            what,
            source,
        }
    }

    /// Begins a write-locking transaction; returns it with the store's path as errors name it.
    fn begin(
        &mut self,
        what: &'static str,
    ) -> Result<(rusqlite::Transaction<'_>, String), StoreError> {
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error_at(&path, what))?;
        Ok((tx, path))
    }

    /// Bumped by every import: an index built at an older generation is stale.
    pub fn generation(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get(0)
            })
            .map_err(self.err("cannot read the generation"))
    }

    /// Every feed, by name.
    pub fn feeds(&self) -> Result<Vec<(i64, FeedInfo)>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, name, weight, half_life_ms, expires_ms, source, format, last_import,
                        indicators, unsupported FROM feed ORDER BY name",
            )
            .map_err(self.err("cannot list feeds"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    FeedInfo {
                        name: r.get(1)?,
                        weight: r.get(2)?,
                        half_life_ms: r.get(3)?,
                        expires_ms: r.get(4)?,
                        source: r.get(5)?,
                        format: r.get(6)?,
                        last_import: r.get(7)?,
                        indicators: r.get::<_, i64>(8)?.max(0) as u64,
                        unsupported: r.get::<_, i64>(9)?.max(0) as u64,
                    },
                ))
            })
            .map_err(self.err("cannot list feeds"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("cannot list feeds"))
    }

    /// The settings of one feed.
    pub fn feed(&self, name: &str) -> Result<Option<FeedInfo>, StoreError> {
        Ok(self
            .feeds()?
            .into_iter()
            .find(|(_, f)| f.name == name)
            .map(|(_, f)| f))
    }

    /// Makes `listed` the feed's whole set at time `now`: values it no longer lists lose this
    /// feed as a source; values it lists again keep their first-seen time.
    pub(crate) fn replace_feed(
        &mut self,
        feed: &FeedInfo,
        listed: &HashMap<String, Listed>,
        now: i64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Diff, StoreError> {
        let (tx, path) = self.begin("cannot begin the import")?;
        let err = |what| error_at(&path, what);
        tx.execute(
            "INSERT INTO feed (name, weight, half_life_ms, expires_ms, source, format, last_import,
                               indicators, unsupported)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (name) DO UPDATE SET weight = excluded.weight,
                 half_life_ms = excluded.half_life_ms, expires_ms = excluded.expires_ms,
                 source = excluded.source, format = excluded.format,
                 last_import = excluded.last_import, indicators = excluded.indicators,
                 unsupported = excluded.unsupported",
            params![
                feed.name,
                feed.weight,
                feed.half_life_ms,
                feed.expires_ms,
                feed.source,
                feed.format,
                now,
                listed.len() as i64,
                feed.unsupported as i64
            ],
        )
        .map_err(err("cannot record the feed"))?;
        let feed_id: i64 = tx
            .query_row("SELECT id FROM feed WHERE name = ?1", [&feed.name], |r| {
                r.get(0)
            })
            .map_err(err("cannot read the feed id"))?;
        let mut diff = Diff::default();
        let mut existing: HashSet<String> = HashSet::new();
        let mut changed_validity: Vec<(&str, Option<i64>)> = Vec::new();
        {
            let mut st = tx
                .prepare("SELECT value, kind, valid_until FROM sighting WHERE feed_id = ?1")
                .map_err(err("cannot read the feed's set"))?;
            let mut rows = st
                .query([feed_id])
                .map_err(err("cannot read the feed's set"))?;
            while let Some(r) = rows.next().map_err(err("cannot read the feed's set"))? {
                let value: String = r.get(0).map_err(err("cannot read a sighting"))?;
                let kind: String = r.get(1).map_err(err("cannot read a sighting"))?;
                let valid_until: Option<i64> = r.get(2).map_err(err("cannot read a sighting"))?;
                match listed.get_key_value(value.as_str()) {
                    Some((key, l)) => {
                        diff.unchanged += 1;
                        if l.valid_until != valid_until {
                            changed_validity.push((key.as_str(), l.valid_until));
                        }
                        existing.insert(value);
                    }
                    None => diff
                        .removed
                        .push((value, Kind::parse(&kind).unwrap_or(Kind::Domain))),
                }
            }
        }
        let total = (diff.removed.len() + listed.len()) as u64;
        let mut done = 0u64;
        {
            let mut del = tx
                .prepare_cached("DELETE FROM sighting WHERE feed_id = ?1 AND value = ?2")
                .map_err(err("cannot prepare the removal"))?;
            for (value, _) in &diff.removed {
                del.execute(params![feed_id, value])
                    .map_err(err("cannot remove a sighting"))?;
                done += 1;
                if done.is_multiple_of(65536) {
                    progress(done, total);
                }
            }
            tx.execute(
                "UPDATE sighting SET last_seen = ?1 WHERE feed_id = ?2",
                params![now, feed_id],
            )
            .map_err(err("cannot refresh last-seen times"))?;
            let mut upd = tx
                .prepare_cached(
                    "UPDATE sighting SET valid_until = ?3 WHERE feed_id = ?1 AND value = ?2",
                )
                .map_err(err("cannot prepare the validity update"))?;
            for (value, until) in changed_validity {
                upd.execute(params![feed_id, value, until])
                    .map_err(err("cannot update a validity"))?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO sighting (feed_id, value, kind, first_seen, last_seen, valid_until)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                )
                .map_err(err("cannot prepare the insertion"))?;
            // In key order: SQLite appends to its B-tree instead of splitting pages at random.
            let mut order: Vec<(&String, &Listed)> = listed.iter().collect();
            order.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (value, l) in order {
                done += 1;
                if done.is_multiple_of(65536) {
                    progress(done, total);
                }
                if existing.contains(value) {
                    continue;
                }
                ins.execute(params![feed_id, value, l.kind.as_str(), now, l.valid_until])
                    .map_err(err("cannot insert a sighting"))?;
                diff.added.push((value.clone(), l.kind));
            }
        }
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
            [],
        )
        .map_err(err("cannot bump the generation"))?;
        tx.commit().map_err(err("cannot commit the import"))?;
        progress(total, total);
        diff.added.sort_unstable();
        diff.removed.sort_unstable();
        Ok(diff)
    }

    /// Removes a feed and all its sightings; false when there was no such feed.
    pub fn remove_feed(&mut self, name: &str) -> Result<bool, StoreError> {
        let (tx, path) = self.begin("cannot begin the removal")?;
        let err = |what| error_at(&path, what);
        let id: Option<i64> = tx
            .query_row("SELECT id FROM feed WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(err("cannot read the feed"))?;
        let Some(id) = id else { return Ok(false) };
        tx.execute("DELETE FROM sighting WHERE feed_id = ?1", [id])
            .map_err(err("cannot remove the feed's sightings"))?;
        tx.execute("DELETE FROM feed WHERE id = ?1", [id])
            .map_err(err("cannot remove the feed"))?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
            [],
        )
        .map_err(err("cannot bump the generation"))?;
        tx.commit().map_err(err("cannot commit the removal"))?;
        Ok(true)
    }

    /// Streams every sighting to `f`.
    pub(crate) fn for_each_sighting(&self, mut f: impl FnMut(Row)) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT value, kind, feed_id, first_seen, last_seen, valid_until FROM sighting",
            )
            .map_err(self.err("cannot read sightings"))?;
        let mut rows = st.query([]).map_err(self.err("cannot read sightings"))?;
        while let Some(r) = rows.next().map_err(self.err("cannot read sightings"))? {
            let kind: String = r.get(1).map_err(self.err("cannot read a sighting"))?;
            let Some(kind) = Kind::parse(&kind) else {
                continue;
            };
            f(Row {
                value: r.get(0).map_err(self.err("cannot read a sighting"))?,
                kind,
                feed_id: r.get(2).map_err(self.err("cannot read a sighting"))?,
                first_seen: r.get(3).map_err(self.err("cannot read a sighting"))?,
                last_seen: r.get(4).map_err(self.err("cannot read a sighting"))?,
                valid_until: r.get(5).map_err(self.err("cannot read a sighting"))?,
            });
        }
        Ok(())
    }

    /// Sightings and distinct values, by kind.
    pub fn counts(&self) -> Result<Vec<(Kind, u64, u64)>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT kind, COUNT(*), COUNT(DISTINCT value) FROM sighting GROUP BY kind ORDER BY kind",
            )
            .map_err(self.err("cannot count sightings"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.err("cannot count sightings"))?;
        let mut out = Vec::new();
        for r in rows {
            let (k, s, d) = r.map_err(self.err("cannot count sightings"))?;
            if let Some(k) = Kind::parse(&k) {
                out.push((k, s.max(0) as u64, d.max(0) as u64));
            }
        }
        Ok(out)
    }
}
