//! `belay demo`: the example playbooks end to end on a throw-away embedded store.
//! Needs nothing but the binary: the examples are compiled in.

use crate::Ctx;
use anyhow::{Context, Result};
use std::process::ExitCode;

pub async fn run(_ctx: &Ctx) -> Result<ExitCode> {
    anyhow::bail!("demo: not yet")
}
