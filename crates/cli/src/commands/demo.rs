//! `belay demo`: the shipped scenarios end to end, with nothing but the binary. An embedded
//! store in a temporary directory, the lab's simulators in-process, the real components this
//! machine can run (stand-ins, labelled as such, for the others); approvals given visibly by a
//! named demo user, guardrail holds, a rollback verified against the systems' state, and the
//! audit chain verified.
//!
//! It never touches the configured store or data directory: everything lives in a temporary
//! directory that is removed at the end.

use crate::context::{Ctx, Global};
use crate::labenv::{LabEnv, Options};
use crate::output::joined_or;
use anyhow::{Context, Result, bail};
use belay_engine::Engine;
use belay_engine::approvals::Directory;
use belay_engine::history::{self, PastRun};
use belay_engine::rollback::{Outcome, RollbackOptions, Selection, rollback};
use belay_model::{ApprovalStatus, Event, RunStatus, TrustLevel};
use belay_store::ApprovalFilter;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

const DEMO_USER: &str = "demo-analyst";

/// A reported phishing message (written for the demo: two lookalike links, one shortener).
const PHISH: &str = "From: \"Payroll Team\" <payroll@corp-payroll.example>\r\n\
To: Aisha Khan <akhan@corp.example>\r\n\
Subject: =?UTF-8?Q?Action_required:_confirm_your_salary_account?=\r\n\
Message-ID: <demo-1@corp-payroll.example>\r\n\
Date: Sat, 28 Nov 2026 08:12:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n\
<p>Your salary account must be re-confirmed before Monday.</p>\r\n\
<p><a href=3D\"https://login.corp-payroll.example/confirm?u=3Dakhan\">https://corp.example/payroll</a></p>\r\n\
<p>Or use hxxps://secure-pay-check[.]example/akhan</p>\r\n";

fn event(kind: &str, observables: Value, data: Value) -> Result<Event> {
    Event::from_json(json!({ "kind": kind, "severity": "high", "source": "demo",
                             "observables": observables, "data": data }))
    .map_err(|e| anyhow::anyhow!("demo event: {e}"))
}

struct Demo {
    engine: Arc<Engine>,
    ctx: Ctx,
    runs: Vec<(String, String, RunStatus)>,
}

/// The feed's past updates the demo imports for `feed-baseline` to learn from: one every six
/// hours over eight days, of two to four addresses.
const PAST_UPDATES: i64 = 32;

impl Demo {
    /// Imports the feed's past updates into the journal (backdated, allowed by
    /// `import:feed-history`; nothing is applied to any system) and shows what `feed-baseline`
    /// learned from them. Returns how many changes were imported.
    async fn feed_history(&mut self) -> Result<u64> {
        println!("\n── 3 · the feed's history: what feed-baseline learns from ──");
        let now = belay_model::now_ms();
        let hour = 3_600_000;
        let past: Vec<PastRun> = (0..PAST_UPDATES)
            .map(|u| PastRun {
                at: now - 8 * 24 * hour + u * 6 * hour,
                action: "firewall.block_ip".into(),
                targets: (0..2 + u % 3)
                    .map(|i| format!("192.0.2.{}", 200 + i))
                    .collect(),
            })
            .collect();
        let n = history::import(
            &*self.engine.store,
            "feed-history",
            TrustLevel::Guarded,
            &past,
        )
        .await?;
        println!(
            "  {PAST_UPDATES} past feed updates ({n} blocks over 8 days) imported into the journal at their time"
        );
        let guardrails = self.ctx.guardrails()?;
        if let Some(g) = guardrails.get("feed-baseline")
            && let Some(b) = g.baseline
        {
            let f = self.engine.baseline(g).await?;
            println!(
                "  feed-baseline learned: p99 {} blocks per update ({} updates), {} per {} → holds above {}",
                f.p99_batch,
                f.runs,
                f.p99_window,
                humantime::format_duration(b.per),
                (b.factor * f.p99_batch.max(1) as f64).floor()
            );
        }
        Ok(n)
    }

    async fn send(&mut self, title: &str, event: Event) -> Result<Vec<String>> {
        println!("\n── {title} ──");
        let accepted = self.engine.accept_batch(vec![(event, None)]).await?;
        let mut ids = Vec::new();
        for acc in accepted {
            for run in acc.runs {
                let r = self.engine.execute_new(run, acc.event.clone()).await?;
                self.show(&r.run_id).await?;
                self.runs
                    .push((r.run_id.clone(), r.playbook.clone(), r.status));
                ids.push(r.run_id);
            }
        }
        Ok(ids)
    }

