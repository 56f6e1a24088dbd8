//! `[[sources]]` and `[[feeds]]` of `belay.toml`: their shape, and the check that turns them
//! into what the server starts. A bad entry is refused naming itself, the key and the reason.

use belay_intel::ImportOptions;
use belay_logs::ListenerConfig;
use belay_mail::source::ImapConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One event source (`[[sources]]`): a syslog/CEF listener, a mailbox polled over IMAP, or
/// a file of JSON lines tailed with a durable cursor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// Its name, unique among sources and feeds.
    pub name: String,
    /// `syslog`, `imap` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// syslog: UDP address to receive on (`HOST:PORT`).
    pub udp: Option<String>,
    /// syslog: TCP address to accept on (`HOST:PORT`).
    pub tcp: Option<String>,
    /// syslog: longest message kept, in bytes (default 65536).
    pub max_message: Option<usize>,
    /// syslog: TCP connections open at once (default 256).
    pub max_connections: Option<usize>,
    /// syslog: close a TCP connection silent this long (default `10m`).
    pub idle_timeout: Option<String>,
    /// imap: `imaps://host[:port]` or `imap://host[:port]`.
    pub url: Option<String>,
    /// imap: the login.
    pub user: Option<String>,
    /// imap: the password, `${{ secrets.NAME }}`.
    pub password: Option<String>,
    /// imap: the folder read (default `INBOX`).
    pub folder: Option<String>,
    /// imap: where handled messages go (default `Handled`).
    pub move_to: Option<String>,
    /// file: the JSON-lines file.
    pub path: Option<PathBuf>,
    /// imap and file: how often to look for more (default `30s` for imap, `1s` for file).
    pub poll: Option<String>,
}

/// One threat-intel feed imported on a schedule (`[[feeds]]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSection {
    /// The feed's name in the intel store (and its status).
    pub name: String,
    /// A file, an http(s) URL, or `taxii+https://HOST/API-ROOT/collections/ID/`.
    pub source: String,
    /// How often it is imported, e.g. `1h` (the first import runs at start).
    pub every: String,
    /// `plain`, `csv`, `ipset`, `hosts`, `stix`, `taxii`, `misp` (default: detected).
    pub format: Option<String>,
    /// Score weight (default 1).
    pub weight: Option<f64>,
    /// A listing stops counting this long after the feed last listed it, e.g. `7d`.
    pub expires: Option<String>,
    /// A listing counts half after this long without being listed again (default `30d`).
    pub half_life: Option<String>,
    /// Import networks of any width.
    #[serde(default)]
    pub allow_wide: bool,
}

/// A checked source, ready to start.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A syslog/CEF listener.
    Syslog {
        /// Its name.
        name: String,
        /// Its sockets and bounds.
        config: ListenerConfig,
    },
    /// A mailbox of reported messages.
    Imap {
        /// Its name.
        name: String,
        /// How to reach it.
        config: ImapConfig,
        /// How often it is read.
        poll: Duration,
    },
    /// A JSON-lines file tailed with a durable cursor.
    File {
        /// Its name.
        name: String,
        /// The file.
        path: PathBuf,
        /// How often it is read again from its cursor.
        poll: Duration,
    },
}

/// A checked feed, ready to schedule.
#[derive(Debug, Clone)]
pub struct FeedSpec {
    /// Its name.
    pub name: String,
    /// Where it is read.
    pub source: String,
    /// How often.
    pub every: Duration,
    /// How it is imported.
    pub options: ImportOptions,
}

/// Checks every source and feed. `secret` resolves a `${{ secrets.NAME }}` reference. The
/// error names the entry, the key and the reason.
pub fn check(
    sources: &[SourceSection],
    feeds: &[FeedSection],
    secret: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(Vec<SourceSpec>, Vec<FeedSpec>), String> {
    let mut names: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let at = format!("[[sources]] #{} (`{}`)", i + 1, s.name);
        check_name(&s.name, &names).map_err(|e| format!("{at}: `name`: {e}"))?;
        names.push(&s.name);
        out.push(check_source(s, secret).map_err(|e| format!("{at}: {e}"))?);
    }
    let mut feed_specs = Vec::new();
    for (i, f) in feeds.iter().enumerate() {
        let at = format!("[[feeds]] #{} (`{}`)", i + 1, f.name);
        check_name(&f.name, &names).map_err(|e| format!("{at}: `name`: {e}"))?;
        belay_intel::import::valid_feed_name(&f.name).map_err(|e| format!("{at}: `name`: {e}"))?;
        names.push(&f.name);
        feed_specs.push(check_feed(f).map_err(|e| format!("{at}: {e}"))?);
    }
    Ok((out, feed_specs))
}

