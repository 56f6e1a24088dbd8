//! Strict `${{ … }}` expressions with Jinja semantics (minijinja).
//!
//! One shared environment: no templates, no loader, only the filters and tests listed here,
//! undefined values are errors, and every evaluation runs on a fuel budget, so a playbook
//! author can never hang the engine or read anything but the context it is given.

use crate::yaml::{Diagnostic, Pos};
use minijinja::{Environment, Expression, UndefinedBehavior, Value as MjValue};
use serde_json::Value;
use std::sync::LazyLock;

/// Instructions one evaluation may execute before it is stopped.
pub const FUEL: u64 = 5_000;
/// Longest expression source accepted.
pub const MAX_EXPR_BYTES: usize = 16 * 1024;
/// Largest string an expression may build (repeated strings, joins).
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Most values (list items, map entries, scalars) one expression result may hold: a feed
/// update of a million addresses, as the set-level actions take it.
pub const MAX_RESULT_VALUES: usize = 1_000_000;
/// Most text (strings and map keys, in bytes) one expression result may hold in all.
pub const MAX_RESULT_TEXT_BYTES: usize = 16 << 20;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    use minijinja::{filters as f, tests as t};
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env.add_filter("length", f::length);
    env.add_filter("count", f::length);
    env.add_filter("lower", f::lower);
    env.add_filter("upper", f::upper);
    env.add_filter("trim", f::trim);
    env.add_filter("replace", f::replace);
    env.add_filter("split", f::split);
    env.add_filter("join", f::join);
    env.add_filter("first", f::first);
    env.add_filter("last", f::last);
    env.add_filter("default", f::default);
    env.add_filter("d", f::default);
    env.add_filter("int", f::int);
    env.add_filter("float", f::float);
    env.add_filter("string", f::string);
    env.add_filter("bool", f::bool);
    env.add_filter("abs", f::abs);
    env.add_filter("round", f::round);
    env.add_filter("min", f::min);
    env.add_filter("max", f::max);
    env.add_filter("sum", f::sum);
    env.add_filter("sort", f::sort);
    env.add_filter("unique", f::unique);
    env.add_filter("reverse", f::reverse);
    env.add_filter("list", f::list);
    env.add_filter("items", f::items);
    env.add_filter("dictsort", f::dictsort);
    env.add_filter("map", f::map);
    env.add_filter("select", f::select);
    env.add_filter("reject", f::reject);
    env.add_filter("selectattr", f::selectattr);
    env.add_filter("rejectattr", f::rejectattr);
    env.add_filter("attr", f::attr);
    env.add_filter("slice", f::slice);
    env.add_filter("batch", f::batch);
    env.add_filter("tojson", f::tojson);
    env.add_test("defined", t::is_defined);
    env.add_test("undefined", t::is_undefined);
    env.add_test("none", t::is_none);
    env.add_test("string", t::is_string);
    env.add_test("number", t::is_number);
    env.add_test("mapping", t::is_mapping);
    env.add_test("sequence", t::is_sequence);
    env.add_test("startingwith", t::is_startingwith);
    env.add_test("endingwith", t::is_endingwith);
    env.add_test("in", t::is_in);
    env.add_test("eq", t::is_eq);
    env.add_test("ne", t::is_ne);
    env.add_test("lt", t::is_lt);
    env.add_test("le", t::is_le);
    env.add_test("gt", t::is_gt);
    env.add_test("ge", t::is_ge);
    env.add_test("true", t::is_true);
    env.add_test("false", t::is_false);
    env
});

/// A compiled expression and the variable paths it reads.
pub struct Expr {
    /// The expression text, trimmed, without `${{ }}`.
    pub source: String,
    /// Where it stands in the playbook file; diagnostics point there.
    pub pos: Pos,
    compiled: Expression<'static, 'static>,
    /// Dotted paths read from the context (`event.data.message`), longest form.
    pub paths: Vec<String>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?} at {})", self.source, self.pos)
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{message}")]
pub struct EvalError {
    /// What went wrong, for people (an undefined variable, a type error, a size limit...).
    pub message: String,
}

