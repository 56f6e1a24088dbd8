//! Prometheus metrics in the text exposition format: events accepted and rejected per source
//! and reason (counted by the server), and figures read from the store when scraped (runs,
//! approvals pending).

use belay_store::Store;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    events: Mutex<BTreeMap<(String, String, &'static str), u64>>,
}

impl Metrics {
    /// Counts an accepted event from `source` (`new` or `duplicate`).
    pub fn event_accepted(&self, source: &str, status: &str) {
        self.count(source, status, "accepted");
    }

    /// Counts a refused event from `source`, by reason (`signature`, `too_large`, `invalid`…).
    pub fn event_rejected(&self, source: &str, reason: &str) {
        self.count(source, reason, "rejected");
    }

    /// Counts events from `source` stored by a source that takes them in batches.
    pub fn count_new(&self, source: &str, new: u64, duplicates: u64) {
        self.add(source, "new", "accepted", new);
        self.add(source, "duplicate", "accepted", duplicates);
    }

    fn count(&self, source: &str, label: &str, what: &'static str) {
        self.add(source, label, what, 1);
    }

    fn add(&self, source: &str, label: &str, what: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.events.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((source.to_owned(), label.to_owned(), what))
            .or_default() += n;
    }

    /// The exposition text: the counters, then the store's figures.
    pub async fn render(&self, store: &dyn Store) -> Result<String, belay_store::StoreError> {
        let mut out = String::new();
        out.push_str("# HELP belay_events_accepted_total Events accepted, by source and status (new or duplicate).\n");
        out.push_str("# TYPE belay_events_accepted_total counter\n");
        let events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for ((source, status, _), n) in events.iter().filter(|(k, _)| k.2 == "accepted") {
            let _ = writeln!(
                out,
                "belay_events_accepted_total{{source=\"{}\",status=\"{}\"}} {n}",
                esc(source),
                esc(status)
            );
        }
        out.push_str("# HELP belay_events_rejected_total Events refused, by source and reason.\n");
        out.push_str("# TYPE belay_events_rejected_total counter\n");
        for ((source, reason, _), n) in events.iter().filter(|(k, _)| k.2 == "rejected") {
            let _ = writeln!(
                out,
                "belay_events_rejected_total{{source=\"{}\",reason=\"{}\"}} {n}",
                esc(source),
                esc(reason)
            );
        }
        let counts = store.counts().await?;
        out.push_str(
            "# HELP belay_runs Runs stored, and those not finished (pending or running).\n",
        );
        out.push_str("# TYPE belay_runs gauge\n");
        let _ = writeln!(out, "belay_runs{{state=\"all\"}} {}", counts.runs);
        let _ = writeln!(
            out,
            "belay_runs{{state=\"unfinished\"}} {}",
            counts.runs_unfinished
        );
        let pending = store
            .approvals(&belay_store::ApprovalFilter {
                status: Some(belay_model::ApprovalStatus::Pending),
                ..Default::default()
            })
            .await?;
        out.push_str("# HELP belay_approvals_pending Approvals waiting for a decision.\n");
        out.push_str("# TYPE belay_approvals_pending gauge\n");
        let _ = writeln!(out, "belay_approvals_pending {}", pending.len());
        out.push_str("# HELP belay_changes_applied Changes in status applied.\n");
        out.push_str("# TYPE belay_changes_applied gauge\n");
        let _ = writeln!(out, "belay_changes_applied {}", counts.changes_applied);
        Ok(out)
    }
}

/// A label value escaped for the exposition format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
