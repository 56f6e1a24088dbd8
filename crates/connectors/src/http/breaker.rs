//! The circuit breaker: after a run of failed calls a connector refuses calls for a cooldown,
//! then lets one trial call through. Only transient failures count; a call abandoned midway
//! counts as failed. It never delays a call, it only admits or refuses it.

use super::Http;
use crate::{ActionError, ErrorKind};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

impl Http {
    pub(super) async fn guarded<F>(&self, f: F) -> Result<Value, ActionError>
    where
        F: std::future::Future<Output = Result<Value, ActionError>>,
    {
        let permit = self
            .breaker
            .admit()
            .map_err(|m| self.fail(ErrorKind::Transient, m))?;
        let r = f.await;
        permit.record(!matches!(&r, Err(e) if e.kind == ErrorKind::Transient));
        r
    }
}

/// A circuit breaker: opens after `threshold` consecutive failed calls, then lets one trial
/// call through after `cooldown`; its success closes the circuit, its failure reopens it.
pub(super) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

struct Permit<'a> {
    breaker: &'a Breaker,
    recorded: bool,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(BreakerState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self) -> Result<Permit<'_>, String> {
        if self.threshold > 0 {
            let mut s = self.lock();
            if let Some(at) = s.opened_at {
                let elapsed = at.elapsed();
                if elapsed < self.cooldown {
                    return Err(format!(
                        "circuit open after {} consecutive failed calls; the next trial call is allowed in {}s",
                        s.failures,
                        (self.cooldown - elapsed).as_secs().max(1)
                    ));
                }
                if s.probing {
                    return Err(
                        "circuit open: a trial call is in progress, other calls wait for its outcome"
                            .into(),
                    );
                }
                s.probing = true;
            }
        }
        Ok(Permit {
            breaker: self,
            recorded: false,
        })
    }

    fn record(&self, ok: bool) {
        if self.threshold == 0 {
            return;
        }
        let mut s = self.lock();
        if ok {
            *s = BreakerState::default();
        } else {
            s.failures = s.failures.saturating_add(1);
            if s.probing || s.failures >= self.threshold {
                if s.opened_at.is_none() || s.probing {
                    tracing::warn!(
                        target: "belay::connector",
                        "circuit opened after {} consecutive failed calls",
                        s.failures
                    );
                }
                s.opened_at = Some(Instant::now());
                s.probing = false;
            }
        }
    }
}

impl Permit<'_> {
    fn record(mut self, ok: bool) {
        self.recorded = true;
        self.breaker.record(ok);
    }
}

impl Drop for Permit<'_> {
    /// A call abandoned midway (its caller timed out) counts as failed.
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(false);
        }
    }
}