impl Expr {
    /// Compiles `source` (the text between `${{` and `}}`), reporting errors at `pos`.
    pub fn compile(source: &str, pos: Pos) -> Result<Expr, Diagnostic> {
        let trimmed = source.trim();
        if trimmed.is_empty() {
            return Err(Diagnostic::new(pos, "empty expression `${{ }}`"));
        }
        if trimmed.len() > MAX_EXPR_BYTES {
            return Err(Diagnostic::new(
                pos,
                format!("expression is longer than {MAX_EXPR_BYTES} bytes"),
            ));
        }
        let compiled = ENV
            .compile_expression_owned(trimmed.to_owned())
            .map_err(|e| {
                Diagnostic::new(
                    pos,
                    format!("expression `{trimmed}` does not parse: {}", describe(&e)),
                )
            })?;
        // minijinja 3.1 turns a lexer error right after a string literal into the end of the
        // input, silently dropping the rest: `'a' && b` compiles to `'a'`. Inside parentheses
        // the dropped rest leaves the `(` unclosed, so the error surfaces there.
        if ENV.compile_expression(&format!("({trimmed})")).is_err() {
            return Err(Diagnostic::new(
                pos,
                format!(
                    "expression `{trimmed}` does not parse: unexpected character after a string"
                ),
            ));
        }
        check_names(trimmed, pos)?;
        let mut paths: Vec<String> = compiled.undeclared_variables(true).into_iter().collect();
        paths.sort();
        Ok(Expr {
            source: trimmed.to_owned(),
            pos,
            compiled,
            paths,
        })
    }

    /// Evaluates against a context; undefined paths and exhausted fuel are errors.
    pub fn eval(&self, ctx: &MjValue) -> Result<MjValue, EvalError> {
        match self.compiled.eval(ctx.clone()) {
            Ok(v) if v.is_undefined() => Err(self.undefined_error(ctx, None)),
            Ok(v) => Ok(v),
            Err(e) if e.kind() == minijinja::ErrorKind::UndefinedError => {
                Err(self.undefined_error(ctx, Some(&e)))
            }
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(EvalError {
                message: format!(
                    "expression `{}` ran too long (more than {FUEL} steps) and was stopped",
                    self.source
                ),
            }),
            Err(e) => Err(EvalError {
                message: format!("expression `{}` failed: {}", self.source, describe(&e)),
            }),
        }
    }

    /// Evaluates as a JSON value, keeping its type.
    pub fn eval_json(&self, ctx: &MjValue) -> Result<Value, EvalError> {
        let v = self.eval(ctx)?;
        to_json(&v).map_err(|message| EvalError {
            message: format!("expression `{}`: {message}", self.source),
        })
    }

    /// Evaluates as a condition (Jinja truthiness).
    pub fn eval_bool(&self, ctx: &MjValue) -> Result<bool, EvalError> {
        Ok(self.eval(ctx)?.is_true())
    }

    fn undefined_error(&self, ctx: &MjValue, err: Option<&minijinja::Error>) -> EvalError {
        for path in &self.paths {
            if let Some(missing) = first_missing(ctx, path) {
                return EvalError {
                    message: format!("`{}` is not defined ({missing})", path),
                };
            }
        }
        let detail = err
            .map(describe)
            .unwrap_or_else(|| "undefined value".into());
        EvalError {
            message: format!("expression `{}` is undefined: {detail}", self.source),
        }
    }
}

/// Filter and test names the environment provides.
fn known(kind: &str, name: &str) -> bool {
    match kind {
        "filter" => FILTERS.contains(&name),
        _ => TESTS.contains(&name),
    }
}

/// The filters registered in [`ENV`] (kept in sync by a test).
pub const FILTERS: &[&str] = &[
    "length",
    "count",
    "lower",
    "upper",
    "trim",
    "replace",
    "split",
    "join",
    "first",
    "last",
    "default",
    "d",
    "int",
    "float",
    "string",
    "bool",
    "abs",
    "round",
    "min",
    "max",
    "sum",
    "sort",
    "unique",
    "reverse",
    "list",
    "items",
    "dictsort",
    "map",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "attr",
    "slice",
    "batch",
    "tojson",
];
/// The tests registered in [`ENV`].
pub const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "string",
    "number",
    "mapping",
    "sequence",
    "startingwith",
    "endingwith",
    "in",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "true",
    "false",
];

