//! Where reported messages come from: `.eml` files, a maildir, or an IMAP folder.
//!
//! A source hands out messages with [`Source::fetch`] and is told with [`Source::handled`] which
//! ones are done. The caller must call `handled` only after the events made from them are
//! durable (after the engine's `accept_batch` returned): a crash in between leaves the message
//! where it was, it is read again, and its event (whose id is the hash of its bytes) is
//! acknowledged as a duplicate instead of being run twice.
//!
//! - **Files** are read once and never changed.
//! - **Maildir**: messages in `new/` and `cur/` are read; a handled one is moved to the Maildir++
//!   subfolder `.<FOLDER>` (default `.Handled`) under `cur/` with the Seen flag (`:2,S`).
//! - **IMAP**: every message of the folder is fetched without marking it seen (`BODY.PEEK[]`);
//!   a handled one is moved to another folder with `UID MOVE`, or `UID COPY` + `\Deleted` +
//!   `EXPUNGE` when the server lacks MOVE. The destination folder is created if missing.

use crate::message::MAX_MESSAGE_BYTES;
use async_trait::async_trait;
use futures::TryStreamExt;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A failure to read or move messages.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading or moving a file (or connecting to the server) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path or address (`cannot read /path`).
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A bad configuration (URL, folder name, not a maildir) or a file too large to be a
    /// message; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// The IMAP server refused a command or the session failed.
    #[error("IMAP {context}: {message}")]
    Imap {
        /// The command or step (`login as USER`, `UID FETCH`...).
        context: String,
        /// The IMAP client's error, as text.
        message: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SourceError {
    let context = context.into();
    move |source| SourceError::Io { context, source }
}

fn imap(context: &str) -> impl FnOnce(async_imap::error::Error) -> SourceError + '_ {
    move |e| SourceError::Imap {
        context: context.to_owned(),
        message: e.to_string(),
    }
}

/// Every answer of an IMAP command that streams them (`context` names it in errors).
async fn all<T, S>(
    command: impl std::future::Future<Output = async_imap::error::Result<S>>,
    context: &str,
) -> Result<Vec<T>, SourceError>
where
    S: futures::Stream<Item = async_imap::error::Result<T>>,
{
    let answers = command.await.map_err(imap(context))?;
    answers.try_collect().await.map_err(imap(context))
}

/// One message read from a source.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The source's handle on it (a path, or an IMAP UID).
    pub id: String,
    /// Where it was read, for events and messages (`maildir:/path/new/123`, `imap://host/INBOX;UID=7`).
    pub origin: String,
    /// The message's bytes, as stored (at most [`MAX_MESSAGE_BYTES`]).
    pub raw: Vec<u8>,
}

/// A place reported messages are read from.
#[async_trait]
pub trait Source: Send {
    /// A short name, used as the events' `source` (`email:maildir:/srv/reports`).
    fn name(&self) -> String;
    /// The messages waiting now (at most `limit`), oldest first where the source knows.
    async fn fetch(&mut self, limit: usize) -> Result<Vec<Fetched>, SourceError>;
    /// Marks messages done (moves them away). Only call once their events are durable.
    async fn handled(&mut self, ids: &[String]) -> Result<(), SourceError>;
    /// Ends the session with the server, if any (best effort).
    async fn close(&mut self) {}
}

/// `.eml` files, read once.
pub struct Files {
    paths: Vec<PathBuf>,
    next: usize,
}

impl Files {
    /// The files, handed out in this order.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Files { paths, next: 0 }
    }
}

#[async_trait]
impl Source for Files {
    fn name(&self) -> String {
        "email:eml".into()
    }

    async fn fetch(&mut self, limit: usize) -> Result<Vec<Fetched>, SourceError> {
        let mut out = Vec::new();
        while self.next < self.paths.len() && out.len() < limit {
            let path = &self.paths[self.next];
            self.next += 1;
            let raw = read_message(path).await?;
            out.push(Fetched {
                id: path.display().to_string(),
                origin: format!("file:{}", path.display()),
                raw,
            });
        }
        Ok(out)
    }

    async fn handled(&mut self, _ids: &[String]) -> Result<(), SourceError> {
        Ok(())
    }
}

