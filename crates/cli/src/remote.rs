//! `--server URL`: the commands with an API equivalent talk to a running `belay serve` instead
//! of opening the store, authenticated by the token in `BELAY_TOKEN`; the actor of every write
//! is that token's principal, so one set of people and roles governs both. A refusal from the
//! server is printed as its problem's detail (and the field at fault).

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The environment variable holding the API token.
pub const TOKEN_ENV: &str = "BELAY_TOKEN";

/// A running server and the token to present.
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Remote {
    /// A client of the server at `url` (`http://127.0.0.1:8080`), the token taken from
    /// `BELAY_TOKEN`.
    pub fn new(url: &str) -> Result<Remote> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server takes an http:// or https:// URL, not `{url}`");
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("belay/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(Remote { base, token, http })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let Some(token) = &self.token else {
            bail!(
                "--server needs an API token in {TOKEN_ENV} (create one with `belay tokens create NAME --roles R`)"
            );
        };
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token))
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<Value> {
        let resp = rb
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {}", self.base))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        Err(anyhow!(problem_text(status.as_u16(), &body)))
    }

    /// `GET path?query`: the JSON answer, or the server's problem as the error.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, path)?.query(query))
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, path)?.json(body))
            .await
    }

    /// `POST path` with an NDJSON body (one event per line).
    pub async fn post_ndjson(&self, path: &str, body: Vec<u8>) -> Result<Value> {
        self.send(
            self.request(reqwest::Method::POST, path)?
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body),
        )
        .await
    }
}

/// A refusal as people read it: the problem's detail and, for bad input, the field.
fn problem_text(status: u16, body: &Value) -> String {
    let detail = body["detail"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| match body {
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => format!("the server answered {status}"),
        });
    match body["field"].as_str() {
        Some(f) => format!("{detail} (field `{f}`)"),
        None => detail,
    }
}

/// Refuses `--as` beside `--server`: through a server the actor is the token's principal.
pub fn refuse_as(actor: &Option<String>) -> Result<()> {
    if actor.is_some() {
        bail!(
            "--as is for the local CLI only: through --server the actor is the principal of the token in {TOKEN_ENV}"
        );
    }
    Ok(())
}

/// The `--as` a local command needs (it names who acts when there is no server).
pub fn local_actor(actor: Option<String>, doing: &str) -> Result<String> {
    actor.ok_or_else(|| {
        anyhow!("give --as USER: who {doing} (or use --server URL with a token in {TOKEN_ENV})")
    })
}
