//! Checks that need more than one file: actions against the catalog, inputs against their
//! schemas, expression references against earlier steps, sub-playbooks and their cycles.

use crate::catalog::Catalog;
use crate::expr::Expr;
use crate::playbook::{Call, Playbook, Step};
use crate::yaml::Diagnostic;
use belay_model::{Event, Observables};
use std::collections::{BTreeMap, HashSet};

const ROOTS: &[&str] = &["event", "vars", "steps", "inputs", "run", "item", "index"];
const STEP_FIELDS: &[&str] = &["output", "status", "outputs"];

/// Checks one playbook; `known` maps every playbook name to its sub-playbook calls.
pub fn check(
    pb: &Playbook,
    catalog: &Catalog,
    known: &BTreeMap<String, Vec<String>>,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for (i, step) in pb.steps.iter().enumerate() {
        let earlier: HashSet<&str> = pb.steps[..i].iter().map(|s| s.id.as_str()).collect();
        check_step(pb, step, &earlier, catalog, known, &mut diags);
    }
    if let Some(c) = &pb.trigger.condition {
        check_refs(
            pb,
            catalog,
            c,
            &HashSet::new(),
            false,
            "`on.if`",
            &mut diags,
        );
    }
    diags.sort_by_key(|d| d.pos);
    diags
}

fn check_step(
    pb: &Playbook,
    step: &Step,
    earlier: &HashSet<&str>,
    catalog: &Catalog,
    known: &BTreeMap<String, Vec<String>>,
    diags: &mut Vec<Diagnostic>,
) {
    let has_items = step.for_each.is_some();
    if let Some(c) = &step.condition {
        check_refs(
            pb,
            catalog,
            c,
            earlier,
            false,
            &format!("step `{}`", step.id),
            diags,
        );
    }
    if let Some(f) = &step.for_each {
        for e in f.exprs() {
            check_refs(
                pb,
                catalog,
                e,
                earlier,
                false,
                &format!("step `{}`", step.id),
                diags,
            );
        }
    }
    for e in step.with.exprs() {
        check_refs(
            pb,
            catalog,
            e,
            earlier,
            has_items,
            &format!("step `{}`", step.id),
            diags,
        );
    }
    match &step.call {
        Call::Action(name) => {
            let Some(spec) = catalog.get(name) else {
                let mut d = Diagnostic::new(step.call_pos, format!("unknown action `{name}`"));
                if let Some(s) = catalog.suggest(name) {
                    d = d.with_hint(format!(
                        "did you mean `{s}`? (`belay actions list` shows them all)"
                    ));
                } else {
                    d = d.with_hint("`belay actions list` shows every action");
                }
                diags.push(d);
                return;
            };
            let given: Vec<&str> = step
                .with
                .entries()
                .iter()
                .map(|(k, _, _)| k.as_str())
                .collect();
            for (key, pos, t) in step.with.entries() {
                match spec.input_schema(key) {
                    None => {
                        let names: Vec<&str> = spec.input_names().collect();
                        diags.push(
                            Diagnostic::new(*pos, format!("action `{name}` has no input `{key}`"))
                                .with_hint(format!("its inputs are: {}", names.join(", "))),
                        );
                    }
                    Some(schema) => {
                        if let Some(value) = t.literal()
                            && let Err(e) = jsonschema::validate(schema, &value)
                        {
                            diags.push(Diagnostic::new(
                                *pos,
                                format!("input `{key}` of `{name}` is invalid: {e}"),
                            ));
                        }
                    }
                }
            }
            if let Some((_, pos)) = step.expires {
                if spec.kind != crate::catalog::ActionKind::Change || spec.inverse.is_none() {
                    diags.push(
                        Diagnostic::new(
                            pos,
                            format!(
                                "`expires` needs a change that can be undone; `{name}` {}",
                                if spec.kind == crate::catalog::ActionKind::Change {
                                    "has no inverse"
                                } else {
                                    "changes nothing"
                                }
                            ),
                        )
                        .with_hint("remove `expires`, or use an action with an inverse"),
                    );
                }
                if let Some(input) = &spec.expiry_input
                    && given.contains(&input.as_str())
                {
                    diags.push(
                        Diagnostic::new(
                            pos,
                            format!(
                                "step `{}` sets both `expires` and input `{input}`; `expires` sets `{input}` of `{name}` itself",
                                step.id
                            ),
                        )
                        .with_hint(format!("remove `{input}:` from `with:`")),
                    );
                }
            }
            for req in spec.required_inputs() {
                if !given.contains(&req) {
                    diags.push(
                        Diagnostic::new(
                            step.with_pos,
                            format!("action `{name}` needs input `{req}`"),
                        )
                        .with_hint(format!("add `{req}:` under `with:` of step `{}`", step.id)),
                    );
                }
            }
        }
        Call::Playbook(target) => {
            if !known.contains_key(target) {
                diags.push(Diagnostic::new(
                    step.call_pos,
                    format!("unknown playbook `{target}`"),
                ));
            } else if let Some(cycle) = find_cycle(&pb.name, target, known) {
                diags.push(
                    Diagnostic::new(
                        step.call_pos,
                        format!("sub-playbook cycle: {}", cycle.join(" -> ")),
                    )
                    .with_hint("a playbook may not start itself, directly or through others"),
                );
            }
        }
    }
}

