//! Where feeds come from: files, HTTP(S) URLs and TAXII 2.1 collections.
//!
//! Credentials may be given in a URL's user-info (`https://user:pass@host/...`) or, for TAXII,
//! in `BELAY_TAXII_USER`/`BELAY_TAXII_PASSWORD`; they are sent as HTTP basic authentication and
//! never appear in messages, events or the store (see [`display_source`]).

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest body read from a file or URL (1 GiB).
pub const MAX_BODY: u64 = 1 << 30;
/// Most TAXII pages read in one import.
pub const MAX_TAXII_PAGES: usize = 100_000;
/// Objects asked for per TAXII page (servers may return fewer).
pub const TAXII_PAGE_LIMIT: usize = 1000;
const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";

/// A parsed SOURCE argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    File(PathBuf),
    Http(url::Url),
    /// A TAXII 2.1 collection URL (`.../collections/ID/`), with the scheme made plain HTTP(S).
    Taxii(url::Url),
}

impl Source {
    /// Reads a SOURCE argument.
    pub fn parse(text: &str) -> Result<Source> {
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("taxii+http://") || lower.starts_with("taxii+https://") {
            let mut u = url::Url::parse(&text["taxii+".len()..])
                .with_context(|| format!("`{}` is not a valid TAXII URL", redact(text)))?;
            if !u.path().contains("/collections/") {
                bail!(
                    "a TAXII source names a collection: taxii+http://HOST/API-ROOT/collections/ID/ (got `{}`)",
                    redact(text)
                );
            }
            if !u.path().ends_with('/') {
                let p = format!("{}/", u.path());
                u.set_path(&p);
            }
            return Ok(Source::Taxii(u));
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let u = url::Url::parse(text)
                .with_context(|| format!("`{}` is not a valid URL", redact(text)))?;
            return Ok(Source::Http(u));
        }
        Ok(Source::File(PathBuf::from(text)))
    }

    /// The name used to guess the format (file name or URL path).
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Http(u) | Source::Taxii(u) => u.path().to_owned(),
        }
    }
}

/// A source as it may be shown and stored: without user-info secrets.
pub fn display_source(source: &Source) -> String {
    match source {
        // Absolute when the file exists, so `intel stats` says where a feed came from.
        Source::File(p) => std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string(),
        Source::Http(u) => strip_credentials(u).to_string(),
        Source::Taxii(u) => format!("taxii+{}", strip_credentials(u)),
    }
}

fn strip_credentials(u: &url::Url) -> url::Url {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u
}

