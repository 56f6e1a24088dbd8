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
    /// Kind-specific facts (any JSON); hashed in canonical form.
    pub detail: Value,
}

/// A draft reduced to what the chain needs: its detail in canonical form. Preparing is the
/// costly part of chaining, so callers do it before the store's single writer takes the draft.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedDraft {
    /// As [`AuditDraft::kind`].
    pub kind: String,
    /// As [`AuditDraft::actor`].
    pub actor: String,
    /// As [`AuditDraft::subject`].
    pub subject: String,
    /// The detail's canonical JSON (as stored).
    pub canonical: String,
}

impl AuditDraft {
    /// Serializes the detail canonically (sorted keys), ready to be chained.
    pub fn prepare(self) -> PreparedDraft {
        PreparedDraft {
            canonical: canonical_json(&self.detail),
            kind: self.kind,
            actor: self.actor,
            subject: self.subject,
        }
    }
}

impl PreparedDraft {
    /// The hash of this draft chained as entry `seq` at time `at` after `prev_hash`.
    pub fn hash(&self, seq: i64, at: i64, prev_hash: &str) -> String {
        entry_hash(
            prev_hash,
            seq,
            at,
            &self.kind,
            &self.actor,
            &self.subject,
            &self.canonical,
        )
    }
}

/// One stored, chained entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain: the previous entry's `seq` plus one, without gaps.
    pub seq: i64,
    /// When it was recorded, in Unix milliseconds.
    pub at: i64,
    /// As [`AuditDraft::kind`].
    pub kind: String,
    /// As [`AuditDraft::actor`].
    pub actor: String,
    /// As [`AuditDraft::subject`].
    pub subject: String,
    /// As [`AuditDraft::detail`].
    pub detail: Value,
    /// The previous entry's `hash` ([`GENESIS`] for the first), lower-case hex.
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and this entry's canonical JSON, lower-case hex.
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
        let canonical = canonical_json(&draft.detail);
        let mut e = AuditEntry {
            seq: prev_seq + 1,
            at,
            kind: draft.kind,
            actor: draft.actor,
            subject: draft.subject,
            detail: draft.detail,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        e.hash = e.hash_with(&canonical);
        (e, canonical)
    }

    /// SHA-256 over the previous hash and this entry's canonical JSON (without its own hash).
    pub fn compute_hash(&self) -> String {
        self.hash_with(&canonical_json(&self.detail))
    }

    /// The hash, given the detail's canonical JSON.
    fn hash_with(&self, detail: &str) -> String {
        entry_hash(
            &self.prev_hash,
            self.seq,
            self.at,
            &self.kind,
            &self.actor,
            &self.subject,
            detail,
        )
    }
}

/// SHA-256 over `prev_hash` and the canonical JSON of
/// `{actor, at, detail, kind, prev_hash, seq, subject}` (keys sorted), fed to the hasher
/// piece by piece rather than built as one string.
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at: i64,
    kind: &str,
    actor: &str,
    subject: &str,
    canonical_detail: &str,
) -> String {
    let mut h = Sha256::new();
    let mut scratch = Vec::new();
    let mut string = |h: &mut Sha256, s: &str| {
        if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            scratch.clear();
            let _ = serde_json::to_writer(&mut scratch, s);
            h.update(&scratch);
        } else {
            h.update(b"\"");
            h.update(s.as_bytes());
            h.update(b"\"");
        }
    };
    h.update(prev_hash.as_bytes());
    h.update(b"{\"actor\":");
    string(&mut h, actor);
    h.update(b",\"at\":");
    h.update(at.to_string().as_bytes());
    h.update(b",\"detail\":");
    h.update(canonical_detail.as_bytes());
    h.update(b",\"kind\":");
    string(&mut h, kind);
    h.update(b",\"prev_hash\":");
    string(&mut h, prev_hash);
    h.update(b",\"seq\":");
    h.update(seq.to_string().as_bytes());
    h.update(b",\"subject\":");
    string(&mut h, subject);
    h.update(b"}");
    hex::encode(h.finalize())
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(v, &mut out);
    // Only serde_json's output and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `v`'s canonical JSON to `out`.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(x, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Writes a JSON object in canonical form directly, without building a [`Value`]: fields must
