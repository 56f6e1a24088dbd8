//! The trail vouches for every change, through the real binary: an approval marked approved
//! directly in the database is not acted on, `belay audit verify` names a change applied
//! without its authority, and heads signed with a key outside the data directory catch a
//! database whose last entries and recorded head were rewritten.

use belay_model::audit::{AuditDraft, GENESIS};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

mod common;
use common::{belay, block_alert_ip, json as out_json, ok, refused, run_on, text};

const USERS: &str =
    "data = \"data\"\nplaybooks = \"pb\"\n\n[[users]]\nname = \"bob\"\nroles = [\"responder\"]\n";

/// A test directory with the playbook and `belay.toml` (the users, then `extra`).
fn setup(trust: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("pb")).unwrap();
    std::fs::write(d.join("pb/block.yaml"), block_alert_ip(trust, "")).unwrap();
    std::fs::write(d.join("belay.toml"), format!("{USERS}{extra}")).unwrap();
    dir
}

fn alert(d: &Path, ip: &str) -> Value {
    let ev = json!({"kind": "ids.alert", "observables": {"ips": [ip]}});
    out_json(&run_on(d, "pb/block.yaml", &ev, &[]))
}

fn listed(d: &Path) -> String {
    std::fs::read_to_string(d.join("data/lists/egress.txt")).unwrap_or_default()
}

fn db(d: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(d.join("data/belay.db")).unwrap()
}

/// Appends entries to the trail the way an attacker who knows its format would: each chained
/// to the one before, the recorded head moved along, so the chain itself stays intact.
fn append_chained(d: &Path, drafts: Vec<AuditDraft>) {
    let c = db(d);
    let (mut seq, mut hash): (i64, String) = c
        .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap_or((0, GENESIS.to_string()));
    for draft in drafts {
        let e = belay_model::AuditEntry::chain(draft, seq, &hash, belay_model::now_ms());
        c.execute(
            "INSERT INTO audit (seq, at, kind, actor, subject, detail, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, unhex(?7))",
            rusqlite::params![
                e.seq,
                e.at,
                e.kind,
                e.actor,
                e.subject,
                belay_model::audit::canonical_json(&e.detail),
                e.hash
            ],
        )
        .unwrap();
        (seq, hash) = (e.seq, e.hash);
    }
    c.execute(
        "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1",
        rusqlite::params![seq, hash],
    )
    .unwrap();
}

#[test]
fn an_approval_forged_in_the_database_is_not_acted_on() {
    let dir = setup("approve", "");
    let d = dir.path();
    let run = alert(d, "198.51.100.7");
    assert_eq!(run["status"], "waiting_approval");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let list = out_json(&belay(d, &["approvals", "list", "--format", "json"]));
    let id = list[0]["id"].as_str().unwrap().to_owned();

    // Whoever can write the database marks the approval approved by a made-up vote and the
    // run resumable, as a real decision would.
    let c = db(d);
    let vote =
        json!([{"user": "bob", "approve": true, "comment": null, "at": belay_model::now_ms()}]);
    c.execute(
        "UPDATE approvals SET status = 'approved', version = version + 1, \
         body = json_set(body, '$.status', 'approved', '$.votes', json(?2), '$.version', version + 1) \
         WHERE id = ?1",
        rusqlite::params![id, vote.to_string()],
    )
    .unwrap();
    c.execute(
        "UPDATE runs SET status = 'pending', owner = NULL, lease_until = NULL WHERE id = ?1",
        [&run_id],
    )
    .unwrap();
    drop(c);
    let shown = out_json(&belay(d, &["approvals", "show", &id, "--format", "json"]));
    assert_eq!(shown["status"], "approved", "the forgery took: {shown}");

    // The next engine start resumes the run: it refuses to act on the forged decision.
    std::fs::write(d.join("empty.jsonl"), "").unwrap();
    ok(&belay(d, &["ingest", "empty.jsonl", "--quiet"]));
    assert_eq!(listed(d), "", "a forged approval changed the blocklist");
    let r = out_json(&belay(d, &["runs", "show", &run_id, "--format", "json"]));
    assert_eq!(r["status"], "failed", "{r}");
    let err = r["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "approval {id} is approved in the database but the audit trail does not vouch for it"
        )) && err.contains("nothing was applied"),
        "{err}"
    );
    let changes = out_json(&belay(d, &["changes", "list", "--format", "json"]));
    assert_eq!(changes, json!([]), "nothing was journaled");
    // The refusal is in the trail, and the trail verifies.
    let audit = ok(&belay(d, &["audit", "export"]));
    assert!(audit.contains("approval.unvouched"), "{audit}");
    assert!(ok(&belay(d, &["audit", "verify"])).contains("audit chain intact"));

    // A real decision still works on another alert.
    alert(d, "198.51.100.8");
    let list = out_json(&belay(d, &["approvals", "list", "--format", "json"]));
    let id = list[0]["id"].as_str().unwrap();
    ok(&belay(d, &["approvals", "approve", id, "--as", "bob"]));
    assert_eq!(listed(d).trim(), "198.51.100.8");
    assert!(ok(&belay(d, &["audit", "verify"])).contains("audit chain intact"));
}