fn check_name(name: &str, taken: &[&str]) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("1 to 64 letters, digits, `-`, `_` or `.`".into());
    }
    if taken.contains(&name) {
        return Err(format!("`{name}` names another source or feed"));
    }
    Ok(())
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    let d = belay_model::parse_duration(text)
        .map_err(|_| format!("`{key}`: `{text}` is not a duration like 30s, 10m or 1h"))?;
    if d.is_zero() {
        return Err(format!("`{key}`: must be longer than zero"));
    }
    Ok(d)
}

fn addr(key: &str, text: &Option<String>) -> Result<Option<SocketAddr>, String> {
    text.as_deref()
        .map(|t| {
            t.parse()
                .map_err(|_| format!("`{key}`: `{t}` is not an address like 127.0.0.1:514"))
        })
        .transpose()
}

/// The keys each type takes; any other key set is refused.
fn only(s: &SourceSection, allowed: &[&str]) -> Result<(), String> {
    let set: [(&str, bool); 13] = [
        ("udp", s.udp.is_some()),
        ("tcp", s.tcp.is_some()),
        ("max_message", s.max_message.is_some()),
        ("max_connections", s.max_connections.is_some()),
        ("idle_timeout", s.idle_timeout.is_some()),
        ("url", s.url.is_some()),
        ("user", s.user.is_some()),
        ("password", s.password.is_some()),
        ("folder", s.folder.is_some()),
        ("move_to", s.move_to.is_some()),
        ("path", s.path.is_some()),
        ("poll", s.poll.is_some()),
        ("type", true),
    ];
    for (key, given) in set {
        if given && key != "type" && !allowed.contains(&key) {
            return Err(format!("`{key}` does not apply to a `{}` source", s.kind));
        }
    }
    Ok(())
}

fn check_source(
    s: &SourceSection,
    secret: &dyn Fn(&str) -> Result<String, String>,
) -> Result<SourceSpec, String> {
    let name = s.name.clone();
    match s.kind.as_str() {
        "syslog" => {
            only(
                s,
                &[
                    "udp",
                    "tcp",
                    "max_message",
                    "max_connections",
                    "idle_timeout",
                ],
            )?;
            let udp = addr("udp", &s.udp)?;
            let tcp = addr("tcp", &s.tcp)?;
            if udp.is_none() && tcp.is_none() {
                return Err("`udp` or `tcp`: give at least one address".into());
            }
            let mut config = ListenerConfig {
                udp,
                tcp,
                source: format!("syslog:{name}"),
                ..Default::default()
            };
            if let Some(n) = s.max_message {
                if n == 0 || n > 64 << 20 {
                    return Err("`max_message`: between 1 byte and 64 MiB".into());
                }
                config.max_message = n;
            }
            if let Some(n) = s.max_connections {
                if n == 0 {
                    return Err("`max_connections`: at least 1".into());
                }
                config.max_connections = n;
            }
            if let Some(t) = &s.idle_timeout {
                config.idle_timeout = duration("idle_timeout", t)?;
            }
            Ok(SourceSpec::Syslog { name, config })
        }
        "imap" => {
            only(s, &["url", "user", "password", "folder", "move_to", "poll"])?;
            let url = s
                .url
                .clone()
                .ok_or("`url`: missing (imaps://HOST[:PORT])")?;
            let user = s.user.clone().ok_or("`user`: missing")?;
            let reference = s
                .password
                .as_deref()
                .ok_or("`password`: missing (`${{ secrets.NAME }}`)")?;
            let password = secret(reference).map_err(|e| format!("`password`: {e}"))?;
            let config = ImapConfig {
                url,
                user,
                password,
                folder: s.folder.clone().unwrap_or_else(|| "INBOX".into()),
                move_to: s.move_to.clone().unwrap_or_else(|| "Handled".into()),
            };
            // The URL and folders are checked now (no connection is made).
            belay_mail::source::Imap::new(config.clone()).map_err(|e| format!("`url`: {e}"))?;
            let poll = duration("poll", s.poll.as_deref().unwrap_or("30s"))?;
            Ok(SourceSpec::Imap { name, config, poll })
        }
        "file" => {
            only(s, &["path", "poll"])?;
            let path = s.path.clone().ok_or("`path`: missing")?;
            let poll = duration("poll", s.poll.as_deref().unwrap_or("1s"))?;
            Ok(SourceSpec::File { name, path, poll })
        }
        "" => Err("`type`: missing (`syslog`, `imap` or `file`)".into()),
        other => Err(format!(
            "`type`: `{other}` is not a source type (`syslog`, `imap` or `file`; threat-intel feeds are `[[feeds]]`)"
        )),
    }
}

