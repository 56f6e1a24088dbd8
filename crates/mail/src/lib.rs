//! E-mail ingest: a reported message becomes observables and a `phishing.reported` event.
//!
//! - [`parse`] / [`parse_with`]: one raw RFC 5322 message → [`ParsedMessage`] (decoded headers,
//!   addresses, Received chain and originating IP, bodies, URLs with their flags, attachments
//!   with SHA-256). Never panics; only input that is not a message is an error.
//! - [`to_event`]: the `phishing.reported` event of a reported message, with a suspicion score.
//! - [`Email`]: the connector serving the `email.parse` action.
//! - [`batch`]: fetched messages to events, for every command that ingests them.
//! - [`source`]: reading reported messages from `.eml` files, a maildir or an IMAP folder.
//!
//! This crate never resolves a name or fetches a URL it finds: messages are hostile input.

pub mod batch;
mod connector;
pub mod links;
mod message;
pub mod qp;
pub mod received;
mod report;
pub mod source;

pub use connector::Email;
pub use links::{Link, LinkSource};
pub use message::{
    Attachment, Authentication, Budget, MAX_MESSAGE_BYTES, ParseError, ParseOptions, ParsedMessage,
    parse, parse_with,
};
pub use report::{EVENT_KIND, Suspicion, event_id, message_field, severity, suspicion, to_event};
