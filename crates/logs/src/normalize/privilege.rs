//! `auth.privilege_change` from syslog rules (usermod, gpasswd, useradd, …): who was added to or
//! removed from which group, and whether that group is privileged. Windows group-membership
//! events use the same privileged-group list and severity (see `windows`).
//!
//! This module never matches lines itself: the rules do, and hand it their captures.

use super::fields::{make, opt, push};
use super::{Context, Normalizer};
use belay_model::{Event, Observables, Severity};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

impl Normalizer {
    /// Whether `group` (optionally `DOMAIN\group`) is one of the privileged groups of the rules.
    pub(super) fn is_privileged(&self, group: &str) -> bool {
        let name = group.rsplit(['\\', '/']).next().unwrap_or(group);
        self.rules.privileged.contains(&name.to_lowercase())
    }

    /// The event for a rule of kind `auth.privilege_change`, from its captures.
    pub(super) fn privilege_change(
        &self,
        fields: Map<String, Value>,
        mut data: Map<String, Value>,
        time: DateTime<Utc>,
        host: Option<&str>,
        ctx: &Context,
    ) -> Event {
        let get = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let action = get("action").unwrap_or_else(|| "added".into());
        let user = get("user");
        // A new user's primary group is known by number only.
        let group = get("group");
        let gid = get("gid");
        let actor = get("actor");
        let privileged = group.as_deref().is_some_and(|g| self.is_privileged(g))
            || (action == "user_created" && gid.as_deref() == Some("0"));
        data.insert("action".into(), Value::from(action.clone()));
        data.insert("user".into(), opt(user.clone()));
        data.insert("group".into(), opt(group.clone()));
        data.insert("actor".into(), opt(actor));
        data.insert("host".into(), opt(host.map(str::to_owned)));
        data.insert("privileged".into(), Value::Bool(privileged));
        for k in ["uid", "gid"] {
            if let Some(v) = get(k) {
                data.insert(k.into(), Value::from(v));
            }
        }
        let mut obs = Observables::default();
        if let Some(u) = &user {
            for u in u.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                push(&mut obs.users, u);
            }
        }
        if let Some(h) = host {
            push(&mut obs.hosts, h);
        }
        let severity = privilege_severity(&action, privileged);
        make(
            "auth.privilege_change",
            time,
            severity,
            obs,
            data,
            None,
            ctx,
        )
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