/// be added in sorted key order; nested [`Value`]s are written canonically.
pub struct CanonicalObject {
    out: Vec<u8>,
    #[cfg(debug_assertions)]
    last: String,
}

impl Default for CanonicalObject {
    fn default() -> Self {
        Self::new()
    }
}

impl CanonicalObject {
    /// An empty object, ready for its first field.
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(384);
        out.push(b'{');
        CanonicalObject {
            out,
            #[cfg(debug_assertions)]
            last: String::new(),
        }
    }

    fn key(&mut self, key: &str) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.out.len() == 1 || self.last.as_str() < key,
                "canonical keys out of order: {} then {key}",
                self.last
            );
            self.last = key.to_owned();
        }
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        let _ = serde_json::to_writer(&mut self.out, key);
        self.out.push(b':');
    }

    /// A field whose JSON has no objects (strings, numbers, options, lists of strings...).
    pub fn field(mut self, key: &str, v: impl Serialize) -> Self {
        self.key(key);
        let _ = serde_json::to_writer(&mut self.out, &v);
        self
    }

    /// A field holding any JSON value, written canonically.
    pub fn value(mut self, key: &str, v: &Value) -> Self {
        self.key(key);
        write_canonical(v, &mut self.out);
        self
    }

    /// A field whose JSON the caller already wrote canonically.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
        self
    }

    /// Closes the object and returns its JSON text.
    pub fn finish(mut self) -> String {
        self.out.push(b'}');
        String::from_utf8(self.out).unwrap_or_default()
    }
}

/// SHA-256 of a value's JSON text (as stored): how the trail commits to large payloads.
pub fn value_hash(v: &Value) -> String {
    crate::sha256_hex(&serde_json::to_vec(v).unwrap_or_default())
}

/// [`value_hash`] of a value whose JSON text is already at hand.
pub fn text_hash(json: &str) -> String {
    crate::sha256_hex(json.as_bytes())
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct ChainBreak {
    /// The first entry that does not verify.
    pub seq: i64,
    /// What is wrong with it (sequence gap, wrong `prev_hash`, hash mismatch...).
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
    fn canonical_objects_equal_canonical_values() {
        let v = json!({"b": {"d": 1, "c": "x\"y"}, "a": null, "a_b": [1, 2], "ab": "é\n"});
        let direct = CanonicalObject::new()
            .field("a", Option::<String>::None)
            .field("a_b", [1, 2])
            .field("ab", "é\n")
            .value("b", &v["b"])
            .finish();
        assert_eq!(direct, canonical_json(&v));
    }

    /// `e`'s hash computed the slow way: SHA-256 of the previous hash, then of the entry's
    /// fields as canonical JSON.
    fn hash_of_canonical_entry(e: &AuditEntry) -> String {
        let body = json!({"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "subject": e.subject, "detail": e.detail, "prev_hash": e.prev_hash});
        let mut h = Sha256::new();
        h.update(e.prev_hash.as_bytes());
        h.update(canonical_json(&body).as_bytes());
        hex::encode(h.finalize())
    }

    #[test]
    fn hashes_escape_strings_like_canonical_json() {
        let d = AuditDraft {
            kind: "k\"q".into(),
            actor: "a\\b\u{1}".into(),
            subject: "s\n".into(),
            detail: json!({"x": 1}),
        };
        let e = AuditEntry::chain(d, 0, GENESIS, 7);
        assert_eq!(e.hash, hash_of_canonical_entry(&e));
    }

    #[test]
    fn the_direct_hash_equals_the_hash_of_the_canonical_entry() {
        let e = &chain(1)[0];
        assert_eq!(e.hash, hash_of_canonical_entry(e));
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
