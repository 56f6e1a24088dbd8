//! Declarative HTTP integration specs (YAML): for each catalog action of one family, the
//! request to send, how to read its answer into the action's outputs, how to read the target's
//! state, how to follow pages and how to wait for a long-running job.
//!
//! Values hold `${{ … }}` expressions (the playbook language) over `input` (the action's
//! inputs; optional ones absent from the call are null), `vars` (the connector config's
//! `vars`), and, in mappings, `response` (the JSON body) and `status`. Null values are left
//! out of bodies, queries and outputs. A spec is checked against the action catalog when it is
//! loaded: unknown actions, unknown keys, inputs the action does not declare and expressions
//! that do not parse are errors with `file:line:col`.

use belay_playbook::expr::{Part, split_template};
use belay_playbook::yaml::{self, Diagnostic, Node, NodeKind, Pos};
use belay_playbook::{ActionKind, Catalog, Expr, Template};
use std::collections::BTreeMap;
use std::time::Duration;

/// The specs shipped with belay, by name: the lab's simulators.
pub const BUILTIN: &[(&str, &str)] = &[
    ("edr-lab", include_str!("../../specs/edr-lab.yaml")),
    ("siem-lab", include_str!("../../specs/siem-lab.yaml")),
    ("cmdb-lab", include_str!("../../specs/cmdb-lab.yaml")),
    (
        "training-lab",
        include_str!("../../specs/training-lab.yaml"),
    ),
    (
        "takedown-lab",
        include_str!("../../specs/takedown-lab.yaml"),
    ),
    ("proxy-lab", include_str!("../../specs/proxy-lab.yaml")),
    ("pcap-lab", include_str!("../../specs/pcap-lab.yaml")),
];

/// A loaded spec.
#[derive(Debug)]
pub struct Spec {
    /// The spec's `name` (e.g. `edr-lab`).
    pub name: String,
    /// The action family it serves (e.g. `edr`); every action it maps belongs to it.
    pub family: String,
    /// The spec's `description`; empty when it has none.
    pub description: String,
    pub(crate) actions: BTreeMap<String, ActionMap>,
}

/// How one action maps to HTTP.
#[derive(Debug)]
pub(crate) struct ActionMap {
    pub exchange: Exchange,
    pub poll: Option<Poll>,
    pub state: Option<Exchange>,
    /// The inputs the catalog declares, set to null when a call leaves them out.
    pub inputs: Vec<String>,
}

/// A request and the mapping of its answer.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub request: RequestSpec,
    pub outputs: Option<Template>,
    /// Outputs when the target answers 404 (e.g. `known: false`); a 404 is an error otherwise.
    pub not_found: Option<Template>,
    pub paginate: Option<Paginate>,
    /// JSON pointer of the one record the outputs read (e.g. `/data/0` of a search); when the
    /// answer has nothing there, `not_found` applies.
    pub select: Option<String>,
}

#[derive(Debug)]
pub(crate) struct RequestSpec {
    pub method: reqwest::Method,
    /// Literal text and expressions; expression values are percent-encoded as path segments.
    pub path: Vec<Part>,
    pub query: Option<Template>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
}

#[derive(Debug)]
pub(crate) struct Paginate {
    /// JSON pointer of a page's items.
    pub items: String,
    pub next: Next,
    pub max_pages: u32,
}

#[derive(Debug)]
pub(crate) enum Next {
    /// A cursor at a JSON pointer, sent back as a query parameter.
    Cursor { pointer: String, param: String },
    /// A URL (absolute or relative to the base URL) at a JSON pointer.
    Url { pointer: String },
}

#[derive(Debug)]
pub(crate) struct Poll {
    /// Poll only when this holds (e.g. `input.wait`); always when absent.
    pub when: Option<Expr>,
    pub request: RequestSpec,
    /// Done when this holds over the latest `response`.
    pub until: Expr,
    pub interval: Duration,
    pub max_attempts: u32,
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{diagnostic}")]
pub struct SpecError {
    /// The spec's file path as given to [`Spec::parse`], or `<builtin NAME>`.
    pub file: String,
    /// The YAML diagnostic: `line:col: error: message`, and a `hint:` line when there is one.
    pub diagnostic: String,
}

const ROOTS: &[&str] = &["input", "response", "status", "vars"];

impl Spec {
    /// A builtin spec by name (`edr-lab`...).
    pub fn builtin(name: &str) -> Option<Result<Spec, SpecError>> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Spec::parse(&format!("<builtin {n}>"), text, &Catalog::builtin()))
    }

    /// Parses a spec and checks it against the catalog; `file` names it in errors.
    pub fn parse(file: &str, text: &str, catalog: &Catalog) -> Result<Spec, SpecError> {
        let err = |d: Diagnostic| SpecError {
            file: file.to_owned(),
            diagnostic: d.to_string(),
        };
        let root = yaml::parse(text).map_err(err)?;
        parse_root(&root, catalog).map_err(err)
    }

    /// The actions it serves.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }
}

