//! `notify.send`: messages to the people named by notification targets in the config
//! (`[notify.NAME]`): a webhook (JSON POST, e.g. a chat or pager integration) or a JSON-lines
//! file (a mail spool or a log shipper picks it up). Every attempt is kept in the target's
//! delivery log (`<dir>/<target>.jsonl`); a message sent again under the same idempotency key
//! is not delivered twice.

use crate::{ActionError, Call, input_str};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Mutex;

/// One notification target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// URL a JSON message is POSTed to.
    pub webhook: Option<String>,
    /// File a JSON line is appended to.
    pub file: Option<PathBuf>,
    /// Timeout of a webhook call (default 10s).
    pub timeout: Option<String>,
    /// A Slack-compatible chat API the message is posted to (`[notify.NAME.chat]`).
    pub chat: Option<crate::notify_chat::ChatTarget>,
}

/// The `notify` connector.
pub struct Notify {
    targets: BTreeMap<String, TargetConfig>,
    log_dir: PathBuf,
    client: Option<reqwest::Client>,
    /// Each target's delivery record, read from its log once and kept up to date after.
    logs: Mutex<HashMap<String, Record>>,
    /// Resolves chat targets' tokens.
    secrets: crate::SecretSource,
}

/// What a target's delivery log holds, in the form sends and state reads need.
#[derive(Default)]
struct Record {
    /// Idempotency keys of delivered messages.
    keys: HashSet<String>,
    messages: usize,
    delivered: usize,
    last: Option<Value>,
}

impl Record {
    fn add(&mut self, entry: &Value) {
        self.messages += 1;
        if entry["delivered"] == true {
            self.delivered += 1;
            if let Some(k) = entry["key"].as_str() {
                self.keys.insert(k.to_owned());
            }
        }
        self.last = Some(
            json!({ "subject": entry["subject"], "delivered": entry["delivered"], "at": entry["at"] }),
        );
    }
}

impl Notify {
    /// Targets by name; delivery logs in `log_dir`.
    pub fn new(targets: BTreeMap<String, TargetConfig>, log_dir: impl Into<PathBuf>) -> Notify {
        Notify {
            targets,
            log_dir: log_dir.into(),
            // Without a client no webhook can be reached; `send` says so.
            client: crate::http::client_builder().build().ok(),
            logs: Mutex::new(HashMap::new()),
            secrets: crate::SecretSource::env(),
        }
    }

    /// Resolves chat targets' tokens from `secrets` (default: the environment).
    pub fn with_secrets(mut self, secrets: crate::SecretSource) -> Notify {
        self.secrets = secrets;
        self
    }

    fn log_path(&self, target: &str) -> PathBuf {
        self.log_dir.join(format!("{target}.jsonl"))
    }

    fn read_log(&self, target: &str) -> Result<Record, ActionError> {
        let path = self.log_path(target);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Record::default()),
            Err(e) => {
                return Err(ActionError::transient(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let mut record = Record::default();
        for entry in std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        {
            record.add(&entry);
        }
        Ok(record)
    }

    /// The target's record, reading its log on first use.
    fn record<'a>(
        &self,
        logs: &'a mut HashMap<String, Record>,
        target: &str,
    ) -> Result<&'a mut Record, ActionError> {
        if !logs.contains_key(target) {
            logs.insert(target.to_owned(), self.read_log(target)?);
        }
        logs.get_mut(target)
            .ok_or_else(|| ActionError::permanent("delivery record missing"))
    }

    /// Appends one line to the target's delivery log and syncs it, on the blocking pool.
    async fn append_log(&self, target: &str, entry: &Value) -> Result<(), ActionError> {
        let (dir, path, entry) = (self.log_dir.clone(), self.log_path(target), entry.clone());
        crate::files::blocking(move || {
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    let mut f = std::fs::File::options()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    writeln!(f, "{entry}")?;
                    f.sync_data()
                })
                .map_err(|e| ActionError::transient(format!("cannot write the delivery log: {e}")))
        })
        .await
    }

    async fn deliver(&self, config: &TargetConfig, message: &Value) -> Result<(), ActionError> {
        if let Some(url) = &config.webhook {
            let timeout = match &config.timeout {
                Some(t) => belay_model::parse_duration(t)
                    .map_err(|e| ActionError::permanent(format!("bad timeout `{t}`: {e}")))?,
                None => Duration::from_secs(10),
            };
            let client = self
                .client
                .as_ref()
                .ok_or_else(|| ActionError::permanent("the HTTP client could not be built"))?;
            let resp = client
                .post(url)
                .timeout(timeout)
                .json(message)
                .send()
                .await
                // Never echo the URL: webhook URLs often carry their token.
                .map_err(|e| {
                    ActionError::transient(format!("webhook unreachable: {}", e.without_url()))
                })?;
            let status = resp.status();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(ActionError::transient(format!("webhook answered {status}")));
            }
            if !status.is_success() {
                return Err(ActionError::permanent(format!("webhook answered {status}")));
            }
        }
        if let Some(chat) = &config.chat {
            let client = crate::notify_chat::ChatClient::new(chat, &self.secrets)?;
            let text = match (message["subject"].as_str(), message["message"].as_str()) {
                (Some(s), Some(m)) => format!("{s}\n{m}"),
                (Some(t), None) | (None, Some(t)) => t.to_owned(),
                (None, None) => String::new(),
            };
            client.post(&chat.channel, &text, None).await?;
        }
        if let Some(path) = &config.file {
            let line = format!("{message}\n");
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                f.write_all(line.as_bytes())?;
                f.sync_data()
            })
            .await
            .map_err(|e| ActionError::transient(e.to_string()))?
            .map_err(|e| ActionError::transient(format!("cannot append the message: {e}")))?;
        }
        Ok(())
    }

    async fn send(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let target = input_str(call.input, "target")?;
        let config = self.targets.get(target).ok_or_else(|| {
            ActionError::permanent(format!(
                "unknown notification target `{target}` (configured: {})",
                self.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let key = call.idempotency_key.map(str::to_owned);
        // Held across the delivery: a second send under the same key waits and finds it done.
        let mut logs = self.logs.lock().await;
        let record = self.record(&mut logs, target)?;
        let message_id = belay_model::new_id();
        if let Some(k) = &key
            && record.keys.contains(k)
        {
            return Ok(json!({ "target": target, "delivered": true, "message_id": message_id }));
        }
        let message = json!({
            "id": message_id,
            "target": target,
            "subject": call.input["subject"],
            "message": call.input["message"],
            "severity": call.input.get("severity").cloned().unwrap_or(json!("medium")),
            "at": belay_model::ms_to_rfc3339(belay_model::now_ms()),
        });
        let result = self.deliver(config, &message).await;
        let mut entry = message.clone();
        entry["key"] = json!(key);
        entry["delivered"] = json!(result.is_ok());
        if let Err(e) = &result {
            entry["error"] = json!(e.message);
        }
        self.append_log(target, &entry).await?;
        record.add(&entry);
        result?;
        Ok(json!({ "target": target, "delivered": true, "message_id": message_id }))
    }
}

belay_connector_api::connector! {
    impl Notify {
        family: "notify",
        named: "the notify connector",
        call(notify, call) {
            "notify.send" => notify.send(call).await,
        }

        async fn read_state(&self, _action: &str, input: &Value) -> Result<Value, ActionError> {
            let target = input_str(input, "target")?;
            let mut logs = self.logs.lock().await;
            let r = self.record(&mut logs, target)?;
            Ok(json!({ "messages": r.messages, "delivered": r.delivered, "last": r.last }))
        }
    }
}
