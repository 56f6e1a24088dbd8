//! The `baseline` guardrail kind: a limit learned from the recorded changes, so a run or a
//! window far above the usual is held. It learns from the store's history and never reads
//! anything else.
//!
//! Until its history is `min_history` long a baseline is *learning*: by default it does not
//! hold (a fixed `batch` or `rate` guardrail over the same actions caps them meanwhile), it
//! says so in its verdict, and it enforces from the moment its history suffices.

use serde::Serialize;
use std::time::Duration;

/// What a baseline guardrail does while its history is shorter than `min_history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhileLearning {
    /// Changes go ahead with a `learning` verdict (the default).
    #[default]
    Proceed,
    /// Every change is held until the history suffices.
    Hold,
}

impl WhileLearning {
    /// Its name in guardrail files.
    pub fn as_str(self) -> &'static str {
        match self {
            WhileLearning::Proceed => "proceed",
            WhileLearning::Hold => "hold",
        }
    }
}

/// How far a learning baseline is: attached to its verdict while it does not enforce.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Learning {
    /// Age of the oldest recorded change, in ms.
    pub history_ms: i64,
    /// History needed before the limit applies, in ms.
    pub min_history_ms: i64,
    /// What the guardrail does meanwhile.
    pub while_learning: WhileLearning,
}

impl Learning {
    /// `2h 5m of recorded history, 7days needed`.
    pub fn describe(&self) -> String {
        let human = |ms: i64| {
            humantime::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64)).to_string()
        };
        format!(
            "{} of recorded history, {} needed",
            human(self.history_ms),
            human(self.min_history_ms)
        )
    }
}

/// A limit learned from the changes recorded under `log` and `guarded`: a window or a run's
/// batch above `factor` times the observed 99th percentile is a violation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// The window changes are counted in (above zero).
    pub per: Duration,
    /// How far above the learned 99th percentile a run or window may go (at least 1).
    pub factor: f64,
    /// Recorded history needed before the limit applies; until then the guardrail is learning.
    pub min_history: Duration,
    /// What it does while learning: proceed (the default) or hold every change.
    pub while_learning: WhileLearning,
}

impl Baseline {
    /// How far back the history is read: at least 30 days, and at least `min_history`.
    pub fn lookback(&self) -> Duration {
        self.min_history.max(Duration::from_secs(30 * 86_400))
    }

    /// Whether figures learned from the history are enough to enforce the limit; when not,
    /// how far the learning is.
    pub fn learning(&self, figures: &BaselineFigures) -> Option<Learning> {
        let needed = i64::try_from(self.min_history.as_millis()).unwrap_or(i64::MAX);
        (figures.history_ms < needed).then_some(Learning {
            history_ms: figures.history_ms,
            min_history_ms: needed,
            while_learning: self.while_learning,
        })
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
            while_learning: WhileLearning::Proceed,
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
        let learning = b.learning(&empty).expect("no history: learning");
        assert_eq!(learning.min_history_ms, 24 * hour);
        assert_eq!(learning.describe(), "0s of recorded history, 1day needed");
        assert_eq!(b.learning(&f), None, "48 hours of history: enforcing");
    }
}
