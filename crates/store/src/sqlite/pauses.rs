//! Pauses of automation on SQLite: writes through the writer (audited in its transaction),
//! reads through the reader connection.

use super::writer::{Entries, Op, Reply};
use super::{SqliteStore, db_err, unexpected};
use crate::Result;
use crate::pauses::{self, PauseRecord, Pauses};
use async_trait::async_trait;
use rusqlite::{Connection, params};
use std::borrow::Cow;

/// A write to the pauses.
pub(super) enum PauseOp {
    Pause(PauseRecord),
    Unpause {
        scope: String,
        actor: String,
        reason: String,
    },
}

/// Applies one pause write inside the writer's transaction.
pub(super) fn apply<'a>(
    c: &Connection,
    op: &'a PauseOp,
    entries: &mut Entries<'a>,
) -> Result<Reply> {
    match op {
        PauseOp::Pause(p) => {
            c.execute(
                "INSERT INTO automation_pauses (scope, paused_by, reason, paused_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(scope) DO UPDATE SET \
                 paused_by = excluded.paused_by, reason = excluded.reason, \
                 paused_at = excluded.paused_at",
                params![p.scope(), p.paused_by, p.reason, p.paused_at],
            )
            .map_err(db_err("pausing automation"))?;
            entries.push(Cow::Owned(pauses::paused(p).prepare()));
            Ok(Reply::Flag(true))
        }
        PauseOp::Unpause {
            scope,
            actor,
            reason,
        } => {
            let n = c
                .execute("DELETE FROM automation_pauses WHERE scope = ?1", [scope])
                .map_err(db_err("resuming automation"))?;
            if n > 0 {
                let playbook = (scope != pauses::ALL).then_some(scope.as_str());
                entries.push(Cow::Owned(
                    pauses::resumed(playbook, actor, reason).prepare(),
                ));
            }
            Ok(Reply::Flag(n > 0))
        }
    }
}

#[async_trait]
impl Pauses for SqliteStore {
    async fn pause(&self, pause: &PauseRecord) -> Result<()> {
        match self
            .submit(Op::Pause(PauseOp::Pause(pause.clone())))
            .await?
        {
            Reply::Flag(_) => Ok(()),
            _ => Err(unexpected("pausing automation")),
        }
    }

    async fn unpause(&self, playbook: Option<&str>, actor: &str, reason: &str) -> Result<bool> {
        let op = PauseOp::Unpause {
            scope: playbook.unwrap_or(pauses::ALL).into(),
            actor: actor.into(),
            reason: reason.into(),
        };
        match self.submit(Op::Pause(op)).await? {
            Reply::Flag(b) => Ok(b),
            _ => Err(unexpected("resuming automation")),
        }
    }

    async fn pauses(&self) -> Result<Vec<PauseRecord>> {
        self.read(|c| {
            let mut s = c
                .prepare_cached(
                    "SELECT scope, paused_by, reason, paused_at FROM automation_pauses \
                     ORDER BY scope <> '*', scope",
                )
                .map_err(db_err("listing pauses"))?;
            s.query_map([], |r| {
                Ok(PauseRecord::from_scope(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err("listing pauses"))
        })
        .await
    }
}
