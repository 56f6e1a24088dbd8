//! Playbook files: parsed from the positioned YAML tree into typed steps.
//!
//! Parsing checks structure and expression syntax and reports every problem it finds with its
//! position; [`crate::lint`] adds the checks that need the catalog and the other playbooks.

use crate::expr::Expr;
use crate::template::Template;
use crate::yaml::{self, Diagnostic, Key, Node, NodeKind, Pos};
use belay_model::TrustLevel;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A loaded playbook.
#[derive(Debug)]
pub struct Playbook {
    /// Unique within a playbook set; runs and `playbook:` steps refer to it.
    pub name: String,
    /// Free text for people; empty when not given.
    pub description: String,
    /// Who wrote it; with `approval.separation` they may not approve its changes.
    pub author: Option<String>,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the source text; recorded on every run.
    pub hash: String,
    /// The source text, exactly as hashed: what the store keeps as this playbook's version.
    pub source: std::sync::Arc<str>,
    /// Which events start it (`on:`).
    pub trigger: Trigger,
    /// Default trust level of change steps.
    pub trust: TrustLevel,
    /// Constants the playbook declares (`vars:`, a mapping), null when none or invalid.
    pub vars: Value,
    /// In execution order.
    pub steps: Vec<Step>,
}

/// Which events start the playbook.
#[derive(Debug)]
pub struct Trigger {
    /// Exact kind or glob (`dlp.*`); `None` for playbooks only started by other playbooks.
    pub event: Option<String>,
    /// Where `on:` stands (the playbook's start when missing).
    pub pos: Pos,
    /// Extra condition on the event; the playbook starts only when it is true.
    pub condition: Option<Expr>,
}

/// What a step calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A catalog action by name (`action:`).
    Action(String),
    /// Another playbook by name (`playbook:`), run as a child run.
    Playbook(String),
}

/// What happens to the run when a step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop the run as failed (the default).
    Fail,
    /// Record the failure and go on with the next step.
    Continue,
    /// Undo the run's earlier changes, then fail.
    Rollback,
}

/// Retry policy for transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Calls in total, the first included (1: no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each later one.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            backoff: Duration::from_secs(1),
        }
    }
}

pub use belay_model::OnTimeout;

/// The approval policy of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPolicy {
    /// Roles or user names allowed to approve; empty means responder or admin.
    pub approvers: Vec<String>,
    /// Distinct people who must approve (default 1).
    pub quorum: u32,
    /// How long the approval waits (default one hour).
    pub timeout: Duration,
    /// What an unanswered approval turns into (default deny).
    pub on_timeout: OnTimeout,
    /// Forbids the author or trigger of a change from approving it.
    pub separation: bool,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            approvers: Vec::new(),
            quorum: 1,
            timeout: Duration::from_secs(3600),
            on_timeout: OnTimeout::Deny,
            separation: false,
        }
    }
}

/// One step.
#[derive(Debug)]
pub struct Step {
    /// Unique within the playbook; step records and later expressions refer to it.
    pub id: String,
    /// Where the step starts in the file.
    pub pos: Pos,
    /// The action or playbook it calls.
    pub call: Call,
    /// Where `action:` or `playbook:` stands.
    pub call_pos: Pos,
    /// Inputs, with expressions resolved at run time.
    pub with: Template,
    /// Where `with:` stands (the step's position when missing).
    pub with_pos: Pos,
    /// `when:`: the step is skipped unless it is true.
    pub condition: Option<Expr>,
    /// Items to run the step once for each (a list or an expression giving one).
    pub for_each: Option<Template>,
    /// Items of a `for_each` run at once, at most.
    pub concurrency: usize,
    /// Limit of each action call; the engine's default when none.
    pub timeout: Option<Duration>,
    /// Retries of transient failures.
    pub retry: Retry,
    /// The step's declared trust level; the playbook's when none.
    pub trust: Option<TrustLevel>,
    /// Guardrails the step names, beyond those that apply to its action, with positions.
    pub guardrails: Vec<(String, Pos)>,
    /// What a failure does to the run.
    pub on_error: OnError,
    /// Approval options, for a step at `approve`; the defaults when none.
    pub approval: Option<ApprovalPolicy>,
    /// Keeps the step at `approve` forever; the trust report will not suggest promoting it.
    pub pinned: bool,
    /// `expires:`: how long each change of the step lasts; the engine reverts it when the
    /// time is up (and hands the same duration to a system's own expiry). Where it stands.
    pub expires: Option<(Duration, Pos)>,
}

