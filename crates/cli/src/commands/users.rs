//! `belay users add|passwd|disable|list`: the people stored in the directory of principals.
//! With `[[users]]` of belay.toml they form one directory (a stored user replaces a
//! configured one of the same name).
//!
//! Glue only: hashing is `belay_server::auth`, storing and auditing the store's.

use crate::context::Ctx;
use crate::output::{Format, print_json};
use anyhow::{Context, Result, anyhow, bail};
use belay_server::auth::{hash_password, parse_roles};
use clap::Subcommand;
use std::io::Read;
use std::process::ExitCode;

/// `belay users …`.
#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a user (or replace the roles and password of a stored one).
    Add {
        /// The user's name.
        name: String,
        /// Their roles, comma-separated: viewer, responder, author, admin.
        #[arg(long, value_name = "R,…")]
        roles: String,
        /// Read the password from standard input (one line); without it the user has none.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password, read from standard input.
    Passwd {
        /// The user's name.
        name: String,
    },
    /// Disable a user: no sign-in, no decisions.
    Disable {
        /// The user's name.
        name: String,
    },
    /// Every user: stored ones and those of [[users]] in belay.toml.
    List {
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// Who is recorded as doing a directory change from the local CLI.
pub fn local_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

/// A password from standard input: the first line, without its line ending; at least 8
/// characters.
fn read_password() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the password from standard input")?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.chars().count() < belay_server::principals::MIN_PASSWORD {
        bail!(
            "the password must have at least {} characters",
            belay_server::principals::MIN_PASSWORD
        );
    }
    Ok(password)
}

fn valid_name(name: &str) -> Result<()> {
    crate::actor::valid_actor(name)
        .map_err(|_| anyhow!("a user name has 1 to 128 printable characters"))
}

/// Runs `belay users …`.
pub async fn run(ctx: &Ctx, command: UsersCommand) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let actor = local_actor();
    match command {
        UsersCommand::Add {
            name,
            roles,
            password_stdin,
        } => {
            valid_name(&name)?;
            let roles = parse_roles(&roles).map_err(|e| anyhow!(e))?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let (user, note) = belay_server::principals::save_user(
                &*store,
                &name,
                &roles,
                password.as_deref(),
                &actor,
            )
            .await?;
            println!("user {name} {note} with roles {}", user.roles.join(", "));
        }
        UsersCommand::Passwd { name } => {
            let mut user = store.get_user(&name).await?.ok_or_else(|| {
                anyhow!("no stored user `{name}` (add one with `belay users add`)")
            })?;
            user.password_hash =
                Some(hash_password(&read_password()?).map_err(|e| anyhow!("hashing: {e}"))?);
            (user.failed_logins, user.locked_until) = (0, None);
            store.put_user(&user, &actor, "password").await?;
            println!("password of {name} set");
        }
        UsersCommand::Disable { name } => {
            belay_server::principals::disable_user(&*store, &name, &actor).await?;
            println!("user {name} disabled");
        }
        UsersCommand::List { format } => {
            let stored = store.users().await?;
            let mut all: Vec<serde_json::Value> = stored
                .iter()
                .map(|u| {
                    serde_json::json!({ "name": u.name, "roles": u.roles, "disabled": u.disabled,
                        "password": u.password_hash.is_some(), "from": "store",
                        "locked_until": u.locked_until.map(belay_model::ms_to_rfc3339) })
                })
                .collect();
            for u in &ctx.config.users {
                if !stored
                    .iter()
                    .any(|s| belay_engine::approvals::same_user(&s.name, &u.name))
                {
                    all.push(serde_json::json!({ "name": u.name, "roles": u.roles,
                        "disabled": false, "password": false, "from": "config" }));
                }
            }
            if format == Format::Json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!("no users");
            } else {
                for u in &all {
                    let roles: Vec<&str> = u["roles"]
                        .as_array()
                        .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "{:<24} {:<28} {}{}",
                        u["name"].as_str().unwrap_or_default(),
                        roles.join(","),
                        u["from"].as_str().unwrap_or_default(),
                        if u["disabled"] == true {
                            " (disabled)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