    async fn import(&mut self, title: &str, feed: &str, text: &str) -> Result<Vec<String>> {
        let file = self.ctx.data.join(format!("{feed}.txt"));
        std::fs::write(&file, text)?;
        let opts = belay_intel::ImportOptions {
            feed: feed.into(),
            format: Some(belay_intel::Format::Plain),
            ..Default::default()
        };
        let data = self.ctx.data.clone();
        let source = file.display().to_string();
        let report = tokio::task::spawn_blocking(move || {
            belay_intel::import(&data, &source, &opts, &mut belay_intel::NoProgress)
        })
        .await
        .context("the import task ended abnormally")??;
        println!("\n  intel: {}", report.summary());
        self.send(title, report.event()).await
    }

    async fn show(&self, run_id: &str) -> Result<()> {
        let store = &self.engine.store;
        let Some(run) = store.get_run(run_id).await? else {
            return Ok(());
        };
        println!("  run {} {:<22} → {}", run.id, run.playbook, run.status);
        let steps = store.steps(run_id).await?;
        for (i, s) in steps.iter().enumerate() {
            if s.status.as_str() == "skipped" {
                continue;
            }
            // A long fan-out shows its first items and a count of the rest alike.
            let same = |o: &belay_model::StepRecord| {
                o.step == s.step && o.status == s.status && o.decision == s.decision
            };
            let before = steps[..i].iter().rev().take_while(|o| same(o)).count();
            if before == 2 {
                let rest = steps[i..].iter().take_while(|o| same(o)).count();
                println!(
                    "      {:<16} … and {rest} more {} like it",
                    "",
                    s.status.as_str()
                );
            }
            if before >= 2 {
                continue;
            }
            // A set-level change names its first item and how many more.
            let items = s
                .with
                .as_object()
                .and_then(|o| o.values().find_map(|v| v.as_array()));
            let target = match items.map(Vec::as_slice) {
                Some([first, rest @ ..]) if !rest.is_empty() => {
                    format!("{} and {} more", first.as_str().unwrap_or(""), rest.len())
                }
                Some([one]) => one.as_str().unwrap_or("").to_owned(),
                _ => s
                    .with
                    .as_object()
                    .and_then(|o| o.values().find_map(|v| v.as_str()))
                    .unwrap_or("")
                    .to_owned(),
            }
            .chars()
            .take(48)
            .collect::<String>();
            let trust = s.trust.map(|t| format!(" trust={t}")).unwrap_or_default();
            println!(
                "      {:<16} {:<24} {:<12} {:<16} {target}{trust}",
                s.key,
                s.action,
                s.status.as_str(),
                s.decision.as_str()
            );
            if let Some(e) = &s.error {
                println!("          ↳ {e}");
            }
        }
        if let Some(e) = &run.error {
            println!("      error: {e}");
        }
        Ok(())
    }

    /// Decides every pending approval as the demo user, printing what was asked.
    async fn decide(
        &mut self,
        approve: impl Fn(&belay_model::ApprovalRecord) -> bool,
    ) -> Result<()> {
        let store = self.engine.store.clone();
        let pending = store
            .approvals(&ApprovalFilter {
                status: Some(ApprovalStatus::Pending),
                ..Default::default()
            })
            .await?;
        let people = Directory::new([(DEMO_USER.to_owned(), vec!["responder".to_owned()])]);
        for a in &pending {
            let yes = approve(a);
            println!(
                "  approval {} {}/{}: {} {}\n      why: {}\n      change sha256 {}…  → {} by {DEMO_USER}",
                a.id,
                a.playbook,
                a.key,
                a.action,
                a.target,
                a.reason,
                &a.change_hash[..16],
                if yes { "APPROVED" } else { "DENIED" }
            );
            let comment = if yes {
                "demo: confirmed"
            } else {
                "demo: protected network, never block"
            };
            belay_engine::approvals::decide(
                &*store,
                &people,
                &a.id,
                DEMO_USER,
                yes,
                Some(comment.into()),
            )
            .await?;
        }
        let resumed = self.engine.pick_up_decisions().await?;
        if resumed > 0 {
            println!("  {resumed} run(s) resumed with the decision");
        }
        Ok(())
    }
}

