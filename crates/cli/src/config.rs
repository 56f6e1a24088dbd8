//! `belay.toml`: every setting has a default, so no file is needed to start.
//!
//! It only reads and checks the file's shape; it never opens the store or builds connectors
//! (`context.rs` does).

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory of the embedded store and the list files.
    pub data: Option<PathBuf>,
    /// PostgreSQL URL; when set, PostgreSQL is the store.
    pub database_url: Option<String>,
    /// Playbook directory for `ingest` when `--playbooks` is not given.
    pub playbooks: Option<PathBuf>,
    /// Guardrail file or directory of `*.yaml` (default `./guardrails` when present).
    pub guardrails: Option<PathBuf>,
    #[serde(default)]
    pub engine: EngineSection,
    #[serde(default)]
    pub storage: StorageSection,
    /// Blocklist names mapped to files (default `<data>/lists/<name>.txt`).
    #[serde(default)]
    pub lists: HashMap<String, PathBuf>,
    /// Secrets file (TOML, mode 0600) for `${{ secrets.NAME }}` in connector settings.
    pub secrets_file: Option<PathBuf>,
    /// Secrets sealed in the store (`[secrets]`: the key).
    #[serde(default)]
    pub secrets: SecretsSection,
    /// Connectors by name (`[connectors.NAME]`), each serving one action family; `type` says
    /// which kind (`http`, the default, or a native one such as `nftables`).
    #[serde(default)]
    pub connectors: BTreeMap<String, toml::Table>,
    /// Notification targets by name (`[notify.NAME]`: `webhook` and/or `file`), for
    /// `notify.send` and guardrail alerts.
    #[serde(default)]
    pub notify: BTreeMap<String, belay_connectors::notify::TargetConfig>,
    /// People who may decide on approvals, with their roles.
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub trust: TrustSection,
    #[serde(default)]
    pub audit: AuditSection,
    /// `belay serve` settings (`[serve]`).
    #[serde(default)]
    pub serve: ServeSection,
    /// Webhook sources of `belay serve` (`[[hooks]]`), each at `POST /hooks/NAME`.
    #[serde(default)]
    pub hooks: Vec<HookSection>,
    /// Event sources `belay serve` runs (`[[sources]]`: syslog, imap, file).
    #[serde(default)]
    pub sources: Vec<belay_server::sources::SourceSection>,
    /// Threat-intel feeds `belay serve` imports on a schedule (`[[feeds]]`).
    #[serde(default)]
    pub feeds: Vec<belay_server::sources::FeedSection>,
    /// The file this was read from (none: defaults).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// Approvals delivered by e-mail (`[approvals.email]`).
    #[serde(default)]
    pub approvals: ApprovalsSection,
    /// Chat users mapped to belay users (`[[chat.users]]`).
    #[serde(default)]
    pub chat: ChatSection,
}

/// `[approvals]`: where held changes are delivered besides the API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// E-mail approvals (off unless set).
    pub email: Option<EmailApprovalsSection>,
}

/// `[approvals.email]`: one message per approver with an address, a signed link per decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailApprovalsSection {
    /// The SMTP relay, `HOST:PORT` (plain SMTP: a relay on this host or the local network).
    pub smtp: String,
    /// The sender address.
    pub from: String,
    /// The key links are signed with (`${{ secrets.NAME }}`, 32 characters or more).
    pub key: String,
    /// Base URL of the links, as approvers reach `belay serve` (default: the address served).
    pub link_base: Option<String>,
}

/// `[chat]`: who is who in chat.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSection {
    /// Chat user ids and the belay users they are.
    #[serde(default)]
    pub users: Vec<ChatUser>,
}

/// One `[[chat.users]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatUser {
    /// The chat's user id (Slack: `U…`).
    pub id: String,
    /// The belay user (from `[[users]]` or `belay users add`) deciding as this chat user.
    pub user: String,
}

/// `belay serve` (`[serve]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: Option<String>,
    /// Largest request body in bytes (default 1 MiB).
    pub body_limit: Option<usize>,
    /// Events taken in and not done before the API answers 429 (default 10000).
    pub queue: Option<usize>,
    /// PEM certificate chain: serve HTTPS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not loopback (behind a TLS proxy).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// `text` (default) or `json` log lines on standard error.
    pub log_format: Option<String>,
    /// A console session ends after this long without a request (default `30m`).
    pub session_idle: Option<String>,
    /// A console session ends this long after sign-in (default `12h`).
    pub session_max: Option<String>,
    /// How long five wrong passwords in a row lock an account (default `15m`).
    pub lockout: Option<String>,
    /// Mark the console's session cookie `Secure` (when served over TLS).
    pub secure_cookies: Option<bool>,
    /// Proxies (CIDRs) whose user header is believed, for single sign-on.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header a trusted proxy names the signed-in user in (e.g. `X-Remote-User`).
    pub proxy_user_header: Option<String>,
}