fn check_feed(f: &FeedSection) -> Result<FeedSpec, String> {
    if f.source.trim().is_empty() {
        return Err("`source`: missing (a file, an http(s) URL or taxii+https://…)".into());
    }
    let every = duration("every", &f.every)?;
    let format = f
        .format
        .as_deref()
        .map(|n| {
            belay_intel::Format::parse(n).ok_or_else(|| {
                format!("`format`: `{n}` is not plain, csv, ipset, hosts, stix, taxii or misp")
            })
        })
        .transpose()?;
    if let Some(w) = f.weight
        && !(w.is_finite() && w > 0.0 && w <= belay_intel::MAX_WEIGHT)
    {
        return Err(format!(
            "`weight`: between 0 and {}",
            belay_intel::MAX_WEIGHT
        ));
    }
    let ms = |key: &str, t: &Option<String>| -> Result<Option<i64>, String> {
        t.as_deref()
            .map(|t| {
                duration(key, t).and_then(|d| {
                    i64::try_from(d.as_millis()).map_err(|_| format!("`{key}`: too long"))
                })
            })
            .transpose()
    };
    let options = ImportOptions {
        feed: f.name.clone(),
        format,
        weight: f.weight,
        expires_ms: ms("expires", &f.expires)?,
        half_life_ms: ms("half_life", &f.half_life)?,
        wide: belay_intel::WideLimit {
            allow_wide: f.allow_wide,
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(FeedSpec {
        name: f.name.clone(),
        source: f.source.clone(),
        every,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_secret(_: &str) -> Result<String, String> {
        Err("no secrets here".into())
    }

    #[test]
    fn a_bad_entry_is_refused_naming_it_the_key_and_the_reason() {
        let s = SourceSection {
            name: "fw".into(),
            kind: "syslog".into(),
            udp: Some("0.0.0.0:99999".into()),
            ..Default::default()
        };
        let e = check(&[s], &[], &no_secret).unwrap_err();
        assert!(
            e.contains("[[sources]] #1 (`fw`)") && e.contains("`udp`"),
            "{e}"
        );
        let s = SourceSection {
            name: "tail".into(),
            kind: "file".into(),
            path: Some("x.jsonl".into()),
            udp: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let e = check(&[s], &[], &no_secret).unwrap_err();
        assert!(e.contains("`udp` does not apply to a `file` source"), "{e}");
        let f = FeedSection {
            name: "abuse".into(),
            source: "feed.txt".into(),
            every: "soon".into(),
            ..Default::default()
        };
        let e = check(&[], &[f], &no_secret).unwrap_err();
        assert!(e.contains("[[feeds]] #1 (`abuse`): `every`"), "{e}");
        let s = SourceSection {
            name: "mail".into(),
            kind: "imap".into(),
            url: Some("imaps://mail.example.org".into()),
            user: Some("soc".into()),
            password: Some("${{ secrets.IMAP }}".into()),
            ..Default::default()
        };
        let e = check(&[s], &[], &no_secret).unwrap_err();
        assert!(e.contains("`password`: no secrets here"), "{e}");
    }
}