/// Runs `belay demo`.
pub async fn run(_ctx: &Ctx) -> Result<ExitCode> {
    let started = Instant::now();
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let env = LabEnv::start(tmp.path(), &Options::default()).await?;
    println!(
        "belay demo: embedded store in {} (SQLite, WAL, synchronous=FULL)",
        tmp.path().join("data").display()
    );
    println!("systems:");
    for c in &env.components {
        println!("{c}");
    }
    let ctx = Ctx::new(&Global {
        config: Some(env.config.clone()),
        data: None,
        database_url: None,
        guardrails: None,
        server: None,
    })
    .await?;
    let set = ctx.load_playbooks(&[tmp.path().join("playbooks")])?;
    println!("playbooks:");
    for pb in set.iter() {
        println!(
            "  {:<24} on {:<24} trust {:<8} {:>2} steps  sha256 {}",
            pb.name,
            pb.trigger.event.as_deref().unwrap_or("-"),
            pb.trust.as_str(),
            pb.steps.len(),
            &pb.hash[..12]
        );
    }
    let engine = ctx.engine(set).await?;
    let mut demo = Demo {
        engine: engine.clone(),
        ctx,
        runs: Vec::new(),
    };

    let history = demo.feed_history().await?;
    demo.import(
        "0+3+6 · a threat-intel feed update (two addresses)",
        "abuse-feed",
        "198.51.100.21\n198.51.100.22\n",
    )
    .await?;
    demo.import(
        "3+6 · a second feed lists one of them: now in two feeds",
        "c2-tracker",
        "198.51.100.21\n",
    )
    .await?;
    demo.send(
        "0 · an IDS alert is enriched before anyone triages it",
        event(
            "ids.alert",
            json!({"ips": ["198.51.100.21"], "hosts": ["fin-cfo-lt01"], "users": ["mdubois"]}),
            json!({"signature": "ET MALWARE beacon to known C2"}),
        )?,
    )
    .await?;
    demo.import(
        "3 · a feed update lists the SaaS CRM's network: those addresses held, the rest applied",
        "poisoned-feed",
        "198.51.100.70\n203.0.113.50\n198.51.100.23\n",
    )
    .await?;
    let big: String = (1..=40).map(|i| format!("192.0.2.{i}\n")).collect();
    demo.import(
        "3 · an oversized feed update (40 addresses): held",
        "noisy-feed",
        &big,
    )
    .await?;
    let above: String = (1..=20).map(|i| format!("192.0.2.{}\n", 100 + i)).collect();
    demo.import(
        "3 · an update far above the learned baseline (20 addresses, under feed-batch's 25): held",
        "bulk-feed",
        &above,
    )
    .await?;
    println!("\n── approvals: the held updates are decided by a person ──");
    demo.decide(|_| false).await?;

    demo.send(
        "1 · a user is added to sudo on the CFO's laptop",
        event("auth.privilege_change", json!({"users": ["bart"], "hosts": ["fin-cfo-lt01"]}),
              json!({"action": "added", "user": "bart", "group": "sudo", "actor": "root", "host": "fin-cfo-lt01",
                     "privileged": true, "program": "gpasswd",
                     "raw": "Nov 28 08:02:11 fin-cfo-lt01 gpasswd[3311]: user bart added by root to group sudo"}))?,
    ).await?;
    demo.send(
        "2 · DHCP sees a device the CMDB does not know",
        event("network.new_device", json!({"macs": ["b8:27:eb:4f:10:aa"], "ips": ["10.20.9.77"]}),
              json!({"mac": "b8:27:eb:4f:10:aa", "ip": "10.20.9.77", "vendor": "Raspberry Pi Foundation", "observer": "dhcp01"}))?,
    ).await?;
    let phish_runs = demo
        .send(
            "4 · a phishing message is reported from an engineering workstation",
            event("phishing.reported", json!({"hosts": ["eng-ws-101"], "users": ["akhan"], "emails": ["akhan@corp.example"]}),
                  json!({"message": PHISH}))?,
        )
        .await?;
    demo.send(
        "5a · DLP: account numbers in an e-mail (inadvertent)",
        event("dlp.alert", json!({"users": ["jsmith"], "hosts": ["fin-ws-014"]}),
              json!({"user": "jsmith", "channel": "SMTP", "encrypted": false, "file": "accounts-q3.xlsx",
                     "data_types": ["bank_account_number"], "endpoint": "fin-ws-014"}))?,
    ).await?;
    demo.send(
        "5b · DLP: an encrypted archive through the gateway (possibly malicious)",
        event("dlp.alert", json!({"users": ["akhan"], "hosts": ["eng-ws-101"]}),
              json!({"user": "akhan", "channel": "Network Gateway", "encrypted": true, "file": "design-export.7z",
                     "data_types": [], "endpoint": "eng-ws-101"}))?,
    ).await?;
    println!("\n── approvals: quarantine of the compromised workstation ──");
    demo.decide(|_| true).await?;
    for (id, _, _) in demo
        .runs
        .iter_mut()
        .filter(|(_, pb, _)| pb == "exfiltration-response")
    {
        if let Some(r) = engine.store.get_run(id).await? {
            println!("  run {} exfiltration-response → {}", &id[..13], r.status);
        }
    }

    let store = engine.store.clone();
    for c in store.cases(None).await? {
        println!("  case {} [{}] {}", c.id, c.status, c.title);
    }

    if let Some(run) = phish_runs.first() {
        println!(
            "\n── rollback of the phishing run {} by {DEMO_USER} ──",
            &run[..13]
        );
        let report = rollback(
            &engine,
            Selection::Run(run.clone()),
            RollbackOptions {
                dry_run: false,
                force: false,
                actor: DEMO_USER.into(),
            },
        )
        .await?;
        for i in &report.items {
            println!(
                "  {:<12} {:<24} {}  {}",
                format!("{:?}", i.outcome).to_lowercase(),
                i.action,
                i.target,
                i.detail
            );
        }
        let bad = report.count(Outcome::Failed) + report.count(Outcome::Drifted);
        println!(
            "  {} reverted and verified against the systems' state, {} kept (irreversible), {} failed",
            report.count(Outcome::Reverted),
            report.count(Outcome::Irreversible),
            bad
        );
        if bad > 0 {
            bail!("the rollback did not restore every system");
        }
        for d in store.demotions().await? {
            println!(
                "  {}/{} needs approval again: {}",
                d.playbook, d.step, d.reason
            );
        }
    }
    let entries = match belay_store::verify_audit(store.as_ref()).await? {
        Ok(n) => n,
        Err(p) => bail!("{p}"),
    };
    let inbox: usize = crate::labenv::NOTIFY_TARGETS
        .iter()
        .map(|t| {
            std::fs::read_to_string(tmp.path().join(format!("notify/{t}-inbox.jsonl")))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        })
        .sum();

    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for (id, _, _) in &demo.runs {
        if let Some(r) = store.get_run(id).await? {
            // A run a person stopped by denying its change is not a failure of the demo.
            let denied = r.error.as_deref().is_some_and(|e| e.contains("denied"));
            let status = if denied && matches!(r.status, RunStatus::Failed | RunStatus::Denied) {
                "stopped by a denial".to_owned()
            } else {
                r.status.to_string()
            };
            *by_status.entry(status).or_default() += 1;
        }
    }
    let counts = store.counts().await?;
    println!("\n── summary ──");
    println!(
        "  {} runs ({}), {} changes journaled ({} applied; besides {history} past feed blocks imported), {} notifications sent, {} cases",
        demo.runs.len(),
        by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        counts.changes - history,
        counts.changes_applied - history,
        inbox,
        store.cases(None).await?.len()
    );
    for e in store.audit_entries(0, 1_000_000).await? {
        if e.kind == "guardrail.enforcing" {
            println!(
                "  audit entry {}: {} enforces from here on ({} of history, p99 {} per update)",
                e.seq,
                e.detail["guardrail"].as_str().unwrap_or(""),
                humantime::format_duration(std::time::Duration::from_secs(
                    (e.detail["history_ms"].as_i64().unwrap_or(0) / 60_000 * 60) as u64
                )),
                e.detail["p99_batch"]
            );
        }
    }
    println!("  audit chain intact: {entries} entries, each committing to the one before");
    let real: Vec<&str> = env
        .components
        .iter()
        .filter(|c| c.real)
        .map(|c| c.family)
        .collect();
    println!(
        "  real components: {}",
        joined_or(
            &real,
            "none usable here (SaaS simulators and stand-ins only)"
        )
    );
    println!("  finished in {:.1}s", started.elapsed().as_secs_f64());
    env.stop().await;
    let failed = by_status.get("failed").copied().unwrap_or(0);
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
