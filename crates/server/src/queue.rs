//! The bounded ingest queue: events taken in and not yet done (committed and waiting for, or
//! in, their runs). A push source (an HTTP request, a webhook) that finds it full is answered
//! `429 Too Many Requests` with `Retry-After`, before anything is stored; a pull source (a
//! syslog TCP connection, a file, a mailbox, a feed) waits for room instead, which slows its
//! reading. An event counts until its runs finished or parked, so the bound holds the whole
//! backlog, not only the commits.

use crate::problem::Problem;
use axum::http::StatusCode;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a refused sender is told to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The queue's room, in events.
#[derive(Debug, Clone)]
pub struct IngestQueue {
    room: Arc<Semaphore>,
    capacity: usize,
}

/// Places held in the queue; they are given back when it is dropped.
#[derive(Debug)]
pub struct Ticket {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Ticket {
    /// Splits off one place (for one event's runs); the rest stays in this ticket.
    pub fn split_one(&mut self) -> Ticket {
        Ticket {
            _permit: self._permit.as_mut().and_then(|p| p.split(1)),
        }
    }
}

impl IngestQueue {
    /// A queue with room for `capacity` events (at least one).
    pub fn new(capacity: usize) -> IngestQueue {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        IngestQueue {
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Room for `n` events now, or `429` with `Retry-After`. A batch larger than the whole
    /// queue is refused with `413`: it could never fit.
    pub fn admit(&self, n: usize) -> Result<Ticket, Problem> {
        if n > self.capacity {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a batch of {n} events is larger than the ingest queue ({} events); send it in smaller batches",
                    self.capacity
                ),
            ));
        }
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        match self.room.clone().try_acquire_many_owned(n32) {
            Ok(p) => Ok(Ticket { _permit: Some(p) }),
            Err(_) => {
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "the ingest queue is full ({} events waiting for their runs); nothing was stored, try again later",
                        self.depth()
                    ),
                );
                p.retry_after = Some(RETRY_AFTER_SECS);
                Err(p)
            }
        }
    }

    /// Room for `n` events, waiting until there is (a batch larger than the queue waits for
    /// the whole queue).
    pub async fn wait(&self, n: usize) -> Ticket {
        let n32 = u32::try_from(n.min(self.capacity)).unwrap_or(u32::MAX);
        Ticket {
            _permit: self.room.clone().acquire_many_owned(n32).await.ok(),
        }
    }

    /// Events in the queue now.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.room.available_permits())
    }

    /// The most events it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_with_retry_after_and_frees_room_when_work_is_done() {
        let q = IngestQueue::new(3);
        let mut t = q.admit(2).expect("room");
        assert_eq!(q.depth(), 2);
        let p = q.admit(2).expect_err("full");
        assert_eq!(p.status, 429);
        assert_eq!(p.retry_after, Some(RETRY_AFTER_SECS));
        assert_eq!(q.admit(4).expect_err("never fits").status, 413);
        let one = t.split_one();
        drop(t);
        assert_eq!(q.depth(), 1);
        drop(one);
        assert_eq!(q.depth(), 0);
        assert!(q.admit(3).is_ok());
    }
}
