//! The syslog listener: UDP datagrams and TCP streams in, normalized events out in batches.
//!
//! It owns sockets, framing and bounds; it never stores anything. Each TCP connection hands its
//! complete frames to the sink as one [`Batch`] and reads nothing more until the sink reports the
//! batch committed, so a connection's data is consumed only once it is durable. UDP has no
//! acknowledgement; its batches carry none.
//!
//! Bounds: messages longer than `max_message` are truncated to it and flagged (`data.truncated`,
//! counted); connections beyond `max_connections` are closed on accept (counted); a connection
//! idle for `idle_timeout` is closed; each connection is its own task, so one that never
//! finishes a frame holds no one else up.

use crate::framing::{Frame, Framer};
use crate::normalize::{Context, Normalizer};
use belay_model::Event;
use chrono::Utc;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where to receive UDP datagrams (one message each); none: no UDP socket.
    pub udp: Option<SocketAddr>,
    /// Where to accept TCP connections (RFC 6587 framing); none: no TCP socket.
    pub tcp: Option<SocketAddr>,
    /// Longest message kept; longer ones are truncated to it and flagged.
    pub max_message: usize,
    /// Most TCP connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// A TCP connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The events' `source`.
    pub source: String,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            udp: None,
            tcp: None,
            max_message: 64 * 1024,
            max_connections: 256,
            idle_timeout: Duration::from_secs(600),
            source: "syslog".into(),
        }
    }
}

/// Events to store together. `done` (TCP only) must be sent once they are durable; dropping it
/// instead tells the connection they were not, and the connection is closed.
pub struct Batch {
    /// The normalized events, in the order their messages arrived; never empty for TCP.
    pub events: Vec<Event>,
    /// The commit acknowledgement of a TCP connection's batch; none for UDP.
    pub done: Option<oneshot::Sender<()>>,
}

/// Running counters, shared with the sink (which fills the `stored`… fields).
#[derive(Debug, Default)]
pub struct Stats {
    /// UDP datagrams received, each one message.
    pub udp_messages: AtomicU64,
    /// Complete TCP frames received, each one message.
    pub tcp_messages: AtomicU64,
    /// Bytes of the messages received, as kept (after truncation).
    pub bytes: AtomicU64,
    /// Messages longer than `max_message`, cut to it.
    pub truncated: AtomicU64,
    /// Lines without a syslog header (kept as generic events), messages of NUL bytes (dropped,
    /// and logged) and empty messages (dropped).
    pub parse_errors: AtomicU64,
    /// Messages dropped as empty (also counted in `parse_errors`).
    pub empty: AtomicU64,
    /// Malformed TCP octet-count prefixes (the connection went on with newline framing).
    pub framing_errors: AtomicU64,
    /// TCP connections accepted.
    pub connections_accepted: AtomicU64,
    /// TCP connections closed on accept, `max_connections` being open.
    pub connections_refused: AtomicU64,
    /// TCP connections open now (a gauge, not a running total).
    pub connections_open: AtomicU64,
    /// TCP connections closed after `idle_timeout` without data.
    pub connections_idle_closed: AtomicU64,
    /// Events the sink stored as new.
    pub stored: AtomicU64,
    /// Events the sink found already stored (same event id).
    pub duplicates: AtomicU64,
    /// Events the sink failed to store (their TCP senders were not acknowledged).
    pub store_errors: AtomicU64,
    /// Playbook runs the sink started for stored events.
    pub runs_started: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// UDP datagrams received, each one message.
    pub udp_messages: u64,
    /// Complete TCP frames received, each one message.
    pub tcp_messages: u64,
    /// Bytes of the messages received, as kept (after truncation).
    pub bytes: u64,
    /// Messages longer than `max_message`, cut to it.
    pub truncated: u64,
    /// Lines without a syslog header (kept as generic events), messages of NUL bytes (dropped,
    /// and logged) and empty messages (dropped).
    pub parse_errors: u64,
    /// Messages dropped as empty (also counted in `parse_errors`).
    pub empty: u64,
    /// Malformed TCP octet-count prefixes (the connection went on with newline framing).
    pub framing_errors: u64,
    /// TCP connections accepted.
    pub connections_accepted: u64,
    /// TCP connections closed on accept, `max_connections` being open.
    pub connections_refused: u64,
    /// TCP connections open now (a gauge, not a running total).
    pub connections_open: u64,
    /// TCP connections closed after `idle_timeout` without data.
    pub connections_idle_closed: u64,
    /// Events the sink stored as new.
    pub stored: u64,
    /// Events the sink found already stored (same event id).
    pub duplicates: u64,
    /// Events the sink failed to store (their TCP senders were not acknowledged).
    pub store_errors: u64,
    /// Playbook runs the sink started for stored events.
    pub runs_started: u64,
}

