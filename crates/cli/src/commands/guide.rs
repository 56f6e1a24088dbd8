//! `belay guide [TOPIC]`: the reference guides of `docs/`, compiled into the binary so they
//! match it and need no checkout (`belay help` is clap's: options of one command).

use anyhow::{Result, bail};
use std::process::ExitCode;

/// `belay guide [TOPIC]`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  belay guide                 # the topics\n  belay guide expressions     # the expression language\n  belay guide trust | less"
)]
pub struct Args {
    /// The guide to print; without one, the list of topics.
    topic: Option<String>,
}

/// Topic, one line about it, and the text.
const GUIDES: &[(&str, &str, &str)] = &[
    (
        "playbooks",
        "triggers, steps, for_each, retries, sub-playbooks, playbook tests",
        include_str!("../../../../docs/playbooks.md"),
    ),
    (
        "expressions",
        "${{ … }}: the context, syntax, filters, tests and limits",
        include_str!("../../../../docs/expressions.md"),
    ),
    (
        "trust",
        "approvals, guardrails, expiries, rollback, demotion, replay, the audit trail",
        include_str!("../../../../docs/trust-layer.md"),
    ),
    (
        "serve",
        "the HTTP API, webhooks, users and tokens, roles, metrics",
        include_str!("../../../../docs/serve.md"),
    ),
    (
        "ingest",
        "reported phishing by e-mail; syslog, CEF and the normalizers",
        include_str!("../../../../docs/ingest.md"),
    ),
    (
        "intel",
        "threat-intel feed formats, normalization, scores, lookups",
        include_str!("../../../../docs/intel.md"),
    ),
    (
        "connectors",
        "native connectors, HTTP connector specs, notifications, the lab",
        include_str!("../../../../docs/connectors.md"),
    ),
    (
        "scenarios",
        "the shipped playbooks and belay demo",
        include_str!("../../../../docs/scenarios.md"),
    ),
    (
        "cli",
        "every command, global options, belay.toml",
        include_str!("../../../../docs/cli.md"),
    ),
    (
        "durability",
        "what is committed when, crash recovery, leases",
        include_str!("../../../../docs/durability.md"),
    ),
];

/// Runs `belay guide`.
pub fn run(args: Args) -> Result<ExitCode> {
    let Some(topic) = args.topic else {
        println!("belay guide TOPIC — topics:");
        for (name, about, _) in GUIDES {
            println!("  {name:<12} {about}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    match GUIDES.iter().find(|(name, _, _)| *name == topic.as_str()) {
        Some((_, _, text)) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let names: Vec<&str> = GUIDES.iter().map(|(n, _, _)| *n).collect();
            bail!("no guide `{topic}`; the topics are: {}", names.join(", "))
        }
    }
}
