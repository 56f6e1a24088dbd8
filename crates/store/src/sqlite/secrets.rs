//! Sealed secrets on SQLite: writes through the writer (audited in its transaction), reads
//! through the reader connection.

use super::writer::{Entries, Op, Reply};
use super::{SqliteStore, db_err, unexpected};
use crate::Result;
use crate::secrets::{self, SealedSecret, Secrets};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::borrow::Cow;

/// A write to the secrets.
pub(super) enum SecretOp {
    Put {
        secret: SealedSecret,
        actor: String,
    },
    Delete {
        name: String,
        actor: String,
    },
    Reseal {
        secret: SealedSecret,
        from: SealedSecret,
    },
}

/// Applies one secret write inside the writer's transaction.
pub(super) fn apply<'a>(
    c: &Connection,
    op: &'a SecretOp,
    entries: &mut Entries<'a>,
) -> Result<Reply> {
    match op {
        SecretOp::Put { secret: s, actor } => {
            let replaced: bool = c
                .query_row("SELECT 1 FROM secrets WHERE name = ?1", [&s.name], |_| {
                    Ok(())
                })
                .optional()
                .map_err(db_err("setting a secret"))?
                .is_some();
            c.execute(
                "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET \
                 key_id = excluded.key_id, nonce = excluded.nonce, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                params![
                    s.name,
                    s.key_id,
                    s.nonce,
                    s.ciphertext,
                    s.created_at,
                    s.updated_at
                ],
            )
            .map_err(db_err("setting a secret"))?;
            entries.push(Cow::Owned(secrets::set(s, actor, replaced).prepare()));
            Ok(Reply::Flag(replaced))
        }
        SecretOp::Delete { name, actor } => {
            let n = c
                .execute("DELETE FROM secrets WHERE name = ?1", [name])
                .map_err(db_err("deleting a secret"))?;
            if n > 0 {
                entries.push(Cow::Owned(secrets::deleted(name, actor).prepare()));
            }
            Ok(Reply::Flag(n > 0))
        }
        SecretOp::Reseal { secret: s, from } => {
            let n = c
                .execute(
                    "UPDATE secrets SET key_id = ?2, nonce = ?3, ciphertext = ?4, rotated_at = ?5 \
                     WHERE name = ?1 AND key_id = ?6 AND ciphertext = ?7",
                    params![
                        s.name,
                        s.key_id,
                        s.nonce,
                        s.ciphertext,
                        s.rotated_at,
                        from.key_id,
                        from.ciphertext
                    ],
                )
                .map_err(db_err("sealing a secret under a new key"))?;
            Ok(Reply::Flag(n > 0))
        }
    }
}

#[async_trait]
impl Secrets for SqliteStore {
    async fn put_secret(&self, secret: &SealedSecret, actor: &str) -> Result<()> {
        let op = SecretOp::Put {
            secret: secret.clone(),
            actor: actor.into(),
        };
        match self.submit(Op::Secret(op)).await? {
            Reply::Flag(_) => Ok(()),
            _ => Err(unexpected("setting a secret")),
        }
    }

    async fn delete_secret(&self, name: &str, actor: &str) -> Result<bool> {
        let op = SecretOp::Delete {
            name: name.into(),
            actor: actor.into(),
        };
        match self.submit(Op::Secret(op)).await? {
            Reply::Flag(b) => Ok(b),
            _ => Err(unexpected("deleting a secret")),
        }
    }

    async fn reseal_secret(&self, secret: &SealedSecret, from: &SealedSecret) -> Result<bool> {
        let op = SecretOp::Reseal {
            secret: secret.clone(),
            from: from.clone(),
        };
        match self.submit(Op::Secret(op)).await? {
            Reply::Flag(b) => Ok(b),
            _ => Err(unexpected("sealing a secret under a new key")),
        }
    }

    async fn sealed_secrets(&self) -> Result<Vec<SealedSecret>> {
        self.read(|c| {
            let mut s = c
                .prepare_cached(
                    "SELECT name, key_id, nonce, ciphertext, created_at, updated_at, rotated_at \
                     FROM secrets ORDER BY name",
                )
                .map_err(db_err("listing secrets"))?;
            s.query_map([], |r| {
                Ok(SealedSecret {
                    name: r.get(0)?,
                    key_id: r.get(1)?,
                    nonce: r.get(2)?,
                    ciphertext: r.get(3)?,
                    created_at: r.get(4)?,
                    updated_at: r.get(5)?,
                    rotated_at: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err("listing secrets"))
        })
        .await
    }
}