/// The keys an action of a spec may have.
const ACTION_FIELDS: &[&str] = &[
    "request",
    "outputs",
    "not_found",
    "paginate",
    "select",
    "poll",
    "state",
];

/// The entries of a mapping, checked against the allowed keys.
fn fields<'a>(
    node: &'a Node,
    what: &str,
    allowed: &[&str],
) -> Result<BTreeMap<&'a str, &'a Node>, Diagnostic> {
    let mut out = BTreeMap::new();
    for (k, v) in node.as_map(what)? {
        if !allowed.contains(&k.name.as_str()) {
            return Err(
                Diagnostic::new(k.pos, format!("unknown key `{}` in {what}", k.name))
                    .with_hint(format!("expected one of: {}", allowed.join(", "))),
            );
        }
        out.insert(k.name.as_str(), v);
    }
    Ok(out)
}

fn required<'a>(
    f: &BTreeMap<&str, &'a Node>,
    key: &str,
    what: &str,
    at: Pos,
) -> Result<&'a Node, Diagnostic> {
    f.get(key)
        .copied()
        .ok_or_else(|| Diagnostic::new(at, format!("{what} needs `{key}`")))
}

fn text(node: &Node, what: &str) -> Result<String, Diagnostic> {
    match &node.kind {
        NodeKind::Scalar(s, _) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Diagnostic::new(
            node.pos,
            format!("{what} must be non-empty text"),
        )),
    }
}

fn parse_root(root: &Node, catalog: &Catalog) -> Result<Spec, Diagnostic> {
    let f = fields(
        root,
        "the spec",
        &["name", "family", "description", "actions"],
    )?;
    let name = text(required(&f, "name", "the spec", root.pos)?, "`name`")?;
    let family = text(required(&f, "family", "the spec", root.pos)?, "`family`")?;
    let description = match f.get("description") {
        Some(n) => text(n, "`description`")?,
        None => String::new(),
    };
    let actions_node = required(&f, "actions", "the spec", root.pos)?;
    let mut actions = BTreeMap::new();
    for (k, v) in actions_node.as_map("`actions`")? {
        let Some(spec) = catalog.get(&k.name) else {
            let mut d = Diagnostic::new(k.pos, format!("unknown action `{}`", k.name));
            if let Some(s) = catalog.suggest(&k.name) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            return Err(d);
        };
        if k.name.split_once('.').map(|(fam, _)| fam) != Some(family.as_str()) {
            return Err(Diagnostic::new(
                k.pos,
                format!(
                    "action `{}` is not in this spec's family `{family}`",
                    k.name
                ),
            ));
        }
        let inputs: Vec<String> = spec.input_names().map(str::to_owned).collect();
        let af = fields(v, &format!("action `{}`", k.name), ACTION_FIELDS)?;
        let what = format!("action `{}`", k.name);
        let exchange = parse_exchange(&af, v.pos, &what, &inputs, false)?;
        let poll = af.get("poll").map(|n| parse_poll(n, &inputs)).transpose()?;
        let state = match af.get("state") {
            None => None,
            Some(n) => {
                let sf = fields(
                    n,
                    "`state`",
                    &[
                        "request",
                        "outputs",
                        "not_found",
                        "paginate",
                        "select",
                        "from",
                    ],
                )?;
                Some(match sf.get("from") {
                    Some(from) => {
                        // Reuse a read action's request, with this block's own mapping.
                        let from_name = text(from, "`from`")?;
                        let Some(src) = v_sibling(actions_node, &from_name) else {
                            return Err(Diagnostic::new(
                                from.pos,
                                format!("`from: {from_name}` names no action of this spec"),
                            ));
                        };
                        let src_f = fields(src, &format!("action `{from_name}`"), ACTION_FIELDS)?;
                        let mut merged = src_f.clone();
                        for (k, v) in &sf {
                            if *k != "from" {
                                merged.insert(k, v);
                            }
                        }
                        parse_exchange(&merged, n.pos, "`state`", &inputs, true)?
                    }
                    None => parse_exchange(&sf, n.pos, "`state`", &inputs, true)?,
                })
            }
        };
        if spec.kind == ActionKind::Change && spec.inverse.is_some() && state.is_none() {
            return Err(Diagnostic::new(
                v.pos,
                format!(
                    "change action `{}` can be rolled back, so its spec needs `state:` (how to read the target, to journal it before the change and detect drift)",
                    k.name
                ),
            ));
        }
        actions.insert(
            k.name.clone(),
            ActionMap {
                exchange,
                poll,
                state,
                inputs,
            },
        );
    }
    Ok(Spec {
        name,
        family,
        description,
        actions,
    })
}

