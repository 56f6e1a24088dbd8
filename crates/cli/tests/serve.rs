//! `belay serve` end to end: the real binary on an ephemeral port, driven over HTTP.
//! Webhook signatures, body limits, malformed and invalid bodies, duplicates, the role of
//! every route, approvals as the authenticated principal, and SIGTERM.

use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

mod common;
use common::server::{Server, now, token};
use common::{block_alert_ip, command, ok, write_file};

const SECRET: &str = "siem-hook-secret-0123456789";

/// `belay serve` in `dir` with the `siem` source's secret in its environment.
fn start(dir: &Path) -> Server {
    Server::start_with(dir, "127.0.0.1:0", &[("SIEM_HOOK", SECRET)])
}

/// A webhook to the `siem` source signed at `ts` with `secret`.
fn hook(
    server: &Server,
    body: &str,
    ts: i64,
    secret: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let sig = belay_server::signature::BELAY.sign(secret.as_bytes(), ts, body.as_bytes());
    let ts = ts.to_string();
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-belay-timestamp", ts.as_str()),
        ("x-belay-signature", sig.as_str()),
    ];
    headers.extend_from_slice(extra);
    server.call("POST", "/hooks/siem", &headers, body.as_bytes())
}

/// A directory with `playbook` in `playbooks/`, a `siem` webhook source and a 4 KiB limit.
fn setup(playbook: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
    write_file(dir.path(), "playbooks/pb.yaml", playbook);
    write_file(
        dir.path(),
        "belay.toml",
        "playbooks = \"playbooks\"\n[serve]\nbody_limit = 4096\n\
         [[hooks]]\nname = \"siem\"\nsecrets = [\"${{ secrets.SIEM_HOOK }}\"]\nprincipal = \"siem-bot\"\n",
    );
    dir
}

const LOG_PLAYBOOK: &str = "name: note\non: { event: ids.alert }\ntrust: log\nsteps:\n  - id: note\n    action: core.log\n    with: { message: seen }\n";

fn runs_of(server: &Server, token: &str, event: &str) -> Vec<Value> {
    let (status, page) = server.get(&format!("/api/v1/runs?event_id={event}"), token);
    assert_eq!(status, 200, "{page}");
    page["runs"].as_array().cloned().unwrap_or_default()
}

