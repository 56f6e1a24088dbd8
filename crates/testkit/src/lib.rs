//! What belay's tests share, so each test file says only what it checks: finding the test corpus
//! ([`corpus`]), running the `belay` binary and reading its output ([`cli`]), requests to a running
//! lab ([`lab`], behind the `lab` feature), servers started on loopback ([`net`]), and skipping
//! a test that needs what the repository does not ship ([`skip`]).
//!
//! This crate is a dev-dependency only and never depends on a belay crate, so any crate's tests
//! can use it without a dependency cycle (starting an in-process lab stays in the tests that
//! link `belay-lab`; this crate only talks to one by its URL and token). Its helpers panic
//! with what was expected and what was found: that is how a test fails.

pub mod cli;
pub mod corpus;
#[cfg(feature = "lab")]
pub mod lab;
pub mod net;
pub mod skip;

pub use corpus::{corpus, corpus_file, corpus_if_set};