impl Stats {
    /// Reads every counter (each atomically, not all at one instant).
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            udp_messages: self.udp_messages.load(Relaxed),
            tcp_messages: self.tcp_messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            parse_errors: self.parse_errors.load(Relaxed),
            empty: self.empty.load(Relaxed),
            framing_errors: self.framing_errors.load(Relaxed),
            connections_accepted: self.connections_accepted.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            connections_idle_closed: self.connections_idle_closed.load(Relaxed),
            stored: self.stored.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            store_errors: self.store_errors.load(Relaxed),
            runs_started: self.runs_started.load(Relaxed),
        }
    }
}

impl std::fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "messages: {} udp, {} tcp ({} bytes); stored {}, duplicate {}, store errors {}; \
             parse errors {}, empty {}, truncated {}, framing errors {}; connections: {} accepted, \
             {} refused, {} open, {} closed idle; runs started {}",
            self.udp_messages,
            self.tcp_messages,
            self.bytes,
            self.stored,
            self.duplicates,
            self.store_errors,
            self.parse_errors,
            self.empty,
            self.truncated,
            self.framing_errors,
            self.connections_accepted,
            self.connections_refused,
            self.connections_open,
            self.connections_idle_closed,
            self.runs_started
        )
    }
}

/// Bound sockets, ready to [`Listener::run`].
pub struct Listener {
    config: ListenerConfig,
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    stats: Arc<Stats>,
    normalizer: Normalizer,
}

/// Most datagrams or frames gathered into one batch.
const BATCH: usize = 256;
/// Largest UDP payload.
const UDP_MAX: usize = 65_535;