#[test]
fn webhooks_are_acknowledged_after_commit_and_refused_with_the_reason() {
    let dir = setup(LOG_PLAYBOOK);
    let d = dir.path();
    let viewer = token(d, "vera", "viewer");
    let mut server = start(d);

    // A good signature: 202 with the event id and the run it started.
    let body = r#"{"id":"h1","kind":"ids.alert","observables":{"ips":["192.0.2.1"]}}"#;
    let (status, first) = hook(&server, body, now(), SECRET, &[]);
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["event_id"], "h1");
    assert_eq!(first["run_ids"].as_array().unwrap().len(), 1, "{first}");
    // The same event again: the first answer, no second run.
    let (status, again) = hook(&server, body, now(), SECRET, &[]);
    assert_eq!((status, &again["run_ids"]), (202, &first["run_ids"]));
    assert_eq!(again["status"], "duplicate");
    assert_eq!(runs_of(&server, &viewer, "h1").len(), 1);

    // Bad and stale signatures, a missing one: 401, nothing stored.
    for (i, (ts, secret)) in [(now(), "another-secret-0123456789"), (now() - 600, SECRET)]
        .into_iter()
        .enumerate()
    {
        let body = format!(r#"{{"id":"bad{i}","kind":"ids.alert"}}"#);
        let (status, p) = hook(&server, &body, ts, secret, &[]);
        assert_eq!(status, 401, "{p}");
        assert_eq!(p["status"], 401);
        assert!(runs_of(&server, &viewer, &format!("bad{i}")).is_empty());
    }
    let (status, _) = server.call(
        "POST",
        "/hooks/siem",
        &[("content-type", "application/json")],
        br#"{"id":"bad9","kind":"ids.alert"}"#,
    );
    assert_eq!(status, 401);
    assert!(runs_of(&server, &viewer, "bad9").is_empty());

    // Past the body limit: 413. Not JSON: 415.
    let big = format!(r#"{{"kind":"ids.alert","data":"{}"}}"#, "x".repeat(5000));
    assert_eq!(hook(&server, &big, now(), SECRET, &[]).0, 413);
    let (status, p) = server.call(
        "POST",
        "/hooks/siem",
        &[("content-type", "text/plain")],
        b"{}",
    );
    assert_eq!(status, 415, "{p}");

    // Malformed JSON: 400 naming the position. A bad field: 400 naming its path.
    let (status, p) = hook(
        &server,
        "{\"kind\":\n  \"ids.alert\",,}",
        now(),
        SECRET,
        &[],
    );
    assert_eq!(status, 400, "{p}");
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_u64()),
        (Some(2), Some(15)),
        "{p}"
    );
    let (status, p) = hook(
        &server,
        r#"{"kind":"ids.alert","observables":{"ips":"192.0.2.1"}}"#,
        now(),
        SECRET,
        &[],
    );
    assert_eq!(status, 400, "{p}");
    assert_eq!(p["field"], "observables.ips", "{p}");
    let (status, p) = hook(
        &server,
        r#"{"kind":"ids.alert","severity":"HIGH"}"#,
        now(),
        SECRET,
        &[],
    );
    assert_eq!(
        (status, p["field"].as_str()),
        (400, Some("severity")),
        "{p}"
    );

    // A retried body without an id and with the same Idempotency-Key is the same event.
    let no_id = r#"{"kind":"ids.alert"}"#;
    let key = [("idempotency-key", "delivery-42")];
    let (s1, a1) = hook(&server, no_id, now(), SECRET, &key);
    let (s2, a2) = hook(&server, no_id, now(), SECRET, &key);
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a1["event_id"], a2["event_id"]);
    assert_eq!(a2["status"], "duplicate");

    // The sender is the source's identity, whatever the body says.
    let (_, run) = server.get(
        &format!("/api/v1/runs/{}", first["run_ids"][0].as_str().unwrap()),
        &viewer,
    );
    assert_eq!(run["run"]["event_id"], "h1");

    // A batch through the API: one answer per event; a bad line refuses the batch, naming it.
    let alice = token(d, "alice", "responder");
    let auth = format!("Bearer {alice}");
    let ndjson = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-ndjson"),
    ];
    let batch =
        b"{\"id\":\"b1\",\"kind\":\"ids.alert\"}\n\n{\"id\":\"b2\",\"kind\":\"ids.alert\"}\n";
    let (status, acc) = server.call("POST", "/api/v1/events", &ndjson, batch);
    assert_eq!(status, 202, "{acc}");
    assert_eq!(acc["events"][1]["event_id"], "b2");
    assert_eq!(acc["events"][1]["run_ids"].as_array().unwrap().len(), 1);
    let bad = b"{\"id\":\"b3\",\"kind\":\"ids.alert\"}\n{\"id\":\"b4\",\"kind\":\"no spaces\"}\n";
    let (status, p) = server.call("POST", "/api/v1/events", &ndjson, bad);
    assert_eq!((status, p["field"].as_str()), (400, Some("kind")), "{p}");
    assert!(p["detail"].as_str().unwrap().starts_with("line 2:"), "{p}");
    assert!(
        runs_of(&server, &viewer, "b3").is_empty(),
        "a refused batch stores nothing"
    );

    // SIGTERM: the server stops accepting and ends.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// `path` with every `{param}` filled in (`{source}` with the configured webhook source).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(match &rest[open..close] {
            "{source}" => "siem",
            "{target}" => "soc",
            _ => "x",
        });
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_route_needs_credentials_and_its_role() {
    let dir = setup(LOG_PLAYBOOK);
    let d = dir.path();
    let viewer = token(d, "vera", "viewer");
    let by_role = [
        ("viewer", viewer.clone()),
        ("responder", token(d, "rita", "responder")),
        ("author", token(d, "otto", "author")),
        ("admin", token(d, "ada", "admin")),
    ];
    let token_of = |role: &str| {
        by_role
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    let server = start(d);
    let (status, doc) = server.get("/api/v1/openapi.json", &token_of("admin"));
    assert_eq!(status, 200);
    let call_as = |method: &str, path: &str, token: &str| {
        let auth = format!("Bearer {token}");
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        server.call(method, path, &headers, b"{}")
    };
    let mut walked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = concrete(path);
        for (method, op) in ops.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let role = op["x-required-role"].as_str().unwrap();
            let headers = [("content-type", "application/json")];
            let (status, p) = server.call(&method, &concrete, &headers, b"{}");
            if matches!(path.as_str(), "/healthz" | "/readyz") {
                assert_eq!(status, 200, "{method} {path}: {p}");
                continue;
            }
            assert_eq!(status, 401, "{method} {path} without credentials: {p}");
            let bad = [
                ("content-type", "application/json"),
                ("authorization", "Bearer belay_not-a-token"),
            ];
            assert_eq!(
                server.call(&method, &concrete, &bad, b"{}").0,
                401,
                "{method} {path}"
            );
            if role == "none" {
                walked += 1;
                continue;
            }
            // Every role below the one needed (roles other than admin do not hold each other).
            let too_low: &[&str] = match role {
                "viewer" => &[],
                "responder" => &["viewer", "author"],
                "author" => &["viewer", "responder"],
                _ => &["viewer", "responder", "author"],
            };
            for low in too_low {
                let (status, p) = call_as(&method, &concrete, &token_of(low));
                assert_eq!(status, 403, "{method} {path} as a {low}: {p}");
            }
            // The right role gets one of the documented answers (an empty body and made-up ids
            // make most of them 400 or 404), never 401, 403 or a server error.
            let (status, p) = call_as(&method, &concrete, &token_of(role));
            let documented = op["responses"][status.to_string()].is_object();
            assert!(
                documented && !matches!(status, 401 | 403) && status < 500,
                "{method} {path} as a {role}: {status} is not a documented answer: {p}"
            );
            if method == "GET" && !path.contains('{') && !path.contains("lookup") {
                assert_eq!(status, 200, "{method} {path} as a {role}: {p}");
            }
            walked += 1;
        }
    }
    assert!(walked >= 45, "only {walked} routes walked");
    // A revoked token no longer works.
    let list = common::belay(d, &["tokens", "list", "--format", "json"]);
    let tokens: Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["principal"] == "vera")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&common::belay(d, &["tokens", "revoke", &id]));
    assert_eq!(server.get("/api/v1/runs", &viewer).0, 401);
}

