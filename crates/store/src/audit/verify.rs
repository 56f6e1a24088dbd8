//! `belay audit verify`'s walk over the whole trail: the hash chain, the head recorded beside
//! it, the authority of every applied change ([`super::authority`]) and, when given, the signed
//! heads exported outside the database ([`super::signing`]).
//!
//! Read-only: it never repairs or appends to the trail.

use super::authority::{AuthorityCheck, MissingAuthority};
use super::signing::SignedHead;
use crate::{Result, Store};
use belay_model::audit::{ChainBreak, GENESIS, verify_chain};
use std::collections::BTreeMap;

/// Why the trail does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditProblem {
    /// An entry was edited, deleted, inserted or reordered, or the recorded head disagrees.
    #[error("audit chain broken at entry {}: {}", .0.seq, .0.reason)]
    Chain(ChainBreak),
    /// An applied change whose authority is not in the trail.
    #[error("{0}")]
    Authority(MissingAuthority),
    /// The trail disagrees with a head signed outside the database.
    #[error("audit trail does not match its signed head at entry {seq}: {reason}")]
    SignedHead {
        /// The signed head's entry.
        seq: i64,
        /// What disagrees (missing entry, other hash).
        reason: String,
    },
}

impl AuditProblem {
    /// The entry the problem is reported at.
    pub fn seq(&self) -> i64 {
        match self {
            AuditProblem::Chain(b) => b.seq,
            AuditProblem::Authority(m) => m.seq,
            AuditProblem::SignedHead { seq, .. } => *seq,
        }
    }
}

/// Walks the whole audit trail: its chain, its recorded head and the authority of each applied
/// change. Returns the number of entries, or the first problem.
pub async fn verify_audit(store: &dyn Store) -> Result<std::result::Result<u64, AuditProblem>> {
    verify_audit_against(store, &[]).await
}

/// [`verify_audit`], also checking that every head in `signed` (whose signatures the caller
/// checked) is an entry of the trail with the signed hash: a trail cut short or rewritten
/// after a head was signed is reported at that head's entry.
pub async fn verify_audit_against(
    store: &dyn Store,
    signed: &[SignedHead],
) -> Result<std::result::Result<u64, AuditProblem>> {
    let signed: BTreeMap<i64, &SignedHead> = signed.iter().map(|h| (h.seq, h)).collect();
    let (mut seq, mut hash) = (0i64, GENESIS.to_string());
    let mut authority = AuthorityCheck::default();
    let mut missing: Option<MissingAuthority> = None;
    loop {
        let page = store.audit_entries(seq, 5000).await?;
        if page.is_empty() {
            break;
        }
        match verify_chain(&page, seq, hash) {
            Ok((s, h)) => (seq, hash) = (s, h),
            Err(b) => return Ok(Err(AuditProblem::Chain(b))),
        }
        for e in &page {
            if let Some(h) = signed.get(&e.seq)
                && h.hash != e.hash
            {
                return Ok(Err(AuditProblem::SignedHead {
                    seq: e.seq,
                    reason: format!(
                        "the entry's hash is {} but the head signed at {} is {}: the trail was rewritten",
                        e.hash,
                        belay_model::ms_to_rfc3339(h.at),
                        h.hash
                    ),
                }));
            }
            if missing.is_none() {
                missing = authority.observe(e);
            }
        }
    }
    if let Some((&s, h)) = signed.range(seq + 1..).next() {
        return Ok(Err(AuditProblem::SignedHead {
            seq: s,
            reason: format!(
                "the trail ends at entry {seq}, but entry {s} was signed at {}: entries were deleted from the end",
                belay_model::ms_to_rfc3339(h.at)
            ),
        }));
    }
    match store.audit_head().await? {
        Some((hs, hh)) if hs != seq || hh != hash => {
            return Ok(Err(AuditProblem::Chain(ChainBreak {
                seq: seq + 1,
                reason: format!(
                    "the trail ends at entry {seq} but its recorded head is entry {hs}: entries were deleted from the end"
                ),
            })));
        }
        None if seq > 0 => {
            return Ok(Err(AuditProblem::Chain(ChainBreak {
                seq,
                reason: "the recorded head of the trail is missing".into(),
            })));
        }
        _ => {}
    }
    Ok(match missing {
        Some(m) => Err(AuditProblem::Authority(m)),
        None => Ok(seq as u64),
    })
}
