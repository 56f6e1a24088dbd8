//! The console in a real browser: Debian's headless Chromium, driven over WebDriver by
//! chromedriver (both started here, on loopback, with a profile of their own; nothing is
//! downloaded), against the real `belay serve` on an ephemeral port. A responder approves and
//! denies from the queue, approves a held batch without one item, rolls back after a preview;
//! a viewer is offered nothing and a forged or token-less POST is refused; an event's markup is
//! shown as text; five wrong passwords lock the account. Each page's screenshot is saved under
//! `target/console-screenshots/`.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::server::{Answer, Server, call};
use common::{block_alert_ip, block_every_ip, command, listed, ok, write_file};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PASSWORD: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(30);

/// Whether Chromium and chromedriver are here; when not, says why (or fails when required).
fn browser_here() -> bool {
    if belay_testkit::skip::installed(Path::new(CHROMIUM))
        && belay_testkit::skip::installed(Path::new(CHROMEDRIVER))
    {
        return true;
    }
    belay_testkit::skip::unless_required(
        "BELAY_REQUIRE_NATIVE",
        "console browser tests need Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
    );
    false
}

/// Posts `event` as `token`'s principal; the id of the run it started.
fn send_event(server: &Server, token: &str, event: Value) -> String {
    let (status, acc) = server.post("/api/v1/events", token, &event);
    assert_eq!(status, 202, "{acc}");
    acc["run_ids"][0].as_str().unwrap_or_default().to_owned()
}

