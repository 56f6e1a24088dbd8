//! The host allow-list: which hosts (and ports) a connector may send requests to: its
//! `allow_hosts`, or by default the hosts of its base URL and OAuth2 token URL. Every request,
//! the token request included, is checked here first; a URL off the list is refused, never sent.

use super::Http;
use crate::{ActionError, ErrorKind};
use reqwest::Url;

pub(super) fn host_rule(h: &str) -> (String, Option<u16>) {
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host.to_ascii_lowercase(), Some(p)),
            Err(_) => (h.to_ascii_lowercase(), None),
        },
        _ => (
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            None,
        ),
    }
}

pub(super) fn url_host(u: &Url) -> String {
    u.host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl Http {
    pub(super) fn check_host(&self, url: &Url) -> Result<(), ActionError> {
        let host = url_host(url);
        let port = url.port_or_known_default();
        let allowed = matches!(url.scheme(), "http" | "https")
            && self
                .allow
                .iter()
                .any(|(h, p)| *h == host && (p.is_none() || *p == port));
        if allowed {
            Ok(())
        } else {
            Err(self.fail(
                ErrorKind::Permanent,
                format!(
                    "refused to call `{}://{host}`: the host is not in this connector's allow_hosts",
                    url.scheme()
                ),
            ))
        }
    }
}

/// The hosts a connector may call: `allow_hosts` when given (which must then cover every URL the
/// configuration implies: the base URL, the token URL), else the hosts of those URLs.
pub(super) fn allowed_hosts(
    allow_hosts: &[String],
    implied: &[Url],
) -> Result<Vec<(String, Option<u16>)>, String> {
    let mut allow: Vec<(String, Option<u16>)> = allow_hosts.iter().map(|h| host_rule(h)).collect();
    if allow.is_empty() {
        allow = implied
            .iter()
            .map(|u| (url_host(u), u.port_or_known_default()))
            .collect();
    } else {
        for u in implied {
            let host = url_host(u);
            let port = u.port_or_known_default();
            if !allow
                .iter()
                .any(|(h, p)| *h == host && (p.is_none() || *p == port))
            {
                return Err(format!(
                    "`{u}` is on host `{host}`, which is not in allow_hosts"
                ));
            }
        }
    }
    Ok(allow)
}
