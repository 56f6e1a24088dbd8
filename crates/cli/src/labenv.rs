//! A complete environment for the shipped scenarios: the lab's simulators of the SaaS products,
//! the system components this machine can run for real (the others as labelled stand-ins),
//! notification targets, users, and the shipped playbooks and guardrails, described by one
//! generated `belay.toml`. `belay demo` runs in one; `belay lab up` keeps one running for
//! trying playbooks and for the end-to-end tests.

use anyhow::{Context, Result};
use belay_lab::{Lab, LabConfig, LabHandle};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The shipped scenario playbooks, compiled in.
pub const PLAYBOOKS: &[(&str, &str)] = &[
    (
        "enrich-alert.yaml",
        include_str!("../../../playbooks/enrich-alert.yaml"),
    ),
    (
        "privilege-escalation.yaml",
        include_str!("../../../playbooks/privilege-escalation.yaml"),
    ),
    (
        "rogue-device.yaml",
        include_str!("../../../playbooks/rogue-device.yaml"),
    ),
    (
        "intel-blocklist.yaml",
        include_str!("../../../playbooks/intel-blocklist.yaml"),
    ),
    (
        "phishing-response.yaml",
        include_str!("../../../playbooks/phishing-response.yaml"),
    ),
    (
        "exfiltration-response.yaml",
        include_str!("../../../playbooks/exfiltration-response.yaml"),
    ),
    (
        "proxy-multi-feed.yaml",
        include_str!("../../../playbooks/proxy-multi-feed.yaml"),
    ),
];
pub const GUARDRAILS: &str = include_str!("../../../guardrails/scenarios.yaml");

/// The notification targets the scenarios and guardrails name.
pub const NOTIFY_TARGETS: &[&str] = &["soc", "soc-admins", "network-team"];

/// The lab simulators, by the family their spec serves.
const LAB_SPECS: &[&str] = &[
    "edr", "siem", "cmdb", "training", "takedown", "proxy", "pcap",
];

/// People of the environment: who approves, who rolls back.
pub const USERS: &[(&str, &str)] = &[("demo-analyst", "responder"), ("soc-lead", "admin")];

#[derive(Debug, Clone)]
pub struct Options {
    /// Share of lab API requests that get an injected fault.
    pub fault_rate: f64,
    pub seed: u64,
    /// Start the system components this machine can run (else stand-ins for all).
    pub real: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fault_rate: 0.0,
            seed: 1,
            real: true,
        }
    }
}

/// The real components started for an environment, by family: connector type, settings, label.
#[derive(Default)]
struct Real {
    configs: std::collections::HashMap<&'static str, (&'static str, toml::Table, String)>,
    unusable: std::collections::HashMap<&'static str, String>,
    sandboxes: Vec<Box<dyn Send + Sync>>,
}

/// A sandbox started on a blocking thread, or why it could not start.
fn joined<T>(r: Result<Result<T, String>, tokio::task::JoinError>) -> Result<T, String> {
    r.map_err(|e| e.to_string()).and_then(|r| r)
}

impl Real {
    fn add<C: serde::Serialize>(
        &mut self,
        family: &'static str,
        kind: &'static str,
        config: &C,
        what: &str,
    ) {
        match toml::Table::try_from(config) {
            Ok(t) => {
                self.configs.insert(family, (kind, t, what.to_owned()));
            }
            Err(e) => {
                self.unusable
                    .insert(family, format!("{kind} settings: {e}"));
            }
        }
    }

    /// Adds the component a started sandbox runs (kept running as long as the environment),
    /// with the settings `config` gives for it; or says why it could not start.
    fn add_started<S: Send + Sync + 'static, C: serde::Serialize>(
        &mut self,
        family: &'static str,
        kind: &'static str,
        what: &str,
        started: Result<S, String>,
        config: impl FnOnce(&S) -> C,
    ) {
        match started {
            Ok(sb) => {
                self.add(family, kind, &config(&sb), what);
                self.sandboxes.push(Box::new(sb));
            }
            Err(e) => {
                self.unusable.insert(family, e);
            }
        }
    }

    /// Starts every component that is installed and usable; says why for the others.
    async fn start_all(&mut self) {
        use belay_connectors::native::{directory, nftables, unbound};
        // The synchronous sandboxes start on a blocking thread each.
        let nft = tokio::task::spawn_blocking(nftables::Sandbox::start);
        let dns = tokio::task::spawn_blocking(unbound::Sandbox::start);
        let dir = tokio::task::spawn_blocking(|| {
            let sb = directory::Sandbox::start()?;
            // The account the privilege-escalation scenario sees added to sudo, and its group.
            let _ = sb.add_group("sudo");
            sb.add_user("bart", &["sudo"])?;
            Ok::<_, String>(sb)
        });
        match joined(nft.await) {
            Ok(sb) => {
                let what = "nftables (real, in network namespaces of its own)";
                self.add("firewall", "nftables", &sb.firewall_config(), what);
                self.add("nac", "nftables", &sb.nac_config(), what);
                self.sandboxes.push(Box::new(sb));
            }
            Err(e) => {
                self.unusable.insert("firewall", e.clone());
                self.unusable.insert("nac", e);
            }
        }
        self.add_started(
            "dns",
            "unbound",
            "Unbound (real, on loopback)",
            joined(dns.await),
            |sb| sb.config(),
        );
        self.add_started(
            "directory",
            "gpasswd",
            "gpasswd (real, in a mount namespace with its own /etc)",
            joined(dir.await),
            |sb| sb.config("fin-cfo-lt01"),
        );
        let (ips, what) = start_suricata().await;
        self.add_started("ips", "suricata", &what, ips, |sb| sb.config());
    }
}

