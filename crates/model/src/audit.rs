//! The audit trail's entries and their hash chain.
//!
//! Each entry commits to the previous entry's hash and to its own canonical JSON, so editing,
//! deleting or reordering any stored entry breaks the chain at that entry.

use serde::{Deserialize, Serialize};
use serde_json::Value;
#[cfg(test)]
use serde_json::json;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a caller asks to be recorded; the store numbers, times and chains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDraft {
    /// Dotted kind: `event.accepted`, `change.applied`, `approval.granted`...
    pub kind: String,
    /// Who or what did it: a user name, or `engine:<worker>`.
    pub actor: String,
    /// What it is about: a run, change or event id.
    pub subject: String,
    pub detail: Value,
}

/// A draft whose detail is already in canonical form, so that the costly part of chaining can
/// happen before the store's single writer takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedDraft {
    pub draft: AuditDraft,
    pub canonical: String,
}

impl AuditDraft {
    pub fn prepare(self) -> PreparedDraft {
        let canonical = canonical_json(&self.detail);
        PreparedDraft {
            draft: self,
            canonical,
        }
    }
}

/// One stored, chained entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// Chains a draft after `(prev_seq, prev_hash)`.
    pub fn chain(draft: AuditDraft, prev_seq: i64, prev_hash: &str, at: i64) -> AuditEntry {
        Self::chain_canonical(draft, prev_seq, prev_hash, at).0
    }

    /// Like [`AuditEntry::chain`], also returning the detail's canonical JSON (for storage).
    pub fn chain_canonical(
        draft: AuditDraft,
        prev_seq: i64,
        prev_hash: &str,
        at: i64,
    ) -> (AuditEntry, String) {
        Self::chain_prepared(draft.prepare(), prev_seq, prev_hash, at)
    }

    /// Chains a prepared draft; returns the entry and the detail's canonical JSON.
    pub fn chain_prepared(
        p: PreparedDraft,
        prev_seq: i64,
        prev_hash: &str,
        at: i64,
    ) -> (AuditEntry, String) {
        let mut e = AuditEntry {
            seq: prev_seq + 1,
            at,
            kind: p.draft.kind,
            actor: p.draft.actor,
            subject: p.draft.subject,
            detail: p.draft.detail,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        e.hash = e.hash_with(&p.canonical);
        (e, p.canonical)
    }

    /// SHA-256 over the previous hash and this entry's canonical JSON (without its own hash).
    pub fn compute_hash(&self) -> String {
        self.hash_with(&canonical_json(&self.detail))
    }

    /// The hash, given the detail's canonical JSON. The body is the canonical JSON of
    /// `{actor, at, detail, kind, prev_hash, seq, subject}` (keys sorted), written directly.
    fn hash_with(&self, detail: &str) -> String {
        let s = |v: &str| Value::String(v.to_owned()).to_string();
        let body = format!(
            "{{\"actor\":{},\"at\":{},\"detail\":{detail},\"kind\":{},\"prev_hash\":{},\"seq\":{},\"subject\":{}}}",
            s(&self.actor),
            self.at,
            s(&self.kind),
            s(&self.prev_hash),
            self.seq,
            s(&self.subject),
        );
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(body.as_bytes());
        hex::encode(h.finalize())
    }
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 of a value's JSON text (as stored): how the trail commits to large payloads.
pub fn value_hash(v: &Value) -> String {
    crate::sha256_hex(&serde_json::to_vec(v).unwrap_or_default())
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Checks entries in stored order, continuing from `(prev_seq, prev_hash)`.
/// Returns the new head.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    mut prev_seq: i64,
    mut prev_hash: String,
) -> Result<(i64, String), ChainBreak> {
    for e in entries {
        if e.seq != prev_seq + 1 {
            return Err(ChainBreak {
                seq: e.seq,
                reason: format!(
                    "expected entry {} next: an entry was deleted or reordered",
                    prev_seq + 1
                ),
            });
        }
        if e.prev_hash != prev_hash {
            return Err(ChainBreak {
                seq: e.seq,
                reason: "does not commit to the entry before it (deleted, inserted or reordered)"
                    .into(),
            });
        }
        if e.compute_hash() != e.hash {
            return Err(ChainBreak {
                seq: e.seq,
                reason: "its content was changed after it was written".into(),
            });
        }
        prev_seq = e.seq;
        prev_hash = e.hash.clone();
    }
    Ok((prev_seq, prev_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut v: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let (seq, hash) = v
                .last()
                .map_or((0, GENESIS.to_string()), |e| (e.seq, e.hash.clone()));
            let d = AuditDraft {
                kind: "t".into(),
                actor: "a".into(),
                subject: format!("s{i}"),
                detail: json!({"b": 1, "a": [i]}),
            };
            v.push(AuditEntry::chain(d, seq, &hash, 1000 + i as i64));
        }
        v
    }

    #[test]
    fn canonical_json_sorts_keys_everywhere() {
        assert_eq!(
            canonical_json(&json!({"b": {"d": 1, "c": [ {"y": 2, "x": 1} ]}, "a": "é"})),
            r#"{"a":"é","b":{"c":[{"x":1,"y":2}],"d":1}}"#
        );
    }

    #[test]
    fn the_direct_hash_equals_the_hash_of_the_canonical_entry() {
        let e = &chain(1)[0];
        let body = json!({"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "subject": e.subject, "detail": e.detail, "prev_hash": e.prev_hash});
        let mut h = Sha256::new();
        h.update(e.prev_hash.as_bytes());
        h.update(canonical_json(&body).as_bytes());
        assert_eq!(e.hash, hex::encode(h.finalize()));
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        assert_eq!(
            verify_chain(&c, 0, GENESIS.into()).unwrap(),
            (5, c[4].hash.clone())
        );
    }

    #[test]
    fn edits_deletions_and_reorders_name_the_entry() {
        let mut c = chain(5);
        c[2].detail = json!({"b": 2});
        assert_eq!(verify_chain(&c, 0, GENESIS.into()).unwrap_err().seq, 3);
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_chain(&c, 0, GENESIS.into()).unwrap_err().seq, 3);
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify_chain(&c, 0, GENESIS.into()).unwrap_err().seq, 3);
        let mut c = chain(5);
        c[3].hash = c[3].compute_hash(); // recomputing one hash does not help: the next entry breaks
        c[3].subject = "forged".into();
        c[3].hash = c[3].compute_hash();
        assert_eq!(verify_chain(&c, 0, GENESIS.into()).unwrap_err().seq, 5);
    }
}
