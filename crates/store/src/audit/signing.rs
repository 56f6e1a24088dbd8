//! Signed checkpoints of the audit head: `(seq, hash, time)` signed with an Ed25519 key kept
//! outside the data directory and exported outside the database, so that whoever rewrites the
//! database (deletes the trail's last entries and the recorded head with them) cannot make
//! the trail agree with the heads signed before.
//!
//! Keys are 32 bytes written as hex on one line: the private key file holds the seed, the
//! public one (`.pub`) the verifying key. A signed head is one JSON object per line; lines
//! may carry a prefix (a syslog header), the object starts at the first `{`.

use super::verify::AuditProblem;
use crate::{Result, Store};
use belay_model::audit::{ChainBreak, GENESIS, canonical_json, verify_chain};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What every signed message starts with, so a signature over a head is never valid as a
/// signature over anything else.
const DOMAIN: &[u8] = b"belay audit head v1\n";

/// The private key that signs heads.
pub struct HeadKey(SigningKey);

/// The public key that checks signed heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

fn hex32(text: &str, what: &str) -> std::result::Result<[u8; 32], String> {
    let t = text.trim();
    let bytes = hex::decode(t).map_err(|_| format!("{what} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{what} is not 32 bytes (64 hex digits)"))
}

impl HeadKey {
    /// The key with this 32-byte seed (from a good random source).
    pub fn from_seed(seed: [u8; 32]) -> HeadKey {
        HeadKey(SigningKey::from_bytes(&seed))
    }

    /// Reads a private key file's text: the seed as 64 hex digits.
    pub fn parse(text: &str) -> std::result::Result<HeadKey, String> {
        Ok(HeadKey::from_seed(hex32(text, "the private key")?))
    }