#[test]
fn verify_names_a_change_applied_without_its_authority() {
    let dir = setup("approve", "");
    let d = dir.path();
    let run = alert(d, "198.51.100.9");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let list = out_json(&belay(d, &["approvals", "list", "--format", "json"]));
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert!(ok(&belay(d, &["audit", "verify"])).contains("audit chain intact"));

    // What an engine acting on a forged approval leaves: a change journaled and applied under
    // an approval whose decision is nowhere in the trail. Every entry chains.
    let change = "forged-change-1";
    let detail = json!({
        "run_id": run_id, "step": "block", "idempotency_key": format!("{run_id}/block"),
        "action": "blocklist.add", "target": "198.51.100.9", "trust": "approve",
        "guardrails": [], "allowed_by": format!("approval:{id} by bob"),
        "with_sha256": "00", "before_sha256": "00", "inverse": null,
    });
    append_chained(
        d,
        vec![
            AuditDraft {
                kind: "change.journaled".into(),
                actor: "engine:w".into(),
                subject: change.into(),
                detail,
            },
            AuditDraft {
                kind: "change.applied".into(),
                actor: "engine:w".into(),
                subject: change.into(),
                detail: json!({"status": "applied", "run_id": run_id, "step": "block"}),
            },
        ],
    );
    let out = refused(&belay(d, &["audit", "verify"]));
    assert!(
        out.contains(&format!(
            "change {change} was applied without its authority in the trail"
        )) && out.contains(&format!("approval {id} has no decision in the trail")),
        "{out}"
    );
}

