//! `auth.privilege_change` from syslog rules (usermod, gpasswd, useradd, …): who was added to or
//! removed from which group, and whether that group is privileged. Windows group-membership
//! events use the same privileged-group list and severity (see `windows`).
//!
//! This module never matches lines itself: the rules do, and hand it their captures.

use super::fields::{opt, push};
use super::rules::Matched;
use super::{Context, Normalizer};
use belay_model::{Event, Observables, Severity};
use serde_json::Value;

impl Normalizer {
    /// Whether `group` (optionally `DOMAIN\group`) is one of the privileged groups of the rules.
    pub(super) fn is_privileged(&self, group: &str) -> bool {
        let name = group.rsplit(['\\', '/']).next().unwrap_or(group);
        self.rules.privileged.contains(&name.to_lowercase())
    }

    /// The event for a rule of kind `auth.privilege_change`, from its captures.
    pub(super) fn privilege_change(&self, mut m: Matched<'_>, ctx: &Context) -> Event {
        let get = |k: &str| m.fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let action = get("action").unwrap_or_else(|| "added".into());
        let user = get("user");
        // A new user's primary group is known by number only.
        let group = get("group");
        let gid = get("gid");
        let actor = get("actor");
        let privileged = group.as_deref().is_some_and(|g| self.is_privileged(g))
            || (action == "user_created" && gid.as_deref() == Some("0"));
        m.data.insert("action".into(), Value::from(action.clone()));
        m.data.insert("user".into(), opt(user.clone()));
        m.data.insert("group".into(), opt(group.clone()));
        m.data.insert("actor".into(), opt(actor));
        m.data.insert("host".into(), opt(m.host.map(str::to_owned)));
        m.data.insert("privileged".into(), Value::Bool(privileged));
        for k in ["uid", "gid"] {
            if let Some(v) = get(k) {
                m.data.insert(k.into(), Value::from(v));
            }
        }
        let mut obs = Observables::default();
        if let Some(u) = &user {
            for u in u.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                push(&mut obs.users, u);
            }
        }
        if let Some(h) = m.host {
            push(&mut obs.hosts, h);
        }
        let severity = privilege_severity(&action, privileged);
        m.event("auth.privilege_change", severity, obs, ctx)
    }
}

/// High for an addition to a privileged group, medium for a privileged removal or creation.
pub(super) fn privilege_severity(action: &str, privileged: bool) -> Severity {
    match (action, privileged) {
        ("added", true) => Severity::High,
        ("added", false) | ("removed", true) | ("user_created", true) => Severity::Medium,
        _ => Severity::Low,
    }
}
