//! A YAML reader that keeps the position of every node, so every error can say `line:col`.
//!
//! Built on `saphyr-parser` events. Deliberately strict: one document, no aliases (no alias
//! bombs), no duplicate keys, scalar keys only, bounded nesting.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Pos {
    /// From 1; 0 means no position (the file as a whole).
    pub line: usize,
    /// From 1, in characters.
    pub col: usize,
}

impl Pos {
    /// The position `chars` characters to the right on the same line.
    pub fn right(self, chars: usize) -> Pos {
        Pos {
            line: self.line,
            col: self.col + chars,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One problem in a source file, at a position, with an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong, one sentence.
    pub message: String,
    /// How to fix it (e.g. "did you mean ..."), shown on its own line.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a hint.
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.pos, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// How a scalar was written; quoted scalars are always strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: may be a number, boolean or null.
    Plain,
    /// Single- or double-quoted, or tagged `!!str`: always a string.
    Quoted,
    /// A literal (`|`) or folded (`>`) block.
    Block,
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// Its content.
    pub kind: NodeKind,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar's text and how it was written.
    Scalar(String, Style),
    /// A sequence, in source order.
    Seq(Vec<Node>),
    /// Entries in source order; keys are unique.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Where the key stands.
    pub pos: Pos,
    /// The key's text.
    pub name: String,
}

/// Deepest nesting accepted; deeper documents are rejected rather than risking the stack.
pub const MAX_DEPTH: usize = 64;

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Key, Node)>, Option<Key>),
}

/// What the indentation around a syntax error says, in words: a tab, or a line indented
/// differently from the one above it (the usual cause of YAML's own messages).
fn indentation_hint(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = |n: usize| lines.get(n.checked_sub(1)?).copied();
    let here = at(line)?;
    if here.starts_with('\t') || here.trim_start_matches(' ').starts_with('\t') {
        return Some(format!(
            "line {line} is indented with a tab; YAML indents with spaces only"
        ));
    }
    let meaningful = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let above = (1..line).rev().find(|n| at(*n).is_some_and(meaningful))?;
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let (a, b) = (indent(here), indent(at(above)?));
    (a != b).then(|| {
        format!(
            "line {line} is indented {a} space(s), line {above} {b}: keys of one mapping line up \
             in the same column, a nested mapping is indented further, and list items start \
             with `- ` (`belay guide playbooks` shows the layout)"
        )
    })
}

/// Parses one YAML document into a positioned tree.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            let d = Diagnostic::new(
                Pos {
                    line: m.line(),
                    col: m.col() + 1,
                },
                format!("YAML syntax error: {}", e.info()),
            );
            match indentation_hint(text, m.line()) {
                Some(h) => d.with_hint(h),
                None => d,
            }
        })?;
        let pos = pos_of(&span);
        let node = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(
                        Diagnostic::new(pos, "only one YAML document is allowed per file")
                            .with_hint("remove the `---` separator or split the file"),
                    );
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(
                    Diagnostic::new(pos, "YAML aliases (`*name`) are not supported")
                        .with_hint("write the value out in full"),
                );
            }
            Event::Scalar(value, style, _, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    _ => Style::Block,
                };
                // An explicit `!!str` tag makes a plain scalar a string.
                let style = match tag {
                    Some(t) if t.suffix == "str" && style == Style::Plain => Style::Quoted,
                    _ => style,
                };
                Node {
                    pos,
                    kind: NodeKind::Scalar(value.into_owned(), style),
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Diagnostic::new(
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(pos, Vec::new())
                } else {
                    Frame::Map(pos, Vec::new(), None)
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items)) => Node {
                    pos: p,
                    kind: NodeKind::Seq(items),
                },
                _ => return Err(Diagnostic::new(pos, "unbalanced sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, entries, _)) => Node {
                    pos: p,
                    kind: NodeKind::Map(entries),
                },
                _ => return Err(Diagnostic::new(pos, "unbalanced mapping")),
            },
            _ => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    let NodeKind::Scalar(name, _) = node.kind else {
                        return Err(Diagnostic::new(node.pos, "mapping keys must be plain text"));
                    };
                    if entries.iter().any(|(k, _)| k.name == name) {
                        return Err(Diagnostic::new(node.pos, format!("duplicate key `{name}`")));
                    }
                    *pending = Some(Key {
                        pos: node.pos,
                        name,
                    });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(root.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        kind: NodeKind::Scalar(String::new(), Style::Plain),
    }))
}

