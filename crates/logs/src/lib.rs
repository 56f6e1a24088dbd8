//! Logs in, typed events out: syslog (RFC 5424 / RFC 3164) and CEF parsing, RFC 6587 TCP
//! framing, a bounded UDP/TCP listener, and normalizers that turn known lines into belay events
//! (`auth.privilege_change`, `network.new_device`, `dlp.alert`, `ids.alert`).
//!
//! This crate owns parsing and the sockets; it never stores events or decides what to do with
//! them (the engine does, through the sink the listener feeds). Unknown lines are never dropped:
//! they become generic events with the original text in `data.raw`.

pub mod cef;
pub mod framing;
pub mod listener;
pub mod normalize;
pub mod syslog;

pub use listener::{Batch, Listener, ListenerConfig, Stats, StatsSnapshot};
pub use normalize::{Context, Normalized, Normalizer};
