//! Approvals in chat and by e-mail, end to end through `belay serve` on an ephemeral port: the
//! lab's chat API simulator receives the held change and presses its buttons with signed
//! callbacks; a real Postfix takes the approval e-mails and delivers them into the maildir a
//! real Dovecot serves, read back over IMAP, whose links are followed. Both decide through the
//! approval policy, and both are in the audit trail with their channel.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

mod common;
use common::mail::{
    chown_tree, current_user, dovecot_binary, postfix_binary, start_dovecot, start_postfix,
};
use common::server::{Server, get, now, post, request, token, wait_for};
use common::{block_alert_ip, listed, ok, write_file};

const CHAT_SIGNING: &str = "chat-signing-secret-0123456789";
const LINK_KEY: &str = "link-key-0123456789-0123456789-0123456789";

/// The lab's simulators on a thread of their own; stopped when the sender is dropped.
struct LabThread {
    base_url: String,
    port: u16,
    token: String,
    _stop: std::sync::mpsc::Sender<()>,
}

fn start_lab() -> LabThread {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let config = belay_lab::LabConfig {
                chat_signing_secret: CHAT_SIGNING.into(),
                ..Default::default()
            };
            let lab = belay_lab::Lab::start(config).await.expect("the lab starts");
            tx.send((lab.base_url.clone(), lab.addr.port(), lab.token.clone()))
                .unwrap();
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            lab.shutdown().await;
        });
    });
    let (base_url, port, token) = rx.recv().expect("the lab says where it listens");
    LabThread {
        base_url,
        port,
        token,
        _stop: stop_tx,
    }
}

