//! `belay tokens create|list|revoke`: API tokens for `belay serve`. A token is printed once,
//! alone on standard output, and stored only as its SHA-256.
//!
//! Glue only: the token's text and hash come from `belay_server::auth`.

use super::users::local_actor;
use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result, anyhow};
use belay_model::ms_to_rfc3339;
use belay_server::auth::parse_roles;
use clap::Subcommand;
use std::process::ExitCode;

/// `belay tokens …`.
#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a token acting as NAME with these roles; prints only the token.
    Create {
        /// The principal the token acts as (recorded as the actor of what it does).
        name: String,
        /// Its roles, comma-separated: viewer, responder, author, admin.
        #[arg(long, value_name = "R,…")]
        roles: String,
        /// How long it works, e.g. `30d`, `12h` (default: until revoked).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Every token (never its text): id, principal, roles, expiry, last use, revocation.
    List {
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The token's id (`belay tokens list`).
        id: String,
    },
}

/// Runs `belay tokens …`.
pub async fn run(ctx: &Ctx, command: TokensCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match command {
        TokensCommand::Create {
            name,
            roles,
            expires,
        } => {
            crate::actor::valid_actor(&name)
                .map_err(|_| anyhow!("a principal name has 1 to 128 printable characters"))?;
            let roles = parse_roles(&roles).map_err(|e| anyhow!(e))?;
            let now = belay_model::now_ms();
            let expires_at = expires
                .map(|e| {
                    belay_model::parse_duration(&e)
                        .with_context(|| format!("--expires `{e}` is not a duration like 30d"))
                        .map(|d| now + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
                })
                .transpose()?;
            let (text, token) = belay_server::principals::create_token(
                &*store,
                &name,
                &roles,
                expires_at,
                &local_actor(),
            )
            .await?;
            eprintln!(
                "token {} for {} ({}){}; it is shown only now",
                token.id,
                token.principal,
                token.roles.join(","),
                token
                    .expires_at
                    .map(|e| format!(", expires {}", ms_to_rfc3339(e)))
                    .unwrap_or_default()
            );
            println!("{text}");
        }
        TokensCommand::List { format } => {
            let tokens = store.tokens().await?;
            if format == Format::Json {
                print_json(&tokens)?;
            } else if tokens.is_empty() {
                println!("no tokens");
            } else {
                let when = |t: Option<i64>| t.map(ms_to_rfc3339).unwrap_or_else(|| "-".into());
                println!(
                    "{:<22} {:<20} {:<26} {:<24} {:<24} REVOKED",
                    "ID", "PRINCIPAL", "ROLES", "EXPIRES", "LAST USED"
                );
                for t in tokens {
                    println!(
                        "{:<22} {:<20} {:<26} {:<24} {:<24} {}",
                        t.id,
                        t.principal,
                        t.roles.join(","),
                        when(t.expires_at),
                        when(t.last_used_at),
                        when(t.revoked_at)
                    );
                }
            }
        }
        TokensCommand::Revoke { id } => {
            if let Err(e) =
                belay_server::principals::revoke_token(&*store, &id, &local_actor()).await
            {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
