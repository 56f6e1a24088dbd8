//! One step of a run: reuse of its record after a crash, its `if`, the rate gate, the guard
//! gate, then either one item or a `for_each` fan-out whose items run concurrently and whose
//! outputs keep item order. A step never reaches a connector except through an item.

use super::{ItemResult, Outcome, RunState};
use crate::Result;
use belay_model::{Decision, StepStatus, now_ms};
use belay_playbook::{Call, Step, context_value, describe_value};
use belay_store::Write;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::Value;

/// Most items a `for_each` may expand to; a larger fan-out fails before any item is applied
/// (sets at feed size go to the set-level actions, one change for the whole set).
const MAX_ITEMS: usize = 10_000;

impl RunState {
    /// Executes one step (every item of a `for_each`) and says how it ended.
    pub(super) async fn run_step(&mut self, step: &Step, seq: i64) -> Result<Outcome> {
        if step.for_each.is_none()
            && !self.has_open_parts(step)
            && let Some(o) = self.reuse(&step.id)
        {
            return Ok(o);
        }
        let ctx = self.ctx();
        if let Some(cond) = &step.condition {
            match cond.eval_bool(&ctx) {
                Ok(true) => {}
                Ok(false) => {
                    let mut rec = self.record(step, seq, &step.id, None);
                    rec.decision = Decision::Skip;
                    rec.status = StepStatus::Skipped;
                    rec.finished_at = Some(now_ms());
                    self.queue(Write::Step(rec.clone()));
                    self.records.push(rec);
                    return Ok(Outcome::Done {
                        status: StepStatus::Skipped,
                        output: Value::Null,
                    });
                }
                Err(e) => {
                    return self
                        .fail_early(step, seq, &step.id, None, format!("`if`: {}", e.message))
                        .await;
                }
            }
        }
        // A fan-out is sized before anything of it is judged or applied: one larger than the
        // limit fails whole, saying so, rather than applying part of its items.
        let items = match &step.for_each {
            None => None,
            Some(for_each) => Some(match for_each.render(&ctx) {
                Ok(Value::Array(items)) if items.len() <= MAX_ITEMS => items,
                Ok(Value::Array(items)) => {
                    let msg = format!(
                        "`for_each` gave {} items, more than the {MAX_ITEMS} one step may fan out to: none of them was applied (a set-level action, such as `blocklist.add_many` or `firewall.block_many`, takes the whole set as one change)",
                        items.len()
                    );
                    return self.fail_early(step, seq, &step.id, None, msg).await;
                }
                Ok(other) => {
                    let msg = format!(
                        "`for_each` must give a list, it gave {}",
                        describe_value(&other)
                    );
                    return self.fail_early(step, seq, &step.id, None, msg).await;
                }
                Err(e) => {
                    return self
                        .fail_early(
                            step,
                            seq,
                            &step.id,
                            None,
                            format!("`for_each`: {}", e.message),
                        )
                        .await;
                }
            }),
        };
        // Steps under a rate limit run one at a time in this process, from the check until
        // their changes are journaled, so concurrent runs cannot all slip under the limit.
        let rated = match &step.call {
            Call::Action(a) => {
                let named: Vec<String> = step.guardrails.iter().map(|(g, _)| g.clone()).collect();
                self.engine
                    .guardrails
                    .governing(a, &named)
                    .iter()
                    .any(|g| g.rate.is_some() || g.baseline.is_some())
            }
            Call::Playbook(_) => false,
        };
        let engine = self.engine.clone();
        let _gate = if rated {
            Some(engine.rate_gate.lock().await)
        } else {
            None
        };
        if let Some(o) = self.guard(step, seq, &ctx).await? {
            return Ok(o);
        }
        let Some(items) = items else {
            return self.run_single(step, seq, ctx).await;
        };
        // Items run concurrently, at most `concurrency` at once; outputs keep item order.
        let mut reused: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            reused.push(self.reuse(&format!("{}[{i}]", step.id)));
        }
        let this: &RunState = self;
        let futs: Vec<BoxFuture<'_, (usize, ItemResult)>> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| reused[*i].is_none())
            .map(|(i, item)| {
                let ictx =
                    minijinja::context! { item => context_value(item), index => i, ..ctx.clone() };
                let key = format!("{}[{i}]", step.id);
                let fut: BoxFuture<'_, _> = Box::pin(async move {
                    (
                        i,
                        this.run_item_detached(step, seq, key, Some(i as i64), ictx)
                            .await,
                    )
                });
                fut
            })
            .collect();
        let results: Vec<(usize, ItemResult)> = futures::stream::iter(futs)
            .buffer_unordered(step.concurrency)
            .collect()
            .await;
        let mut outcomes: Vec<Option<Outcome>> = reused;
        for (i, r) in results {
            let (o, recs) = r?;
            self.records.extend(recs);
            outcomes[i] = Some(o);
        }
        self.records.sort_by_key(|r| (r.seq, r.item));
        let mut out = Vec::with_capacity(outcomes.len());
        let mut errors = Vec::new();
        let mut waiting = false;
        let mut all_planned = !outcomes.is_empty();
        for (i, o) in outcomes.into_iter().enumerate() {
            match o {
                Some(Outcome::Done { status, output }) => {
                    all_planned &= status == StepStatus::Planned;
                    out.push(output);
                }
                Some(Outcome::Failed(m)) => {
                    errors.push(format!("item {i}: {m}"));
                    out.push(Value::Null);
                }
                Some(Outcome::Waiting) => {
                    waiting = true;
                    out.push(Value::Null);
                }
                None => out.push(Value::Null),
            }
        }
        if !errors.is_empty() {
            return Ok(Outcome::Failed(errors.join("; ")));
        }
        if waiting {
            return Ok(Outcome::Waiting);
        }
        let status = if all_planned {
            StepStatus::Planned
        } else {
            StepStatus::Succeeded
        };
        Ok(Outcome::Done {
            status,
            output: Value::Array(out),
        })
    }
}