impl Step {
    /// Every expression the step evaluates.
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut v: Vec<&Expr> = self.condition.iter().collect();
        if let Some(f) = &self.for_each {
            v.extend(f.exprs());
        }
        v.extend(self.with.exprs());
        v
    }
}

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "author",
    "on",
    "trust",
    "vars",
    "steps",
];
const ON_KEYS: &[&str] = &["event", "if"];
const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "action",
    "playbook",
    "with",
    "if",
    "for_each",
    "concurrency",
    "timeout",
    "retry",
    "trust",
    "guardrails",
    "on_error",
    "approval",
    "pinned",
    "expires",
];
const RETRY_KEYS: &[&str] = &["attempts", "backoff"];
const APPROVAL_KEYS: &[&str] = &["approvers", "quorum", "timeout", "on_timeout", "separation"];

/// Largest playbook source accepted.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Most items a `for_each` may run at once.
pub const MAX_CONCURRENCY: usize = 64;

impl Playbook {
    /// Reads and parses a playbook file.
    pub fn load(path: &Path) -> Result<Playbook, Vec<Diagnostic>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Diagnostic::new(
                Pos { line: 1, col: 1 },
                format!("cannot read file: {e}"),
            )]
        })?;
        Playbook::parse(path, &text)
    }

    /// Parses a playbook, collecting every structural and expression error.
    pub fn parse(path: &Path, text: &str) -> Result<Playbook, Vec<Diagnostic>> {
        match Playbook::parse_partial(path, text) {
            (Some(pb), diags) if diags.is_empty() => Ok(pb),
            (_, diags) => Err(diags),
        }
    }

    /// Parses as much as can be understood: the playbook (with the faulty parts left out,
    /// so lint can still check the rest) and every error found.
    pub fn parse_partial(path: &Path, text: &str) -> (Option<Playbook>, Vec<Diagnostic>) {
        if text.len() > MAX_SOURCE_BYTES {
            let d = Diagnostic::new(
                Pos { line: 1, col: 1 },
                format!("playbook is larger than {MAX_SOURCE_BYTES} bytes"),
            );
            return (None, vec![d]);
        }
        let root = match yaml::parse(text) {
            Ok(r) => r,
            Err(d) => return (None, vec![d]),
        };
        let mut p = Parser { diags: Vec::new() };
        let pb = p.playbook(path, text, &root);
        p.diags.sort_by_key(|d| d.pos);
        (pb, p.diags)
    }

    /// The step with id `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

struct Parser {
    diags: Vec<Diagnostic>,
}

fn field<'a>(entries: &'a [(Key, Node)], name: &str) -> Option<&'a Node> {
    entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v)
}

fn parse_duration(node: &Node) -> Result<Duration, Diagnostic> {
    let text = match &node.kind {
        NodeKind::Scalar(s, _) => s.clone(),
        _ => {
            return Err(Diagnostic::new(
                node.pos,
                "a duration must be text like `30s` or `5m`",
            ));
        }
    };
    belay_model::parse_duration(&text).map_err(|e| {
        Diagnostic::new(node.pos, format!("`{text}` is not a duration: {e}"))
            .with_hint("write durations like `500ms`, `30s`, `5m` or `1h`")
    })
}

impl Parser {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// A duration (`30s`, `5m`...); reported when it is not one.
    fn duration(&mut self, n: &Node) -> Option<Duration> {
        parse_duration(n).map_err(|d| self.err(d)).ok()
    }

    /// A number from 1 to 10 (`what` names the field); reported when it is not one.
    fn one_to_ten(&mut self, n: &Node, what: &str) -> Option<u32> {
        match n.to_json().as_u64() {
            Some(v) if (1..=10).contains(&v) => Some(v as u32),
            _ => {
                self.err(Diagnostic::new(
                    n.pos,
                    format!("`{what}` must be a number from 1 to 10"),
                ));
                None
            }
        }
    }

