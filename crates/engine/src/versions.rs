//! Playbook versions: every version a run uses is in the store before the run, by the SHA-256
//! of its source (the run's `playbook_hash`, which approvals and the audit trail already commit
//! to), so a run resumed later (after an approval, a crash, by another worker, by a command
//! given no playbook folder) executes exactly that version, not what the folder holds by then.
//!
//! A stored version is used only when its source hashes to the run's hash; the loaded playbook
//! of the same name is used only when its hash is the run's (the same text). This module never
//! decides what a run does; it only finds the text the run was planned with.

use crate::{Engine, Result};
use belay_model::{PlaybookVersion, RunRecord, now_ms};
use belay_playbook::{Call, Playbook};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A playbook found for a run, with where its sub-playbooks' versions are.
#[derive(Clone)]
pub struct Version {
    /// The parsed playbook; its `hash` is the run's `playbook_hash`.
    pub playbook: Arc<Playbook>,
    /// Whether it was read from the store (else it is the loaded playbook, the same text).
    pub stored: bool,
    /// The sub-playbooks it calls, name → hash, as stored with it (empty when loaded).
    pub calls: BTreeMap<String, String>,
}

/// What the engine remembers of the versions it stored or read.
#[derive(Default)]
pub(crate) struct Versions {
    /// Hashes known to be stored: not written again by this process.
    kept: Mutex<HashSet<String>>,
    /// Stored versions already read and parsed, by hash.
    parsed: Mutex<HashMap<String, Version>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

impl Engine {
    /// Stores the versions of `playbooks` and of every sub-playbook they call (as loaded), each
    /// unless this engine knows it is stored. Called before the runs using them are stored.
    pub async fn keep_versions(&self, playbooks: &[&Playbook]) -> Result<()> {
        let kept = {
            let kept = lock(&self.versions.kept);
            if playbooks.iter().all(|p| kept.contains(&p.hash)) {
                return Ok(());
            }
            kept.clone()
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut subs: Vec<Arc<Playbook>> = Vec::new();
        let now = now_ms();
        let mut add = |pb: &Playbook, subs: &mut Vec<Arc<Playbook>>| {
            if kept.contains(&pb.hash) || !seen.insert(pb.hash.clone()) {
                return;
            }
            let mut calls = BTreeMap::new();
            for s in &pb.steps {
                if let Call::Playbook(name) = &s.call
                    && let Some(sub) = self.playbooks.get(name)
                {
                    calls.insert(name.clone(), sub.hash.clone());
                    subs.push(sub);
                }
            }
            out.push(PlaybookVersion {
                hash: pb.hash.clone(),
                name: pb.name.clone(),
                source: pb.source.to_string(),
                calls,
                guardrails_hash: self.config.guardrails_hash.clone(),
                created_at: now,
            });
        };
        for pb in playbooks {
            add(pb, &mut subs);
        }
        while let Some(pb) = subs.pop() {
            add(&pb, &mut subs);
        }
        if out.is_empty() {
            return Ok(());
        }
        let set = &self.config.guardrails_hash;
        if !set.is_empty() && !kept.contains(set) {
            self.store
                .put_guardrail_set(&belay_model::GuardrailSet {
                    hash: set.clone(),
                    files: self.config.guardrail_files.clone(),
                    created_at: now,
                })
                .await?;
            lock(&self.versions.kept).insert(set.clone());
        }
        self.store.put_playbook_versions(&out).await?;
        lock(&self.versions.kept).extend(out.into_iter().map(|v| v.hash));
        Ok(())
    }

    /// The version with `hash` of playbook `name`: the stored one (checked against the hash)
    /// or, when `prefer_loaded` or none is stored, the loaded playbook of that name if its
    /// hash is `hash`. `Err` says why none can be used.
    pub async fn playbook_version(
        &self,
        name: &str,
        hash: &str,
        prefer_loaded: bool,
    ) -> Result<std::result::Result<Version, String>> {
        let loaded = self
            .playbooks
            .get(name)
            .filter(|p| p.hash == hash)
            .map(|playbook| Version {
                playbook,
                stored: false,
                calls: BTreeMap::new(),
            });
        if prefer_loaded && let Some(v) = loaded {
            return Ok(Ok(v));
        }
        let unusable = match self.stored_version(hash).await? {
            Some(Ok(v)) => return Ok(Ok(v)),
            Some(Err(why)) => Some(why),
            None => None,
        };
        // The loaded playbook with the run's hash is the same text.
        if let Some(v) = loaded {
            return Ok(Ok(v));
        }
        if let Some(why) = unusable {
            return Ok(Err(why));
        }
        let now = match self.playbooks.get(name) {
            Some(p) => format!("the loaded playbook `{name}` is version {}", short(&p.hash)),
            None => format!("no playbook `{name}` is loaded"),
        };
        Ok(Err(format!(
            "version {hash} of playbook `{name}` is not stored and {now}"
        )))
    }

    /// The version a run was planned with (see [`Engine::playbook_version`]); a new run takes
    /// the loaded playbook (the same text) without reading the store.
    pub async fn version_of(
        &self,
        run: &RunRecord,
        resumed: bool,
    ) -> Result<std::result::Result<Version, String>> {
        Ok(self
            .playbook_version(&run.playbook, &run.playbook_hash, !resumed)
            .await?
            .map_err(|why| format!("run {} cannot continue: {why}", run.id)))
    }

    /// The stored version with this hash, parsed; `Some(Err)` when it is stored but cannot be
    /// used (its source does not hash to its key, or does not parse).
    async fn stored_version(
        &self,
        hash: &str,
    ) -> Result<Option<std::result::Result<Version, String>>> {
        if let Some(v) = lock(&self.versions.parsed).get(hash) {
            return Ok(Some(Ok(v.clone())));
        }
        let Some(stored) = self.store.playbook_version(hash).await? else {
            return Ok(None);
        };
        if !stored.verify() || stored.hash != hash {
            return Ok(Some(Err(format!(
                "the stored version {hash} of playbook `{}` does not hash to {hash}; it is not used",
                stored.name
            ))));
        }
        let path = PathBuf::from(format!("{} (stored version {})", stored.name, short(hash)));
        let playbook = match Playbook::parse(&path, &stored.source) {
            Ok(p) => p,
            Err(diags) => {
                let first = diags.first().map(|d| d.to_string()).unwrap_or_default();
                return Ok(Some(Err(format!(
                    "the stored version {hash} of playbook `{}` does not parse: {first}",
                    stored.name
                ))));
            }
        };
        let v = Version {
            playbook: Arc::new(playbook),
            stored: true,
            calls: stored.calls,
        };
        lock(&self.versions.kept).insert(hash.to_owned());
        lock(&self.versions.parsed).insert(hash.to_owned(), v.clone());
        Ok(Some(Ok(v)))
    }

    /// The newest stored version of every playbook name, parsed (for what needs the
    /// playbooks when no folder is at hand, such as the trust report).
    pub async fn stored_playbooks(&self) -> Result<Vec<Arc<Playbook>>> {
        let mut newest: BTreeMap<String, String> = BTreeMap::new();
        for v in self.store.playbook_versions().await? {
            newest.insert(v.name, v.hash);
        }
        let mut out = Vec::with_capacity(newest.len());
        for (name, hash) in newest {
            match self.stored_version(&hash).await? {
                Some(Ok(v)) => out.push(v.playbook),
                Some(Err(why)) => return Err(crate::EngineError::Other(why)),
                None => {
                    return Err(crate::EngineError::Other(format!(
                        "version {hash} of playbook `{name}` vanished from the store"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The playbook a step of a run at `caller` starts by `name`: the loaded one, else the
    /// version stored with the caller (a run resumed where that folder is not at hand).
    pub(crate) async fn sub_playbook(
        &self,
        caller: &Version,
        name: &str,
    ) -> Result<Option<Arc<Playbook>>> {
        if let Some(pb) = self.playbooks.get(name) {
            return Ok(Some(pb));
        }
        let Some(hash) = caller.calls.get(name) else {
            return Ok(None);
        };
        Ok(match self.stored_version(hash).await? {
            Some(Ok(v)) => Some(v.playbook),
            _ => None,
        })
    }
}

/// The playbook version run `run` executes with, as people see it: its hash, whether it is
/// stored (a resumed run uses exactly that version), and the guardrail set stored with it
/// (`guardrail_files` as `[name, text]` pairs).
pub async fn version_info(
    store: &dyn belay_store::Store,
    run: &RunRecord,
) -> std::result::Result<serde_json::Value, belay_store::StoreError> {
    let stored = if run.playbook.starts_with("belay:") {
        None
    } else {
        store.playbook_version(&run.playbook_hash).await?
    };
    let guardrails = match stored.as_ref().map(|v| &v.guardrails_hash) {
        Some(h) if !h.is_empty() => store.guardrail_set(h).await?,
        _ => None,
    };
    Ok(serde_json::json!({
        "hash": run.playbook_hash,
        "stored": stored.is_some(),
        "guardrails_hash": stored.as_ref().map(|v| v.guardrails_hash.clone()),
        "guardrail_files": guardrails.as_ref().map(|g| serde_json::json!(g.files)),
        "guardrail_set": guardrails.as_ref().map(|g| g.hash.clone()),
        "calls": stored.as_ref().map(|v| serde_json::json!(v.calls)),
    }))
}
