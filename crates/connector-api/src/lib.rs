//! The connector interface: what the engine calls and what every connector implements.
//!
//! A [`Connector`] implements the actions of one family (`blocklist.*`, `core.*`...). The engine
//! calls a change action only after its journal entry is durable, and passes the change's
//! idempotency key: a connector must treat a repeated key as already done (re-issuing a change
//! whose outcome was lost in a crash must not apply it twice). Connectors never write the
//! journal, never decide trust, and never log secrets.
//!
//! This crate owns the trait, [`Call`], [`ActionError`], the [`Registry`] and the built-in
//! [`Core`] connector. It must never depend on a transport or a system component (no HTTP
//! client, no nftables, no process or syscall crates): those live in `belay-connectors`, so
//! that the engine and the ingest crates build without them.

mod connector;
mod core;
mod error;
mod registry;

pub use connector::{Call, Connector, input_str};
pub use core::Core;
pub use error::{ActionError, ErrorKind};
pub use registry::Registry;

/// What [`connector!`] expands to names; not part of the interface.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use serde_json::Value;
}
