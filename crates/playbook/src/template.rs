//! Values with embedded expressions: a `with:` block, a `for_each:` list, a sub-playbook's inputs.
//!
//! A value that is exactly one `${{ … }}` keeps the JSON type of its result; expressions
//! embedded in text are interpolated as strings.

use crate::expr::{EvalError, Expr, Part, split_template, to_json};
use crate::yaml::{Diagnostic, Node, NodeKind, Pos, Style};
use minijinja::Value as MjValue;
use serde_json::{Map, Value};

/// A YAML value compiled for rendering against a run's context.
#[derive(Debug)]
pub enum Template {
    /// No expression inside: rendered as is.
    Literal(Value),
    /// Exactly one `${{ … }}`: renders to its result with its JSON type.
    Whole(Expr),
    /// Text with embedded expressions: renders to a string.
    Text(Vec<Part>),
    /// A list with at least one expression inside.
    Array(Vec<Template>),
    /// A mapping: key, the key's position, value; in source order.
    Object(Vec<(String, Pos, Template)>),
}

impl Template {
    /// Compiles a YAML node; expression syntax errors are pushed to `diags`.
    pub fn from_node(node: &Node, diags: &mut Vec<Diagnostic>) -> Template {
        match &node.kind {
            NodeKind::Scalar(text, style) if text.contains("${{") => {
                let (start, inline) = match style {
                    Style::Plain => (node.pos, true),
                    Style::Quoted => (node.pos.right(1), !text.contains('\n')),
                    Style::Block => (node.pos, false),
                };
                match split_template(text, start, inline) {
                    Ok(mut parts) => {
                        let only_expr =
                            parts.iter().all(|p| match p {
                                Part::Expr(_) => true,
                                Part::Text(t) => t.trim().is_empty(),
                            }) && parts.iter().filter(|p| matches!(p, Part::Expr(_))).count() == 1;
                        if only_expr {
                            parts.retain(|p| matches!(p, Part::Expr(_)));
                            match parts.pop() {
                                Some(Part::Expr(e)) => Template::Whole(e),
                                _ => Template::Literal(Value::Null),
                            }
                        } else {
                            Template::Text(parts)
                        }
                    }
                    Err(d) => {
                        // Reported once, here; kept as text so that no other check (an
                        // input's schema) reports the same mistake again in other words.
                        diags.push(d);
                        Template::Text(vec![Part::Text(text.clone())])
                    }
                }
            }
            NodeKind::Scalar(..) => Template::Literal(node.to_json()),
            NodeKind::Seq(items) => {
                let t: Vec<Template> = items
                    .iter()
                    .map(|n| Template::from_node(n, diags))
                    .collect();
                if t.iter().all(|t| matches!(t, Template::Literal(_))) {
                    Template::Literal(node.to_json())
                } else {
                    Template::Array(t)
                }
            }
            NodeKind::Map(entries) => Template::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), k.pos, Template::from_node(v, diags)))
                    .collect(),
            ),
        }
    }

    /// Compiles one line of text from a configuration file (not YAML): exactly one `${{ … }}`
    /// keeps its result's JSON type, text around expressions is interpolated, and text
    /// without one is a literal string. Columns count from `pos`.
    pub fn from_text(text: &str, pos: Pos) -> Result<Template, Diagnostic> {
        if !text.contains("${{") {
            return Ok(Template::Literal(Value::String(text.to_owned())));
        }
        let mut parts = split_template(text, pos, !text.contains('\n'))?;
        let exprs = parts.iter().filter(|p| matches!(p, Part::Expr(_))).count();
        let blank = parts.iter().all(|p| match p {
            Part::Expr(_) => true,
            Part::Text(t) => t.trim().is_empty(),
        });
        if exprs == 1 && blank {
            parts.retain(|p| matches!(p, Part::Expr(_)));
            if let Some(Part::Expr(e)) = parts.pop() {
                return Ok(Template::Whole(e));
            }
        }
        Ok(Template::Text(parts))
    }

    /// Resolves every expression against `ctx`.
    pub fn render(&self, ctx: &MjValue) -> Result<Value, EvalError> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Whole(e) => e.eval_json(ctx)?,
            Template::Text(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Text(t) => out.push_str(t),
                        Part::Expr(e) => match to_json(&e.eval(ctx)?) {
                            Ok(Value::String(s)) => out.push_str(&s),
                            Ok(Value::Null) => {}
                            Ok(other) => out.push_str(&other.to_string()),
                            Err(message) => return Err(EvalError { message }),
                        },
                    }
                    if out.len() > crate::expr::MAX_RESULT_BYTES {
                        return Err(EvalError {
                            message: format!(
                                "interpolated text is larger than {} bytes",
                                crate::expr::MAX_RESULT_BYTES
                            ),
                        });
                    }
                }
                Value::String(out)
            }
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Template::Object(entries) => {
                let mut m = Map::new();
                for (k, _, t) in entries {
                    m.insert(
                        k.clone(),
                        t.render(ctx).map_err(|e| EvalError {
                            message: format!("`{k}`: {}", e.message),
                        })?,
                    );
                }
                Value::Object(m)
            }
        })
    }

    /// Every expression inside, in source order.
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Template::Literal(_) => {}
            Template::Whole(e) => out.push(e),
            Template::Text(parts) => out.extend(parts.iter().filter_map(|p| match p {
                Part::Expr(e) => Some(e),
                Part::Text(_) => None,
            })),
            Template::Array(items) => items.iter().for_each(|t| t.collect(out)),
            Template::Object(entries) => entries.iter().for_each(|(_, _, t)| t.collect(out)),
        }
    }

    /// Top-level keys with their positions and templates, when this is a mapping.
    pub fn entries(&self) -> &[(String, Pos, Template)] {
        match self {
            Template::Object(e) => e,
            _ => &[],
        }
    }

    /// The value when it holds no expression.
    pub fn literal(&self) -> Option<Value> {
        match self {
            Template::Literal(v) => Some(v.clone()),
            Template::Object(e) => {
                let mut m = Map::new();
                for (k, _, t) in e {
                    m.insert(k.clone(), t.literal()?);
                }
                Some(Value::Object(m))
            }
            _ => None,
        }
    }
}
