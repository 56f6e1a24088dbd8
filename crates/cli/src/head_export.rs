//! Where signed audit heads go, outside the database: an append-only JSON lines file and a
//! syslog collector (RFC 5424 over UDP, or over TCP with octet-counted framing), and reading
//! back the last head a file holds.
//!
//! Delivery only: it never signs nor checks a head (`head_signing.rs` does).

use anyhow::{Context, Result, bail};
use belay_store::SignedHead;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A syslog collector's address and transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syslog {
    /// One datagram per head.
    Udp(String),
    /// One octet-counted frame per head (RFC 6587).
    Tcp(String),
}

impl Syslog {
    /// Reads `udp://HOST:PORT` or `tcp://HOST:PORT`.
    pub fn parse(target: &str) -> Result<Syslog> {
        let (scheme, addr) = target.split_once("://").with_context(|| {
            format!("syslog target `{target}` is not udp://HOST:PORT or tcp://HOST:PORT")
        })?;
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            bail!("syslog target `{target}` needs HOST:PORT");
        }
        match scheme {
            "udp" => Ok(Syslog::Udp(addr.to_owned())),
            "tcp" => Ok(Syslog::Tcp(addr.to_owned())),
            _ => bail!("syslog target `{target}`: the transport must be udp or tcp"),
        }
    }
}

/// Where each signed head is written.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// The JSON lines file.
    pub file: Option<PathBuf>,
    /// The syslog collector.
    pub syslog: Option<Syslog>,
}

impl Sinks {
    /// Writes `head` to every sink; the file is synced before this returns.
    pub async fn deliver(&self, head: &SignedHead) -> Result<()> {
        let line = head.to_line();
        let sinks = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(path) = &sinks.file {
                append_line(path, &line)?;
            }
            if let Some(target) = &sinks.syslog {
                send_syslog(target, &line)?;
            }
            Ok(())
        })
        .await
        .context("delivering the signed head")?
    }
}

/// Appends one line to `path` (created 0644 if missing) and syncs it.
fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open signed heads file {}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|_| f.sync_data())
        .with_context(|| format!("cannot append to signed heads file {}", path.display()))
}

/// This host's name for the syslog header, or the nil value.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "-".into())
}

/// The RFC 5424 message carrying one signed head (facility authpriv, severity notice).
pub fn syslog_message(line: &str) -> String {
    format!(
        "<85>1 {} {} belay {} audit-head - {line}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        hostname(),
        std::process::id()
    )
}

/// The first address a syslog target's `HOST:PORT` resolves to.
fn resolve(addr: &str) -> Result<std::net::SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve syslog target {addr}"))?
        .next()
        .with_context(|| format!("syslog target {addr} has no address"))
}

fn send_syslog(target: &Syslog, line: &str) -> Result<()> {
    let msg = syslog_message(line);
    match target {
        Syslog::Udp(addr) => {
            let to = resolve(addr)?;
            let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let sock = UdpSocket::bind(bind).context("cannot open a UDP socket for syslog")?;
            sock.send_to(msg.as_bytes(), to)
                .with_context(|| format!("cannot send the signed head to syslog udp://{addr}"))?;
        }
        Syslog::Tcp(addr) => {
            let to = resolve(addr)?;
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
                .with_context(|| format!("cannot connect to syslog tcp://{addr}"))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(format!("{} {msg}", msg.len()).as_bytes())
                .and_then(|_| s.flush())
                .with_context(|| format!("cannot send the signed head to syslog tcp://{addr}"))?;
        }
    }
    Ok(())
}

/// The last signed head in `path` (its last non-blank line), if the file exists and that line
/// reads as one.
pub fn last_in_file(path: &Path) -> Result<Option<SignedHead>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read signed heads file {}", path.display()));
        }
    };
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(8192)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)
        .with_context(|| format!("cannot read signed heads file {}", path.display()))?;
    let text = String::from_utf8_lossy(&tail);
    Ok(belay_store::head_signing::parse_lines(&text)
        .into_iter()
        .next_back()
        .and_then(|(_, h)| h.ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_targets_need_a_transport_and_an_address() {
        assert_eq!(
            Syslog::parse("udp://127.0.0.1:514").unwrap(),
            Syslog::Udp("127.0.0.1:514".into())
        );
        assert_eq!(
            Syslog::parse("tcp://[::1]:601").unwrap(),
            Syslog::Tcp("[::1]:601".into())
        );
        for bad in ["127.0.0.1:514", "http://h:1", "udp://h", "udp://:5"] {
            assert!(Syslog::parse(bad).is_err(), "{bad}");
        }
    }
}