fn pending(port: u16, viewer: &str) -> Vec<Value> {
    get(port, "/api/v1/approvals", viewer)
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn audit(dir: &Path) -> Vec<Value> {
    ok(&common::belay(dir, &["audit", "export"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_held_change_is_decided_from_chat_through_the_approval_policy() {
    let lab = start_lab();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("playbooks")).unwrap();
    write_file(
        d,
        "playbooks/pb.yaml",
        &block_alert_ip("approve", "    approval: { separation: true }\n"),
    );
    write_file(
        d,
        "belay.toml",
        &format!(
            r#"playbooks = "playbooks"
[[users]]
name = "ada"
roles = ["responder"]
[[users]]
name = "bob"
roles = ["responder"]
[[users]]
name = "vera"
roles = ["viewer"]

[notify.soc.chat]
api = "{}/chat/api"
channel = "C0SOC"
token = "${{{{ secrets.CHAT_TOKEN }}}}"
signing_secret = "${{{{ secrets.CHAT_SIGNING }}}}"
approvals = true

[[chat.users]]
id = "U0ADA"
user = "ada"
[[chat.users]]
id = "U0BOB"
user = "bob"
[[chat.users]]
id = "U0VERA"
user = "vera"
"#,
            lab.base_url
        ),
    );
    let bob = token(d, "bob", "responder");
    let viewer = token(d, "vera", "viewer");
    let server = Server::start_with(
        d,
        "127.0.0.1:0",
        &[("CHAT_TOKEN", &lab.token), ("CHAT_SIGNING", CHAT_SIGNING)],
    );
    let hook = format!("http://127.0.0.1:{}/hooks/chat/soc", server.port);

    // bob's tool sends the alert: bob triggered the run.
    let event = json!({"id": "e1", "kind": "ids.alert", "observables": {"ips": ["203.0.113.9"]}});
    let (status, acc) = post(server.port, "/api/v1/events", &bob, &event);
    assert_eq!(status, 202, "{acc}");
    let run_id = acc["run_ids"][0].as_str().unwrap().to_owned();

    // The held change is posted with its summary, verdicts and buttons.
    let message = wait_for("the chat message", || {
        let (_, m) = get(lab.port, "/_chat/messages", &lab.token);
        m["messages"].as_array().and_then(|l| l.first().cloned())
    });
    let approval = pending(server.port, &viewer).remove(0);
    let id = approval["id"].as_str().unwrap();
    let hash = approval["change_hash"].as_str().unwrap();
    assert_eq!(message["channel"], "C0SOC");
    let text = message.to_string();
    for needle in [
        "block-ip",
        "blocklist.add",
        "203.0.113.9",
        "Guardrails",
        id,
        hash,
    ] {
        assert!(
            text.contains(needle),
            "the message lacks {needle}: {message:#}"
        );
    }

    let click = |action: &str, user: &str, extra: Value| {
        let mut body = json!({ "action": action, "user": user, "request_url": hook });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        let (status, answer) = post(lab.port, "/_chat/click", &lab.token, &body);
        assert_eq!(status, 200, "the lab sent the callback: {answer}");
        answer
    };
    let unchanged = |why: &str| {
        assert_eq!(
            pending(server.port, &viewer).len(),
            1,
            "{why}: the approval was decided"
        );
        assert!(listed(d).is_empty(), "{why}: the change was applied");
    };

    // Signed with another secret, or five minutes late: refused, nothing changes.
    let a = click(
        "approve",
        "U0ADA",
        json!({ "secret": "not-the-signing-secret-000" }),
    );
    assert_eq!(a["status"], 401, "{a}");
    unchanged("a bad signature");
    let a = click("approve", "U0ADA", json!({ "timestamp_offset": -400 }));
    assert_eq!(a["status"], 401, "{a}");
    unchanged("a stale timestamp");
    // A chat user nobody mapped, a viewer, and bob (who triggered the run) are refused.
    let a = click("approve", "U0NOBODY", json!({}));
    assert!(
        a["body"]["text"].as_str().unwrap().contains("not mapped"),
        "{a}"
    );
    unchanged("an unmapped user");
    let a = click("approve", "U0VERA", json!({}));
    assert!(
        a["body"]["text"]
            .as_str()
            .unwrap()
            .contains("vera may not decide"),
        "{a}"
    );
    unchanged("a viewer");
    let a = click("approve", "U0BOB", json!({}));
    assert!(
        a["body"]["text"]
            .as_str()
            .unwrap()
            .contains("separation of duties"),
        "{a}"
    );
    unchanged("the run's trigger");
    // A correctly signed button for another change than the one held is refused too.
    let payload = json!({ "type": "block_actions", "user": { "id": "U0ADA" },
        "actions": [{ "action_id": "belay_approve",
            "value": json!({ "approval": id, "change_hash": "0".repeat(64), "decision": "approve" }).to_string() }] });
    let body = format!("payload={}", form_encode(&payload.to_string()));
    let ts = now().to_string();
    let sig = belay_server::signature::SLACK.sign(CHAT_SIGNING.as_bytes(), now(), body.as_bytes());
    let (status, a) = request(
        server.port,
        "POST",
        "/hooks/chat/soc",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &sig),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{a}");
    assert!(
        a["text"].as_str().unwrap().contains("another change"),
        "{a}"
    );
    unchanged("a button for another change");

    // ada approves: the change is applied and the message says so, and who.
    let a = click("approve", "U0ADA", json!({}));
    assert!(
        a["body"]["text"].as_str().unwrap().contains("approved"),
        "{a}"
    );
    wait_for("the approved run", || {
        let (_, r) = get(server.port, &format!("/api/v1/runs/{run_id}"), &viewer);
        (r["run"]["status"] == "succeeded").then_some(())
    });
    assert_eq!(listed(d), ["203.0.113.9"]);
    let (_, m) = get(lab.port, "/_chat/messages", &lab.token);
    let updated = &m["messages"][0];
    assert_eq!(
        m["messages"].as_array().unwrap().len(),
        1,
        "one message per approval"
    );
    assert_eq!(updated["updates"], 1, "{updated:#}");
    let now_text = updated["text"].as_str().unwrap();
    assert!(
        now_text.contains("APPROVED") && now_text.contains("ada") && now_text.contains("chat"),
        "{now_text}"
    );
    assert!(
        !updated["blocks"].to_string().contains("belay_approve"),
        "the buttons are gone"
    );

    // The trail has the delivery, each refused answer and the decision, with the channel.
    drop(server);
    let trail = audit(d);
    let delivered = trail
        .iter()
        .find(|e| e["kind"] == "approval.delivered")
        .expect("the delivery is audited");
    assert_eq!(delivered["detail"]["channel"], "chat");
    assert_eq!(delivered["subject"], id);
    let refused = trail
        .iter()
        .filter(|e| e["kind"] == "approval.refused" && e["detail"]["channel"] == "chat")
        .count();
    assert_eq!(refused, 4, "unmapped, viewer, trigger and another change");
    let granted = trail
        .iter()
        .find(|e| e["kind"] == "approval.granted")
        .expect("the decision is audited");
    assert_eq!(granted["actor"], "ada");
    assert_eq!(granted["detail"]["channel"], "chat");
    ok(&common::belay(d, &["audit", "verify"]));
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Every message in alice's INBOX, fetched over IMAP, with quoted-printable soft breaks and
/// escapes decoded.
fn imap_messages(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("IMAP connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let script = "a1 LOGIN alice s3cret-pw\r\na2 SELECT INBOX\r\na3 FETCH 1:* (BODY.PEEK[])\r\na4 LOGOUT\r\n";
    s.write_all(script.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out)
        .replace("=\r\n", "")
        .replace("=\n", "");
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find('=') {
        decoded.push_str(&rest[..i]);
        let hex = rest
            .get(i + 1..i + 3)
            .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                decoded.push(b as char);
                rest = &rest[i + 3..];
            }
            None => {
                decoded.push('=');
                rest = &rest[i + 1..];
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

/// The decision links in `text` that point at `port`.
fn links(text: &str, port: u16) -> Vec<String> {
    let prefix = format!("http://127.0.0.1:{port}/approvals/email/");
    text.match_indices(&prefix)
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(*c))
                .collect()
        })
        .collect()
}

/// The path of `link`, a form token read from its confirmation page, and the page.
fn open_link(port: u16, link: &str) -> (u16, String, String) {
    let path = link
        .split_once(&format!("127.0.0.1:{port}"))
        .unwrap()
        .1
        .to_owned();
    let (status, page) = request(port, "GET", &path, &[], b"");
    let page = page.as_str().unwrap_or_default().to_owned();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned();
    (status, csrf, page)
}

fn confirm(port: u16, path: &str, csrf: &str) -> (u16, String) {
    let body = format!("csrf={csrf}&comment=checked+the+address");
    let (status, page) = request(
        port,
        "POST",
        path,
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    (status, page.as_str().unwrap_or_default().to_owned())
}

#[test]
fn a_held_change_is_decided_from_an_e_mailed_link_once() {
    if dovecot_binary().is_none() || postfix_binary().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dovecot = start_dovecot(&d.join("dovecot"));
    // Postfix delivers ada's and bob's mail into the maildir Dovecot serves as alice's INBOX.
    let (_, _, uid, gid) = current_user();
    let owner = dovecot.mail_owner.unwrap_or((uid, gid));
    let postfix = start_postfix(
        &d.join("postfix"),
        &d.join("dovecot/mail"),
        &[("ada@example.test", "alice"), ("bob@example.test", "alice")],
        owner,
    );
    chown_tree(&d.join("dovecot/mail"), dovecot.mail_owner);
    std::fs::create_dir_all(d.join("playbooks")).unwrap();
    write_file(
        d,
        "playbooks/pb.yaml",
        &block_alert_ip("approve", "    approval: { separation: true }\n"),
    );
    // A second playbook whose approvals expire within seconds, for the expired link.
    write_file(
        d,
        "playbooks/short.yaml",
        &block_alert_ip(
            "approve",
            "    approval: { separation: true, timeout: 15s }\n",
        )
        .replace("name: block-ip", "name: block-ip-soon")
        .replace("event: ids.alert", "event: ids.alert.soon"),
    );
    write_file(
        d,
        "belay.toml",
        &format!(
            r#"playbooks = "playbooks"
[[users]]
name = "ada"
roles = ["responder"]
email = "ada@example.test"
[[users]]
name = "bob"
roles = ["responder"]
email = "bob@example.test"

[approvals.email]
smtp = "127.0.0.1:{}"
from = "belay@example.test"
key = "${{{{ secrets.LINK_KEY }}}}"
"#,
            postfix.port
        ),
    );
    let bob = token(d, "bob", "responder");
    let viewer = token(d, "vera", "viewer");
    let server = Server::start_with(d, "127.0.0.1:0", &[("LINK_KEY", LINK_KEY)]);
    let port = server.port;

    let event = json!({"id": "e1", "kind": "ids.alert", "observables": {"ips": ["203.0.113.9"]}});
    let (status, acc) = post(port, "/api/v1/events", &bob, &event);
    assert_eq!(status, 202, "{acc}");
    let run_id = acc["run_ids"][0].as_str().unwrap().to_owned();

    // ada's message arrives through Postfix; bob, who triggered the run, gets none.
    let mail = wait_for("ada's approval e-mail", || {
        let m = imap_messages(dovecot.port);
        (links(&m, port).len() >= 2).then_some(m)
    });
    assert!(mail.contains("To: ada@example.test"), "{mail}");
    assert!(
        !mail.contains("To: bob@example.test"),
        "bob triggered the run: {mail}"
    );
    assert!(
        mail.contains("block-ip / block: blocklist.add 203.0.113.9"),
        "{mail}"
    );
    let found = links(&mail, port);
    let approve = found.iter().find(|l| !l.is_empty()).unwrap().clone();
    let approval = pending(port, &viewer).remove(0);
    let id = approval["id"].as_str().unwrap().to_owned();

    // Fetching the link (as a mail scanner would) only shows the confirmation page.
    let (status, csrf, page) = open_link(port, &approve);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("approve") && page.contains("203.0.113.9"),
        "{page}"
    );
    assert!(!csrf.is_empty(), "the page has a form token: {page}");
    let (_, _, _) = open_link(port, &approve);
    assert_eq!(pending(port, &viewer).len(), 1, "a GET decided");
    let path = approve
        .split_once(&format!("127.0.0.1:{port}"))
        .unwrap()
        .1
        .to_owned();
    // Without the page's form token, or with a link altered by one byte: refused.
    let (status, _) = confirm(port, &path, "00");
    assert_eq!(status, 403);
    let mut altered = path.clone().into_bytes();
    let at = altered.len() - 10;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let (status, page) = confirm(port, &altered, &csrf);
    assert_eq!(status, 401, "{page}");
    assert_eq!(pending(port, &viewer).len(), 1, "a refused link decided");
    assert!(listed(d).is_empty());

    // The confirmed POST decides as ada; the change is applied.
    let (status, page) = confirm(port, &path, &csrf);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("recorded as ada"), "{page}");
    wait_for("the approved run", || {
        let (_, r) = get(port, &format!("/api/v1/runs/{run_id}"), &viewer);
        (r["run"]["status"] == "succeeded").then_some(())
    });
    assert_eq!(listed(d), ["203.0.113.9"]);
    // The same link again is refused, as a GET and as a POST.
    let (status, _, page) = open_link(port, &approve);
    assert_eq!(status, 410, "{page}");
    let (status, page) = confirm(port, &path, &csrf);
    assert_eq!(status, 410, "{page}");

    // A link followed after its approval expired is refused and changes nothing.
    let before = imap_messages(dovecot.port);
    let event =
        json!({"id": "e2", "kind": "ids.alert.soon", "observables": {"ips": ["198.51.100.7"]}});
    assert_eq!(post(port, "/api/v1/events", &bob, &event).0, 202);
    let link = wait_for("the second e-mail", || {
        let m = imap_messages(dovecot.port);
        links(&m, port)
            .into_iter()
            .find(|l| !before.contains(l.as_str()))
    });
    let soon = wait_for("the second approval", || {
        pending(port, &viewer)
            .into_iter()
            .find(|a| a["playbook"] == "block-ip-soon")
    });
    // The API gives times as RFC 3339.
    let expires = chrono::DateTime::parse_from_rfc3339(soon["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    while now() * 1000 <= expires + 1000 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _, page) = open_link(port, &link);
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    let path = link
        .split_once(&format!("127.0.0.1:{port}"))
        .unwrap()
        .1
        .to_owned();
    let (status, _) = confirm(port, &path, "00");
    assert_eq!(status, 410);
    assert_eq!(
        listed(d),
        ["203.0.113.9"],
        "an expired link changed the list"
    );

    drop(server);
    let trail = audit(d);
    let delivered: Vec<&Value> = trail
        .iter()
        .filter(|e| e["kind"] == "approval.delivered" && e["detail"]["channel"] == "email")
        .collect();
    assert_eq!(delivered.len(), 2, "one message to ada per approval");
    assert!(delivered.iter().all(|e| e["detail"]["recipient"] == "ada"));
    let granted = trail
        .iter()
        .find(|e| e["kind"] == "approval.granted" && e["subject"] == id.as_str())
        .expect("the decision is audited");
    assert_eq!(granted["actor"], "ada");
    assert_eq!(granted["detail"]["channel"], "email");
    assert!(
        trail
            .iter()
            .any(|e| e["kind"] == "approval.refused" && e["detail"]["channel"] == "email")
    );
    ok(&common::belay(d, &["audit", "verify"]));
}
