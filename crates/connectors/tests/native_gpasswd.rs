//! The gpasswd connector against real shadow-utils in a private mount namespace with an
//! overlay on /etc: the host's accounts are never touched (checked byte for byte). Skipped
//! (with the reason) when root or the tools are missing, unless BELAY_REQUIRE_NATIVE=1.

use belay_connectors::native::directory::{Gpasswd, Sandbox};

use serde_json::json;

mod common;
use common::{call, change, inverse, refused, state};

fn sandbox() -> Option<Sandbox> {
    common::usable("gpasswd", Sandbox::available())
        .then(|| Sandbox::start().expect("namespace starts"))
}

/// A started sandbox with the group `group` and `users` in it (None when it cannot start).
fn sandbox_with(group: &str, users: &[&str]) -> Option<Sandbox> {
    let sb = sandbox()?;
    sb.add_group(group).expect("groupadd");
    for user in users {
        sb.add_user(user, &[group]).expect("useradd");
    }
    Some(sb)
}

fn host_files() -> Vec<Vec<u8>> {
    ["/etc/group", "/etc/gshadow", "/etc/passwd"]
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn reverts_an_escalation_and_puts_it_back() {
    let host_before = host_files();
    let Some(sb) = sandbox_with("cfo-admins", &["mallory", "carol"]) else {
        return;
    };
    let dir = Gpasswd::new("dir", sb.config("cfo-laptop")).expect("config");

    let input = json!({ "user": "mallory", "group": "cfo-admins", "host": "CFO-laptop" });
    let before = state(&dir, "directory.remove_member", &input).await;
    assert_eq!(before, json!({ "member": true }));
    let out = call(&dir, "directory.remove_member", input.clone())
        .await
        .expect("removes");
    assert_eq!(
        out,
        json!({ "user": "mallory", "group": "cfo-admins", "changed": true })
    );
    assert_eq!(
        state(&dir, "directory.remove_member", &input).await,
        json!({ "member": false })
    );
    // Checked with the system's own view of the group, inside the namespace.
    let line = sb.run(&["getent", "group", "cfo-admins"]).expect("getent");
    assert!(line.trim().ends_with(":carol"), "{line}");
    let members = call(
        &dir,
        "directory.members",
        json!({ "group": "cfo-admins", "user": "mallory" }),
    )
    .await
    .expect("members");
    assert_eq!(members, json!({ "members": ["carol"], "member": false }));
    change(&dir, "directory.remove_member", input.clone(), false).await;

    // The catalog's inverse: directory.add_member with [user, group, host].
    let (undo, with) = inverse("directory.remove_member", &input, &before);
    assert_eq!(undo, "directory.add_member");
    change(&dir, &undo, with.clone(), true).await;
    change(&dir, &undo, with, false).await;
    let line = sb.run(&["getent", "group", "cfo-admins"]).expect("getent");
    assert!(line.contains("mallory") && line.contains("carol"), "{line}");
    drop(sb);
    assert!(
        host_files() == host_before,
        "the host's account files are unchanged"
    );
}

#[tokio::test]
async fn unknown_users_groups_and_hosts_fail_cleanly() {
    let host_before = host_files();
    let Some(sb) = sandbox_with("wheel2", &["bob"]) else {
        return;
    };
    let dir = Gpasswd::new("dir", sb.config("cfo-laptop")).expect("config");
    let group_before = sb.run(&["getent", "group", "wheel2"]).expect("getent");
    for (action, input, needle) in [
        (
            "directory.remove_member",
            json!({ "user": "nobody-here", "group": "wheel2" }),
            "unknown user `nobody-here`",
        ),
        (
            "directory.add_member",
            json!({ "user": "bob", "group": "no-such-group" }),
            "unknown group `no-such-group`",
        ),
        (
            "directory.add_member",
            json!({ "user": "bob", "group": "wheel2", "host": "dc01" }),
            "host `dc01` is not managed",
        ),
        (
            "directory.remove_member",
            json!({ "user": "-d", "group": "wheel2" }),
            "invalid user name",
        ),
        (
            "directory.members",
            json!({ "group": "no-such-group" }),
            "unknown group",
        ),
    ] {
        refused(&dir, action, input, needle).await;
    }
    assert_eq!(
        sb.run(&["getent", "group", "wheel2"]).expect("getent"),
        group_before
    );
    drop(sb);
    assert!(
        host_files() == host_before,
        "the host's account files are unchanged"
    );
}

#[test]
fn configuration_is_checked() {
    let settings = "command_prefix = [\"ssh\", \"h1\"]\nhosts = [\"h1\"]";
    let c = common::build("dir", "gpasswd", settings).expect("builds");
    assert_eq!(c.family(), "directory");
    assert!(common::build("dir", "gpasswd", "prefix = []").is_err());
}