/// One webhook source (`[[hooks]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSection {
    /// Its name: the path segment of `/hooks/NAME`.
    pub name: String,
    /// `hmac` (signed with a shared secret, the default) or `bearer` (an API token).
    #[serde(default)]
    pub auth: Option<String>,
    /// For `hmac`: one or two secrets (two while rotating), each `${{ secrets.NAME }}`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// For `hmac`: who the events are from, the trigger of their runs (default `hook:NAME`).
    pub principal: Option<String>,
    /// Maps a foreign payload to an event: a shipped template's name (`splunk`, `elastic`,
    /// `suricata`) or a table of event field = template text.
    pub template: Option<toml::Value>,
}

/// Secrets at rest (`[secrets]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// The key file (base64 keys, the active one first; mode 0600, outside the data
    /// directory); `BELAY_SECRETS_KEY` takes precedence.
    pub key_file: Option<PathBuf>,
}

/// Signed checkpoints of the audit head (`[audit]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Ed25519 private key file (`belay audit keygen`), outside the data directory.
    pub signing_key: Option<PathBuf>,
    /// Public key file that `belay audit verify` checks signed heads with.
    pub public_key: Option<PathBuf>,
    /// Append-only JSON lines file the signed heads are written to, outside the data directory.
    pub signed_heads: Option<PathBuf>,
    /// Syslog target the signed heads are sent to: `udp://HOST:PORT` or `tcp://HOST:PORT`.
    pub syslog: Option<String>,
    /// Sign the head automatically once this many entries were appended since the last one.
    pub sign_every_entries: Option<u64>,
    /// Sign the head automatically once this long passed since the last one (if it moved).
    pub sign_every: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Where e-mail approvals reach them (with `[approvals.email]`).
    pub email: Option<String>,
}

/// When the trust report suggests a promotion.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// How far back the record is read, e.g. `30d` (default).
    pub window: Option<String>,
    /// Approvals without a denial or rollback before `promote to log` (default 20).
    pub promote_to_log_after: Option<u64>,
    /// Changes without a rollback before `promote to guarded` (default 50).
    pub promote_to_guarded_after: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    pub max_concurrent_runs: Option<usize>,
    /// Default timeout of one action attempt, e.g. `30s`.
    pub action_timeout: Option<String>,
    /// How long an event without an `id` is a duplicate of the same content delivered before
    /// (default `24h`): its id is derived from its source and content.
    pub dedup_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `full` (default: survives power loss) or `normal` (survives a killed process).
    pub sqlite_synchronous: Option<String>,
    /// PostgreSQL schema (default `public`).
    pub postgres_schema: Option<String>,
}

impl Config {
    /// Reads `path`, or `belay.toml` in the working directory when present.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from("belay.toml"), false),
        };
        if !required && !path.exists() {
            return Ok(Config::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        config.resolve_paths(&crate::paths::parent_dir(&path));
        config.path = Some(path);
        Ok(config)
    }

    /// Makes every relative path of the file relative to the file's own folder (`base`), not
    /// to wherever belay was started: `--config ../ws/belay.toml` with `data = "./data"` opens
    /// `../ws/data`, never a new empty store beside the caller.
    fn resolve_paths(&mut self, base: &Path) {
        if base == Path::new(".") {
            return;
        }
        let at = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            &mut self.data,
            &mut self.playbooks,
            &mut self.guardrails,
            &mut self.secrets_file,
            &mut self.secrets.key_file,
            &mut self.audit.signing_key,
            &mut self.audit.public_key,
            &mut self.audit.signed_heads,
            &mut self.serve.tls_cert,
            &mut self.serve.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            at(p);
        }
        self.lists.values_mut().for_each(at);
        for s in &mut self.sources {
            if let Some(p) = &mut s.path {
                at(p);
            }
        }
        for f in &mut self.feeds {
            // A feed given as a relative file path is read beside the config file.
            if !f.source.contains("://") {
                let mut p = PathBuf::from(&f.source);
                at(&mut p);
                f.source = p.display().to_string();
            }
        }
        for t in self.notify.values_mut() {
            if let Some(f) = &mut t.file {
                at(f);
            }
        }
    }
}