/// Suricata inline (IPS on NFQUEUE) where this machine allows it, else as an IDS, with the
/// site rule that drops traffic to and from the addresses of the `belay-ips` dataset the
/// intel-blocklist scenario fills; and the label of the systems table.
async fn start_suricata() -> (
    Result<belay_connectors::native::suricata::Sandbox, String>,
    String,
) {
    use belay_connectors::native::suricata::{Mode, Sandbox};
    let (started, fallback) = match Sandbox::start(Mode::Inline).await {
        Ok(sb) => (Ok(sb), None),
        Err(inline) => (
            Sandbox::start(Mode::Ids)
                .await
                .map_err(|e| format!("inline: {inline}; as an IDS: {e}")),
            Some(inline),
        ),
    };
    let started = match started {
        Ok(sb) => sb.drop_listed().await.map(|()| sb),
        Err(e) => Err(e),
    };
    let mode = started.as_ref().map_or(Mode::Ids, |sb| sb.mode());
    let mut what = format!("Suricata (real, {mode} in its own network namespace)");
    if let Some(why) = fallback {
        what = format!("{what}; inline unavailable: {why}");
    }
    (started, what)
}

/// Which component serves a family, and whether it is the real thing.
#[derive(Debug, Clone)]
pub struct Component {
    pub family: &'static str,
    pub served_by: String,
    pub real: bool,
}

impl std::fmt::Display for Component {
    /// One line of the systems table `belay demo` and `belay lab up` print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.real { "REAL" } else { "simulated" };
        write!(f, "  {:<10} {how:<10} {}", self.family, self.served_by)
    }
}

/// A running environment; dropping it stops the lab (and the real components it started).
pub struct LabEnv {
    pub config: PathBuf,
    pub lab: Option<LabHandle>,
    pub components: Vec<Component>,
    /// The real components started for it; dropping them stops them.
    _sandboxes: Vec<Box<dyn Send + Sync>>,
}

impl LabEnv {
    /// Starts everything in `dir` and writes `dir/belay.toml`.
    pub async fn start(dir: &Path, options: &Options) -> Result<LabEnv> {
        let token = format!("lab-{}", uuid::Uuid::new_v4().simple());
        let lab = Lab::start(LabConfig {
            token: token.clone(),
            fault_rate: options.fault_rate,
            seed: options.seed,
            ..LabConfig::default()
        })
        .await
        .context("cannot start the lab simulators")?;
        for sub in ["playbooks", "guardrails", "data", "notify", "standin"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        for (name, text) in PLAYBOOKS {
            std::fs::write(dir.join("playbooks").join(name), text)?;
        }
        std::fs::write(dir.join("guardrails/scenarios.yaml"), GUARDRAILS)?;
        let secrets = dir.join("secrets.toml");
        write_private(&secrets, &format!("LAB_TOKEN = \"{token}\"\n"))?;

        let mut toml = String::new();
        let p = |p: PathBuf| {
            p.display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        };
        writeln!(
            toml,
            "# Generated by belay: the lab environment of the shipped scenarios."
        )?;
        writeln!(toml, "data = \"{}\"", p(dir.join("data")))?;
        writeln!(toml, "playbooks = \"{}\"", p(dir.join("playbooks")))?;
        writeln!(toml, "guardrails = \"{}\"", p(dir.join("guardrails")))?;
        writeln!(toml, "secrets_file = \"{}\"\n", p(secrets))?;
        for (name, role) in USERS {
            writeln!(toml, "[[users]]\nname = \"{name}\"\nroles = [\"{role}\"]\n")?;
        }
        for t in NOTIFY_TARGETS {
            writeln!(
                toml,
                "[notify.{t}]\nfile = \"{}\"\n",
                p(dir.join("notify").join(format!("{t}-inbox.jsonl")))
            )?;
        }
        let mut components = Vec::new();
        for family in LAB_SPECS {
            writeln!(
                toml,
                "[connectors.{family}]\nspec = \"{family}-lab\"\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"${{{{ secrets.LAB_TOKEN }}}}\" }}\ntimeout = \"2s\"\nretries = 4\nbackoff = \"50ms\"\nmax_backoff = \"1s\"\n",
                lab.base_url
            )?;
            components.push(Component {
                family,
                served_by: format!("{family} simulator (lab)"),
                real: false,
            });
        }
        let mut real = Real::default();
        if options.real {
            real.start_all().await;
        }
        for family in belay_connectors::Standin::families() {
            if let Some((kind, settings, what)) = real.configs.remove(family) {
                let mut table = settings;
                table.insert("type".into(), toml::Value::String(kind.into()));
                let mut connectors = toml::Table::new();
                connectors.insert(family.into(), toml::Value::Table(table));
                let mut root = toml::Table::new();
                root.insert("connectors".into(), toml::Value::Table(connectors));
                writeln!(toml, "{}", toml::to_string(&root)?)?;
                components.push(Component {
                    family,
                    served_by: what,
                    real: true,
                });
                continue;
            }
            writeln!(
                toml,
                "[connectors.{family}]\ntype = \"standin\"\nfamily = \"{family}\"\nstate_dir = \"{}\"\n",
                p(dir.join("standin"))
            )?;
            let why = real
                .unusable
                .remove(family)
                .unwrap_or_else(|| "the real component is not usable here".into());
            components.push(Component {
                family,
                served_by: format!("stand-in, simulated ({why})"),
                real: false,
            });
        }
        let config = dir.join("belay.toml");
        std::fs::write(&config, toml)?;
        Ok(LabEnv {
            config,
            lab: Some(lab),
            components,
            _sandboxes: real.sandboxes,
        })
    }

    /// Stops the lab.
    pub async fn stop(mut self) {
        if let Some(lab) = self.lab.take() {
            lab.shutdown().await;
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