fn v_sibling<'a>(actions: &'a Node, name: &str) -> Option<&'a Node> {
    match &actions.kind {
        NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v),
        _ => None,
    }
}

fn parse_exchange(
    f: &BTreeMap<&str, &Node>,
    at: Pos,
    what: &str,
    inputs: &[String],
    is_state: bool,
) -> Result<Exchange, Diagnostic> {
    let request = parse_request(required(f, "request", what, at)?, inputs, false)?;
    let outputs = f
        .get("outputs")
        .map(|n| template(n, inputs, true))
        .transpose()?;
    if is_state && outputs.is_none() {
        return Err(Diagnostic::new(
            at,
            "`state` needs `outputs`: the fields that describe the target (only those that change with the action, so drift can be told apart from noise)",
        ));
    }
    let not_found = f
        .get("not_found")
        .map(|n| template(n, inputs, true))
        .transpose()?;
    let paginate = f.get("paginate").map(|n| parse_paginate(n)).transpose()?;
    let select = match f.get("select") {
        Some(n) => {
            let p = text(n, "`select`")?;
            if !p.starts_with('/') {
                return Err(Diagnostic::new(
                    n.pos,
                    "`select` is a JSON pointer and must start with `/`, e.g. /data/0",
                ));
            }
            Some(p)
        }
        None => None,
    };
    Ok(Exchange {
        request,
        outputs,
        not_found,
        paginate,
        select,
    })
}

