//! `belay lab serve|up`: serves the simulators of the SaaS products belay drives (EDR, SIEM,
//! CMDB, training platform, takedown service, SaaS web proxy, packet capture) for trying
//! playbooks without those products, or a whole scenario environment around them.
//!
//! It never builds belay's own connectors: those come from `belay.toml` through `Ctx`.

use anyhow::{Context, Result, bail};
use belay_lab::{Lab, LabConfig, SIMULATORS};
use clap::Subcommand;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// `belay lab …`.
#[derive(Subcommand)]
pub enum LabCommand {
    /// Serve every simulator from one HTTP server until interrupted.
    Serve {
        /// Address to listen on (port 0 picks a free port), as every belay listener takes it.
        #[arg(long = "listen", alias = "addr", default_value = "127.0.0.1:8450")]
        addr: SocketAddr,
        /// Delay added to every API request, e.g. 20ms.
        #[arg(long, default_value = "0ms")]
        latency: String,
        /// Share of API requests that fail (503/429 before handling, 500 or a stall after), 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Seed of the injected faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// API token the simulators accept (default: a random one, printed once).
        #[arg(long, env = "BELAY_LAB_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Apply the first N changing requests, then hold their answers back (a call in
        /// flight, for crash tests).
        #[arg(long, value_name = "N", default_value_t = 0)]
        stall_changes: u64,
        /// Signing secret of the chat simulator's interactivity callbacks.
        #[arg(
            long,
            env = "BELAY_LAB_CHAT_SIGNING_SECRET",
            hide_env_values = true,
            default_value = "lab-chat-signing-secret"
        )]
        chat_signing_secret: String,
    },
    /// Start the whole scenario environment in DIR (simulators, the real components this
    /// machine can run, stand-ins for the others, the shipped playbooks and guardrails) and
    /// write DIR/belay.toml for it; runs until interrupted or until standard input closes.
    Up {
        dir: PathBuf,
        /// Share of simulator API requests that fail, 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Seed of the simulators' generated data (the same seed gives the same data).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Use stand-ins even for the components this machine could run for real.
        #[arg(long)]
        no_real: bool,
    },
}

/// Runs `belay lab …`.
pub async fn run(command: LabCommand) -> Result<ExitCode> {
    match command {
        LabCommand::Up {
            dir,
            fault_rate,
            seed,
            no_real,
        } => {
            if !(0.0..=1.0).contains(&fault_rate) {
                bail!("--fault-rate must be between 0 and 1, found {fault_rate}");
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let env = crate::labenv::LabEnv::start(
                &dir,
                &crate::labenv::Options {
                    fault_rate,
                    seed,
                    real: !no_real,
                },
            )
            .await?;
            for c in &env.components {
                println!("{c}");
            }
            println!("ready: {}", env.config.display());
            // Until Ctrl-C, or until whoever started us closes our standard input.
            let stdin_closed = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            });
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = stdin_closed => {}
            }
            env.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Serve {
            addr,
            latency,
            fault_rate,
            seed,
            token,
            stall_changes,
            chat_signing_secret,
        } => {
            let latency = belay_model::parse_duration(&latency)
                .with_context(|| format!("--latency `{latency}` is not a duration like 20ms"))?;
            if !(0.0..=1.0).contains(&fault_rate) {
                bail!("--fault-rate must be between 0 and 1, found {fault_rate}");
            }
            let generated = token.is_none();
            let token = token.unwrap_or_else(|| format!("lab-{}", uuid::Uuid::new_v4().simple()));
            let handle = Lab::start(LabConfig {
                addr,
                token: token.clone(),
                latency,
                fault_rate,
                seed,
                stall_changes,
                chat_signing_secret,
                ..LabConfig::default()
            })
            .await?;
            println!("belay lab: simulators listening on {}", handle.base_url);
            for (name, prefix) in SIMULATORS {
                println!("  {name:<32} {}{prefix}", handle.base_url);
            }
            if generated {
                println!("token: {token}  (export BELAY_SECRET_LAB_TOKEN=<token> for belay.toml)");
            }
            println!(
                "faults: {:.0}% (seed {seed}), latency {}; state at {}/_state; Ctrl-C stops",
                fault_rate * 100.0,
                humantime::format_duration(latency),
                handle.base_url
            );
            let base = handle.base_url.clone();
            println!("belay.toml:");
            for (spec, _) in belay_connectors::http::spec::BUILTIN {
                let family = spec.trim_end_matches("-lab");
                println!(
                    "  [connectors.{family}]\n  spec = \"{spec}\"\n  base_url = \"{base}\"\n  auth = {{ type = \"bearer\", token = \"${{{{ secrets.LAB_TOKEN }}}}\" }}\n"
                );
            }
            tokio::signal::ctrl_c()
                .await
                .context("cannot wait for Ctrl-C")?;
            handle.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
