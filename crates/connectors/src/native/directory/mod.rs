//! `directory.*` on one host's local groups: `gpasswd -a|-d USER GROUP` and `getent group`.
//!
//! Membership means being listed in the group's member list (`/etc/group`); a user whose
//! primary group it is does not count (gpasswd cannot remove that). `command_prefix` runs every
//! command elsewhere, e.g. through `nsenter` in another mount namespace, or `ssh HOST`.

mod sandbox;

pub use sandbox::Sandbox;

use super::cmd::Cmd;
use crate::{ActionError, input_str};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// `[connectors.NAME] type = "gpasswd"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpasswdConfig {
    /// Prepended to every command, e.g. `["nsenter", "-t", "PID", "-m", "--"]`.
    pub command_prefix: Vec<String>,
    /// The host names whose groups this connector manages (the `host` input must be one of
    /// them); this machine's host name when empty.
    pub hosts: Vec<String>,
    /// The `gpasswd` program.
    pub gpasswd: String,
    /// The `getent` program.
    pub getent: String,
    /// How long one command may take, in seconds.
    pub timeout_secs: u64,
}

impl Default for GpasswdConfig {
    fn default() -> Self {
        GpasswdConfig {
            command_prefix: Vec::new(),
            hosts: Vec::new(),
            gpasswd: "gpasswd".into(),
            getent: "getent".into(),
            timeout_secs: 10,
        }
    }
}

/// The `gpasswd` connector.
pub struct Gpasswd {
    config: GpasswdConfig,
    hosts: Vec<String>,
    /// Serializes read-then-change sequences.
    lock: tokio::sync::Mutex<()>,
}

impl Gpasswd {
    /// The connector for the configured hosts, or for this host alone (its name from
    /// `/proc/sys/kernel/hostname`) when `hosts` is empty; host names are compared lowercased.
    /// Changes nothing.
    pub fn new(name: &str, config: GpasswdConfig) -> Result<Self, String> {
        let _ = name;
        let hosts = if config.hosts.is_empty() {
            let own = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_err(|e| format!("cannot read this host's name: {e}"))?;
            vec![own.trim().to_ascii_lowercase()]
        } else {
            config
                .hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        };
        Ok(Gpasswd {
            config,
            hosts,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    fn cmd(&self, program: &str) -> Cmd {
        let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
        match self.config.command_prefix.split_first() {
            Some((first, rest)) => Cmd::new(first)
                .args(rest.iter().cloned())
                .arg(program)
                .timeout(timeout),
            None => Cmd::new(program).timeout(timeout),
        }
    }

    /// Refuses a `host` this connector does not manage.
    fn check_host(&self, input: &Value) -> Result<(), ActionError> {
        let Some(host) = input.get("host").and_then(Value::as_str) else {
            return Ok(());
        };
        if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            Err(ActionError::permanent(format!(
                "host `{host}` is not managed by this connector (it manages: {})",
                self.hosts.join(", ")
            )))
        }
    }

    /// A group's member list; an unknown group is a permanent error.
    async fn members(&self, group: &str) -> Result<Vec<String>, ActionError> {
        let entry = self.getent("group", group).await?;
        // name:password:gid:member,member
        let line = entry.lines().next().unwrap_or("");
        let list = line.splitn(4, ':').nth(3).unwrap_or("");
        Ok(list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect())
    }

    async fn check_user(&self, user: &str) -> Result<(), ActionError> {
        self.getent("passwd", user).await.map(|_| ())
    }

    /// `getent DATABASE -- KEY` (`group` or `passwd`): the entry; an unknown key is a permanent
    /// error (named as a group or user).
    async fn getent(&self, database: &str, key: &str) -> Result<String, ActionError> {
        let out = self
            .cmd(&self.config.getent)
            .args([database, "--", key])
            .output()
            .await?;
        match out.status {
            0 => Ok(out.stdout),
            2 => {
                let what = if database == "passwd" {
                    "user"
                } else {
                    database
                };
                Err(ActionError::permanent(format!("unknown {what} `{key}`")))
            }
            s => Err(ActionError::transient(format!(
                "`getent {database} {key}` exited with status {s}: {}",
                out.stderr.trim()
            ))),
        }
    }

    async fn change(&self, input: &Value, add: bool) -> Result<Value, ActionError> {
        self.check_host(input)?;
        let user = check_name(input_str(input, "user")?, "user")?;
        let group = check_name(input_str(input, "group")?, "group")?;
        let _guard = self.lock.lock().await;
        let members = self.members(group).await?;
        self.check_user(user).await?;
        let changed = members.iter().any(|m| m == user) != add;
        if changed {
            let flag = if add { "-a" } else { "-d" };
            self.cmd(&self.config.gpasswd)
                .args([flag, user, group])
                .run()
                .await?;
        }
        Ok(json!({ "user": user, "group": group, "changed": changed }))
    }

    async fn list(&self, input: &Value) -> Result<Value, ActionError> {
        self.check_host(input)?;
        let group = check_name(input_str(input, "group")?, "group")?;
        let members = self.members(group).await?;
        let mut out = json!({ "members": members });
        if let Some(user) = input.get("user").and_then(Value::as_str) {
            let user = check_name(user, "user")?;
            out["member"] = json!(members.iter().any(|m| m == user));
        }
        Ok(out)
    }
}

belay_connector_api::connector! {
    impl Gpasswd {
        family: "directory",
        named: "the gpasswd connector",
        call(gpasswd, call) {
            "directory.add_member" => gpasswd.change(call.input, true).await,
            "directory.remove_member" => gpasswd.change(call.input, false).await,
            "directory.members" => gpasswd.list(call.input).await,
        }

        async fn read_state(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
            match action {
                "directory.add_member" | "directory.remove_member" => {
                    self.check_host(input)?;
                    let user = check_name(input_str(input, "user")?, "user")?;
                    let group = check_name(input_str(input, "group")?, "group")?;
                    let members = self.members(group).await?;
                    Ok(json!({ "member": members.iter().any(|m| m == user) }))
                }
                _ => Ok(Value::Null),
            }
        }
    }
}

/// A user or group name safe to pass as an argument: no leading `-`, no `:`, `,`, control
/// characters or (for users) spaces.
fn check_name<'a>(name: &'a str, what: &str) -> Result<&'a str, ActionError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(['-', ' '])
        && !name.ends_with(' ')
        && !name.chars().any(|c| {
            c.is_control() || matches!(c, ':' | ',' | '/') || (what == "user" && c == ' ')
        });
    if ok {
        Ok(name)
    } else {
        Err(ActionError::permanent(format!(
            "invalid {what} name `{}`",
            name.chars().take(80).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("alice", "user").is_ok());
        assert!(check_name("Domain Admins", "group").is_ok());
        for (bad, what) in [
            ("-a", "user"),
            ("al ice", "user"),
            ("a:b", "group"),
            ("a,b", "group"),
            ("a\nb", "group"),
            ("", "user"),
        ] {
            assert!(check_name(bad, what).is_err(), "{bad:?}");
        }
    }
}