#[test]
fn approvals_are_decided_by_the_authenticated_principal_under_separation() {
    let dir = setup(&block_alert_ip(
        "approve",
        "    approval: { separation: true }\n",
    ));
    let d = dir.path();
    let alice = token(d, "alice", "responder");
    let bob = token(d, "bob", "responder");
    let viewer = token(d, "vera", "viewer");
    let server = start(d);

    // alice sends the event; the body names bob as its source, which must not count.
    let event = json!({"id": "e1", "kind": "ids.alert", "source": "user:bob",
        "observables": {"ips": ["203.0.113.9"]}});
    let (status, acc) = server.post("/api/v1/events", &alice, &event);
    assert_eq!(status, 202, "{acc}");
    let run_id = acc["run_ids"][0].as_str().unwrap().to_owned();

    let approval = (0..600)
        .find_map(|_| {
            let (_, list) = server.get("/api/v1/approvals", &viewer);
            let found = list.as_array().and_then(|l| l.first().cloned());
            if found.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            found
        })
        .expect("the run waits for an approval");
    assert_eq!(approval["triggered_by"], "alice", "{approval}");
    let id = approval["id"].as_str().unwrap();
    let path = format!("/api/v1/approvals/{id}/approve");

    // A viewer may not approve; alice triggered the run and may not either.
    let (status, p) = server.post(&path, &viewer, &json!({}));
    assert_eq!(status, 403, "{p}");
    let (status, p) = server.post(&path, &alice, &json!({"comment": "mine"}));
    assert_eq!(status, 403, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("separation of duties"),
        "{p}"
    );
    // bob may, and the run goes on.
    let (status, a) = server.post(&path, &bob, &json!({"comment": "checked"}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["status"], "approved");
    let done = (0..600)
        .find_map(|_| {
            let (_, r) = server.get(&format!("/api/v1/runs/{run_id}"), &viewer);
            if r["run"]["status"] == "succeeded" {
                return Some(r);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            None
        })
        .expect("the approved run finishes");
    assert_eq!(done["run"]["status"], "succeeded");

    // The trail records the decision by bob, through the API, with his token and address.
    let (_, verify) = server.get("/api/v1/audit/verify", &viewer);
    assert_eq!(verify["intact"], true, "{verify}");
    drop(server);
    let export = ok(&common::belay(d, &["audit", "export"]));
    let request = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "api.request" && e["actor"] == "bob")
        .expect("bob's request is audited");
    assert!(
        request["detail"]["token_id"]
            .as_str()
            .unwrap()
            .starts_with("tok_")
    );
    assert!(
        request["detail"]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(export.contains("approval.granted"));
}

#[test]
fn users_are_stored_hashed_and_a_disabled_user_s_tokens_stop_working() {
    let dir = setup(LOG_PLAYBOOK);
    let d = dir.path();
    let mut add = command(d)
        .args([
            "users",
            "add",
            "dana",
            "--roles",
            "responder,author",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    ok(&add.wait_with_output().unwrap());
    let list = common::belay(d, &["users", "list", "--format", "json"]);
    let users: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(users[0]["name"], "dana");
    assert_eq!(users[0]["roles"], json!(["responder", "author"]));
    assert_eq!(users[0]["password"], true);
    // The password is kept only as its argon2id hash.
    let mut db = Vec::new();
    for f in ["data/belay.db", "data/belay.db-wal"] {
        db.extend(std::fs::read(d.join(f)).unwrap_or_default());
    }
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains("correct horse battery"));
    assert!(db.contains("$argon2id$"), "no argon2id hash in the store");
    // A too-short password is refused.
    let mut short = command(d)
        .args(["users", "passwd", "dana"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    short.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!short.wait_with_output().unwrap().status.success());

    let dana = token(d, "dana", "responder");
    let server = start(d);
    assert_eq!(server.get("/api/v1/whoami", &dana).0, 200);
    ok(&common::belay(d, &["users", "disable", "dana"]));
    assert_eq!(server.get("/api/v1/whoami", &dana).0, 401);
    let export = ok(&common::belay(d, &["audit", "export"]));
    assert!(export.contains("user.saved") && export.contains("token.created"));
    assert!(!export.contains("argon2id"), "a hash in the audit trail");
}

/// Waits until run `id` has finished; its JSON (`GET /api/v1/runs/{id}`: the run and its steps).
fn finished_run(server: &Server, token: &str, id: &str) -> Value {
    // Bounded only so that a broken run fails the test instead of hanging it.
    for _ in 0..2400 {
        let (status, run) = server.get(&format!("/api/v1/runs/{id}"), token);
        assert_eq!(status, 200, "{run}");
        if matches!(
            run["run"]["status"].as_str(),
            Some("succeeded" | "failed" | "denied")
        ) {
            return run;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("run {id} never finished");
}

#[test]
fn an_admin_pauses_and_resumes_automation_through_the_api() {
    let dir = setup(&block_alert_ip("log", ""));
    let d = dir.path();
    let admin = token(d, "ada", "admin");
    let responder = token(d, "rita", "responder");
    let server = start(d);
    let fire = |id: &str, ip: &str| -> Value {
        let body = json!({"id": id, "kind": "ids.alert", "observables": {"ips": [ip]}});
        let (status, a) = hook(&server, &body.to_string(), now(), SECRET, &[]);
        assert_eq!(status, 202, "{a}");
        let run = a["run_ids"][0].as_str().unwrap().to_owned();
        finished_run(&server, &admin, &run)
    };

    let (status, p) = server.post("/api/v1/pause", &responder, &json!({"reason": "x"}));
    assert_eq!(status, 403, "{p}");
    let (status, p) = server.post("/api/v1/pause", &admin, &json!({}));
    assert_eq!((status, p["field"].as_str()), (400, Some("reason")), "{p}");
    let (status, p) = server.post(
        "/api/v1/pause",
        &admin,
        &json!({"reason": "incident bridge: hands off the firewall"}),
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["paused"]["paused_by"], "ada");
    let (_, list) = server.get("/api/v1/pauses", &responder);
    assert_eq!(list["pauses"].as_array().unwrap().len(), 1, "{list}");

    let run = fire("p1", "203.0.113.1");
    assert_eq!(run["steps"][0]["decision"], "shadow", "{run}");
    assert!(common::listed(d).is_empty(), "applied while paused");

    let (status, p) = server.post(
        "/api/v1/unpause",
        &admin,
        &json!({"reason": "bridge closed"}),
    );
    assert_eq!((status, &p["lifted"]), (200, &json!(true)), "{p}");
    let run = fire("p2", "203.0.113.2");
    assert_eq!(run["steps"][0]["decision"], "apply", "{run}");
    assert_eq!(common::listed(d), ["203.0.113.2"]);

    // The pause set through the API holds for the local CLI too (it lives in the store).
    let (status, _) = server.post(
        "/api/v1/pause",
        &admin,
        &json!({"playbook": "block-ip", "reason": "tuning"}),
    );
    assert_eq!(status, 200);
    let list = ok(&common::belay(d, &["pause", "--list"]));
    assert!(list.contains("playbook `block-ip` paused by ada"), "{list}");

    let export = ok(&common::belay(d, &["audit", "export"]));
    let trail = common::json_lines(&export);
    let switch = |kind: &str| {
        trail
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in the trail"))
            .clone()
    };
    let paused = switch("automation.paused");
    assert_eq!(paused["actor"], "ada");
    assert_eq!(
        paused["detail"]["reason"],
        "incident bridge: hands off the firewall"
    );
    let resumed = switch("automation.resumed");
    assert_eq!(
        (
            resumed["actor"].as_str(),
            resumed["detail"]["reason"].as_str()
        ),
        (Some("ada"), Some("bridge closed"))
    );
}

#[test]
fn a_reload_keeps_the_running_set_unless_all_loads_and_raising_trust_needs_an_admin() {
    let dir = setup(&block_alert_ip("shadow", ""));
    let d = dir.path();
    let author = token(d, "otto", "author");
    let admin = token(d, "ada", "admin");
    let server = start(d);
    let hash_of = |answer: &Value| answer["playbooks"]["block-ip"].as_str().map(str::to_owned);

    // Nothing changed: the same versions before and after.
    let (status, same) = server.post("/api/v1/reload", &author, &json!({}));
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["before"], same["after"]);
    let running = hash_of(&same["before"]).expect("block-ip is loaded");

    // A broken playbook: the running set stays, and the answer names the file and why.
    write_file(d, "playbooks/pb.yaml", "name: block-ip\nsteps: [\n");
    let (status, p) = server.post("/api/v1/reload", &author, &json!({}));
    assert_eq!(status, 422, "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("kept the running set") && detail.contains("pb.yaml"),
        "{detail}"
    );
    // SIGHUP does the same, audited as the signal.
    server.signal(libc::SIGHUP);
    let refused_by_signal = (0..2400).any(|_| {
        let export = ok(&common::belay(d, &["audit", "export"]));
        let found = common::json_lines(&export)
            .iter()
            .any(|e| e["kind"] == "engine.reload_refused" && e["actor"] == "signal:SIGHUP");
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        found
    });
    assert!(
        refused_by_signal,
        "SIGHUP's refused reload is not in the audit trail"
    );

    // Raising the step's trust (shadow → log) needs an admin; the reason says which step.
    write_file(d, "playbooks/pb.yaml", &block_alert_ip("log", ""));
    let (status, p) = server.post("/api/v1/reload", &author, &json!({}));
    assert_eq!(status, 403, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("`block` of `block-ip` rises from shadow to log"),
        "{p}"
    );
    let body = json!({"id": "r1", "kind": "ids.alert", "observables": {"ips": ["203.0.113.7"]}});
    let (_, a) = hook(&server, &body.to_string(), now(), SECRET, &[]);
    let run = finished_run(&server, &admin, a["run_ids"][0].as_str().unwrap());
    assert_eq!(
        run["steps"][0]["decision"], "shadow",
        "the old set still runs: {run}"
    );

    let (status, done) = server.post("/api/v1/reload", &admin, &json!({}));
    assert_eq!(status, 200, "{done}");
    assert_eq!(hash_of(&done["before"]), Some(running.clone()));
    assert_ne!(hash_of(&done["after"]), Some(running));
    let body = json!({"id": "r2", "kind": "ids.alert", "observables": {"ips": ["203.0.113.8"]}});
    let (_, a) = hook(&server, &body.to_string(), now(), SECRET, &[]);
    let run = finished_run(&server, &admin, a["run_ids"][0].as_str().unwrap());
    assert_eq!(
        run["steps"][0]["decision"], "apply",
        "the new set runs: {run}"
    );

    // Every reload is in the trail with the versions before and after.
    let export = ok(&common::belay(d, &["audit", "export"]));
    let trail = common::json_lines(&export);
    let reloaded: Vec<&Value> = trail
        .iter()
        .filter(|e| e["kind"] == "engine.reloaded")
        .collect();
    assert_eq!(reloaded.len(), 2, "{reloaded:?}");
    assert_eq!(reloaded[1]["actor"], "ada");
    assert_eq!(reloaded[1]["detail"]["after"], done["after"]);
    let refused = trail
        .iter()
        .filter(|e| e["kind"] == "engine.reload_refused")
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn the_api_reads_and_writes_what_the_cli_does() {
    let dir = setup(&block_alert_ip("log", ""));
    let d = dir.path();
    let viewer = token(d, "vera", "viewer");
    let responder = token(d, "rita", "responder");
    let author = token(d, "otto", "author");
    let admin = token(d, "ada", "admin");
    let server = start(d);
    for (id, ip) in [
        ("a1", "203.0.113.1"),
        ("a2", "203.0.113.2"),
        ("a3", "198.51.100.3"),
    ] {
        let body = json!({"id": id, "kind": "ids.alert", "observables": {"ips": [ip]}});
        let (status, a) = server.post("/api/v1/events", &responder, &body);
        assert_eq!(status, 202, "{a}");
        finished_run(&server, &viewer, a["run_ids"][0].as_str().unwrap());
    }

    // Events: by observable, by kind and source, a page at a time; one with its runs.
    let (status, page) = server.get("/api/v1/events?observable=203.0.113.2", &viewer);
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a2"]);
    let (_, first) = server.get(
        "/api/v1/events?kind=ids.alert&source=user:rita&limit=2",
        &viewer,
    );
    assert_eq!(first["events"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(first["events"][0]["id"], "a3", "newest first: {first}");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = server.get(
        &format!("/api/v1/events?kind=ids.alert&limit=2&cursor={cursor}"),
        &viewer,
    );
    assert_eq!(second["events"][0]["id"], "a1", "{second}");
    let (status, p) = server.get("/api/v1/events?cursor=%%%", &viewer);
    assert_eq!((status, p["field"].as_str()), (400, Some("cursor")), "{p}");
    let (status, one) = server.get("/api/v1/events/a1", &viewer);
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["run_ids"].as_array().unwrap().len(), 1);

    // Changes: filtered, and one by id.
    let (_, a2) = server.get("/api/v1/events/a2", &viewer);
    let run = a2["run_ids"][0].as_str().unwrap();
    let (_, changes) = server.get(&format!("/api/v1/changes?run_id={run}"), &viewer);
    let target = changes[0]["target"].as_str().unwrap().to_owned();
    let (_, changes) = server.get(
        &format!("/api/v1/changes?target={target}&status=applied"),
        &viewer,
    );
    let changes = changes.as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["run_id"], run);
    let change_id = changes[0]["id"].as_str().unwrap();
    let (status, change) = server.get(&format!("/api/v1/changes/{change_id}"), &viewer);
    assert_eq!(
        (status, &change["status"]),
        (200, &json!("applied")),
        "{change}"
    );
    let (status, p) = server.get("/api/v1/changes?status=sideways", &viewer);
    assert_eq!((status, p["field"].as_str()), (400, Some("status")), "{p}");

    // Checkpoints (admin), then a rollback to it: a preview first, then for real.
    let (status, _) = server.post("/api/v1/checkpoints", &responder, &json!({"name": "good"}));
    assert_eq!(status, 403);
    let (status, cp) = server.post("/api/v1/checkpoints", &admin, &json!({"name": "good"}));
    assert_eq!(status, 201, "{cp}");
    let body = json!({"id": "a4", "kind": "ids.alert", "observables": {"ips": ["192.0.2.44"]}});
    let (_, a) = server.post("/api/v1/events", &responder, &body);
    finished_run(&server, &viewer, a["run_ids"][0].as_str().unwrap());
    assert!(common::listed(d).contains(&"192.0.2.44".to_owned()));
    let (_, list) = server.get("/api/v1/checkpoints", &viewer);
    assert_eq!(list[0]["name"], "good");
    let (status, preview) = server.post(
        "/api/v1/rollback",
        &responder,
        &json!({"to": "good", "dry_run": true}),
    );
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["items"][0]["outcome"], "would_revert", "{preview}");
    assert!(common::listed(d).contains(&"192.0.2.44".to_owned()));
    let (status, p) = server.post(
        "/api/v1/rollback",
        &responder,
        &json!({"to": "good", "force": true}),
    );
    assert_eq!((status, p["field"].as_str()), (403, Some("force")), "{p}");
    let (status, done) = server.post("/api/v1/rollback", &responder, &json!({"to": "good"}));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["items"][0]["outcome"], "reverted", "{done}");
    assert!(!common::listed(d).contains(&"192.0.2.44".to_owned()));

    // Guardrails: a verdict on a planned change; an unknown action names the field.
    let (status, check) = server.post(
        "/api/v1/guardrails/check",
        &viewer,
        &json!({"action": "blocklist.add", "with": {"list": "egress", "entry": "192.0.2.9"}}),
    );
    assert_eq!((status, &check["pass"]), (200, &json!(true)), "{check}");
    let (status, p) = server.post(
        "/api/v1/guardrails/check",
        &viewer,
        &json!({"action": "no.such", "with": {}}),
    );
    assert_eq!((status, p["field"].as_str()), (400, Some("action")), "{p}");
    let (status, holds) = server.get("/api/v1/guardrails/holds", &viewer);
    assert_eq!((status, holds.as_array().map(Vec::len)), (200, Some(0)));

    // Trust: the rollback demoted the step; an admin lifts it, and a second reset says so.
    let (_, report) = server.get("/api/v1/trust", &viewer);
    assert_eq!(report[0]["effective"], "approve", "{report}");
    let reset = json!({"playbook": "block-ip", "step": "block"});
    assert_eq!(server.post("/api/v1/trust/reset", &author, &reset).0, 403);
    let (status, r) = server.post("/api/v1/trust/reset", &admin, &reset);
    assert_eq!((status, &r["reset_by"]), (200, &json!("ada")), "{r}");
    let (status, p) = server.post("/api/v1/trust/reset", &admin, &reset);
    assert_eq!(status, 409, "{p}");

    // Replay (author): what the playbook would do, nothing applied.
    let events = json!([{"id": "old1", "kind": "ids.alert", "observables": {"ips": ["192.0.2.77"]}},
        {"id": "old2", "kind": "other"}]);
    let (status, p) = server.post(
        "/api/v1/replay",
        &responder,
        &json!({"playbook": "block-ip", "events": events}),
    );
    assert_eq!(status, 403, "{p}");
    let (status, r) = server.post(
        "/api/v1/replay",
        &author,
        &json!({"playbook": "block-ip", "events": events}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (
            r["total"]["changes"].as_u64(),
            r["total"]["not_triggered"].as_u64()
        ),
        (Some(1), Some(1)),
        "{r}"
    );
    assert!(!common::listed(d).contains(&"192.0.2.77".to_owned()));
    let (status, p) = server.post(
        "/api/v1/replay",
        &author,
        &json!({"playbook": "block-ip", "events": [{"kind": "ids.alert", "severity": "HUGE"}]}),
    );
    assert_eq!(
        (status, p["field"].as_str()),
        (400, Some("events[0]")),
        "{p}"
    );

    // Intel: import posted content, look it up, statistics, the feed's status.
    let (status, imp) = server.post(
        "/api/v1/intel/import",
        &responder,
        &json!({"feed": "bad-ips", "content": "198.51.100.7\n203.0.113.0/24\n", "format": "plain"}),
    );
    assert_eq!(status, 200, "{imp}");
    assert_eq!(imp["event"]["status"], "new", "{imp}");
    let (status, found) = server.get("/api/v1/intel/lookup?value=203.0.113.9", &viewer);
    assert_eq!((status, &found["found"]), (200, &json!(true)), "{found}");
    let (status, p) = server.get("/api/v1/intel/lookup?value=x&type=nonsense", &viewer);
    assert_eq!((status, p["field"].as_str()), (400, Some("type")), "{p}");
    let (_, stats) = server.get("/api/v1/intel/stats", &viewer);
    assert_eq!(stats["feeds"][0]["name"], "bad-ips", "{stats}");

    // Cases: a person opens one, notes and evidence (a wrong hash names the field).
    let (status, c) = server.post(
        "/api/v1/cases",
        &responder,
        &json!({"id": "inc-1", "title": "odd traffic"}),
    );
    assert_eq!(status, 201, "{c}");
    let (status, _) = server.post(
        "/api/v1/cases/inc-1/notes",
        &responder,
        &json!({"note": "looked at it"}),
    );
    assert_eq!(status, 201);
    let (status, p) = server.post(
        "/api/v1/cases/inc-1/evidence",
        &responder,
        &json!({"name": "pcap", "content": "abc", "sha256": "00"}),
    );
    assert_eq!((status, p["field"].as_str()), (400, Some("sha256")), "{p}");
    let (status, _) = server.post(
        "/api/v1/cases/nope/notes",
        &responder,
        &json!({"note": "x"}),
    );
    assert_eq!(status, 404);
    let (_, file) = server.get("/api/v1/cases/inc-1", &viewer);
    assert_eq!(file["notes"][0]["note"], "looked at it", "{file}");
    assert_eq!(file["notes"][0]["by"], "rita", "{file}");
    let (_, list) = server.get("/api/v1/cases", &viewer);
    assert_eq!(list[0]["id"], "inc-1");

    // Playbooks: one with its source; a posted one linted with positions.
    let (status, pb) = server.get("/api/v1/playbooks/block-ip", &viewer);
    assert_eq!(status, 200, "{pb}");
    assert_eq!(pb["steps"][0]["action"], "blocklist.add");
    assert!(pb["source"].as_str().unwrap().contains("name: block-ip"));
    let bad = "name: x\non: { event: ids.alert }\nsteps:\n  - id: a\n    action: no.such\n";
    let (status, lint) = server.post(
        "/api/v1/playbooks/lint",
        &author,
        &json!({"source": bad, "file": "x.yaml"}),
    );
    assert_eq!((status, &lint["ok"]), (200, &json!(false)), "{lint}");
    assert_eq!(lint["problems"][0]["line"], 5, "{lint}");
    assert!(
        lint["lines"][0].as_str().unwrap().starts_with("x.yaml:5:"),
        "{lint}"
    );
    assert_eq!(
        server
            .post("/api/v1/playbooks/lint", &viewer, &json!({"source": bad}))
            .0,
        403
    );

    // Users and tokens (admin): a token made through the API works, then is revoked.
    let (status, p) = server.post(
        "/api/v1/users",
        &admin,
        &json!({"name": "zed", "roles": ["root"]}),
    );
    assert_eq!((status, p["field"].as_str()), (400, Some("roles")), "{p}");
    let (status, u) = server.post(
        "/api/v1/users",
        &admin,
        &json!({"name": "zed", "roles": ["viewer"], "password": "correct horse"}),
    );
    assert_eq!((status, &u["saved"]), (201, &json!("created")), "{u}");
    let (status, t) = server.post(
        "/api/v1/tokens",
        &admin,
        &json!({"name": "zed", "roles": ["viewer"], "expires": "1d"}),
    );
    assert_eq!(status, 201, "{t}");
    let zed = t["token"].as_str().unwrap();
    let (status, who) = server.get("/api/v1/whoami", zed);
    assert_eq!((status, &who["name"]), (200, &json!("zed")), "{who}");
    let (_, tokens) = server.get("/api/v1/tokens", &admin);
    assert!(
        !tokens.to_string().contains(zed),
        "a token's text is shown once only"
    );
    let (status, _) = server.post(
        &format!("/api/v1/tokens/{}/revoke", t["id"].as_str().unwrap()),
        &admin,
        &json!({}),
    );
    assert_eq!(status, 200);
    assert_eq!(server.get("/api/v1/whoami", zed).0, 401);
    let (_, users) = server.get("/api/v1/users", &admin);
    assert!(users.to_string().contains("zed") && !users.to_string().contains("argon2"));

    // The audit export, streamed, is the CLI's export line for line.
    let (status, export) = server.call(
        "GET",
        "/api/v1/audit/export",
        &[("authorization", &format!("Bearer {viewer}"))],
        b"",
    );
    assert_eq!(status, 200);
    let streamed = export
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| export.to_string());
    drop(server);
    let local = ok(&common::belay(d, &["audit", "export"]));
    let lines = |t: &str| t.lines().filter(|l| !l.is_empty()).count();
    assert!(lines(&streamed) > 20, "{streamed}");
    assert_eq!(lines(&streamed), lines(&local));
    assert!(
        local.contains("\"request\":\"case.open\""),
        "the person's case is audited"
    );
}

/// `belay --server URL ARGS` in `dir` with `token` in BELAY_TOKEN.
fn remote(dir: &Path, server: &Server, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let url = server.url("");
    let mut c = command(dir);
    c.arg("--server").arg(&url).args(args);
    if let Some(t) = token {
        c.env("BELAY_TOKEN", t);
    }
    c.output().expect("belay runs")
}

/// The first approval waiting, as the API lists it.
fn first_waiting(server: &Server, token: &str) -> Value {
    for _ in 0..2400 {
        let (_, list) = server.get("/api/v1/approvals", token);
        if let Some(a) = list.as_array().and_then(|l| l.first().cloned()) {
            return a;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no approval waits");
}

#[test]
fn the_cli_talks_to_a_running_server_as_the_token_s_principal() {
    let dir = setup(&block_alert_ip("approve", ""));
    let d = dir.path();
    let alice = token(d, "alice", "responder");
    let ada = token(d, "ada", "admin");
    let vera = token(d, "vera", "viewer");
    let server = start(d);

    // Ingest through the server: acknowledged lines, a bad one kept with the reason.
    write_file(
        d,
        "events.jsonl",
        "{\"id\":\"c1\",\"kind\":\"ids.alert\",\"observables\":{\"ips\":[\"203.0.113.21\"]}}\n\
         {\"id\":\"c2\",\"kind\":\"no spaces\"}\n",
    );
    let o = remote(d, &server, Some(&alice), &["ingest", "events.jsonl"]);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    let out = common::text(&o);
    assert!(
        out.contains(r#""event":"c1""#) && out.contains("1 rejected"),
        "{out}"
    );
    let rejected = std::fs::read_to_string(d.join("data/rejected.jsonl")).unwrap();
    assert!(
        rejected.contains("no spaces") && rejected.contains("kind"),
        "{rejected}"
    );

    // Approvals through the server; --as is refused there, and says why.
    let a = first_waiting(&server, &vera);
    let id = a["id"].as_str().unwrap();
    let list = ok(&remote(d, &server, Some(&vera), &["approvals", "list"]));
    assert!(list.contains(id), "{list}");
    let show = ok(&remote(d, &server, Some(&vera), &["approvals", "show", id]));
    assert!(
        show.contains("alert     ids.alert from user:alice"),
        "{show}"
    );
    let o = remote(
        d,
        &server,
        Some(&ada),
        &["approvals", "deny", id, "--as", "ada"],
    );
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("--as is for the local CLI"),
        "{}",
        common::text(&o)
    );
    let o = remote(d, &server, Some(&vera), &["approvals", "deny", id]);
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("needs the responder role"),
        "{}",
        common::text(&o)
    );
    let denied = ok(&remote(
        d,
        &server,
        Some(&ada),
        &["approvals", "deny", id, "--comment", "not this one"],
    ));
    assert!(denied.contains("denied by ada"), "{denied}");

    // A run ended by a denial is `denied`, not `failed`: through the API and the CLI.
    let run_id = a["run_id"].as_str().unwrap();
    let run = finished_run(&server, &vera, run_id);
    assert_eq!(run["run"]["status"], "denied", "{run}");
    let show = common::json(&remote(
        d,
        &server,
        Some(&vera),
        &["runs", "show", run_id, "--format", "json"],
    ));
    assert_eq!(show["status"], "denied", "{show}");
    let listed = ok(&remote(
        d,
        &server,
        Some(&vera),
        &["runs", "list", "--status", "denied"],
    ));
    assert!(listed.contains(run_id), "{listed}");

    // A second alert, approved by ada through the CLI: applied; then a rollback preview and
    // a rollback refused to a viewer with the server's reason.
    let body = json!({"id": "c3", "kind": "ids.alert", "observables": {"ips": ["203.0.113.23"]}});
    let (_, acc) = server.post("/api/v1/events", &alice, &body);
    let run3 = acc["run_ids"][0].as_str().unwrap().to_owned();
    let a3 = first_waiting(&server, &vera);
    ok(&remote(
        d,
        &server,
        Some(&ada),
        &["approvals", "approve", a3["id"].as_str().unwrap()],
    ));
    assert_eq!(
        finished_run(&server, &vera, &run3)["run"]["status"],
        "succeeded"
    );
    assert_eq!(common::listed(d), ["203.0.113.23"]);
    let changes = ok(&remote(
        d,
        &server,
        Some(&vera),
        &["changes", "list", "--run", &run3],
    ));
    assert!(
        changes.contains("blocklist.add") && changes.contains("approval:"),
        "{changes}"
    );
    let preview = ok(&remote(
        d,
        &server,
        Some(&alice),
        &["rollback", "--run", &run3, "--dry-run"],
    ));
    assert!(
        preview.contains("1 would be reverted (dry run)"),
        "{preview}"
    );
    assert_eq!(common::listed(d), ["203.0.113.23"]);
    let o = remote(d, &server, Some(&vera), &["rollback", "--run", &run3]);
    assert!(!o.status.success() && common::text(&o).contains("needs the responder role"));
    let o = remote(
        d,
        &server,
        Some(&alice),
        &["rollback", "--since", "yesterday"],
    );
    assert!(
        common::text(&o).contains("(field `since`)"),
        "{}",
        common::text(&o)
    );
    let done = ok(&remote(
        d,
        &server,
        Some(&alice),
        &["rollback", "--run", &run3],
    ));
    assert!(done.contains("1 reverted"), "{done}");
    assert!(common::listed(d).is_empty());

    // The trust report, the audit verification, pausing: all through the server.
    let trust = ok(&remote(d, &server, Some(&vera), &["trust", "report"]));
    assert!(trust.contains("block-ip/block"), "{trust}");
    let verify = ok(&remote(d, &server, Some(&vera), &["audit", "verify"]));
    assert!(verify.contains("audit chain intact"), "{verify}");
    let paused = ok(&remote(
        d,
        &server,
        Some(&ada),
        &["pause", "--reason", "change freeze"],
    ));
    assert!(paused.contains("all automation paused by ada"), "{paused}");
    let list = ok(&remote(d, &server, Some(&vera), &["pause", "--list"]));
    assert!(list.contains("change freeze"), "{list}");
    let o = remote(d, &server, Some(&alice), &["unpause"]);
    assert!(
        common::text(&o).contains("needs the admin role"),
        "{}",
        common::text(&o)
    );
    assert!(
        ok(&remote(
            d,
            &server,
            Some(&ada),
            &["unpause", "--reason", "over"]
        ))
        .contains("resumed")
    );

    // No token, or a command without an API equivalent: refused, saying why.
    let o = remote(d, &server, None, &["runs", "list"]);
    assert!(
        common::text(&o).contains("BELAY_TOKEN"),
        "{}",
        common::text(&o)
    );
    let o = remote(d, &server, Some(&ada), &["checkpoint", "list"]);
    assert!(
        common::text(&o).contains("no API equivalent"),
        "{}",
        common::text(&o)
    );

    // The local CLI sees the same denied run in the store.
    drop(server);
    let local = common::json(&common::belay(
        d,
        &["runs", "list", "--status", "denied", "--format", "json"],
    ));
    assert_eq!(local[0]["id"], run_id, "{local}");
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| belay_testkit::skip::installed(&p.join(program)))
    })
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    if !on_path("schemathesis") {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            "schemathesis is not installed (pip install schemathesis, as .ci/run does)",
        );
        return;
    }
    let dir = setup(&block_alert_ip("approve", ""));
    let d = dir.path();
    let admin = token(d, "ada", "admin");
    let server = start(d);
    // A seeded store: events, runs waiting for an approval each.
    for (id, ip) in [
        ("s1", "203.0.113.1"),
        ("s2", "203.0.113.2"),
        ("s3", "198.51.100.3"),
    ] {
        let body = json!({"id": id, "kind": "ids.alert", "observables": {"ips": [ip]}});
        let (status, a) = server.post("/api/v1/events", &admin, &body);
        assert_eq!(status, 202, "{a}");
    }
    first_waiting(&server, &admin);
    let url = server.url("/api/v1/openapi.json");
    let o = std::process::Command::new("schemathesis")
        .current_dir(d)
        .args(["run", &url, "--header"])
        .arg(format!("Authorization: Bearer {admin}"))
        .args([
            "--max-examples",
            "20",
            "--phases",
            "coverage,fuzzing",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--generation-database",
            "none",
            "--seed",
            "20261206",
            "--request-timeout",
            "10",
            // The chat callback and the e-mail links take signed form bodies and tokens, so
            // most generated inputs are filtered out before they are sent.
            "--suppress-health-check=filter_too_much",
            "--no-color",
        ])
        .output()
        .expect("schemathesis runs");
    let out = common::text(&o);
    assert!(o.status.success(), "schemathesis found problems:\n{out}");
    assert!(out.contains("Tested: "), "{out}");
}
