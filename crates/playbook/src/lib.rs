//! The playbook language: positioned YAML, strict `${{ }}` expressions, the action catalog,
//! lint, and the trigger index.
//!
//! Everything here is pure: it reads text and reports diagnostics with `line:col`; it never
//! calls a connector or touches the store.

pub mod catalog;
pub mod event_value;
pub mod expr;
pub mod lint;
pub mod playbook;
pub mod set;
pub mod template;
pub mod yaml;

pub use catalog::{ActionKind, ActionSpec, Catalog, InverseSpec, TargetSpec, TargetType, Verified};
pub use event_value::event_value;
pub use expr::{EvalError, Expr, context_value};
pub use playbook::{ApprovalPolicy, Call, OnError, OnTimeout, Playbook, Retry, Step, Trigger};
pub use set::{FileDiagnostics, PlaybookSet, playbook_files};
pub use template::Template;
pub use yaml::{Diagnostic, Pos, describe_value};