/// Rejects unknown filters (`| name`) and tests (`is name`) at compile time; minijinja
/// would only notice them when evaluating.
fn check_names(src: &str, pos: Pos) -> Result<(), Diagnostic> {
    let bytes = src.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    let ident = |from: usize| -> (usize, &str) {
        let mut s = from;
        while s < bytes.len() && bytes[s].is_ascii_whitespace() {
            s += 1;
        }
        let mut e = s;
        while e < bytes.len() && (bytes[e].is_ascii_alphanumeric() || bytes[e] == b'_') {
            e += 1;
        }
        (e, &src[s..e])
    };
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let found = if b == b'"' || b == b'\'' {
            quote = Some(b);
            None
        } else if b == b'|' {
            Some(("filter", ident(i + 1)))
        } else if word_start && bytes[i..].starts_with(b"is ") {
            let (e, name) = ident(i + 2);
            if name == "not" {
                Some(("test", ident(e)))
            } else {
                Some(("test", (e, name)))
            }
        } else {
            None
        };
        if let Some((kind, (_, name))) = found
            && !name.is_empty()
            && !known(kind, name)
        {
            let names = if kind == "filter" { FILTERS } else { TESTS };
            let near = names
                .iter()
                .map(|n| (crate::catalog::edit_distance(n, name), *n))
                .filter(|(d, _)| *d <= 2)
                .min();
            let hint = match near {
                Some((_, n)) => {
                    format!("did you mean `{n}`? (`belay guide expressions` lists every {kind})")
                }
                None => format!(
                    "belay expressions have no `{name}` {kind}; `belay guide expressions` lists the ones they have"
                ),
            };
            return Err(
                Diagnostic::new(pos, format!("unknown {kind} `{name}` in `{src}`")).with_hint(hint),
            );
        }
        i += 1;
    }
    Ok(())
}

