//! Console sessions and failed sign-ins on SQLite: writes through the writer (audited in its
//! transaction), reads through the reader connection.

use super::writer::{Entries, Op, Reply};
use super::{SqliteStore, db_err, unexpected};
use crate::Result;
use crate::sessions::{self, SessionRecord, Sessions};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::borrow::Cow;

/// A write to the sessions.
pub(super) enum SessionOp {
    Start(SessionRecord),
    Touch {
        hash: String,
        at: i64,
    },
    End {
        hash: String,
        kind: String,
        client: String,
    },
    Failure {
        client: String,
        name: String,
        at: i64,
        since: i64,
    },
}

const COLS: &str = "hash, id, principal, via, client, created_at, last_seen_at, expires_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        hash: r.get(0)?,
        id: r.get(1)?,
        principal: r.get(2)?,
        via: r.get(3)?,
        client: r.get(4)?,
        created_at: r.get(5)?,
        last_seen_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

fn by_hash(c: &Connection, hash: &str) -> Result<Option<SessionRecord>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM console_sessions WHERE hash = ?1"
    ))
    .and_then(|mut s| s.query_row([hash], from_row).optional())
    .map_err(db_err("reading a session"))
}

fn failures(c: &Connection, client: &str, since: i64) -> Result<u64> {
    c.prepare_cached("SELECT COUNT(*) FROM login_failures WHERE client = ?1 AND at >= ?2")
        .and_then(|mut s| s.query_row(params![client, since], |r| r.get::<_, i64>(0)))
        .map(|n| u64::try_from(n).unwrap_or(0))
        .map_err(db_err("counting failed sign-ins"))
}

/// Applies one session write inside the writer's transaction.
pub(super) fn apply<'a>(
    c: &Connection,
    op: &'a SessionOp,
    entries: &mut Entries<'a>,
) -> Result<Reply> {
    match op {
        SessionOp::Start(s) => {
            c.execute(
                &format!(
                    "INSERT INTO console_sessions ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    s.hash,
                    s.id,
                    s.principal,
                    s.via,
                    s.client,
                    s.created_at,
                    s.last_seen_at,
                    s.expires_at
                ],
            )
            .map_err(db_err("starting a session"))?;
            entries.push(Cow::Owned(sessions::started(s).prepare()));
            Ok(Reply::Unit)
        }
        SessionOp::Touch { hash, at } => {
            c.execute(
                "UPDATE console_sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE hash = ?1",
                params![hash, at],
            )
            .map_err(db_err("noting a session's use"))?;
            Ok(Reply::Unit)
        }
        SessionOp::End { hash, kind, client } => {
            let Some(s) = by_hash(c, hash)? else {
                return Ok(Reply::Flag(false));
            };
            c.execute("DELETE FROM console_sessions WHERE hash = ?1", [hash])
                .map_err(db_err("ending a session"))?;
            entries.push(Cow::Owned(sessions::ended(&s, kind, client).prepare()));
            Ok(Reply::Flag(true))
        }
        SessionOp::Failure {
            client,
            name,
            at,
            since,
        } => {
            c.execute("DELETE FROM login_failures WHERE at < ?1", [since])
                .map_err(db_err("forgetting old failed sign-ins"))?;
            c.execute(
                "INSERT INTO login_failures (client, name, at) VALUES (?1, ?2, ?3)",
                params![client, name, at],
            )
            .map_err(db_err("recording a failed sign-in"))?;
            Ok(Reply::Count(failures(c, client, *since)?))
        }
    }
}

#[async_trait]
impl Sessions for SqliteStore {
    async fn start_session(&self, session: &SessionRecord) -> Result<()> {
        match self
            .submit(Op::Session(SessionOp::Start(session.clone())))
            .await?
        {
            Reply::Unit => Ok(()),
            _ => Err(unexpected("starting a session")),
        }
    }

    async fn session_by_hash(&self, hash: &str) -> Result<Option<SessionRecord>> {
        let hash = hash.to_owned();
        self.read(move |c| by_hash(c, &hash)).await
    }

    async fn touch_session(&self, hash: &str, at: i64) -> Result<()> {
        let op = SessionOp::Touch {
            hash: hash.into(),
            at,
        };
        match self.submit(Op::Session(op)).await? {
            Reply::Unit => Ok(()),
            _ => Err(unexpected("noting a session's use")),
        }
    }

    async fn end_session(&self, hash: &str, kind: &str, client: &str) -> Result<bool> {
        let op = SessionOp::End {
            hash: hash.into(),
            kind: kind.into(),
            client: client.into(),
        };
        match self.submit(Op::Session(op)).await? {
            Reply::Flag(b) => Ok(b),
            _ => Err(unexpected("ending a session")),
        }
    }

    async fn note_login_failure(
        &self,
        client: &str,
        name: &str,
        at: i64,
        since: i64,
    ) -> Result<u64> {
        let op = SessionOp::Failure {
            client: client.into(),
            name: name.into(),
            at,
            since,
        };
        match self.submit(Op::Session(op)).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(unexpected("recording a failed sign-in")),
        }
    }

    async fn login_failures(&self, client: &str, since: i64) -> Result<u64> {
        let client = client.to_owned();
        self.read(move |c| failures(c, &client, since)).await
    }
}