fn find_cycle(
    start: &str,
    next: &str,
    known: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    // Depth-first search from `next` back to `start`.
    let mut stack = vec![(next.to_owned(), vec![start.to_owned(), next.to_owned()])];
    let mut seen = HashSet::new();
    while let Some((node, path)) = stack.pop() {
        if node == start {
            return Some(path);
        }
        if !seen.insert(node.clone()) {
            continue;
        }
        for child in known.get(&node).into_iter().flatten() {
            let mut p = path.clone();
            p.push(child.clone());
            stack.push((child.clone(), p));
        }
    }
    None
}

/// When step `id` calls an action whose output schema names its fields and `field` is not one
/// of them: the action and the fields it has. (A `for_each` step's output is a list, a
/// sub-playbook's is its own: neither is checked here.)
fn unknown_output<'c>(
    pb: &Playbook,
    catalog: &'c Catalog,
    id: &str,
    field: &str,
) -> Option<(&'c str, Vec<&'c str>)> {
    let step = pb.step(id)?;
    let Call::Action(action) = &step.call else {
        return None;
    };
    if step.for_each.is_some() {
        return None;
    }
    let spec = catalog.get(action)?;
    let props = spec.outputs.get("properties")?.as_object()?;
    if props.is_empty() || props.contains_key(field) {
        return None;
    }
    Some((
        spec.name.as_str(),
        props.keys().map(String::as_str).collect(),
    ))
}

fn check_refs(
    pb: &Playbook,
    catalog: &Catalog,
    e: &Expr,
    earlier: &HashSet<&str>,
    has_items: bool,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) {
    for path in &e.paths {
        let segs: Vec<&str> = path.split('.').collect();
        let root = segs[0];
        let problem = match root {
            r if !ROOTS.contains(&r) => Some((
                format!("unknown variable `{r}` in {what}"),
                format!("expressions can use: {}", ROOTS.join(", ")),
            )),
            "item" | "index" if !has_items => Some((
                format!("`{root}` is only defined in the `with:` of a `for_each` step ({what})"),
                "add `for_each:` to the step or remove the reference".into(),
            )),
            "steps" => match segs.get(1) {
                Some(s) if !earlier.contains(s) => Some((
                    format!("{what} refers to step `{s}`, which does not run before it"),
                    if pb.step(s).is_some() {
                        "a step can only use outputs of steps listed above it".into()
                    } else {
                        let ids: Vec<&str> = earlier.iter().copied().collect();
                        format!(
                            "earlier steps: {}",
                            if ids.is_empty() {
                                "none".into()
                            } else {
                                ids.join(", ")
                            }
                        )
                    },
                )),
                Some(s) => match segs.get(2) {
                    Some(f) if !STEP_FIELDS.contains(f) => Some((
                        format!("{what}: `{path}` has no field `{f}`"),
                        "use `steps.ID.output` or `steps.ID.status`".into(),
                    )),
                    Some(&"output") => segs
                        .get(3)
                        .and_then(|field| unknown_output(pb, catalog, s, field))
                        .map(|(action, known)| {
                            (
                                format!(
                                    "{what}: `{path}`: action `{action}` of step `{s}` has no output `{}`",
                                    segs[3]
                                ),
                                format!("its outputs are: {}", known.join(", ")),
                            )
                        }),
                    _ => None,
                },
                None => None,
            },
            "vars" => match segs.get(1) {
                Some(v) if pb.vars.get(v).is_none() => Some((
                    format!("{what} uses `vars.{v}`, which the playbook does not declare"),
                    "declare it under `vars:`".into(),
                )),
                _ => None,
            },
            "event" => match (segs.get(1), segs.get(2)) {
                (Some(f), _) if !Event::KEYS.contains(f) => Some((
                    format!("events have no field `{f}` ({what})"),
                    format!(
                        "event fields: {}; the original payload is under `event.data`",
                        Event::KEYS.join(", ")
                    ),
                )),
                (Some(&"observables"), Some(o)) if !Observables::KEYS.contains(o) => Some((
                    format!("unknown observable type `{o}` ({what})"),
                    format!("observable types: {}", Observables::KEYS.join(", ")),
                )),
                _ => None,
            },
            _ => None,
        };
        if let Some((msg, hint)) = problem {
            diags.push(Diagnostic::new(e.pos, msg).with_hint(hint));
        }
    }
}