fn redact(text: &str) -> String {
    match url::Url::parse(text.trim_start_matches("taxii+")) {
        Ok(u) => strip_credentials(&u).to_string(),
        Err(_) => text.chars().take(200).collect(),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .timeout_connect(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .user_agent(concat!("belay/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `Basic ...` for the URL's user-info, else for the given fallback credentials.
fn basic_auth(u: &url::Url, fallback: Option<(String, String)>) -> Option<String> {
    let creds = if !u.username().is_empty() {
        let user = percent_decode(u.username());
        let pass = percent_decode(u.password().unwrap_or(""));
        Some((user, pass))
    } else {
        fallback
    };
    creds.map(|(user, pass)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// GETs a URL; returns the body and the response headers it needs.
fn get(
    u: &url::Url,
    accept: Option<&str>,
    auth: Option<&str>,
    on_bytes: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(Vec<u8>, Option<String>)> {
    let shown = strip_credentials(u);
    let mut req = agent().get(shown.as_str());
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.call().with_context(|| format!("GET {shown}"))?;
    let status = resp.status();
    let added_last = resp
        .headers()
        .get("X-TAXII-Date-Added-Last")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let length = resp
        .headers()
        .get("Content-Length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = Vec::new();
    {
        use std::io::Read;
        let mut reader = resp.body_mut().with_config().limit(MAX_BODY).reader();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .with_context(|| format!("reading the body of {shown}"))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
            on_bytes(body.len() as u64, length);
        }
    }
    if !status.is_success() {
        let snippet: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        bail!("GET {shown}: HTTP {status}: {}", snippet.trim());
    }
    Ok((body, added_last))
}

/// Reads a file or HTTP(S) source whole.
pub fn read(source: &Source, on_bytes: &mut dyn FnMut(u64, Option<u64>)) -> Result<Vec<u8>> {
    match source {
        Source::File(p) => read_file(p),
        Source::Http(u) => Ok(get(u, None, basic_auth(u, None).as_deref(), on_bytes)?.0),
        Source::Taxii(_) => Err(anyhow!("a TAXII collection is read page by page")),
    }
}

fn read_file(p: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    if meta.len() > MAX_BODY {
        bail!(
            "{} is {} bytes; feeds larger than {MAX_BODY} bytes are refused",
            p.display(),
            meta.len()
        );
    }
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

/// Reads `name` beside a source (a MISP event next to its manifest). `name` must be a
/// plain file name.
pub fn read_sibling(source: &Source, name: &str) -> Result<Vec<u8>> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("`{name}` is not a plain file name");
    }
    match source {
        Source::File(p) => {
            let dir = if p.is_dir() {
                p.clone()
            } else {
                p.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            read_file(&dir.join(name))
        }
        Source::Http(u) => {
            let sibling = u.join(name).with_context(|| {
                format!("cannot resolve {name} beside {}", strip_credentials(u))
            })?;
            Ok(get(
                &sibling,
                None,
                basic_auth(u, None).as_deref(),
                &mut |_, _| {},
            )?
            .0)
        }
        Source::Taxii(_) => bail!("a TAXII collection has no sibling files"),
    }
}

/// What a TAXII read did.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaxiiStats {
    pub pages: usize,
    pub objects: usize,
}

/// Reads every object of a TAXII 2.1 collection, page by page, handing each envelope to
/// `page`. Follows `next` when the server gives one, else `added_after` from the
/// `X-TAXII-Date-Added-Last` header, until `more` is false.
pub fn taxii(
    collection: &url::Url,
    page: &mut dyn FnMut(&Value) -> Result<()>,
) -> Result<TaxiiStats> {
    let env_creds = match (
        std::env::var("BELAY_TAXII_USER"),
        std::env::var("BELAY_TAXII_PASSWORD"),
    ) {
        (Ok(u), Ok(p)) => Some((u, p)),
        _ => None,
    };
    let auth = basic_auth(collection, env_creds);
    let mut objects_url = collection
        .join("objects/")
        .context("cannot build the objects URL")?;
    // The collection URL's own query (e.g. `added_after=...`, `match[type]=...`) is kept.
    objects_url.set_query(collection.query());
    let base_pairs: Vec<(String, String)> = objects_url
        .query_pairs()
        .filter(|(k, _)| k != "limit" && k != "next")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut stats = TaxiiStats::default();
    let mut next: Option<String> = None;
    let mut added_after: Option<String> = None;
    loop {
        if stats.pages >= MAX_TAXII_PAGES {
            bail!("the TAXII server kept saying `more` after {MAX_TAXII_PAGES} pages");
        }
        let mut u = objects_url.clone();
        {
            let mut q = u.query_pairs_mut();
            q.clear();
            for (k, v) in &base_pairs {
                if added_after.is_some() && k == "added_after" {
                    continue;
                }
                q.append_pair(k, v);
            }
            q.append_pair("limit", &TAXII_PAGE_LIMIT.to_string());
            if let Some(n) = &next {
                q.append_pair("next", n);
            } else if let Some(a) = &added_after {
                q.append_pair("added_after", a);
            }
        }
        let (body, added_last) = get(&u, Some(TAXII_MEDIA_TYPE), auth.as_deref(), &mut |_, _| {})?;
        let envelope: Value = serde_json::from_slice(&body).with_context(|| {
            format!(
                "the TAXII server's answer to {} is not JSON",
                strip_credentials(&u)
            )
        })?;
        if !envelope.is_object() {
            bail!("the TAXII server's answer is not an envelope object");
        }
        stats.pages += 1;
        stats.objects += envelope
            .get("objects")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        page(&envelope)?;
        let more = envelope.get("more").and_then(Value::as_bool) == Some(true);
        if !more {
            break;
        }
        if let Some(n) = envelope.get("next").and_then(Value::as_str) {
            next = Some(n.to_owned());
            continue;
        }
        next = None;
        match added_last {
            Some(last) if added_after.as_deref() != Some(last.as_str()) => added_after = Some(last),
            _ => bail!(
                "the TAXII server says there is more but gives neither `next` nor a new X-TAXII-Date-Added-Last"
            ),
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recognized_and_secrets_hidden() {
        let s = Source::parse("taxii+http://u:secret@127.0.0.1:5000/trustgroup1/collections/abc")
            .unwrap();
        match &s {
            Source::Taxii(u) => assert_eq!(u.path(), "/trustgroup1/collections/abc/"),
            other => panic!("{other:?}"),
        }
        assert!(!display_source(&s).contains("secret"));
        assert!(Source::parse("taxii+http://h/x").is_err());
        assert!(matches!(
            Source::parse("https://h/f.csv").unwrap(),
            Source::Http(_)
        ));
        assert!(matches!(
            Source::parse("feeds/a.txt").unwrap(),
            Source::File(_)
        ));
    }

    #[test]
    fn sibling_names_cannot_escape() {
        let s = Source::File(PathBuf::from("/tmp/manifest.json"));
        for bad in ["../x.json", "/etc/passwd", ".hidden", ""] {
            assert!(read_sibling(&s, bad).is_err(), "{bad}");
        }
    }
}
