//! The `baseline` guardrail kind: a limit learned from the recorded changes, so a run or a
//! window far above the usual is held. It learns from the store's history and never reads
//! anything else.

use serde::Serialize;
use std::time::Duration;

/// A limit learned from the changes recorded under `log` and `guarded`: a window or a run's
/// batch above `factor` times the observed 99th percentile is a violation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// The window changes are counted in (above zero).
    pub per: Duration,
    /// How far above the learned 99th percentile a run or window may go (at least 1).
    pub factor: f64,
    /// Recorded history needed before the limit applies; until then every change violates it.
    pub min_history: Duration,
}

impl Baseline {
    /// How far back the history is read: at least 30 days, and at least `min_history`.
    pub fn lookback(&self) -> Duration {
        self.min_history.max(Duration::from_secs(30 * 86_400))
    }

    /// The learned figures from the recorded history, as of `now` (ms).
    pub fn learn(&self, history: &belay_store::ChangeHistory, now: i64) -> BaselineFigures {
        let per = (self.per.as_millis() as i64).max(1);
        let since = now - self.lookback().as_millis() as i64;
        let history_ms = history.first_at.map_or(0, |f| (now - f).max(0));
        // Windows from the first recorded change (or the lookback's start) up to the current one.
        let start = history.first_at.unwrap_or(now).max(since);
        let windows = ((now - start) / per).max(0) as usize;
        let mut counts = vec![0u64; windows];
        let mut sizes = Vec::with_capacity(history.batches.len());
        for &(at, n) in &history.batches {
            sizes.push(n);
            let w = (at - start) / per;
            if w >= 0 && (w as usize) < windows {
                counts[w as usize] += n;
            }
        }
        BaselineFigures {
            history_ms,
            runs: sizes.len() as u64,
            p99_batch: p99(&mut sizes),
            windows: windows as u64,
            p99_window: p99(&mut counts),
        }
    }
}

/// The 99th percentile (nearest rank) of counts; 0 when empty.
fn p99(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((v.len() as f64) * 0.99).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What a baseline guardrail learned.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaselineFigures {
    /// Age of the oldest recorded change, in ms.
    pub history_ms: i64,
    /// Runs that made changes within the lookback.
    pub runs: u64,
    /// 99th percentile of changes per run.
    pub p99_batch: u64,
    /// Complete windows observed within the lookback.
    pub windows: u64,
    /// 99th percentile of changes per window.
    pub p99_window: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_learns_the_p99_of_batches_and_windows() {
        let b = Baseline {
            per: Duration::from_secs(3600),
            factor: 3.0,
            min_history: Duration::from_secs(86_400),
        };
        let hour = 3_600_000i64;
        let now = 100 * hour;
        // 48 hourly feed updates of 4 changes each, and one of 9.
        let mut batches: Vec<(i64, u64)> = (0..48).map(|h| (now - (48 - h) * hour, 4)).collect();
        batches.push((now - 10 * hour + 5, 9));
        let history = belay_store::ChangeHistory {
            first_at: Some(now - 48 * hour),
            batches,
        };
        let f = b.learn(&history, now);
        assert_eq!(f.history_ms, 48 * hour);
        assert_eq!(f.runs, 49);
        assert_eq!(f.windows, 48);
        assert_eq!(
            f.p99_batch, 9,
            "the 99th percentile of 49 batches is the largest"
        );
        assert_eq!(f.p99_window, 13, "one window held 4 + 9 changes");
        // No history at all: nothing learned, and the guardrail says it is still learning.
        let empty = b.learn(&belay_store::ChangeHistory::default(), now);
        assert_eq!((empty.history_ms, empty.runs, empty.windows), (0, 0, 0));
    }
}
