//! `intel.*`: the `intel.lookup` action over the intel store.
//!
//! The connector keeps one [`Index`] in memory and rebuilds it when an import has changed the
//! store since (the store's generation moved), so a long-running engine sees new imports
//! without a restart. It only reads: it never imports or changes a feed.

use crate::index::Index;
use crate::indicator::{Kind, NormalizeError};
use crate::store::IntelStore;
use belay_connector_api::ActionError;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The `intel` connector, reading `<data dir>/intel.sqlite`.
#[derive(Clone)]
pub struct Intel {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    cached: Mutex<Option<Arc<Index>>>,
}

impl Intel {
    /// The connector over the store in `data_dir`; opens nothing until the first lookup (a
    /// missing store then finds nothing).
    pub fn new(data_dir: PathBuf) -> Intel {
        Intel {
            inner: Arc::new(Inner {
                data_dir,
                cached: Mutex::new(None),
            }),
        }
    }

    /// `intel.lookup` with its validated input, as the action returns it.
    pub fn lookup(&self, input: &Value) -> Result<Value, ActionError> {
        self.inner.lookup(input)
    }
}

impl Inner {
    /// The current index: the cached one while the store's generation is unchanged.
    fn index(&self) -> Result<Arc<Index>, ActionError> {
        if !IntelStore::exists(&self.data_dir) {
            return Ok(Arc::new(Index::default()));
        }
        let store =
            IntelStore::open(&self.data_dir).map_err(|e| ActionError::transient(e.to_string()))?;
        let generation = store
            .generation()
            .map_err(|e| ActionError::transient(e.to_string()))?;
        let mut cached = self
            .cached
            .lock()
            .map_err(|_| ActionError::transient("the intel index lock is poisoned"))?;
        if let Some(ix) = cached.as_ref()
            && ix.generation() == generation
        {
            return Ok(ix.clone());
        }
        let ix = Arc::new(Index::load(&store).map_err(|e| ActionError::transient(e.to_string()))?);
        *cached = Some(ix.clone());
        Ok(ix)
    }

    fn lookup(&self, input: &Value) -> Result<Value, ActionError> {
        let value = input
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| ActionError::permanent("missing text input `value`"))?;
        let hint = match input.get("type").and_then(Value::as_str) {
            Some(t) => Some(Kind::parse(t).ok_or_else(|| {
                ActionError::permanent(format!(
                    "`type` must be ip, cidr, domain, url, hash or email, not `{t}`"
                ))
            })?),
            None => None,
        };
        let index = self.index()?;
        let found = index
            .lookup(value, hint, belay_model::now_ms())
            .map_err(|e: NormalizeError| ActionError::permanent(e.to_string()))?;
        let mut out = json!({
            "found": found.found,
            "value": found.value,
            "type": found.kind,
            "score": found.score,
            "sources": found.sources,
            "source_count": found.sources.len(),
            "matches": found.matches,
        });
        if let (Some(map), Some(first), Some(last)) =
            (out.as_object_mut(), found.first_seen, found.last_seen)
        {
            map.insert("first_seen".into(), json!(first));
            map.insert("last_seen".into(), json!(last));
        }
        Ok(out)
    }
}

belay_connector_api::connector! {
    impl Intel {
        family: "intel",
        named: "`intel`",
        call(intel, call) {
            "intel.lookup" => {
                // Loading the index reads the whole store: not on the async threads.
                let input = call.input.clone();
                let inner = intel.inner.clone();
                tokio::task::spawn_blocking(move || inner.lookup(&input))
                    .await
                    .map_err(|e| ActionError::transient(format!("intel lookup task failed: {e}")))?
            }
        }
    }
}
