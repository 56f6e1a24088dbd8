//! People's decisions on approvals: who may decide, quorum, separation of duties, expiry, and
//! making the waiting run resumable. The executor requests approvals and honours them only for
//! the exact change they were bound to (see `exec.rs`); this module records decisions.

use crate::guard::canon;
use belay_model::{ApprovalRecord, ApprovalStatus, Vote, ms_to_rfc3339, now_ms, subset_hash};
use belay_store::{ApprovalFilter, Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;

/// Roles allowed to decide when a step names no approvers.
pub const DEFAULT_APPROVER_ROLES: &[&str] = &["responder", "admin"];

/// Users and their roles (from `[[users]]` in the configuration). Names are compared in
/// canonical form ([`same_user`]): trimmed, case-insensitive, without `DOMAIN\` or `@domain`.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: HashMap<String, Vec<String>>,
}

impl Directory {
    /// A directory of `(user, roles)` pairs; a user listed twice keeps the last roles.
    pub fn new(users: impl IntoIterator<Item = (String, Vec<String>)>) -> Directory {
        Directory {
            users: users
                .into_iter()
                .map(|(u, r)| (canon::user(&u), r))
                .collect(),
        }
    }

    /// The roles of `user` (any spelling [`same_user`] accepts); `None` for an unknown user.
    pub fn roles(&self, user: &str) -> Option<&[String]> {
        self.users.get(&canon::user(user)).map(Vec::as_slice)
    }

    /// Whether it lists no user (then nobody may decide).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Whether two user names name the same person, as the directory compares them.
pub fn same_user(a: &str, b: &str) -> bool {
    canon::user(a) == canon::user(b)
}

/// Why a decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    /// No approval has this id.
    #[error("no approval `{0}`")]
    NotFound(String),
    /// The deciding user is not in the directory.
    #[error("unknown user `{0}`; users and their roles come from [[users]] in belay.toml")]
    UnknownUser(String),
    /// The approval is no longer pending (decided, expired or superseded).
    #[error("approval {id} is {status}, not pending; nothing was recorded")]
    NotPending {
        /// The approval's id.
        id: String,
        /// Its status now.
        status: ApprovalStatus,
    },
    /// The user may not decide (not an approver, separation of duties, already voted), or the
    /// approval expired just now; the text says which. Nothing was recorded.
    #[error("{0}")]
    Refused(String),
    /// Other decisions kept changing the approval between reading and recording (8 tries);
    /// holds its id. Nothing was recorded.
    #[error("approval {0} kept changing while recording the decision; try again")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a vote reached belay, recorded and checked with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ballot<'a> {
    /// Where the vote comes from (`api`, `cli`, `chat`, `email`), recorded on the vote and in
    /// the decision's audit entry.
    pub channel: Option<&'a str>,
    /// The change hash the voter was shown (a chat button, an e-mail link): the vote is
    /// refused if the approval binds another change now.
    pub change_hash: Option<&'a str>,
}

/// Records `user`'s vote on approval `id` as [`decide`] (or, with `without`,
/// [`approve_without`]) does, with where it came from and the change it was cast on.
#[allow(clippy::too_many_arguments)]
pub async fn cast(
    store: &dyn Store,
    directory: &Directory,
    id: &str,
    user: &str,
    approve: bool,
    comment: Option<String>,
    without: &[String],
    ballot: Ballot<'_>,
) -> Result<ApprovalRecord, DecisionError> {
    vote(
        store, directory, id, user, approve, comment, without, ballot,
    )
    .await
}

/// Whether `user` with `roles` may decide on `a` now: an approver by name or role, not refused
/// by separation of duties, not having voted. The reason when not.
pub fn may_decide(a: &ApprovalRecord, user: &str, roles: &[String]) -> Result<(), String> {
    eligible(a, user, roles).map_err(|e| e.to_string())
}

