//! Sending one request: the HTTP client, timeouts, the `Idempotency-Key` header, a bounded
//! answer body, and retries of transient failures with exponential backoff and jitter that
//! honour `Retry-After`. It never retries what the service refused for a reason retrying cannot
//! fix (4xx other than 408, 425 and 429), and never follows a redirect.

use super::Http;
use super::config::Auth;
use crate::{ActionError, ErrorKind};
use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

/// Largest response body read.
const MAX_RESPONSE: usize = 16 << 20;

impl Http {
    pub(super) fn transport_error(
        &self,
        method: &str,
        what: &str,
        e: &reqwest::Error,
    ) -> ActionError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        let message = if e.is_timeout() {
            format!(
                "{method} {what} timed out after {}",
                humantime::format_duration(self.settings.timeout)
            )
        } else {
            format!("{method} {what} failed: {detail}")
        };
        let kind = if e.is_builder() {
            ErrorKind::Permanent
        } else {
            ErrorKind::Transient
        };
        self.fail(kind, message)
    }

    pub(super) async fn read_body(
        &self,
        mut resp: reqwest::Response,
    ) -> Result<Value, ActionError> {
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_RESPONSE {
                        return Err(self.fail(
                            ErrorKind::Permanent,
                            format!("the answer is larger than {MAX_RESPONSE} bytes"),
                        ));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error("reading", "the answer", &e)),
            }
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&buf)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&buf).into_owned())))
    }

    /// Sends one request, retrying transient failures. Answers 2xx and 404 with the status and
    /// body; other statuses are errors.
    pub(super) async fn send(
        &self,
        method: &Method,
        url: Url,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), ActionError> {
        self.check_host(&url)?;
        let what = url.path().to_owned();
        let mut attempt: u32 = 0;
        let mut reauthorized = false;
        loop {
            attempt += 1;
            let mut rb = self
                .client
                .request(method.clone(), url.clone())
                .timeout(self.settings.timeout)
                .header("accept", "application/json");
            if !query.is_empty() {
                rb = rb.query(query);
            }
            for (k, v) in headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            if let Some(k) = idempotency_key {
                rb = rb.header("idempotency-key", k);
            }
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let outcome: Result<std::convert::Infallible, (ActionError, Option<Duration>)> =
                match self.auth_header().await {
                    Err(e) => Err((e, None)),
                    Ok(auth) => {
                        if let Some((k, v)) = auth {
                            rb = rb.header(k.as_str(), v.as_str());
                        }
                        match rb.send().await {
                            Err(e) => Err((self.transport_error(method.as_str(), &what, &e), None)),
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                let retry_after = resp
                                    .headers()
                                    .get(reqwest::header::RETRY_AFTER)
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.trim().parse::<u64>().ok())
                                    .map(Duration::from_secs);
                                let body = self.read_body(resp).await;
                                match body {
                                    Err(e) => Err((e, None)),
                                    Ok(b) if (200..300).contains(&status) || status == 404 => {
                                        return Ok((status, b));
                                    }
                                    Ok(b) => {
                                        if status == 401
                                            && !reauthorized
                                            && matches!(self.settings.auth, Auth::OAuth2 { .. })
                                        {
                                            // The cached token may have been revoked: fetch a new one once.
                                            reauthorized = true;
                                            *self.token.lock().await = None;
                                            attempt -= 1;
                                            continue;
                                        }
                                        let kind = if retryable(status) {
                                            ErrorKind::Transient
                                        } else {
                                            ErrorKind::Permanent
                                        };
                                        let reason = reqwest::StatusCode::from_u16(status)
                                            .ok()
                                            .and_then(|s| s.canonical_reason())
                                            .unwrap_or("");
                                        Err((
                                        self.fail(
                                            kind,
                                            format!(
                                                "{method} {what} answered {status} {reason}: {}",
                                                message_of(&b)
                                            ),
                                        ),
                                        retry_after,
                                    ))
                                    }
                                }
                            }
                        }
                    }
                };
            let Err((e, retry_after)) = outcome;
            if e.kind == ErrorKind::Permanent || attempt > self.settings.retries {
                let mut e = e;
                if attempt > 1 {
                    e.message = format!("{} (after {attempt} attempts)", e.message);
                }
                return Err(e);
            }
            let backoff = self
                .settings
                .backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(self.settings.max_backoff);
            let wait = match retry_after {
                Some(ra) if ra > self.settings.max_backoff => {
                    return Err(self.fail(
                        ErrorKind::Transient,
                        format!(
                            "{} (the service asks to retry after {}s, longer than max_backoff)",
                            e.message.trim_start_matches(&format!("{}: ", self.name)),
                            ra.as_secs()
                        ),
                    ));
                }
                Some(ra) => ra.max(backoff / 2),
                // Full jitter on the upper half, so retrying clients spread out.
                None => backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0),
            };
            tracing::warn!(
                target: "belay::connector",
                "{}",
                format!(
                    "{} (attempt {attempt} of {}); retrying in {}ms",
                    e.message,
                    self.settings.retries + 1,
                    wait.as_millis()
                )
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Statuses worth retrying.
pub(super) fn retryable(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// The service's own message in an error body.
pub(super) fn message_of(body: &Value) -> String {
    let text = match body {
        Value::Object(m) => ["message", "error_description", "detail", "error", "title"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| body.to_string()),
        Value::String(s) => s.clone(),
        Value::Null => "(empty answer)".into(),
        other => other.to_string(),
    };
    let mut t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    t
}

/// An HTTP client builder for connectors: rustls with the process's one crypto provider (ring),
/// no redirects followed, belay's user agent.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    // A second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("belay/", env!("CARGO_PKG_VERSION")))
}