/// The approvals waiting for a decision.
fn pending(server: &Server, token: &str) -> Vec<Value> {
    server
        .get("/api/v1/approvals", token)
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A run's status.
fn run_status(server: &Server, token: &str, run: &str) -> String {
    let (_, r) = server.get(&format!("/api/v1/runs/{run}"), token);
    r["run"]["status"].as_str().unwrap_or_default().to_owned()
}

/// chromedriver (in a process group of its own, with the Chromium it starts) and a session.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = belay_testkit::net::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < WAIT, "chromedriver does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--window-size=1360,1500",
                format!("--user-data-dir={}", profile.path().display()),
            ]}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            driver,
            client: Some(client),
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }

    async fn login(&self, server: &Server, user: &str, password: &str) {
        let c = self.c();
        c.goto(&server.url("/login")).await.unwrap();
        c.find(Locator::Css("input[name=user]"))
            .await
            .unwrap()
            .send_keys(user)
            .await
            .unwrap();
        c.find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys(password)
            .await
            .unwrap();
        c.find(Locator::Id("sign-in"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn logout(&self) {
        self.c()
            .find(Locator::Css("form[action='/logout'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for("#sign-in").await;
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.c()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("`{css}` never appeared: {e}"))
    }

    async fn count(&self, css: &str) -> usize {
        self.c().find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn body_text(&self) -> String {
        self.c()
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A POST made by the page's own script (the session's cookie goes with it); its status.
    async fn post_from_page(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        csrf_header: bool,
    ) -> u16 {
        let script = r#"
            const [path, ct, body, withHeader] = arguments;
            const headers = { 'content-type': ct };
            if (withHeader) { headers['x-csrf-token'] = document.body.dataset.csrf; }
            return fetch(path, { method: 'POST', headers, body, credentials: 'same-origin' })
                .then(r => r.status);"#;
        let v = self
            .c()
            .execute(
                script,
                vec![
                    json!(path),
                    json!(content_type),
                    json!(body),
                    json!(csrf_header),
                ],
            )
            .await
            .unwrap();
        v.as_u64().unwrap_or(0) as u16
    }

    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of the chromedriver this test started.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("console-screenshots")
}

/// A directory with `playbooks` (name, text) and `guardrails`, users with passwords, and an
/// API token `siem` (responder) that sends the events; the token.
fn setup(
    playbooks: &[(&str, &str)],
    guardrails: &str,
    users: &[(&str, &str)],
) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("playbooks")).unwrap();
    std::fs::create_dir_all(d.join("guardrails")).unwrap();
    for (name, text) in playbooks {
        write_file(d, &format!("playbooks/{name}.yaml"), text);
    }
    if !guardrails.is_empty() {
        write_file(d, "guardrails/g.yaml", guardrails);
    }
    write_file(
        d,
        "belay.toml",
        "playbooks = \"playbooks\"\n[serve]\nlockout = \"10m\"\n",
    );
    for (name, roles) in users {
        let mut child = command(d)
            .args(["users", "add", name, "--roles", roles, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        ok(&child.wait_with_output().unwrap());
    }
    let o = command(d)
        .args(["tokens", "create", "siem", "--roles", "responder"])
        .output()
        .unwrap();
    ok(&o);
    let token = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    (dir, token)
}

fn alert(id: &str, ip: &str) -> Value {
    json!({ "id": id, "kind": "ids.alert", "severity": "high", "observables": { "ips": [ip] },
        "data": { "signature": "ET SCAN suspicious outbound" } })
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn audit_export(d: &Path) -> Vec<Value> {
    let o = common::belay(d, &["audit", "export"]);
    ok(&o);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_approves_and_denies_held_changes_from_the_queue() {
    if !browser_here() {
        return;
    }
    let (dir, siem) = setup(
        &[("block", &block_alert_ip("approve", ""))],
        "",
        &[("rita", "responder")],
    );
    let d = dir.path();
    let server = Server::start(d);
    let b = Browser::start().await;
    b.login(&server, "rita", PASSWORD).await;
    b.wait_for("#empty-queue").await;
    // The page is not reloaded: a mark set on it now is still there when the hold shows up.
    b.c()
        .execute("window.beforeHold = 'same page'; return 1;", vec![])
        .await
        .unwrap();

    let run1 = send_event(&server, &siem, alert("e1", "203.0.113.9"));
    let card = b.wait_for("article[data-approval] button.approve").await;
    let same = b
        .c()
        .execute("return window.beforeHold || null;", vec![])
        .await
        .unwrap();
    assert_eq!(
        same,
        json!("same page"),
        "the hold appeared without a reload"
    );
    let text = b.body_text().await;
    for want in [
        "block-ip / block",
        "blocklist.add",
        "203.0.113.9",
        "0 of 1 approvals",
        "time left",
        "ids.alert",
        "approvals, 0 denials",
    ] {
        assert!(text.contains(want), "the queue shows {want:?}:\n{text}");
    }
    b.screenshot("approval-queue").await;
    b.c()
        .find(Locator::Css(
            "article[data-approval] textarea[name=comment]",
        ))
        .await
        .unwrap()
        .send_keys("known scanner")
        .await
        .unwrap();
    card.click().await.unwrap();
    b.wait_for("#decided").await;
    until("the approved change is in the list", || {
        listed(d).contains(&"203.0.113.9".to_owned())
    })
    .await;
    until("the run finishes", || {
        run_status(&server, &siem, &run1) == "succeeded"
    })
    .await;

    // A denial leaves the list untouched.
    let run2 = send_event(&server, &siem, alert("e2", "203.0.113.10"));
    b.wait_for("article[data-approval] button.deny")
        .await
        .click()
        .await
        .unwrap();
    b.wait_for("#decided").await;
    until("the denied run ends", || {
        matches!(
            run_status(&server, &siem, &run2).as_str(),
            "failed" | "denied"
        )
    })
    .await;
    assert_eq!(listed(d), ["203.0.113.9"], "the denial changed nothing");

    // The run's timeline: its steps, decision and change.
    b.c()
        .goto(&server.url(&format!("/console/runs/{run1}")))
        .await
        .unwrap();
    b.wait_for("ol.timeline").await;
    let text = b.body_text().await;
    assert!(
        text.contains("203.0.113.9") && text.contains("known scanner") && text.contains("applied"),
        "{text}"
    );
    b.screenshot("run-timeline").await;
    b.c().goto(&server.url("/console/runs")).await.unwrap();
    b.wait_for("table.runs").await;
    b.screenshot("runs").await;
    b.close().await;
    drop(server);

    // The decisions are rita's, through her console session, from her address.
    let trail = audit_export(d);
    let req = trail
        .iter()
        .find(|e| {
            e["kind"] == "api.request"
                && e["actor"] == "rita"
                && e["detail"]["request"] == "approvals.approve"
        })
        .expect("the approval is audited");
    assert!(
        req["detail"]["session_id"]
            .as_str()
            .unwrap()
            .starts_with("ses_"),
        "{req}"
    );
    assert!(
        req["detail"]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{req}"
    );
    assert!(
        trail
            .iter()
            .any(|e| e["kind"] == "session.started" && e["actor"] == "rita")
    );
    assert!(
        trail
            .iter()
            .any(|e| e["kind"] == "user.login" && e["actor"] == "rita")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_batch_approved_without_one_item_applies_the_others_only() {
    if !browser_here() {
        return;
    }
    let (dir, siem) = setup(
        &[("feed", &block_every_ip("block-feed", "intel.update", ""))],
        "guardrails:\n  - name: feed-batch\n    applies_to: [blocklist.add]\n    batch: { max: 3 }\n",
        &[("rita", "responder")],
    );
    let d = dir.path();
    let server = Server::start(d);
    let ips: Vec<String> = (1..=5).map(|i| format!("192.0.2.{i}")).collect();
    let run = send_event(
        &server,
        &siem,
        json!({ "id": "feed-1", "kind": "intel.update", "observables": { "ips": ips } }),
    );
    until("the batch is held", || !pending(&server, &siem).is_empty()).await;
    assert!(listed(d).is_empty());

    let b = Browser::start().await;
    b.login(&server, "rita", PASSWORD).await;
    b.wait_for("input[name='without:block[2]']")
        .await
        .click()
        .await
        .unwrap();
    let text = b.body_text().await;
    assert!(
        text.contains("Items of the held batch (5)") && text.contains("feed-batch"),
        "{text}"
    );
    b.screenshot("approval-batch").await;
    b.c()
        .find(Locator::Css("button.approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#decided").await;
    until("the run finishes", || {
        run_status(&server, &siem, &run) == "succeeded"
    })
    .await;
    let mut got = listed(d);
    got.sort();
    assert_eq!(
        got,
        ["192.0.2.1", "192.0.2.2", "192.0.2.4", "192.0.2.5"],
        "all but block[2]"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_shows_its_preview_then_restores_the_list_byte_for_byte() {
    if !browser_here() {
        return;
    }
    let (dir, siem) = setup(
        &[("block", &block_alert_ip("guarded", ""))],
        "guardrails:\n  - name: block-baseline\n    applies_to: [blocklist.add]\n    baseline: { per: 1h, factor: 3, min_history: 1d }\n",
        &[("rita", "responder"), ("ada", "admin")],
    );
    let d = dir.path();
    std::fs::create_dir_all(d.join("data/lists")).unwrap();
    let original = b"# egress blocks\n198.51.100.7\n\n192.0.2.200\n".to_vec();
    std::fs::write(d.join("data/lists/egress.txt"), &original).unwrap();
    let server = Server::start(d);
    let run = send_event(&server, &siem, alert("e1", "203.0.113.9"));
    until("the change is applied", || {
        run_status(&server, &siem, &run) == "succeeded"
    })
    .await;
    assert!(listed(d).contains(&"203.0.113.9".to_owned()));
    let (_, changes) = server.get(&format!("/api/v1/changes?run_id={run}"), &siem);
    let change = changes[0]["id"].as_str().expect("one change").to_owned();

    let b = Browser::start().await;
    b.login(&server, "rita", PASSWORD).await;
    b.wait_for("#empty-queue").await;
    b.c().goto(&server.url("/console/changes")).await.unwrap();
    b.wait_for(&format!("#change-{change} button"))
        .await
        .click()
        .await
        .unwrap();
    b.wait_for("#rollback-preview").await;
    let text = b.body_text().await;
    assert!(
        text.contains("will be reverted") && text.contains("203.0.113.9"),
        "{text}"
    );
    assert_eq!(b.count("input[name=force]").await, 0, "force is for admins");
    assert!(
        listed(d).contains(&"203.0.113.9".to_owned()),
        "a preview changes nothing"
    );
    b.screenshot("rollback-preview").await;
    b.c()
        .find(Locator::Id("confirm-rollback"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#rollback-done").await;
    assert_eq!(
        std::fs::read(d.join("data/lists/egress.txt")).unwrap(),
        original,
        "byte for byte"
    );
    b.screenshot("rollback-done").await;
    b.logout().await;

    // An admin's tour: every page renders, with the pause switch on each.
    b.login(&server, "ada", PASSWORD).await;
    b.wait_for("#pause").await;
    for (page, css) in [
        ("changes", "table.changes"),
        ("guardrails", "#guardrail-block-baseline svg"),
        ("trust", "table.trust"),
        ("audit", "#audit-intact"),
        ("events", "table.events"),
        ("intel", "form.filters"),
        ("cases", "main"),
        ("runs", "table.runs"),
    ] {
        b.c()
            .goto(&server.url(&format!("/console/{page}")))
            .await
            .unwrap();
        b.wait_for(css).await;
        assert_eq!(b.count("#pause").await, 1, "the pause switch on {page}");
        b.screenshot(page).await;
    }
    // The rollback demoted the step; an admin lifts the demotion from the trust report.
    b.c().goto(&server.url("/console/trust")).await.unwrap();
    b.wait_for("table.trust form[action='/console/trust/reset'] button")
        .await
        .click()
        .await
        .unwrap();
    b.wait_for("#reset-done").await;
    assert_eq!(
        b.count("form[action='/console/trust/reset']").await,
        0,
        "no demotion left"
    );
    b.c()
        .goto(&server.url("/console/guardrails"))
        .await
        .unwrap();
    let text = b.body_text().await;
    assert!(
        text.contains("Changes per") && text.contains("Still learning"),
        "{text}"
    );
    // The pause switch works from any page, and so does resuming.
    b.c()
        .find(Locator::Css(
            "form[action='/console/pause'] input[name=reason]",
        ))
        .await
        .unwrap()
        .send_keys("console test")
        .await
        .unwrap();
    b.c()
        .find(Locator::Id("pause"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#resume-all").await;
    let (_, pauses) = server.get("/api/v1/pauses", &siem);
    assert_eq!(pauses["pauses"][0]["paused_by"], "ada", "{pauses}");
    b.c()
        .find(Locator::Id("resume-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#pause").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_offered_nothing_and_posts_without_role_or_csrf_token_are_refused() {
    if !browser_here() {
        return;
    }
    let (dir, siem) = setup(
        &[("block", &block_alert_ip("approve", ""))],
        "",
        &[("vera", "viewer"), ("rita", "responder")],
    );
    let d = dir.path();
    let server = Server::start(d);
    send_event(&server, &siem, alert("e1", "203.0.113.9"));
    until("the change is held", || !pending(&server, &siem).is_empty()).await;
    let id = pending(&server, &siem)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let decide = format!("/console/approvals/{id}/decide");
    let api = format!("/api/v1/approvals/{id}/approve");

    let b = Browser::start().await;
    b.login(&server, "vera", PASSWORD).await;
    b.wait_for("article[data-approval]").await;
    assert_eq!(
        b.count("button.approve").await,
        0,
        "no approve button for a viewer"
    );
    assert_eq!(b.count("button.deny").await, 0);
    assert_eq!(b.count("#pause").await, 0, "no pause switch for a viewer");
    // A forged POST from the viewer's session, with her valid CSRF token: the role is missing.
    let form = "application/x-www-form-urlencoded";
    let body = format!("decision=approve&csrf={}", csrf(&b).await);
    assert_eq!(b.post_from_page(&decide, form, &body, false).await, 403);
    assert_eq!(
        b.post_from_page(&api, "application/json", "{}", true).await,
        403
    );
    b.logout().await;

    // A responder's session without the CSRF token: refused, the form and the API alike.
    b.login(&server, "rita", PASSWORD).await;
    b.wait_for("button.approve").await;
    assert_eq!(
        b.post_from_page(&decide, form, "decision=approve", false)
            .await,
        403
    );
    assert_eq!(
        b.post_from_page(&decide, form, "decision=approve&csrf=0000", false)
            .await,
        403
    );
    assert_eq!(
        b.post_from_page(&api, "application/json", "{}", false)
            .await,
        403
    );
    assert_eq!(pending(&server, &siem).len(), 1, "still waiting");
    assert!(listed(d).is_empty(), "nothing applied");
    // With it, the same request goes through.
    assert_eq!(
        b.post_from_page(&api, "application/json", "{\"comment\":\"ok\"}", true)
            .await,
        200
    );
    until("applied", || listed(d) == ["203.0.113.9"]).await;
    b.close().await;
}

async fn csrf(b: &Browser) -> String {
    b.c()
        .execute("return document.body.dataset.csrf;", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_s_markup_is_shown_as_text_and_no_script_runs() {
    if !browser_here() {
        return;
    }
    let log = "name: note\non: { event: ids.alert }\ntrust: log\nsteps:\n  - id: note\n    action: core.log\n    with: { message: \"${{ event.data.signature }}\" }\n";
    let (dir, siem) = setup(&[("note", log)], "", &[("vera", "viewer")]);
    let d = dir.path();
    let server = Server::start(d);
    let script = "<script>window.pwned = 'script'</script>";
    let img = "<img src=x onerror=\"window.pwned = 'img'\">";
    let run = send_event(
        &server,
        &siem,
        json!({ "id": "xss-1", "kind": "ids.alert",
        "data": { "signature": script, "note": img } }),
    );
    until("the run finishes", || {
        run_status(&server, &siem, &run) == "succeeded"
    })
    .await;

    let b = Browser::start().await;
    b.login(&server, "vera", PASSWORD).await;
    b.wait_for("#empty-queue").await;
    for page in [
        "/console/events?kind=ids.alert",
        &format!("/console/runs/{run}"),
    ] {
        b.c().goto(&server.url(page)).await.unwrap();
        b.wait_for("main").await;
        let text = b.body_text().await;
        assert!(
            text.contains(script),
            "{page} shows the script as text:\n{text}"
        );
        if page.starts_with("/console/events") {
            assert!(
                text.contains("<img src=x onerror="),
                "{page} shows the img tag as text:\n{text}"
            );
        }
        let pwned = b
            .c()
            .execute("return typeof window.pwned;", vec![])
            .await
            .unwrap();
        assert_eq!(
            pwned,
            json!("undefined"),
            "no script of the event ran on {page}"
        );
        assert_eq!(
            b.count("main img").await,
            0,
            "no image element from the event"
        );
        assert_eq!(b.count("main script").await, 0);
    }
    b.c()
        .goto(&server.url("/console/events?kind=ids.alert"))
        .await
        .unwrap();
    b.wait_for("table.events").await;
    b.screenshot("events-escaped").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_lock_the_account_audited() {
    if !browser_here() {
        return;
    }
    let (dir, _) = setup(&[], "", &[("rita", "responder")]);
    let d = dir.path();
    let server = Server::start(d);
    let b = Browser::start().await;
    for _ in 0..5 {
        b.login(&server, "rita", "not her password").await;
        let err = b.wait_for("#login-error").await.text().await.unwrap();
        assert!(err.contains("wrong user name or password"), "{err}");
    }
    b.login(&server, "rita", PASSWORD).await;
    let err = b.wait_for("#login-error").await.text().await.unwrap();
    assert!(
        err.contains("locked"),
        "the right password is refused while locked: {err}"
    );
    b.screenshot("login-locked").await;
    // No session was made: the console sends her back to sign in.
    b.c().goto(&server.url("/console/approvals")).await.unwrap();
    b.wait_for("#sign-in").await;
    b.close().await;
    drop(server);
    let trail = audit_export(d);
    let failed = trail
        .iter()
        .filter(|e| e["kind"] == "user.login_failed" && e["subject"] == "rita")
        .count();
    assert_eq!(failed, 4, "four failures, then the fifth locks");
    let locked = trail
        .iter()
        .find(|e| e["kind"] == "user.locked")
        .expect("the lock is audited");
    assert!(
        locked["detail"]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1"),
        "{locked}"
    );
    assert!(locked["detail"]["locked_until"].as_i64().is_some());
}

/// One request without a bearer token: the status, the headers and the body.
fn raw(server: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    call(server.port, method, path, headers, body.as_bytes()).expect("an answer")
}

/// A header's value (the name in lower case).
fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers.get(name).map(String::as_str)
}

/// The form's CSRF token (the hidden `csrf` field) in a page.
fn form_token(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_owned()
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(a: &Answer) -> String {
    header(a, "set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a cookie")
        .to_owned()
}

#[test]
fn a_sign_in_is_refused_unless_it_comes_from_the_console_s_own_form() {
    let (dir, _) = setup(&[], "", &[("rita", "responder")]);
    let d = dir.path();
    let server = Server::start(d);
    let form = "application/x-www-form-urlencoded";
    let creds = format!("user=rita&password={}", PASSWORD.replace(' ', "+"));

    // Another site's form posting the right password: refused before the password is looked at.
    let forged = raw(&server, "POST", "/login", &[("content-type", form)], &creds);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(
        forged.body.contains("did not come from this console"),
        "{}",
        forged.body
    );
    assert!(header(&forged, "set-cookie").is_some_and(|c| c.starts_with("belay_login=")));
    // The form's token with another form's cookie (or none): refused too.
    let page = raw(&server, "GET", "/login", &[], "");
    let cookie = cookie_pair(&page);
    let token = form_token(&page.body);
    assert!(cookie.starts_with("belay_login="), "{cookie}");
    let other = raw(&server, "GET", "/login", &[], "");
    let other_cookie = cookie_pair(&other);
    let body = format!("{creds}&csrf={token}");
    let mixed = raw(
        &server,
        "POST",
        "/login",
        &[("content-type", form), ("cookie", &other_cookie)],
        &body,
    );
    assert_eq!(mixed.status, 403);
    let tokenless = raw(
        &server,
        "POST",
        "/login",
        &[("content-type", form), ("cookie", &cookie)],
        &creds,
    );
    assert_eq!(tokenless.status, 403);
    // Five forged sign-ins with wrong passwords do not lock her account (nothing is counted).
    for _ in 0..5 {
        let wrong = raw(
            &server,
            "POST",
            "/login",
            &[("content-type", form)],
            "user=rita&password=nope",
        );
        assert_eq!(wrong.status, 403);
    }
    // Nothing was audited, and no session was made.
    let signed: Vec<Value> = audit_export(d)
        .into_iter()
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("user.log") || k.starts_with("session."))
        })
        .collect();
    assert!(signed.is_empty(), "{signed:?}");

    // The console's own form: a wrong password is a wrong password, the right one signs in.
    let wrong = format!("user=rita&password=nope&csrf={token}");
    let a = raw(
        &server,
        "POST",
        "/login",
        &[("content-type", form), ("cookie", &cookie)],
        &wrong,
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(
        form_token(&a.body),
        token,
        "the page again, with the same form token"
    );
    let a = raw(
        &server,
        "POST",
        "/login",
        &[("content-type", form), ("cookie", &cookie)],
        &body,
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert!(cookie_pair(&a).starts_with("belay_session="));
    let kinds: Vec<String> = audit_export(d)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(kinds.contains(&"user.login".to_owned()), "{kinds:?}");
}

#[test]
fn trusted_proxy_sign_in_sessions_on_the_api_and_security_headers() {
    let (dir, _) = setup(&[], "", &[("rita", "responder")]);
    let d = dir.path();
    write_file(
        d,
        "belay.toml",
        "playbooks = \"playbooks\"\n[serve]\ntrusted_proxies = [\"127.0.0.1/32\"]\nproxy_user_header = \"X-Remote-User\"\nsession_idle = \"10m\"\n",
    );
    let server = Server::start(d);

    // Without a session: sent to sign in. The sign-in page carries the security headers.
    let a = raw(&server, "GET", "/console/approvals", &[], "");
    assert_eq!(
        (a.status, header(&a, "location")),
        (303, Some("/login")),
        "{:?}",
        a.headers
    );
    let login = raw(&server, "GET", "/login", &[], "");
    assert_eq!(login.status, 200);
    let csp = header(&login, "content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(header(&login, "x-frame-options"), Some("DENY"));
    assert!(
        !login.body.contains("<script>") && !login.body.contains("style="),
        "no inline script or style"
    );

    // The proxy names a user of the directory: a session is made for her.
    let a = raw(
        &server,
        "GET",
        "/console/approvals",
        &[("x-remote-user", "rita")],
        "",
    );
    assert_eq!(a.status, 200, "{:?}", a.headers);
    assert!(a.body.contains("rita (responder)"));
    let cookie = header(&a, "set-cookie").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    // The session works on the API too (reads; a write needs its CSRF token).
    let secret = cookie
        .strip_prefix("belay_session=")
        .and_then(|v| v.split(';').next())
        .expect("the session's secret")
        .to_owned();
    let cookie = format!("belay_session={secret}");
    let a = raw(&server, "GET", "/api/v1/whoami", &[("cookie", &cookie)], "");
    assert_eq!(a.status, 200, "{}", a.body);
    let who = a.json();
    assert_eq!(who["name"], "rita");
    let status = raw(
        &server,
        "POST",
        "/api/v1/events",
        &[("cookie", &cookie), ("content-type", "application/json")],
        "{\"kind\":\"x\"}",
    )
    .status;
    assert_eq!(status, 403, "a write without the CSRF token");

    // A user the directory does not know, or a write on the header alone: refused.
    let a = raw(
        &server,
        "GET",
        "/console/approvals",
        &[("x-remote-user", "mallory")],
        "",
    );
    assert_eq!(a.status, 303, "{:?}", a.headers);
    let status = raw(
        &server,
        "POST",
        "/console/pause",
        &[
            ("x-remote-user", "rita"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "reason=x",
    )
    .status;
    assert_eq!(status, 403);
    drop(server);

    // From an address that is not a trusted proxy, the header means nothing.
    write_file(
        d,
        "belay.toml",
        "playbooks = \"playbooks\"\n[serve]\ntrusted_proxies = [\"192.0.2.1/32\"]\nproxy_user_header = \"X-Remote-User\"\n",
    );
    let server = Server::start(d);
    let status = raw(
        &server,
        "GET",
        "/console/approvals",
        &[("x-remote-user", "rita")],
        "",
    )
    .status;
    assert_eq!(status, 303);
    drop(server);
    let trail = audit_export(d);
    let started = trail
        .iter()
        .find(|e| e["kind"] == "session.started")
        .expect("audited");
    assert_eq!(started["detail"]["via"], "proxy");
    assert_eq!(
        trail
            .iter()
            .filter(|e| e["kind"] == "session.started")
            .count(),
        1,
        "one session, for rita; mallory got none"
    );

    // A bad setting is refused at start, naming it.
    write_file(
        d,
        "belay.toml",
        "[serve]\ntrusted_proxies = [\"not-an-address\"]\nproxy_user_header = \"X-Remote-User\"\n",
    );
    let o = command(d)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("trusted_proxies[0]"),
        "{o:?}"
    );
}
