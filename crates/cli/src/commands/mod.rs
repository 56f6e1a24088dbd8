//! One module per `belay` command: each owns its clap arguments (an `Args` struct, or a
//! `…Command` enum for a command with subcommands) and its handler, `run`.
//!
//! A new verb goes here as `commands/<verb>.rs`, plus one variant in `main.rs`'s `Command`.
//! Handlers are glue: the logic they call lives in the library crates, never here.

pub mod actions;
pub mod approvals;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod cases;
pub mod changes;
pub mod checkpoint;
pub mod demo;
pub mod email;
pub mod events;
pub mod guardrails;
pub mod guide;
pub mod ingest;
pub mod intel;
pub mod lab;
pub mod lint;
pub mod logs;
pub mod pause;
pub mod reapply;
pub mod replay;
pub mod rollback;
pub mod run;
pub mod runs;
pub mod secrets;
pub mod serve;
pub mod test;
pub mod tokens;
pub mod trust;
pub mod users;