impl Listener {
    /// Binds the configured sockets.
    pub async fn bind(config: ListenerConfig, normalizer: Normalizer) -> std::io::Result<Listener> {
        let cannot_bind = |what: &'static str, a: SocketAddr| {
            move |e: std::io::Error| {
                std::io::Error::new(e.kind(), format!("cannot bind {what} {a}: {e}"))
            }
        };
        let udp = match config.udp {
            Some(a) => Some(UdpSocket::bind(a).await.map_err(cannot_bind("UDP", a))?),
            None => None,
        };
        let tcp = match config.tcp {
            Some(a) => Some(TcpListener::bind(a).await.map_err(cannot_bind("TCP", a))?),
            None => None,
        };
        Ok(Listener {
            config,
            udp,
            tcp,
            stats: Arc::new(Stats::default()),
            normalizer,
        })
    }

    /// The bound UDP and TCP addresses (useful with port 0).
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.udp.as_ref().and_then(|s| s.local_addr().ok()),
            self.tcp.as_ref().and_then(|s| s.local_addr().ok()),
        )
    }

    /// The counters, shared: keep a handle to read them while [`Listener::run`] owns the
    /// listener, and to let the sink fill `stored` and the other storage counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Receives until `shutdown` turns true, then lets connections hand over their complete
    /// frames and returns. Batches go to `sink`.
    pub async fn run(self, sink: mpsc::Sender<Batch>, shutdown: watch::Receiver<bool>) {
        let shared = Arc::new(Shared {
            config: self.config,
            stats: self.stats,
            normalizer: self.normalizer,
        });
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(udp) = self.udp {
            tasks.spawn(udp_loop(
                udp,
                shared.clone(),
                sink.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(tcp) = self.tcp {
            tasks.spawn(tcp_loop(
                tcp,
                shared.clone(),
                sink.clone(),
                shutdown.clone(),
            ));
        }
        drop(sink);
        while tasks.join_next().await.is_some() {}
    }
}

struct Shared {
    config: ListenerConfig,
    stats: Arc<Stats>,
    normalizer: Normalizer,
}

impl Shared {
    /// Normalizes one message, counting what went wrong.
    fn event(&self, bytes: &[u8], truncated: bool, peer: &str) -> Option<Event> {
        self.stats.bytes.fetch_add(bytes.len() as u64, Relaxed);
        if truncated {
            self.stats.truncated.fetch_add(1, Relaxed);
        }
        let ctx = Context {
            source: self.config.source.clone(),
            received: Utc::now(),
            peer: Some(peer.to_owned()),
            truncated,
        };
        match self.normalizer.line(bytes, &ctx) {
            Some(n) => {
                if n.parse_error.is_some() {
                    self.stats.parse_errors.fetch_add(1, Relaxed);
                }
                Some(n.event)
            }
            None => {
                self.stats.parse_errors.fetch_add(1, Relaxed);
                // A message of NUL bytes is not "empty": it is counted as a parse error only,
                // and said in the log, so a sender filling frames with zeros is seen.
                match crate::syslog::parse(bytes) {
                    Err(e @ crate::syslog::ParseError::OnlyNul(_)) => {
                        tracing::warn!("{peer}: message dropped: {e}");
                    }
                    _ => {
                        self.stats.empty.fetch_add(1, Relaxed);
                    }
                }
                None
            }
        }
    }
}

async fn udp_loop(
    socket: UdpSocket,
    shared: Arc<Shared>,
    sink: mpsc::Sender<Batch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; UDP_MAX];
    let max = shared.config.max_message;
    loop {
        let first = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.changed() => return,
        };
        let mut events = Vec::new();
        let mut next = first;
        loop {
            match next {
                Ok((n, peer)) => {
                    shared.stats.udp_messages.fetch_add(1, Relaxed);
                    let keep = n.min(max);
                    if let Some(e) = shared.event(&buf[..keep], n > max, &format!("udp:{peer}")) {
                        events.push(e);
                    }
                }
                Err(e) => tracing::warn!("UDP receive failed: {e}"),
            }
            if events.len() >= BATCH {
                break;
            }
            // Gather what is already waiting into the same batch.
            next = match socket.try_recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                other => other,
            };
        }
        if !events.is_empty() && sink.send(Batch { events, done: None }).await.is_err() {
            return;
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn tcp_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    sink: mpsc::Sender<Batch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.stats.connections_refused.fetch_add(1, Relaxed);
            drop(stream);
            continue;
        };
        shared.stats.connections_accepted.fetch_add(1, Relaxed);
        shared.stats.connections_open.fetch_add(1, Relaxed);
        let (shared, sink, shutdown) = (shared.clone(), sink.clone(), shutdown.clone());
        conns.spawn(async move {
            connection(stream, peer, &shared, sink, shutdown).await;
            shared.stats.connections_open.fetch_sub(1, Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    sink: mpsc::Sender<Batch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = format!("tcp:{peer}");
    let mut framer = Framer::new(shared.config.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    let mut frames: Vec<Frame> = Vec::new();
    let mut errors_seen = 0;
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(shared.config.idle_timeout, stream.read(&mut buf)) => r,
            _ = shutdown.changed() => break,
        };
        let eof = match read {
            Err(_) => {
                shared.stats.connections_idle_closed.fetch_add(1, Relaxed);
                break;
            }
            Ok(Err(_)) => true,
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => {
                framer.push(&buf[..n], &mut frames);
                false
            }
        };
        if eof {
            framer.finish(&mut frames);
        }
        let errors = framer.framing_errors();
        shared
            .stats
            .framing_errors
            .fetch_add(errors - errors_seen, Relaxed);
        errors_seen = errors;
        if !frames.is_empty() && !hand_over(&mut frames, shared, &peer, &sink).await {
            return;
        }
        if eof {
            return;
        }
    }
    // Shutdown or idle: complete frames were handed over; a partial one is the sender's to resend.
    let _ = hand_over(&mut frames, shared, &peer, &sink).await;
}

/// Sends the frames as one batch and waits for its commit. `false` if it was not committed.
async fn hand_over(
    frames: &mut Vec<Frame>,
    shared: &Shared,
    peer: &str,
    sink: &mpsc::Sender<Batch>,
) -> bool {
    let mut events = Vec::with_capacity(frames.len());
    for f in frames.drain(..) {
        shared.stats.tcp_messages.fetch_add(1, Relaxed);
        if let Some(e) = shared.event(&f.bytes, f.truncated, peer) {
            events.push(e);
        }
    }
    if events.is_empty() {
        return true;
    }
    let (tx, rx) = oneshot::channel();
    if sink
        .send(Batch {
            events,
            done: Some(tx),
        })
        .await
        .is_err()
    {
        return false;
    }
    rx.await.is_ok()
}
