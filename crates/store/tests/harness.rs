//! Opens fresh stores of each backend for the conformance suite.

use belay_store::{SqliteOptions, SqliteStore, Store};
use std::sync::Arc;

/// Lease used by the suite, short so expiry can be tested.
pub const LEASE_MS: i64 = 300;

pub enum Backend {
    Sqlite,
    Postgres,
}

/// Keeps whatever backs a store alive for the test (a temporary directory).
pub type Guard = Option<tempfile::TempDir>;

impl Backend {
    pub async fn open(&self) -> (Arc<dyn Store>, Guard) {
        let (a, _b, g) = self.open_pair().await;
        (a, g)
    }

    /// Two workers on one fresh database.
    pub async fn open_pair(&self) -> (Arc<dyn Store>, Arc<dyn Store>, Guard) {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let opts = SqliteOptions { lease_ms: LEASE_MS, ..Default::default() };
                let a = SqliteStore::open(dir.path(), opts.clone()).unwrap();
                let b = SqliteStore::open(dir.path(), opts).unwrap();
                (Arc::new(a), Arc::new(b), Some(dir))
            }
            Backend::Postgres => unimplemented!("PostgreSQL store not written yet"),
        }
    }
}