fn parse_request(
    node: &Node,
    inputs: &[String],
    response: bool,
) -> Result<RequestSpec, Diagnostic> {
    let f = fields(
        node,
        "`request`",
        &["method", "path", "query", "headers", "body"],
    )?;
    let method_node = required(&f, "method", "`request`", node.pos)?;
    let method_text = text(method_node, "`method`")?.to_ascii_uppercase();
    let method = match method_text.as_str() {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        "PATCH" => reqwest::Method::PATCH,
        "DELETE" => reqwest::Method::DELETE,
        other => {
            return Err(Diagnostic::new(
                method_node.pos,
                format!("method must be GET, POST, PUT, PATCH or DELETE, found `{other}`"),
            ));
        }
    };
    let path_node = required(&f, "path", "`request`", node.pos)?;
    let path_text = text(path_node, "`path`")?;
    if !path_text.starts_with('/') {
        return Err(Diagnostic::new(
            path_node.pos,
            "`path` must start with `/` (it is joined to the connector's base URL)",
        ));
    }
    let path = split_template(&path_text, path_node.pos, true)?;
    for p in &path {
        if let Part::Expr(e) = p {
            check_expr(e, inputs, response)?;
        }
    }
    let query = f
        .get("query")
        .map(|n| {
            n.as_map("`query`")?;
            template(n, inputs, response)
        })
        .transpose()?;
    let mut headers = Vec::new();
    if let Some(h) = f.get("headers") {
        for (k, v) in h.as_map("`headers`")? {
            let lower = k.name.to_ascii_lowercase();
            if reqwest::header::HeaderName::from_bytes(k.name.as_bytes()).is_err() {
                return Err(Diagnostic::new(
                    k.pos,
                    format!("`{}` is not a header name", k.name),
                ));
            }
            if matches!(lower.as_str(), "authorization" | "idempotency-key" | "host") {
                return Err(Diagnostic::new(
                    k.pos,
                    format!(
                        "`{}` is set by the connector (auth comes from the connector config, the idempotency key from the engine)",
                        k.name
                    ),
                ));
            }
            headers.push((k.name.clone(), template(v, inputs, response)?));
        }
    }
    let body = f
        .get("body")
        .map(|n| template(n, inputs, response))
        .transpose()?;
    Ok(RequestSpec {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn parse_paginate(node: &Node) -> Result<Paginate, Diagnostic> {
    let f = fields(
        node,
        "`paginate`",
        &[
            "items",
            "next_cursor",
            "cursor_param",
            "next_url",
            "max_pages",
        ],
    )?;
    let pointer = |key: &str| -> Result<Option<String>, Diagnostic> {
        f.get(key)
            .map(|n| {
                let p = text(n, key)?;
                if p.starts_with('/') {
                    Ok(p)
                } else {
                    Err(Diagnostic::new(
                        n.pos,
                        format!("`{key}` is a JSON pointer and must start with `/`, e.g. /items"),
                    ))
                }
            })
            .transpose()
    };
    let items = pointer("items")?
        .ok_or_else(|| Diagnostic::new(node.pos, "`paginate` needs `items` (a JSON pointer)"))?;
    let next = match (pointer("next_cursor")?, pointer("next_url")?) {
        (Some(pointer), None) => Next::Cursor {
            pointer,
            param: match f.get("cursor_param") {
                Some(n) => text(n, "`cursor_param`")?,
                None => "cursor".into(),
            },
        },
        (None, Some(pointer)) => Next::Url { pointer },
        _ => {
            return Err(Diagnostic::new(
                node.pos,
                "`paginate` needs exactly one of `next_cursor` and `next_url`",
            ));
        }
    };
    let max_pages = count(&f, "max_pages", 100)?;
    Ok(Paginate {
        items,
        next,
        max_pages,
    })
}

/// The field `key`, a whole number from 1 to 10000; `default` when absent.
fn count(f: &BTreeMap<&str, &Node>, key: &str, default: u32) -> Result<u32, Diagnostic> {
    let Some(n) = f.get(key) else {
        return Ok(default);
    };
    match n.to_json().as_u64() {
        Some(m) if (1..=10_000).contains(&m) => Ok(m as u32),
        _ => Err(Diagnostic::new(
            n.pos,
            format!("`{key}` must be a whole number from 1 to 10000"),
        )),
    }
}

fn parse_poll(node: &Node, inputs: &[String]) -> Result<Poll, Diagnostic> {
    let f = fields(
        node,
        "`poll`",
        &["when", "request", "until", "interval", "max_attempts"],
    )?;
    let expr_of = |key: &str, response: bool| -> Result<Option<Expr>, Diagnostic> {
        f.get(key)
            .map(|n| {
                let t = text(n, key)?;
                let src = t
                    .trim()
                    .strip_prefix("${{")
                    .and_then(|r| r.strip_suffix("}}"))
                    .unwrap_or(&t);
                let e = Expr::compile(src, n.pos)?;
                check_expr(&e, inputs, response)?;
                Ok(e)
            })
            .transpose()
    };
    let until = expr_of("until", true)?
        .ok_or_else(|| Diagnostic::new(node.pos, "`poll` needs `until` (an expression)"))?;
    let when = expr_of("when", false)?;
    let request = parse_request(required(&f, "request", "`poll`", node.pos)?, inputs, true)?;
    let interval = match f.get("interval") {
        Some(n) => belay_model::parse_duration(&text(n, "`interval`")?)
            .map_err(|e| Diagnostic::new(n.pos, format!("`interval`: {e}")))?,
        None => Duration::from_millis(500),
    };
    let max_attempts = count(&f, "max_attempts", 60)?;
    Ok(Poll {
        when,
        request,
        until,
        interval,
        max_attempts,
    })
}

/// Compiles a value template and checks the variables it reads.
fn template(node: &Node, inputs: &[String], response: bool) -> Result<Template, Diagnostic> {
    let mut diags = Vec::new();
    let t = Template::from_node(node, &mut diags);
    if let Some(d) = diags.into_iter().next() {
        return Err(d);
    }
    for e in t.exprs() {
        check_expr(e, inputs, response)?;
    }
    Ok(t)
}

fn check_expr(e: &Expr, inputs: &[String], response: bool) -> Result<(), Diagnostic> {
    for path in &e.paths {
        let mut segs = path.split('.');
        let root = segs.next().unwrap_or_default();
        if !ROOTS.contains(&root) {
            return Err(Diagnostic::new(
                e.pos,
                format!(
                    "`{path}` is not defined: expressions read input, vars, response and status"
                ),
            ));
        }
        if !response && matches!(root, "response" | "status") {
            return Err(Diagnostic::new(
                e.pos,
                format!("`{path}`: there is no response yet where this is evaluated"),
            ));
        }
        if root == "input"
            && let Some(name) = segs.next()
            && !inputs.iter().any(|i| i == name)
        {
            return Err(Diagnostic::new(
                e.pos,
                format!("`input.{name}` is not an input of this action"),
            )
            .with_hint(format!("its inputs are: {}", inputs.join(", "))));
        }
    }
    Ok(())
}