/// A key pair made by `belay audit keygen` in `keys/` (outside the data directory).
fn keygen(d: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(d.join("keys")).unwrap();
    let out = ok(&belay(d, &["audit", "keygen", "--out", "keys/audit.key"]));
    assert!(out.contains("keys/audit.key.pub"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("keys/audit.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    (d.join("keys/audit.key"), d.join("keys/audit.key.pub"))
}

const SIGNING: &str =
    "\n[audit]\nsigning_key = \"keys/audit.key\"\nsigned_heads = \"heads/signed.jsonl\"\n";

/// `belay audit verify` against the signed heads of [`signing_setup`], with its public key.
const VERIFY_SIGNED: [&str; 6] = [
    "audit",
    "verify",
    "--public-key",
    "keys/audit.key.pub",
    "--signed-heads",
    "heads/signed.jsonl",
];

/// A workspace at `log` whose config signs heads (`SIGNING` and `extra`) with a fresh key
/// under `keys/`, to `heads/signed.jsonl`.
fn signing_setup(extra: &str) -> tempfile::TempDir {
    let dir = setup("log", &format!("{SIGNING}{extra}"));
    keygen(dir.path());
    std::fs::create_dir_all(dir.path().join("heads")).unwrap();
    dir
}

fn signed_seq(line: &str) -> i64 {
    serde_json::from_str::<Value>(line.trim()).unwrap()["seq"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_rewritten_database_is_caught_by_the_signed_heads() {
    let dir = signing_setup("");
    let d = dir.path();
    alert(d, "198.51.100.10");
    let first = signed_seq(&ok(&belay(d, &["audit", "sign"])));
    alert(d, "198.51.100.11");
    alert(d, "198.51.100.12");
    let second = signed_seq(&ok(&belay(d, &["audit", "sign"])));
    assert!(second > first + 2, "{first} {second}");
    let heads = std::fs::read_to_string(d.join("heads/signed.jsonl")).unwrap();
    assert_eq!(heads.lines().count(), 2, "{heads}");
    let verify = VERIFY_SIGNED;
    let out = ok(&belay(d, &verify));
    assert!(out.contains("2 signed head(s) match"), "{out}");

    // Delete the trail's last rows and rewrite the recorded head to match.
    let keep = first + 1;
    db(d)
        .execute_batch(&format!(
            "DELETE FROM audit WHERE seq > {keep}; \
             UPDATE audit_head SET seq = {keep}, hash = (SELECT lower(hex(hash)) FROM audit WHERE seq = {keep}) WHERE id = 1"
        ))
        .unwrap();
    std::fs::write(d.join("plain.toml"), USERS).unwrap();
    assert!(
        ok(&belay(d, &["--config", "plain.toml", "audit", "verify"]))
            .contains("audit chain intact"),
        "without the signed heads the rewrite goes unnoticed"
    );
    let out = refused(&belay(d, &verify));
    assert!(
        out.contains(&format!("does not match its signed head at entry {second}"))
            && out.contains(&format!("the trail ends at entry {keep}")),
        "{out}"
    );
    // And the rewritten trail is not signed again.
    let out = refused(&belay(d, &["audit", "sign"]));
    assert!(out.contains("refusing to sign"), "{out}");
}

#[test]
fn a_tampered_signed_head_is_reported() {
    let dir = signing_setup("");
    let d = dir.path();
    alert(d, "198.51.100.13");
    ok(&belay(d, &["audit", "sign"]));
    alert(d, "198.51.100.14");
    ok(&belay(d, &["audit", "sign"]));
    let path = d.join("heads/signed.jsonl");
    let heads = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<Value> = heads
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Someone moves the second signed head back, to cover a truncation.
    lines[1]["seq"] = json!(lines[1]["seq"].as_i64().unwrap() - 1);
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    let out = refused(&belay(d, &VERIFY_SIGNED));
    assert!(
        out.contains(
            "signed head heads/signed.jsonl:2 is not trustworthy: its signature does not verify"
        ),
        "{out}"
    );
    // A head signed by another key is not trusted either.
    std::fs::create_dir_all(d.join("other")).unwrap();
    ok(&belay(d, &["audit", "keygen", "--out", "other/k"]));
    let out = refused(&belay(
        d,
        &[
            "audit",
            "verify",
            "--public-key",
            "other/k.pub",
            "--signed-heads",
            "heads/signed.jsonl",
        ],
    ));
    assert!(out.contains("not by the given public key"), "{out}");
}

#[test]
fn keys_and_signed_heads_stay_outside_the_data_directory() {
    let dir = setup("log", "\n[audit]\nsigning_key = \"data/audit.key\"\n");
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let out = text(&belay(d, &["audit", "keygen", "--out", "data/audit.key"]));
    assert!(out.contains("inside the data directory"), "{out}");
    assert!(!d.join("data/audit.key").exists());
    // A key put there by other means is refused too.
    keygen(d);
    std::fs::copy(d.join("keys/audit.key"), d.join("data/audit.key")).unwrap();
    let o = belay(d, &["audit", "sign"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("inside the data directory"),
        "{}",
        text(&o)
    );
    // An existing key is never overwritten.
    let o = belay(d, &["audit", "keygen", "--out", "keys/audit.key"]);
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn heads_are_signed_automatically_and_sent_to_syslog() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let dir = signing_setup(&format!(
        "sign_every_entries = 3\nsyslog = \"udp://127.0.0.1:{port}\"\npublic_key = \"keys/audit.key.pub\"\n"
    ));
    let d = dir.path();
    alert(d, "198.51.100.15");
    // The run wrote more than 3 entries: its process signed the head as it ended.
    let heads = std::fs::read_to_string(d.join("heads/signed.jsonl")).unwrap();
    assert!(
        heads.lines().count() >= 1,
        "a head was signed automatically"
    );
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("the signed head reached syslog");
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(
        msg.starts_with("<85>1 ") && msg.contains(" belay ") && msg.contains("audit-head"),
        "{msg}"
    );
    assert!(
        heads.lines().any(|l| msg.ends_with(l)),
        "syslog got {msg}, the file {heads}"
    );
    // `audit verify` reads the public key and the signed heads from the configuration.
    let out = ok(&belay(d, &["audit", "verify"]));
    assert!(out.contains("signed head(s) match"), "{out}");
    // A syslog line reads as a signed head as well.
    std::fs::write(d.join("syslog.log"), format!("{msg}\n")).unwrap();
    let out = ok(&belay(
        d,
        &["audit", "verify", "--signed-heads", "syslog.log"],
    ));
    assert!(out.contains("1 signed head(s) match"), "{out}");
}