async fn read_message(path: &Path) -> Result<Vec<u8>, SourceError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(io(format!("cannot read {}", path.display())))?;
    if meta.len() > MAX_MESSAGE_BYTES as u64 {
        return Err(SourceError::Invalid(format!(
            "{} is {} bytes, more than the {MAX_MESSAGE_BYTES} accepted",
            path.display(),
            meta.len()
        )));
    }
    tokio::fs::read(path)
        .await
        .map_err(io(format!("cannot read {}", path.display())))
}

/// A maildir; handled messages go to a Maildir++ subfolder.
pub struct Maildir {
    dir: PathBuf,
    handled_dir: PathBuf,
}

impl Maildir {
    /// `folder` is the subfolder name without the leading dot (e.g. `Handled`).
    pub fn open(dir: &Path, folder: &str) -> Result<Self, SourceError> {
        if folder.is_empty() || folder.contains(['/', '\\']) || folder.starts_with('.') {
            return Err(SourceError::Invalid(format!(
                "the maildir folder for handled messages must be a plain name (like `Handled`), not `{folder}`"
            )));
        }
        for sub in ["cur", "new", "tmp"] {
            if !dir.join(sub).is_dir() {
                return Err(SourceError::Invalid(format!(
                    "{} is not a maildir: it has no {sub}/ directory",
                    dir.display()
                )));
            }
        }
        Ok(Maildir {
            dir: dir.to_owned(),
            handled_dir: dir.join(format!(".{folder}")),
        })
    }
}

#[async_trait]
impl Source for Maildir {
    fn name(&self) -> String {
        format!("email:maildir:{}", self.dir.display())
    }