    /// The private key file's text.
    pub fn to_text(&self) -> String {
        format!("{}\n", hex::encode(self.0.to_bytes()))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs head `(seq, hash)` as of `at` (Unix milliseconds).
    pub fn sign(&self, seq: i64, hash: &str, at: i64) -> SignedHead {
        let signature = self.0.sign(&SignedHead::message(seq, hash, at));
        SignedHead {
            seq,
            hash: hash.to_owned(),
            at,
            key: self.public().to_hex(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

impl PublicKey {
    /// Reads a public key file's text: 64 hex digits.
    pub fn parse(text: &str) -> std::result::Result<PublicKey, String> {
        VerifyingKey::from_bytes(&hex32(text, "the public key")?)
            .map(PublicKey)
            .map_err(|_| "the public key is not a valid Ed25519 key".to_owned())
    }

    /// The key as 64 hex digits (the public key file's text, and each signed head's `key`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }
}

/// One signed checkpoint of the audit head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The head entry's sequence number.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// When it was signed, in Unix milliseconds.
    pub at: i64,
    /// The signing key's public half, hex.
    pub key: String,
    /// Ed25519 signature over [`SignedHead::message`], hex.
    pub signature: String,
}

impl SignedHead {
    /// The bytes signed: a domain prefix, then `{"at","hash","seq"}` as canonical JSON.
    pub fn message(seq: i64, hash: &str, at: i64) -> Vec<u8> {
        let mut m = DOMAIN.to_vec();
        m.extend_from_slice(
            canonical_json(&json!({ "seq": seq, "hash": hash, "at": at })).as_bytes(),
        );
        m
    }

    /// Checks the signature with `key`; says why it does not verify.
    pub fn verify(&self, key: &PublicKey) -> std::result::Result<(), String> {
        if !self.key.eq_ignore_ascii_case(&key.to_hex()) {
            return Err(format!(
                "signed by key {} and not by the given public key {}",
                self.key,
                key.to_hex()
            ));
        }
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "its signature is not 64 bytes of hex".to_owned())?;
        key.0
            .verify(
                &SignedHead::message(self.seq, &self.hash, self.at),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| "its signature does not verify: the line was altered".to_owned())
    }

    /// The head as one JSON line (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The signed heads in a file's text, with their line numbers: each line's JSON object from its
/// first `{` (so syslog-written lines read too). Blank lines are skipped; others that do not
/// read as a signed head are errors.
pub fn parse_lines(text: &str) -> Vec<(usize, std::result::Result<SignedHead, String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let parsed = match l.find('{') {
                Some(at) => {
                    serde_json::from_str(&l[at..]).map_err(|e| format!("not a signed head: {e}"))
                }
                None => Err("not a signed head: no JSON object".to_owned()),
            };
            (i + 1, parsed)
        })
        .collect()
}

/// Signs the store's current head at time `at`, after checking that the entries since `last`
/// (the previous signed head, or the whole trail) still chain to it and up to the recorded head:
/// a trail rewritten since is refused, never signed.
pub async fn sign_head(
    store: &dyn Store,
    key: &HeadKey,
    last: Option<&SignedHead>,
    at: i64,
) -> Result<std::result::Result<SignedHead, AuditProblem>> {
    let (head_seq, head_hash) = store
        .audit_head()
        .await?
        .unwrap_or((0, GENESIS.to_string()));
    let (mut seq, mut hash) = match last {
        Some(l) if l.seq > head_seq => {
            return Ok(Err(AuditProblem::SignedHead {
                seq: l.seq,
                reason: format!(
                    "the recorded head is entry {head_seq}, before the last signed head: entries were deleted from the end"
                ),
            }));
        }
        Some(l) => (l.seq, l.hash.clone()),
        None => (0, GENESIS.to_string()),
    };
    if let Some(l) = last {
        // The signed entry itself must still be there with its hash.
        let at_signed = store.audit_entries(l.seq - 1, 1).await?;
        if l.seq > 0
            && at_signed
                .first()
                .is_none_or(|e| e.seq != l.seq || e.hash != l.hash)
        {
            return Ok(Err(AuditProblem::SignedHead {
                seq: l.seq,
                reason: "the entry no longer has the hash that was signed: the trail was rewritten"
                    .into(),
            }));
        }
    }
    while seq < head_seq {
        let limit = usize::try_from(head_seq - seq)
            .unwrap_or(usize::MAX)
            .min(5000);
        let page = store.audit_entries(seq, limit).await?;
        if page.is_empty() {
            break;
        }
        match verify_chain(&page, seq, hash) {
            Ok((s, h)) => (seq, hash) = (s, h),
            Err(b) => return Ok(Err(AuditProblem::Chain(b))),
        }
    }
    if seq != head_seq || hash != head_hash {
        return Ok(Err(AuditProblem::Chain(ChainBreak {
            seq: seq + 1,
            reason: format!(
                "the trail ends at entry {seq} but its recorded head is entry {head_seq}: entries were deleted from the end"
            ),
        })));
    }
    Ok(Ok(key.sign(head_seq, &head_hash, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_head_verifies_and_any_edit_breaks_it() {
        let key = HeadKey::from_seed([7; 32]);
        let h = key.sign(12, "ab", 1000);
        assert_eq!(h.verify(&key.public()), Ok(()));
        let line = format!(
            "<85>1 2024-01-01T00:00:00Z host belay - audit-head - {}",
            h.to_line()
        );
        let parsed = parse_lines(&line);
        assert_eq!(parsed[0].1.as_ref().unwrap(), &h);
        for edit in [
            SignedHead {
                seq: 13,
                ..h.clone()
            },
            SignedHead {
                hash: "ac".into(),
                ..h.clone()
            },
            SignedHead {
                at: 1001,
                ..h.clone()
            },
        ] {
            assert!(edit.verify(&key.public()).is_err());
        }
        let other = HeadKey::from_seed([8; 32]);
        assert!(
            h.verify(&other.public())
                .unwrap_err()
                .contains("not by the given")
        );
        let round = HeadKey::parse(&key.to_text()).unwrap();
        assert_eq!(round.public(), key.public());
        assert_eq!(
            PublicKey::parse(&key.public().to_hex()).unwrap(),
            key.public()
        );
        assert!(HeadKey::parse("zz").is_err());
    }
}