impl Node {
    /// The mapping entries, or an error naming what was expected.
    pub fn as_map(&self, what: &str) -> Result<&[(Key, Node)], Diagnostic> {
        match &self.kind {
            NodeKind::Map(entries) => Ok(entries),
            _ => Err(Diagnostic::new(
                self.pos,
                format!("{what} must be a mapping, found {}", self.describe()),
            )),
        }
    }

    /// The sequence items, or an error naming what was expected.
    pub fn as_seq(&self, what: &str) -> Result<&[Node], Diagnostic> {
        match &self.kind {
            NodeKind::Seq(items) => Ok(items),
            _ => Err(Diagnostic::new(
                self.pos,
                format!("{what} must be a list, found {}", self.describe()),
            )),
        }
    }

    /// The scalar text (any scalar), or an error.
    pub fn as_str(&self, what: &str) -> Result<&str, Diagnostic> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Ok(s),
            _ => Err(Diagnostic::new(
                self.pos,
                format!("{what} must be text, found {}", self.describe()),
            )),
        }
    }

    /// A short description of the node's type for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
            NodeKind::Scalar(..) => describe_value(&self.to_json()),
        }
    }

    /// The node as JSON, resolving plain scalars by the YAML 1.2 core schema.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar(s, Style::Plain) => resolve_plain(s),
            NodeKind::Scalar(s, _) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = s.parse::<i64>()
    {
        return Value::Number(i.into());
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    if let Some(oct) = s.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Number(i.into());
    }
    let looks_float = s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float && let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(s.to_owned())
}

/// A short description of a value's type for error messages, in playbook words: null, a
/// boolean, a number, text, a list or a mapping.
pub fn describe_value(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_scalars_like_yaml_1_2() {
        let n =
            parse("a: 1\nb: true\nc: ~\nd: '1'\ne: 1.5\nf: text\ng: [x, 2]\nh: 0x1f\n").unwrap();
        assert_eq!(
            n.to_json(),
            json!({"a":1,"b":true,"c":null,"d":"1","e":1.5,"f":"text","g":["x",2],"h":31})
        );
    }

    #[test]
    fn keeps_positions() {
        let n = parse("name: x\nsteps:\n  - id: a\n    action: core.log\n").unwrap();
        let map = n.as_map("root").unwrap();
        assert_eq!(map[1].0.pos, Pos { line: 2, col: 1 });
        let steps = map[1].1.as_seq("steps").unwrap();
        let step = steps[0].as_map("step").unwrap();
        assert_eq!(step[1].0.pos, Pos { line: 4, col: 5 });
        assert_eq!(step[1].1.pos, Pos { line: 4, col: 13 });
    }

    #[test]
    fn rejects_what_playbooks_must_not_contain() {
        let cases = [
            ("a: 1\na: 2\n", "duplicate key `a`", 2),
            ("a: &x [1]\nb: *x\n", "aliases", 2),
            ("a: [1, 2\n", "YAML syntax error", 2),
            ("a: 1\n---\nb: 2\n", "only one YAML document", 2),
        ];
        for (text, want, line) in cases {
            let d = parse(text).unwrap_err();
            assert!(d.message.contains(want), "{text:?}: {d}");
            assert_eq!(d.pos.line, line, "{text:?}: {d}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
    }
}
