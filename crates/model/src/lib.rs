//! Plain domain types of belay, shared by every other crate.
//!
//! This crate owns the vocabulary (events, trust levels, runs, steps, changes) and their
//! validation. It does no I/O: storage, connectors and the engine live at the edges. With the
//! `openapi` feature the records the API answers with describe themselves (utoipa).

/// A string-valued enum with `as_str`, `Display`, `FromStr` and snake_case serde.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(::utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable text form used in playbooks, JSON and the store.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{}`; expected one of: {}",
                        $crate::words_of(stringify!($name)),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

/// A type's name as words for people: `RunStatus` → `run status`.
#[doc(hidden)]
pub fn words_of(type_name: &str) -> String {
    let mut out = String::with_capacity(type_name.len() + 4);
    for (i, c) in type_name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

pub mod approval;
pub mod audit;
pub mod audit_cef;
mod case;
mod duration;
mod event;
pub mod observable;
mod run;
mod time;

pub use approval::{
    ApprovalRecord, ApprovalStatus, ApprovalTerms, Demotion, OnTimeout, Vote, change_hash,
    subset_hash,
};
pub use audit::{AuditDraft, AuditEntry, PreparedDraft};
pub use case::{CaseEntry, CaseEntryKind, CaseFile, CaseOp, CaseOutcome, CaseRecord, CaseStatus};
pub use duration::{DurationError, parse_duration};
pub use event::{Event, EventError, Observables, Severity};
pub use run::{
    ChangeRecord, ChangeStatus, Decision, GuardrailSet, PlaybookVersion, RunRecord, RunStatus,
    StepRecord, StepStatus, TrustLevel,
};
pub use time::{ms_to_rfc3339, now_ms};

use sha2::{Digest, Sha256};

/// SHA-256 of a byte string, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A fresh, time-ordered identifier (UUIDv7), so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_named_in_words_with_the_allowed_ones() {
        let err = "fialed".parse::<RunStatus>().unwrap_err();
        assert!(
            err.starts_with("unknown run status `fialed`; expected one of: pending"),
            "{err}"
        );
        assert_eq!(words_of("TrustLevel"), "trust level");
    }
}
