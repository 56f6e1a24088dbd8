//! Credentials on requests: the `Authorization` (or API key) header for each kind of auth, and
//! the OAuth2 client-credentials token cache (fetched when missing or about to expire, dropped
//! when the service answers 401). A token is added to the redactor as soon as it is fetched; no
//! credential ever reaches an error, a log line or an output.

use super::Http;
use super::config::Auth;
use super::transport::{message_of, retryable};
use crate::secret::Secret;
use crate::{ActionError, ErrorKind};
use reqwest::Url;
use serde_json::Value;
use std::time::{Duration, Instant};

impl Http {
    pub(super) async fn auth_header(&self) -> Result<Option<(String, String)>, ActionError> {
        Ok(match &self.settings.auth {
            Auth::None => None,
            Auth::Bearer(t) => Some(("authorization".into(), format!("Bearer {}", t.expose()))),
            Auth::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", password.expose());
                Some((
                    "authorization".into(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ))
            }
            Auth::ApiKey { header, key } => Some((header.clone(), key.expose().to_owned())),
            Auth::OAuth2 { .. } => {
                let t = self.oauth_token().await?;
                Some(("authorization".into(), format!("Bearer {}", t.expose())))
            }
        })
    }

    /// A cached OAuth2 access token, fetched with the client credentials grant when missing
    /// or about to expire.
    pub(super) async fn oauth_token(&self) -> Result<Secret, ActionError> {
        let Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
        } = &self.settings.auth
        else {
            return Err(self.fail(ErrorKind::Permanent, "not an OAuth2 connector".into()));
        };
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let url = Url::parse(token_url)
            .map_err(|e| self.fail(ErrorKind::Permanent, format!("token_url is not a URL: {e}")))?;
        self.check_host(&url)?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.as_str()));
        }
        let resp = self
            .client
            .post(url)
            .timeout(self.settings.timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_error("POST", "the OAuth2 token URL", &e))?;
        let status = resp.status();
        let body = self.read_body(resp).await?;
        if !status.is_success() {
            let kind = if retryable(status.as_u16()) {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            };
            return Err(self.fail(
                kind,
                format!(
                    "the OAuth2 token URL answered {status}: {}",
                    message_of(&body)
                ),
            ));
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.fail(
                    ErrorKind::Permanent,
                    "the OAuth2 token answer has no access_token".into(),
                )
            })?;
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        // Renew a little early, so a token does not expire in flight.
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(1));
        self.redactor
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(token);
        let secret = Secret::new(token);
        *cached = Some((secret.clone(), until));
        Ok(secret)
    }
}
