//! One item of a step: its inputs rendered and checked against the action's schema, then
//! handed to the read, change or sub-playbook path. An item whose inputs do not render or
//! validate fails here and reaches no connector.

use super::{ItemResult, Outcome, RunState};
use crate::Result;
use belay_model::StepStatus;
use belay_playbook::{ActionKind, Call, Step};
use minijinja::Value as MjValue;
use serde_json::Value;
use std::time::Duration;

/// A duration as systems take it (`90s`, `45m`, `12h`, `30d`: up to six digits), rounded up to
/// the second: a system's own expiry never lapses before the engine's.
fn native_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let secs = secs.max(1);
    for (unit, size) in [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)] {
        if secs.is_multiple_of(size) && secs / size <= 999_999 {
            return format!("{}{unit}", secs / size);
        }
    }
    for (unit, size) in [("m", 60), ("h", 3600), ("d", 86_400)] {
        if secs.div_ceil(size) <= 999_999 {
            return format!("{}{unit}", secs.div_ceil(size));
        }
    }
    "999999d".into()
}

impl RunState {
    /// An item's rendered inputs with the step's `expires:` handed to the system's own expiry
    /// (the action's `expiry_input`, e.g. nftables' element `timeout`), so both agree.
    pub(super) fn with_native_expiry(&self, step: &Step, mut with: Value) -> Value {
        if let (Some((expires, _)), Call::Action(name)) = (step.expires, &step.call)
            && let Some(input) = self
                .engine
                .catalog
                .get(name)
                .and_then(|s| s.expiry_input.as_deref())
            && let Value::Object(inputs) = &mut with
            && !inputs.contains_key(input)
        {
            inputs.insert(input.to_owned(), Value::String(native_duration(expires)));
        }
        with
    }

    /// Executes one item and keeps its records.
    pub(super) async fn run_item(
        &mut self,
        step: &Step,
        seq: i64,
        key: String,
        item: Option<i64>,
        ctx: MjValue,
    ) -> Result<Outcome> {
        let (o, recs) = self.run_item_detached(step, seq, key, item, ctx).await?;
        self.records.extend(recs);
        Ok(o)
    }

    /// Executes one step or item; returns its outcome and the records it wrote.
    pub(super) async fn run_item_detached(
        &self,
        step: &Step,
        seq: i64,
        key: String,
        item: Option<i64>,
        ctx: MjValue,
    ) -> ItemResult {
        let mut rec = self.record(step, seq, &key, item);
        let with = match self.set_parts.get(&key) {
            // A target held apart and approved: applied with the inputs the approval binds.
            Some(super::set_parts::SetPart::Exact(with)) => Ok(with.clone()),
            _ => step.with.render(&ctx),
        };
        let with = match with {
            Ok(v) => v,
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(format!("input {}", e.message));
                return self.finish(rec).await;
            }
        };
        rec.with = self.with_native_expiry(step, with);
        match &step.call {
            Call::Playbook(name) => self.sub_playbook(step, name, rec).await,
            Call::Action(name) => {
                let Some(spec) = self.engine.catalog.get(name) else {
                    rec.status = StepStatus::Failed;
                    rec.error = Some(format!("unknown action `{name}`"));
                    return self.finish(rec).await;
                };
                let with = std::mem::take(&mut rec.with);
                rec.with = self.narrow(spec, &key, with);
                if let Err(errors) = spec.validate_input(&rec.with) {
                    rec.status = StepStatus::Failed;
                    rec.error = Some(format!(
                        "invalid inputs for `{name}`: {}",
                        errors.join("; ")
                    ));
                    return self.finish(rec).await;
                }
                match spec.kind {
                    ActionKind::Read => self.read(step, spec, rec).await,
                    ActionKind::Change => self.change(step, spec, rec).await,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::native_duration;
    use std::time::Duration;

    #[test]
    fn native_durations_are_exact_or_rounded_up() {
        assert_eq!(native_duration(Duration::from_secs(2)), "2s");
        assert_eq!(native_duration(Duration::from_millis(1500)), "2s");
        assert_eq!(native_duration(Duration::from_secs(30 * 86_400)), "43200m");
        assert_eq!(native_duration(Duration::from_secs(2_000_000)), "33334m");
    }
}