    async fn fetch(&mut self, limit: usize) -> Result<Vec<Fetched>, SourceError> {
        let mut paths = Vec::new();
        for sub in ["new", "cur"] {
            let d = self.dir.join(sub);
            let mut rd = tokio::fs::read_dir(&d)
                .await
                .map_err(io(format!("cannot list {}", d.display())))?;
            while let Some(e) = rd
                .next_entry()
                .await
                .map_err(io(format!("cannot list {}", d.display())))?
            {
                let name = e.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                if e.file_type().await.is_ok_and(|t| t.is_file()) {
                    paths.push(e.path());
                }
            }
        }
        // Maildir names start with the delivery time: name order is (nearly) arrival order.
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        paths.truncate(limit);
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            match read_message(&p).await {
                Ok(raw) => out.push(Fetched {
                    id: p.display().to_string(),
                    origin: format!("maildir:{}", p.display()),
                    raw,
                }),
                // Gone meanwhile (another reader took it): not an error.
                Err(SourceError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn handled(&mut self, ids: &[String]) -> Result<(), SourceError> {
        for sub in ["cur", "new", "tmp"] {
            let d = self.handled_dir.join(sub);
            tokio::fs::create_dir_all(&d)
                .await
                .map_err(io(format!("cannot create {}", d.display())))?;
        }
        for id in ids {
            let from = PathBuf::from(id);
            let Some(name) = from.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            // Keep the unique part of the name; set the Seen flag.
            let base = name.split_once(":2,").map_or(name.as_str(), |(b, _)| b);
            let to = self.handled_dir.join("cur").join(format!("{base}:2,S"));
            tokio::fs::rename(&from, &to).await.map_err(io(format!(
                "cannot move {} to {}",
                from.display(),
                to.display()
            )))?;
        }
        Ok(())
    }
}

/// How to reach an IMAP server.
#[derive(Clone)]
pub struct ImapConfig {
    /// `imap://host[:port]` (plain TCP, port 143) or `imaps://host[:port]` (TLS, port 993).
    pub url: String,
    /// The login user name.
    pub user: String,
    /// The login password (plain `LOGIN`; redacted in `Debug`).
    pub password: String,
    /// The folder to read, e.g. `INBOX` or `Phish Reports`.
    pub folder: String,
    /// Where handled messages go.
    pub move_to: String,
}

impl fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("folder", &self.folder)
            .field("move_to", &self.move_to)
            .finish()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + fmt::Debug> Io for T {}
type Session = async_imap::Session<Box<dyn Io>>;

/// An IMAP folder. Connects on first use and reconnects after a failure.
pub struct Imap {
    config: ImapConfig,
    host: String,
    port: u16,
    tls: bool,
    session: Option<(Session, bool)>,
}

impl Imap {
    /// Checks the configuration (URL scheme and host, no credentials in the URL, folder names
    /// valid and distinct); connects only on first use.
    pub fn new(config: ImapConfig) -> Result<Self, SourceError> {
        let url = url::Url::parse(&config.url).map_err(|e| {
            SourceError::Invalid(format!("`{}` is not an IMAP URL: {e}", config.url))
        })?;
        let tls = match url.scheme() {
            "imap" => false,
            "imaps" => true,
            other => {
                return Err(SourceError::Invalid(format!(
                    "the IMAP URL must start with imap:// or imaps://, not {other}://"
                )));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SourceError::Invalid(
                "put no credentials in the IMAP URL: give the user with --user and the password in an environment variable".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| SourceError::Invalid(format!("`{}` names no host", config.url)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if tls { 993 } else { 143 });
        for (what, name) in [
            ("folder", &config.folder),
            ("move-to folder", &config.move_to),
        ] {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(SourceError::Invalid(format!(
                    "the IMAP {what} must be a non-empty name without control characters"
                )));
            }
        }
        if config.folder == config.move_to {
            return Err(SourceError::Invalid(
                "the folder to read and the folder to move handled messages to must differ".into(),
            ));
        }
        Ok(Imap {
            config,
            host,
            port,
            tls,
            session: None,
        })
    }

    async fn connect(&self) -> Result<(Session, bool), SourceError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(io(format!("cannot connect to {addr}")))?;
        let stream: Box<dyn Io> = if self.tls {
            Box::new(tls_connect(&self.host, tcp).await?)
        } else {
            Box::new(tcp)
        };
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(io(format!("no greeting from {addr}")))?
            .ok_or_else(|| SourceError::Imap {
                context: "greeting".into(),
                message: format!("{addr} closed the connection"),
            })?;
        let mut session = client
            .login(&self.config.user, &self.config.password)
            .await
            .map_err(|(e, _)| SourceError::Imap {
                context: format!("login as {}", self.config.user),
                message: e.to_string(),
            })?;
        let has_move = session
            .capabilities()
            .await
            .map_err(imap("CAPABILITY"))?
            .has_str("MOVE");
        // Create the destination; "already exists" is the usual answer and is fine.
        if let Err(e) = session.create(&self.config.move_to).await {
            tracing::debug!("IMAP CREATE {}: {e}", self.config.move_to);
        }
        Ok((session, has_move))
    }

    async fn session(&mut self) -> Result<&mut (Session, bool), SourceError> {
        if self.session.is_none() {
            self.session = Some(self.connect().await?);
        }
        self.session
            .as_mut()
            .ok_or_else(|| SourceError::Invalid("no IMAP session".into()))
    }

    async fn fetch_inner(&mut self, limit: usize) -> Result<Vec<Fetched>, SourceError> {
        let folder = self.config.folder.clone();
        let origin_base = format!(
            "{}://{}:{}/{}",
            if self.tls { "imaps" } else { "imap" },
            self.host,
            self.port,
            folder
        );
        let (session, _) = self.session().await?;
        session
            .select(&folder)
            .await
            .map_err(imap(&format!("SELECT {folder}")))?;
        let mut uids: Vec<u32> = session
            .uid_search("UNDELETED")
            .await
            .map_err(imap("UID SEARCH"))?
            .into_iter()
            .collect();
        uids.sort_unstable();
        uids.truncate(limit);
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(&uids);
        let fetches = all(
            session.uid_fetch(&set, "(UID RFC822.SIZE BODY.PEEK[])"),
            "UID FETCH",
        )
        .await?;
        let mut out = Vec::with_capacity(fetches.len());
        for f in fetches {
            let Some(uid) = f.uid else { continue };
            let Some(body) = f.body() else { continue };
            if body.len() > MAX_MESSAGE_BYTES {
                tracing::warn!(
                    "{origin_base};UID={uid}: {} bytes, too large: skipped",
                    body.len()
                );
                continue;
            }
            out.push(Fetched {
                id: uid.to_string(),
                origin: format!("{origin_base};UID={uid}"),
                raw: body.to_vec(),
            });
        }
        out.sort_by_key(|f| f.id.parse::<u32>().unwrap_or(u32::MAX));
        Ok(out)
    }

    async fn handled_inner(&mut self, ids: &[String]) -> Result<(), SourceError> {
        let mut uids = Vec::with_capacity(ids.len());
        for id in ids {
            uids.push(
                id.parse::<u32>()
                    .map_err(|_| SourceError::Invalid(format!("`{id}` is not an IMAP UID")))?,
            );
        }
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(&uids);
        let move_to = self.config.move_to.clone();
        let (session, has_move) = self.session().await?;
        if *has_move {
            session
                .uid_mv(&set, &move_to)
                .await
                .map_err(imap(&format!("UID MOVE to {move_to}")))?;
        } else {
            session
                .uid_copy(&set, &move_to)
                .await
                .map_err(imap(&format!("UID COPY to {move_to}")))?;
            all(
                session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)"),
                "UID STORE",
            )
            .await?;
            all(session.expunge(), "EXPUNGE").await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Source for Imap {
    fn name(&self) -> String {
        format!(
            "email:{}://{}:{}/{}",
            if self.tls { "imaps" } else { "imap" },
            self.host,
            self.port,
            self.config.folder
        )
    }

    async fn fetch(&mut self, limit: usize) -> Result<Vec<Fetched>, SourceError> {
        let r = self.fetch_inner(limit).await;
        if r.is_err() {
            self.session = None; // reconnect next time
        }
        r
    }

    async fn handled(&mut self, ids: &[String]) -> Result<(), SourceError> {
        let r = self.handled_inner(ids).await;
        if r.is_err() {
            self.session = None;
        }
        r
    }

    async fn close(&mut self) {
        if let Some((mut s, _)) = self.session.take() {
            let _ = s.logout().await;
        }
    }
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SourceError> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(SourceError::Invalid(
            "no trusted CA certificates found on this system (install ca-certificates)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Invalid(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
        SourceError::Invalid(format!("`{host}` is not a valid TLS server name: {e}"))
    })?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(io(format!("TLS handshake with {host}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn maildir_moves_handled_messages_to_the_handled_folder_as_seen() {
        let tmp = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(tmp.path().join(sub)).unwrap();
        }
        std::fs::write(tmp.path().join("new/1700000000.1.host"), b"Subject: a\n\nx").unwrap();
        std::fs::write(
            tmp.path().join("cur/1700000001.2.host:2,"),
            b"Subject: b\n\ny",
        )
        .unwrap();
        let mut md = Maildir::open(tmp.path(), "Handled").unwrap();
        let got = md.fetch(10).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].raw, b"Subject: a\n\nx");
        md.handled(&[got[0].id.clone()]).await.unwrap();
        assert!(
            tmp.path()
                .join(".Handled/cur/1700000000.1.host:2,S")
                .is_file()
        );
        let rest = md.fetch(10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].raw, b"Subject: b\n\ny");
    }

    #[test]
    fn a_directory_without_cur_new_tmp_is_not_a_maildir() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Maildir::open(tmp.path(), "Handled").err().unwrap();
        assert!(err.to_string().contains("is not a maildir"), "{err}");
    }

    #[test]
    fn imap_urls_are_checked() {
        let cfg = |url: &str| ImapConfig {
            url: url.into(),
            user: "u".into(),
            password: "p".into(),
            folder: "INBOX".into(),
            move_to: "Handled".into(),
        };
        assert!(Imap::new(cfg("imap://127.0.0.1:1143")).is_ok());
        assert!(Imap::new(cfg("imaps://mail.example.org")).is_ok_and(|i| i.port == 993));
        assert!(Imap::new(cfg("http://x")).is_err());
        assert!(Imap::new(cfg("imap://u:p@x")).is_err());
        assert!(format!("{:?}", cfg("imap://x")).contains("<redacted>"));
    }
}