    /// The entries of `node`, a mapping (`what` names it if it is not one) whose keys are
    /// checked against `allowed` (`keys_of` names it then); both kinds of error are reported.
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
        keys_of: &str,
    ) -> Option<&'n [(Key, Node)]> {
        let entries = node.as_map(what).map_err(|d| self.err(d)).ok()?;
        self.check_keys(entries, allowed, keys_of);
        Some(entries)
    }

    fn check_keys(&mut self, entries: &[(Key, Node)], allowed: &[&str], what: &str) {
        for (k, _) in entries {
            if !allowed.contains(&k.name.as_str()) {
                let near = allowed.iter().find(|a| close(a, &k.name));
                let mut d = Diagnostic::new(k.pos, format!("unknown key `{}` in {what}", k.name));
                d = match near {
                    Some(n) => d.with_hint(format!("did you mean `{n}`?")),
                    None => d.with_hint(format!("allowed keys: {}", allowed.join(", "))),
                };
                self.err(d);
            }
        }
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_str(what) {
            Ok(s) => Some(s.to_owned()),
            Err(d) => {
                self.err(d);
                None
            }
        }
    }

    fn trust(&mut self, node: &Node) -> Option<TrustLevel> {
        let s = self.text(node, "`trust`")?;
        match s.parse() {
            Ok(t) => Some(t),
            Err(_) => {
                self.err(
                    Diagnostic::new(node.pos, format!("unknown trust level `{s}`"))
                        .with_hint("use one of: shadow, approve, log, guarded"),
                );
                None
            }
        }
    }

    fn condition(&mut self, node: &Node) -> Option<Expr> {
        let text = self.text(node, "`if`")?;
        let trimmed = text.trim();
        let (src, pos) = match trimmed
            .strip_prefix("${{")
            .and_then(|r| r.strip_suffix("}}"))
        {
            Some(inner) => (inner.to_owned(), node.pos),
            None if trimmed.contains("${{") => {
                self.err(
                    Diagnostic::new(node.pos, "`if` must be one expression")
                        .with_hint("write `if: ${{ a and b }}`, not text around `${{ }}`"),
                );
                return None;
            }
            None => (trimmed.to_owned(), node.pos),
        };
        match Expr::compile(&src, pos) {
            Ok(e) => Some(e),
            Err(d) => {
                self.err(d);
                None
            }
        }
    }

    fn playbook(&mut self, path: &Path, text: &str, root: &Node) -> Option<Playbook> {
        let entries = self.entries(root, "a playbook", TOP_KEYS, "playbook")?;
        let name = match field(entries, "name") {
            Some(n) => self.text(n, "`name`").unwrap_or_default(),
            None => {
                self.err(Diagnostic::new(root.pos, "missing `name`"));
                String::new()
            }
        };
        if !name.is_empty()
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            let pos = field(entries, "name").map(|n| n.pos).unwrap_or(root.pos);
            self.err(Diagnostic::new(
                pos,
                format!("playbook name `{name}` may only use letters, digits, `-`, `_` and `.`"),
            ));
        }
        let author = field(entries, "author").and_then(|n| self.text(n, "`author`"));
        let description = field(entries, "description")
            .and_then(|n| self.text(n, "`description`"))
            .unwrap_or_default();
        let trigger = self.trigger(field(entries, "on"), root.pos);
        let trust = field(entries, "trust")
            .and_then(|n| self.trust(n))
            .unwrap_or(TrustLevel::Approve);
        let vars = match field(entries, "vars") {
            Some(n) if matches!(n.kind, NodeKind::Map(_)) => n.to_json(),
            Some(n) => {
                self.err(Diagnostic::new(
                    n.pos,
                    format!("`vars` must be a mapping, found {}", n.describe()),
                ));
                Value::Null
            }
            None => Value::Object(Default::default()),
        };
        let mut steps = Vec::new();
        match field(entries, "steps") {
            None => self.err(Diagnostic::new(root.pos, "missing `steps`")),
            Some(n) => match n.as_seq("`steps`") {
                Err(d) => self.err(d),
                Ok([]) => {
                    self.err(Diagnostic::new(n.pos, "`steps` is empty"));
                }
                Ok(items) => {
                    for item in items {
                        if let Some(s) = self.step(item) {
                            if steps.iter().any(|o: &Step| o.id == s.id) {
                                self.err(Diagnostic::new(
                                    s.pos,
                                    format!("duplicate step id `{}`", s.id),
                                ));
                            }
                            steps.push(s);
                        }
                    }
                }
            },
        }
        Some(Playbook {
            name,
            description,
            author,
            path: path.to_owned(),
            hash: belay_model::sha256_hex(text.as_bytes()),
            source: text.into(),
            trigger,
            trust,
            vars,
            steps,
        })
    }

    fn trigger(&mut self, node: Option<&Node>, root: Pos) -> Trigger {
        let Some(node) = node else {
            return Trigger {
                event: None,
                pos: root,
                condition: None,
            };
        };
        let Some(entries) = self.entries(node, "`on`", ON_KEYS, "`on`") else {
            return Trigger {
                event: None,
                pos: node.pos,
                condition: None,
            };
        };
        let event = field(entries, "event").and_then(|n| {
            let s = self.text(n, "`on.event`")?;
            if let Err(e) = globset::Glob::new(&s) {
                self.err(Diagnostic::new(
                    n.pos,
                    format!("`{s}` is not a valid kind or glob: {e}"),
                ));
            }
            Some(s)
        });
        if event.is_none() && field(entries, "event").is_none() {
            self.err(Diagnostic::new(
                node.pos,
                "`on` needs an `event` kind (e.g. `phishing.reported` or `dlp.*`)",
            ));
        }
        let condition = field(entries, "if").and_then(|n| self.condition(n));
        Trigger {
            event,
            pos: node.pos,
            condition,
        }
    }

    fn step(&mut self, node: &Node) -> Option<Step> {
        let entries = self.entries(node, "a step", STEP_KEYS, "a step")?;
        let id = match field(entries, "id") {
            Some(n) => {
                let id = self.text(n, "`id`")?;
                let ok = id
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    self.err(
                        Diagnostic::new(n.pos, format!("step id `{id}` must be an identifier"))
                            .with_hint("letters, digits and `_`, not starting with a digit (it is used as `steps.ID` in expressions)"),
                    );
                }
                id
            }
            None => {
                self.err(Diagnostic::new(node.pos, "step has no `id`"));
                return None;
            }
        };
        let (call, call_pos) = match (field(entries, "action"), field(entries, "playbook")) {
            (Some(a), None) => (Call::Action(self.text(a, "`action`")?), a.pos),
            (None, Some(p)) => (Call::Playbook(self.text(p, "`playbook`")?), p.pos),
            (Some(a), Some(_)) => {
                self.err(Diagnostic::new(
                    a.pos,
                    format!("step `{id}` has both `action` and `playbook`"),
                ));
                return None;
            }
            (None, None) => {
                self.err(Diagnostic::new(
                    node.pos,
                    format!("step `{id}` needs `action` or `playbook`"),
                ));
                return None;
            }
        };
        let (with, with_pos) = match field(entries, "with") {
            Some(n) if matches!(n.kind, NodeKind::Map(_)) => {
                (Template::from_node(n, &mut self.diags), n.pos)
            }
            Some(n) => {
                self.err(Diagnostic::new(
                    n.pos,
                    format!("`with` must be a mapping, found {}", n.describe()),
                ));
                (Template::Object(Vec::new()), n.pos)
            }
            None => (Template::Object(Vec::new()), node.pos),
        };
        let condition = field(entries, "if").and_then(|n| self.condition(n));
        let for_each = field(entries, "for_each").map(|n| {
            if let NodeKind::Map(_) = n.kind {
                self.err(Diagnostic::new(
                    n.pos,
                    "`for_each` must be a list or an expression",
                ));
            }
            Template::from_node(n, &mut self.diags)
        });
        let concurrency = match field(entries, "concurrency") {
            Some(n) => match n.to_json().as_u64() {
                Some(c) if (1..=MAX_CONCURRENCY as u64).contains(&c) => c as usize,
                _ => {
                    self.err(Diagnostic::new(
                        n.pos,
                        format!("`concurrency` must be a number from 1 to {MAX_CONCURRENCY}"),
                    ));
                    1
                }
            },
            None => 4,
        };
        let timeout = field(entries, "timeout").and_then(|n| self.duration(n));
        let retry = field(entries, "retry")
            .map(|n| self.retry(n))
            .unwrap_or_default();
        let trust = field(entries, "trust").and_then(|n| self.trust(n));
        let guardrails = match field(entries, "guardrails") {
            Some(n) => match n.as_seq("`guardrails`") {
                Ok(items) => items
                    .iter()
                    .filter_map(|i| self.text(i, "a guardrail name").map(|s| (s, i.pos)))
                    .collect(),
                Err(d) => {
                    self.err(d);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let on_error = match field(entries, "on_error") {
            Some(n) => match self.text(n, "`on_error`").as_deref() {
                Some("fail") => OnError::Fail,
                Some("continue") => OnError::Continue,
                Some("rollback") => OnError::Rollback,
                Some(other) => {
                    self.err(
                        Diagnostic::new(n.pos, format!("unknown `on_error` value `{other}`"))
                            .with_hint("use fail, continue or rollback"),
                    );
                    OnError::Fail
                }
                None => OnError::Fail,
            },
            None => OnError::Fail,
        };
        let approval = field(entries, "approval").map(|n| self.approval(n));
        let expires = field(entries, "expires").and_then(|n| self.duration(n).map(|d| (d, n.pos)));
        let pinned = match field(entries, "pinned") {
            Some(n) => match n.to_json() {
                Value::Bool(b) => b,
                _ => {
                    self.err(Diagnostic::new(n.pos, "`pinned` must be true or false"));
                    false
                }
            },
            None => false,
        };
        Some(Step {
            id,
            pos: node.pos,
            call,
            call_pos,
            with,
            with_pos,
            condition,
            for_each,
            concurrency,
            timeout,
            retry,
            trust,
            guardrails,
            on_error,
            approval,
            pinned,
            expires,
        })
    }

    fn retry(&mut self, node: &Node) -> Retry {
        let mut r = Retry::default();
        let Some(entries) = self.entries(node, "`retry`", RETRY_KEYS, "`retry`") else {
            return r;
        };
        if let Some(a) =
            field(entries, "attempts").and_then(|n| self.one_to_ten(n, "retry.attempts"))
        {
            r.attempts = a;
        }
        if let Some(d) = field(entries, "backoff").and_then(|n| self.duration(n)) {
            r.backoff = d;
        }
        r
    }

    fn approval(&mut self, node: &Node) -> ApprovalPolicy {
        let mut a = ApprovalPolicy::default();
        let Some(entries) = self.entries(node, "`approval`", APPROVAL_KEYS, "`approval`") else {
            return a;
        };
        if let Some(n) = field(entries, "approvers") {
            match n.as_seq("`approval.approvers`") {
                Ok(items) => {
                    a.approvers = items
                        .iter()
                        .filter_map(|i| self.text(i, "an approver"))
                        .collect()
                }
                Err(d) => self.err(d),
            }
        }
        if let Some(q) =
            field(entries, "quorum").and_then(|n| self.one_to_ten(n, "approval.quorum"))
        {
            a.quorum = q;
        }
        if let Some(d) = field(entries, "timeout").and_then(|n| self.duration(n)) {
            a.timeout = d;
        }
        if let Some(n) = field(entries, "on_timeout") {
            a.on_timeout = match self.text(n, "`approval.on_timeout`").as_deref() {
                Some("deny") => OnTimeout::Deny,
                Some("approve") => OnTimeout::Approve,
                Some("skip") => OnTimeout::Skip,
                _ => {
                    self.err(Diagnostic::new(
                        n.pos,
                        "`approval.on_timeout` must be deny, approve or skip",
                    ));
                    OnTimeout::Deny
                }
            };
        }
        if let Some(n) = field(entries, "separation") {
            match n.to_json() {
                Value::Bool(b) => a.separation = b,
                _ => self.err(Diagnostic::new(
                    n.pos,
                    "`approval.separation` must be true or false",
                )),
            }
        }
        a
    }
}

fn close(a: &str, b: &str) -> bool {
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let common = a.chars().zip(b.chars()).filter(|(x, y)| x == y).count();
    common + 2 >= a.len().max(b.len()) || (a.len() > 3 && b.starts_with(&a[..3]))
}