/// Explains which segment of a dotted path is missing in the context, if any.
fn first_missing(ctx: &MjValue, path: &str) -> Option<String> {
    let mut cur = ctx.clone();
    let mut walked = String::new();
    for seg in path.split('.') {
        let next = cur.get_attr(seg).unwrap_or(MjValue::UNDEFINED);
        if next.is_undefined() {
            let keys: Vec<String> = match cur.try_iter() {
                Ok(it) if cur.kind() == minijinja::value::ValueKind::Map => {
                    it.take(12).map(|k| k.to_string()).collect()
                }
                _ => Vec::new(),
            };
            return Some(if walked.is_empty() {
                format!("no variable `{seg}`")
            } else if keys.is_empty() {
                format!("`{walked}` has no field `{seg}`")
            } else {
                format!(
                    "`{walked}` has no field `{seg}`; it has: {}",
                    keys.join(", ")
                )
            });
        }
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(seg);
        cur = next;
    }
    None
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Converts an expression result to JSON; undefined and non-JSON values are errors.
pub fn to_json(v: &MjValue) -> Result<Value, String> {
    // Repeating a list (`x * 10000000`) is lazy and costs no fuel, so a short expression can
    // return a value of millions of items; measure before converting instead of hanging.
    let mut budget = (MAX_RESULT_VALUES, MAX_RESULT_TEXT_BYTES);
    check_size(v, &mut budget)?;
    let json = serde_json::to_value(v).map_err(|e| format!("result is not JSON: {e}"))?;
    if let Value::String(s) = &json
        && s.len() > MAX_RESULT_BYTES
    {
        return Err(format!("result is larger than {MAX_RESULT_BYTES} bytes"));
    }
    Ok(json)
}

/// Charges `v` against `budget` (values left, text bytes left), stopping as soon as it runs out.
fn check_size(v: &MjValue, budget: &mut (usize, usize)) -> Result<(), String> {
    use minijinja::value::ValueKind;
    budget.0 = budget
        .0
        .checked_sub(1)
        .ok_or_else(|| format!("result has more than {MAX_RESULT_VALUES} values"))?;
    let text = match v.kind() {
        ValueKind::String => v.as_str().map_or(0, str::len),
        ValueKind::Bytes => v.as_bytes().map_or(0, <[u8]>::len),
        _ => 0,
    };
    budget.1 = budget
        .1
        .checked_sub(text)
        .ok_or_else(|| format!("result holds more than {MAX_RESULT_TEXT_BYTES} bytes of text"))?;
    match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => {
            for item in v.try_iter().map_err(|e| describe(&e))? {
                check_size(&item, budget)?;
            }
        }
        ValueKind::Map => {
            for key in v.try_iter().map_err(|e| describe(&e))? {
                check_size(&key, budget)?;
                check_size(&v.get_item(&key).unwrap_or_default(), budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Builds an expression context value from JSON.
pub fn context_value(json: &Value) -> MjValue {
    MjValue::from(minijinja::value::Serde(json))
}

/// One piece of a string with embedded expressions.
#[derive(Debug)]
pub enum Part {
    /// Literal text, copied as is.
    Text(String),
    /// An embedded `${{ … }}` expression.
    Expr(Expr),
}

/// Splits text into literal parts and `${{ … }}` expressions. `pos` is where the text starts;
/// `inline` says whether the text sits on one line there, so columns can be computed.
pub fn split_template(text: &str, pos: Pos, inline: bool) -> Result<Vec<Part>, Diagnostic> {
    let mut parts = Vec::new();
    let mut rest = text;
    let mut offset = 0usize; // characters consumed so far
    while let Some(start) = rest.find("${{") {
        let at = if inline {
            pos.right(offset + rest[..start].chars().count())
        } else {
            pos
        };
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_owned()));
        }
        let body = &rest[start + 3..];
        let end = find_close(body).ok_or_else(|| {
            Diagnostic::new(at, "unterminated expression: `${{` without `}}`")
                .with_hint("close it with `}}`")
        })?;
        parts.push(Part::Expr(Expr::compile(&body[..end], at)?));
        let consumed = start + 3 + end + 2;
        offset += rest[..consumed].chars().count();
        rest = &rest[consumed..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// Finds the `}}` that closes an expression, skipping quoted strings.
fn find_close(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> MjValue {
        context_value(&json!({
            "event": {"severity": "high", "observables": {"hosts": ["laptop-7"]}, "data": {}},
            "steps": {"parse": {"output": {"urls": ["a", "b", "c"]}}},
        }))
    }

    fn e(src: &str) -> Expr {
        Expr::compile(src, Pos { line: 1, col: 1 }).unwrap()
    }

    #[test]
    fn keeps_json_types() {
        let c = ctx();
        assert_eq!(
            e("steps.parse.output.urls").eval_json(&c).unwrap(),
            json!(["a", "b", "c"])
        );
        assert_eq!(
            e("steps.parse.output.urls | length > 2")
                .eval_json(&c)
                .unwrap(),
            json!(true)
        );
        assert_eq!(
            e("event.observables.hosts[0]").eval_json(&c).unwrap(),
            json!("laptop-7")
        );
        assert!(e("event.severity != 'low'").eval_bool(&c).unwrap());
    }

    #[test]
    fn a_missing_field_names_the_path() {
        let err = e("event.data.message").eval(&ctx()).unwrap_err();
        assert!(
            err.message.contains("`event.data.message` is not defined"),
            "{err}"
        );
        assert!(
            err.message.contains("`event.data` has no field `message`"),
            "{err}"
        );
        let err = e("stepz.x").eval(&ctx()).unwrap_err();
        assert!(err.message.contains("no variable `stepz`"), "{err}");
    }

    #[test]
    fn runaway_expressions_are_stopped() {
        let long = vec!["x"; 3_000].join(" + ");
        let c = context_value(&json!({"x": 1}));
        let err = e(&long).eval(&c).unwrap_err();
        assert!(err.message.contains("ran too long"), "{err}");
    }

    #[test]
    fn unknown_filters_and_bad_syntax_are_compile_errors() {
        let d = Expr::compile("x | shell", Pos::default()).unwrap_err();
        assert!(d.message.contains("unknown filter `shell`"), "{d}");
        let d = Expr::compile("x is not odd", Pos::default()).unwrap_err();
        assert!(d.message.contains("unknown test `odd`"), "{d}");
        assert!(
            Expr::compile(
                "x | length > 1 and y is defined and 'a|b' in z",
                Pos::default()
            )
            .is_ok()
        );
        let d = Expr::compile("a +", Pos { line: 3, col: 7 }).unwrap_err();
        assert_eq!(d.pos, Pos { line: 3, col: 7 });
        assert!(d.message.contains("does not parse"), "{d}");
    }

    #[test]
    fn listed_filters_and_tests_exist() {
        let c = context_value(&json!({"x": [1]}));
        let filters = FILTERS
            .iter()
            .map(|f| (format!("x | {f}"), "unknown filter"));
        let tests = TESTS.iter().map(|t| (format!("x is {t}"), "unknown test"));
        for (expr, unknown) in filters.chain(tests) {
            let err = e(&expr)
                .eval(&c)
                .err()
                .map(|e| e.message)
                .unwrap_or_default();
            assert!(!err.contains(unknown), "{expr}: {err}");
        }
    }

    #[test]
    fn splits_text_and_expressions_with_columns() {
        let parts = split_template(
            "host ${{ a }} and ${{ 'x}}' }}!",
            Pos { line: 2, col: 10 },
            true,
        )
        .unwrap();
        assert_eq!(parts.len(), 5);
        match &parts[3] {
            Part::Expr(x) => {
                assert_eq!(x.source, "'x}}'");
                assert_eq!(x.pos, Pos { line: 2, col: 28 });
            }
            other => panic!("{other:?}"),
        }
        assert!(split_template("${{ a ", Pos::default(), true).is_err());
    }

    #[test]
    fn text_after_a_string_is_not_dropped() {
        // Found while fuzzing `expression_eval`: minijinja compiled these to just the string.
        for src in [
            "'a' && b",
            "event.severity == 'high' && event.data.x",
            "'' é is odd",
            "\"\"\u{FFFD}",
            "x == 'a' # c",
            "'a' 'b",
        ] {
            let d = Expr::compile(src, Pos::default()).unwrap_err();
            assert!(d.message.contains("does not parse"), "{src:?}: {d}");
        }
        for src in ["'a' 'b'", "'a' ~ 'b' == x", "('a', 'b')", "'é' is string"] {
            assert!(Expr::compile(src, Pos::default()).is_ok(), "{src:?}");
        }
    }

    #[test]
    fn huge_lazy_results_are_refused() {
        // Found by fuzzing `expression_eval` (`x*7717738.`): list repetition is lazy and free of
        // fuel, and converting its 23 million items to JSON ran for minutes.
        let c = context_value(&json!({"x": ["a", "b", "c"], "s": "y".repeat(1000)}));
        let err = e("[s] * 20000").eval_json(&c).unwrap_err();
        assert!(err.message.contains("bytes of text"), "{err}");
        let err = e("x * 7717738").eval_json(&c).unwrap_err();
        assert!(err.message.contains("more than 1000000 values"), "{err}");
        let err = e("[[x * 50000] * 50000]").eval_json(&c).unwrap_err();
        assert!(err.message.contains("more than 1000000 values"), "{err}");
        assert_eq!(
            e("x * 2").eval_json(&c).unwrap(),
            json!(["a", "b", "c", "a", "b", "c"])
        );
        assert_eq!(
            e("(x * 30000) | length").eval_json(&c).unwrap(),
            json!(90000)
        );
    }

    #[test]
    fn names_are_checked_past_non_ascii_text() {
        // Found by fuzzing `expression_eval` (input `""\xED`): the scan sliced the source at
        // every byte and panicked inside a multi-byte character.
        let d = check_names("'' é is odd", Pos::default()).unwrap_err();
        assert!(d.message.contains("unknown test `odd`"), "{d}");
        assert!(check_names("'' é | upper", Pos::default()).is_ok());
    }
}