/// Records `user`'s decision on approval `id`. A denial decides at once; approvals decide once
/// `quorum` different eligible people approved. A decided approval makes its run (and the runs
/// above it) resumable in the same transaction.
pub async fn decide(
    store: &dyn Store,
    directory: &Directory,
    id: &str,
    user: &str,
    approve: bool,
    comment: Option<String>,
) -> Result<ApprovalRecord, DecisionError> {
    vote(
        store,
        directory,
        id,
        user,
        approve,
        comment,
        &[],
        Ballot::default(),
    )
    .await
}

/// Records `user`'s approval of a held batch without the items `without` (their step keys,
/// `step[i]`, or their indices): those items are denied by `user`, the rest may go ahead once
/// the quorum approved exactly the same items. The vote binds to the [`subset_hash`] of the
/// items approved.
pub async fn approve_without(
    store: &dyn Store,
    directory: &Directory,
    id: &str,
    user: &str,
    comment: Option<String>,
    without: &[String],
) -> Result<ApprovalRecord, DecisionError> {
    vote(
        store,
        directory,
        id,
        user,
        true,
        comment,
        without,
        Ballot::default(),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn vote(
    store: &dyn Store,
    directory: &Directory,
    id: &str,
    user: &str,
    approve: bool,
    comment: Option<String>,
    without: &[String],
    ballot: Ballot<'_>,
) -> Result<ApprovalRecord, DecisionError> {
    let roles = directory
        .roles(user)
        .ok_or_else(|| DecisionError::UnknownUser(user.to_owned()))?;
    for _ in 0..8 {
        let mut a = store
            .get_approval(id)
            .await?
            .ok_or_else(|| DecisionError::NotFound(id.to_owned()))?;
        let now = now_ms();
        if a.status == ApprovalStatus::Pending && now >= a.expires_at {
            expire(store, &a).await?;
            return Err(DecisionError::Refused(format!(
                "approval {id} expired at {} (on_timeout: {}); nothing was recorded",
                ms_to_rfc3339(a.expires_at),
                a.terms.on_timeout
            )));
        }
        if a.status != ApprovalStatus::Pending {
            return Err(DecisionError::NotPending {
                id: id.to_owned(),
                status: a.status,
            });
        }
        if let Some(seen) = ballot.change_hash
            && seen != a.change_hash
        {
            return Err(DecisionError::Refused(format!(
                "approval {id} now binds another change than the one shown ({}…, shown {}…); nothing was recorded",
                a.change_hash.get(..12).unwrap_or(&a.change_hash),
                seen.get(..12).unwrap_or(seen)
            )));
        }
        eligible(&a, user, roles)?;
        let (without, approved_hash) = if approve {
            subset(&a, without)?
        } else {
            (Vec::new(), None)
        };
        let expected = a.version;
        a.votes.push(Vote {
            user: user.to_owned(),
            approve,
            comment: comment.clone(),
            at: now,
            without,
            approved_hash,
            channel: ballot.channel.map(str::to_owned),
        });
        if !approve {
            a.status = ApprovalStatus::Denied;
        } else if a.approvals() >= a.terms.quorum as usize {
            a.status = ApprovalStatus::Approved;
        }
        let decided = a.status != ApprovalStatus::Pending;
        if decided {
            a.decided_at = Some(now);
        }
        a.version += 1;
        let resume = if decided {
            run_chain(store, &a.run_id).await?
        } else {
            Vec::new()
        };
        let draft = belay_store::approval_audit(user, &a);
        if store.decide_approval(&a, expected, &resume, draft).await? {
            return Ok(a);
        }
    }
    Err(DecisionError::Conflict(id.to_owned()))
}

/// The items of held batch `a` left out by an approving vote (as keys, in batch order) and the
/// hash of the items approved; refuses keys that are not items of the batch, leaving out every
/// item, and a subset other than the one earlier approving votes chose (a quorum approves one
/// set of items).
fn subset(
    a: &ApprovalRecord,
    without: &[String],
) -> Result<(Vec<String>, Option<String>), DecisionError> {
    let keys: Vec<&str> = match &a.with {
        serde_json::Value::Array(items) if a.key.ends_with("#batch") => items
            .iter()
            .filter_map(|i| i.get("key").and_then(serde_json::Value::as_str))
            .collect(),
        _ => Vec::new(),
    };
    let mut left_out: Vec<String> = Vec::new();
    for w in without {
        let w = w.trim();
        let found = keys.iter().find(|k| {
            **k == w
                || k.strip_suffix(']')
                    .and_then(|k| k.rsplit_once('['))
                    .is_some_and(|(_, i)| i == w)
        });
        match found {
            Some(k) => left_out.push((*k).to_owned()),
            None if keys.is_empty() => {
                return Err(DecisionError::Refused(format!(
                    "approval {} decides one change, not a batch: it cannot be approved without items; nothing was recorded",
                    a.id
                )));
            }
            None => {
                let some: Vec<&str> = keys.iter().take(5).copied().collect();
                return Err(DecisionError::Refused(format!(
                    "`{w}` is not an item of the batch held by approval {} (items are {}{}); nothing was recorded",
                    a.id,
                    some.join(", "),
                    if keys.len() > some.len() { ", …" } else { "" }
                )));
            }
        }
    }
    left_out.sort_by_key(|k| keys.iter().position(|x| x == k));
    left_out.dedup();
    if !keys.is_empty() && left_out.len() == keys.len() {
        return Err(DecisionError::Refused(format!(
            "approving approval {} without every item approves nothing: deny it instead; nothing was recorded",
            a.id
        )));
    }
    let earlier = a.votes.iter().find(|v| v.approve);
    if let Some(v) = earlier
        && v.without != left_out
    {
        return Err(DecisionError::Refused(format!(
            "{} approved approval {} {}; a quorum approves one set of items: approve the same, or deny; nothing was recorded",
            v.user,
            a.id,
            if v.without.is_empty() {
                "with every item".to_owned()
            } else {
                format!("without {}", v.without.join(", "))
            }
        )));
    }
    if left_out.is_empty() {
        return Ok((left_out, None));
    }
    let approved: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !left_out.iter().any(|w| w == k))
        .collect();
    let hash = subset_hash(&a.change_hash, &approved);
    Ok((left_out, Some(hash)))
}

/// Checks that `user` may decide on `a`: an approver by name or role, not the one who
/// triggered the run or wrote the playbook when separation applies, and only once.
fn eligible(a: &ApprovalRecord, user: &str, roles: &[String]) -> Result<(), DecisionError> {
    let allowed = if a.terms.approvers.is_empty() {
        roles
            .iter()
            .any(|r| DEFAULT_APPROVER_ROLES.contains(&r.as_str()))
    } else {
        a.terms
            .approvers
            .iter()
            .any(|x| same_user(x, user) || roles.contains(x))
    };
    if !allowed {
        let who = if a.terms.approvers.is_empty() {
            DEFAULT_APPROVER_ROLES.join(" or ")
        } else {
            a.terms.approvers.join(", ")
        };
        return Err(DecisionError::Refused(format!(
            "{user} may not decide on approval {}: it needs {who} (their roles: {})",
            a.id,
            if roles.is_empty() {
                "none".to_owned()
            } else {
                roles.join(", ")
            }
        )));
    }
    if a.terms.separation {
        if a.triggered_by
            .as_deref()
            .is_some_and(|t| same_user(t, user))
        {
            return Err(DecisionError::Refused(format!(
                "separation of duties: {user} triggered run {} and may not approve its changes",
                a.run_id
            )));
        }
        if a.author.as_deref().is_some_and(|t| same_user(t, user)) {
            return Err(DecisionError::Refused(format!(
                "separation of duties: {user} wrote playbook `{}` and may not approve its changes",
                a.playbook
            )));
        }
    }
    if a.votes.iter().any(|v| same_user(&v.user, user)) {
        return Err(DecisionError::Refused(format!(
            "{user} already decided on approval {}; a quorum needs different people",
            a.id
        )));
    }
    Ok(())
}

/// Marks every pending approval past its deadline as expired (their runs become resumable and
/// apply the step's `on_timeout`). Returns the expired approvals.
pub async fn expire_due(store: &dyn Store) -> Result<Vec<ApprovalRecord>, StoreError> {
    let now = now_ms();
    let mut out = Vec::new();
    let pending = store
        .approvals(&ApprovalFilter {
            status: Some(ApprovalStatus::Pending),
            ..Default::default()
        })
        .await?;
    for a in pending.into_iter().filter(|a| now >= a.expires_at) {
        if let Some(e) = expire(store, &a).await? {
            out.push(e);
        }
    }
    Ok(out)
}

async fn expire(
    store: &dyn Store,
    a: &ApprovalRecord,
) -> Result<Option<ApprovalRecord>, StoreError> {
    let mut e = a.clone();
    e.status = ApprovalStatus::Expired;
    e.decided_at = Some(now_ms());
    e.version += 1;
    let resume = run_chain(store, &a.run_id).await?;
    let draft = belay_store::approval_audit(&format!("engine:{}", store.worker_id()), &e);
    Ok(store
        .decide_approval(&e, a.version, &resume, draft)
        .await?
        .then_some(e))
}

/// A run and the runs above it (a sub-playbook's parents wait with it).
async fn run_chain(store: &dyn Store, run_id: &str) -> Result<Vec<String>, StoreError> {
    let mut out = vec![run_id.to_owned()];
    let mut current = run_id.to_owned();
    while out.len() < 16 {
        match store.get_run(&current).await?.and_then(|r| r.parent_run) {
            Some(parent) => {
                out.push(parent.clone());
                current = parent;
            }
            None => break,
        }
    }
    Ok(out)
}

/// How the reason of a guardrail's hold begins (a change held for a person by a guardrail,
/// whatever its step's trust level).
pub const HELD_BY_GUARDRAIL: &str = "held by guardrail";

/// Whether `a` is a guardrail's hold rather than a step at trust `approve` asking.
pub fn is_guardrail_hold(a: &ApprovalRecord) -> bool {
    a.reason.starts_with(HELD_BY_GUARDRAIL)
}

/// The approval as people and scripts see it (`approvals list --format json`, the API).
pub fn approval_view(a: &ApprovalRecord) -> Value {
    serde_json::json!({
        "id": a.id, "run_id": a.run_id, "playbook": a.playbook, "step": a.key, "action": a.action,
        "with": a.with, "target": a.target, "change_hash": a.change_hash,
        "current_state": a.current_state, "guardrails": a.guardrails, "reason": a.reason,
        "status": a.status, "approvers": a.terms.approvers, "quorum": a.terms.quorum,
        "approvals": a.approvals(), "separation": a.terms.separation,
        "on_timeout": a.terms.on_timeout, "triggered_by": a.triggered_by,
        "votes": a.votes, "history": a.history,
        "created_at": ms_to_rfc3339(a.created_at), "expires_at": ms_to_rfc3339(a.expires_at),
    })
}

/// What triggered the run an approval belongs to (the top run's event): its kind, source,
/// severity, time, non-empty observables and the alert's signature when the payload names one.
/// Shown as data, never interpreted.
pub async fn trigger_of(store: &dyn Store, run_id: &str) -> Result<Option<Value>, StoreError> {
    let mut run = store.get_run(run_id).await?;
    while let Some(parent) = run.as_ref().and_then(|r| r.parent_run.clone()) {
        run = store.get_run(&parent).await?;
    }
    let Some(run) = run else { return Ok(None) };
    let Some(e) = store.get_event(run.trigger_source(), &run.event_id).await? else {
        return Ok(None);
    };
    let observables: serde_json::Map<String, Value> = serde_json::to_value(&e.observables)
        .unwrap_or_default()
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let signature = ["signature", "alert.signature", "rule", "name", "subject"]
        .iter()
        .find_map(|path| {
            path.split('.')
                .try_fold(&e.data, |v, k| v.get(k))
                .and_then(Value::as_str)
        });
    // What the run's intel lookups said, when it made any.
    let intel: Vec<Value> = store
        .steps(run_id)
        .await?
        .into_iter()
        .filter(|s| s.action == "intel.lookup")
        .map(|s| serde_json::json!({ "value": s.output["value"], "score": s.output["score"] }))
        .collect();
    Ok(Some(serde_json::json!({
        "event_id": e.id, "kind": e.kind, "source": e.source, "severity": e.severity,
        "time": e.time.to_rfc3339(), "observables": observables, "signature": signature,
        "intel": intel,
    })))
}

/// The step's record over the last 30 days, attached to approvals when shown.
pub async fn attach_history(
    store: &dyn Store,
    approvals: &mut [ApprovalRecord],
) -> Result<(), StoreError> {
    if approvals.is_empty() {
        return Ok(());
    }
    let since = belay_model::now_ms() - 30 * 86_400_000;
    let stats = store.trust_stats(since).await?;
    for a in approvals {
        let mut h = serde_json::json!({ "window": "30d", "runs": 0, "changes": 0, "approvals_granted": 0,
            "approvals_denied": 0, "approvals_expired": 0, "rollbacks": 0, "failures": 0 });
        for s in stats
            .iter()
            .filter(|s| s.playbook == a.playbook && s.step == a.step)
        {
            let key = match (s.kind, s.status.as_str()) {
                ("step", "failed") => Some("failures"),
                ("change", "applied" | "drifted") => Some("changes"),
                ("change", "reverted") => Some("rollbacks"),
                ("approval", "approved") => Some("approvals_granted"),
                ("approval", "denied") => Some("approvals_denied"),
                ("approval", "expired") => Some("approvals_expired"),
                _ => None,
            };
            if s.kind == "step" {
                h["runs"] = serde_json::json!(h["runs"].as_u64().unwrap_or(0) + s.count);
            }
            if let Some(k) = key {
                h[k] = serde_json::json!(h[k].as_u64().unwrap_or(0) + s.count);
            }
        }
        a.history = h;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use belay_model::{ApprovalTerms, OnTimeout, TrustLevel};
    use serde_json::Value;

    fn approval(approvers: &[&str]) -> ApprovalRecord {
        ApprovalRecord {
            id: "a1".into(),
            run_id: "r1".into(),
            playbook: "pb".into(),
            step: "s".into(),
            key: "s".into(),
            action: "blocklist.add".into(),
            with: Value::Null,
            target: String::new(),
            change_hash: String::new(),
            current_state: Value::Null,
            guardrails: Value::Null,
            reason: String::new(),
            trust: TrustLevel::Approve,
            terms: ApprovalTerms {
                approvers: approvers.iter().map(|s| s.to_string()).collect(),
                quorum: 2,
                timeout_ms: 1,
                on_timeout: OnTimeout::Deny,
                separation: true,
            },
            triggered_by: Some("Bob".into()),
            author: Some("Alice ".into()),
            history: Value::Null,
            status: ApprovalStatus::Pending,
            votes: vec![Vote {
                user: "carol".into(),
                approve: true,
                ..Vote::default()
            }],
            created_at: 0,
            expires_at: 1,
            decided_at: None,
            version: 0,
        }
    }

    #[test]
    fn separation_and_approver_lists_compare_names_as_the_directory_does() {
        let a = approval(&["alice", "bob", "carol", "Dave"]);
        let refused = |user: &str| eligible(&a, user, &[]).is_err();
        // The author wrote "Alice "; she may not approve under any spelling.
        for alice in [
            "alice",
            "ALICE",
            " Alice",
            "CORP\\alice",
            "alice@corp.example",
        ] {
            assert!(refused(alice), "{alice} approved her own playbook");
        }
        assert!(refused("bob"), "the one who triggered the run approved");
        assert!(refused("Carol"), "a second vote by the same person counted");
        assert!(!refused("dave"), "an approver listed as `Dave` was refused");
        assert!(!refused("CORP\\Dave"));
        let dir = Directory::new([("Dave".to_owned(), vec!["responder".to_owned()])]);
        assert!(dir.roles(" dave ").is_some());
    }
}
