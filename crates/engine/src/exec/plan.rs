//! One item of a step: its inputs rendered and checked against the action's schema, then
//! handed to the read, change or sub-playbook path. An item whose inputs do not render or
//! validate fails here and reaches no connector.

use super::{ItemResult, Outcome, RunState};
use crate::Result;
use belay_model::StepStatus;
use belay_playbook::{ActionKind, Call, Step};
use minijinja::Value as MjValue;

impl RunState {
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
        let with = match step.with.render(&ctx) {
            Ok(v) => v,
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(format!("input {}", e.message));
                return self.finish(rec).await;
            }
        };
        rec.with = with;
        match &step.call {
            Call::Playbook(name) => self.sub_playbook(step, name, rec).await,
            Call::Action(name) => {
                let Some(spec) = self.engine.catalog.get(name) else {
                    rec.status = StepStatus::Failed;
                    rec.error = Some(format!("unknown action `{name}`"));
                    return self.finish(rec).await;
                };
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
