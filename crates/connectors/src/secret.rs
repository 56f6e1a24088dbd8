//! Secrets in connector configuration: `${{ secrets.NAME }}` resolved from the environment
//! (`BELAY_SECRET_NAME`, then `NAME`), then a secrets file (TOML, `NAME = "value"`, mode 0600),
//! then the secrets sealed in belay's store (opened by the caller and added with
//! [`SecretSource::add_stored`]).
//!
//! A [`Secret`] prints as `***` (Debug and Display), so it cannot reach a log, an error, an
//! output, the audit trail or the store by accident; [`Redactor`] scrubs the values from text a
//! remote system sends back, in case it echoes one.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A credential. Only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential's value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be resolved. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret `{name}` is not set (looked for the environment variables BELAY_SECRET_{name} and {name}{file}{store})"
    )]
    /// A reference names a secret that neither the overrides, the environment nor the
    /// secrets file set (an empty environment variable counts as unset).
    Missing {
        /// The secret's `NAME`.
        name: String,
        /// `, and in PATH` when a secrets file was searched, else empty.
        file: String,
        /// Where the store was (or could not be) searched, else empty.
        store: String,
    },
    #[error(
        "`{text}` is not a secret reference: write `${{{{ secrets.NAME }}}}` with NAME of letters, digits and `_`"
    )]
    /// A value holds `${{` but is not one well-formed `${{ secrets.NAME }}` reference.
    Syntax {
        /// The offending reference, or a placeholder when text and a reference are mixed
        /// (the text around it might be a secret).
        text: String,
    },
    #[error("secrets file {path}: {message}")]
    /// The secrets file is unreadable, readable by group or others, not TOML, or has a
    /// non-string value.
    File {
        /// The secrets file.
        path: PathBuf,
        /// What is wrong with it (never quoting its content).
        message: String,
    },
}

/// Where secrets come from: the process environment and an optional secrets file.
#[derive(Default)]
pub struct SecretSource {
    file: Option<(PathBuf, HashMap<String, String>)>,
    /// Extra values taking precedence over the environment (tests, embedding).
    overrides: HashMap<String, String>,
    /// Values opened from belay's store, consulted last.
    stored: HashMap<String, String>,
    /// How the Missing error describes the store's part (`, and in belay's store`).
    store_note: String,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("file", &self.file.as_ref().map(|(p, _)| p))
            .finish_non_exhaustive()
    }
}

impl SecretSource {
    /// The environment only.
    pub fn env() -> Self {
        Self::default()
    }

    /// The environment and a TOML secrets file, which must not be readable by group or others.
    pub fn with_file(path: &Path) -> Result<Self, SecretError> {
        let err = |message: String| SecretError::File {
            path: path.to_owned(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "mode {mode:04o} lets other users read it; run `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        // The parser's message may quote the offending line, which may hold a secret: keep
        // only where it is.
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            err(format!("is not valid TOML{at}"))
        })?;
        let mut values = HashMap::new();
        for (k, v) in table {
            match v {
                toml::Value::String(s) => {
                    values.insert(k, s);
                }
                _ => return Err(err(format!("`{k}` must be a string"))),
            }
        }
        Ok(SecretSource {
            file: Some((path.to_owned(), values)),
            ..Default::default()
        })
    }

    /// Adds a value that takes precedence over the environment and the file.
    pub fn set(&mut self, name: &str, value: &str) {
        self.overrides.insert(name.to_owned(), value.to_owned());
    }

    /// Adds a value opened from belay's store, consulted after the environment and the file.
    pub fn add_stored(&mut self, name: &str, value: String) {
        self.stored.insert(name.to_owned(), value);
    }

    /// Says how the store was searched, in the error for a secret set nowhere.
    pub fn note_store(&mut self, note: &str) {
        self.store_note = note.to_owned();
    }

    /// Whether the environment or the file sets `name` (the store is not asked).
    pub fn sets_without_store(&self, name: &str) -> bool {
        self.overrides.contains_key(name)
            || [format!("BELAY_SECRET_{name}"), name.to_owned()]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()))
            || self
                .file
                .as_ref()
                .is_some_and(|(_, m)| m.contains_key(name))
    }

    /// Resolves a config value: a `${{ secrets.NAME }}` reference, or literal text.
    pub fn resolve(&self, text: &str) -> Result<Secret, SecretError> {
        let Some(name) = reference(text)? else {
            return Ok(Secret::new(text));
        };
        if let Some(v) = self.overrides.get(name) {
            return Ok(Secret::new(v.clone()));
        }
        for var in [format!("BELAY_SECRET_{name}"), name.to_owned()] {
            if let Ok(v) = std::env::var(&var)
                && !v.is_empty()
            {
                return Ok(Secret::new(v));
            }
        }
        if let Some((_, values)) = &self.file
            && let Some(v) = values.get(name)
        {
            return Ok(Secret::new(v.clone()));
        }
        if let Some(v) = self.stored.get(name) {
            return Ok(Secret::new(v.clone()));
        }
        Err(SecretError::Missing {
            name: name.to_owned(),
            file: self
                .file
                .as_ref()
                .map(|(p, _)| format!(", and in {}", p.display()))
                .unwrap_or_default(),
            store: self.store_note.clone(),
        })
    }
}

/// The `NAME` a config value references as `${{ secrets.NAME }}`; `None` for literal text.
pub fn reference(text: &str) -> Result<Option<&str>, SecretError> {
    let trimmed = text.trim();
    let Some(inner) = trimmed
        .strip_prefix("${{")
        .and_then(|r| r.strip_suffix("}}"))
    else {
        if text.contains("${{") {
            return Err(SecretError::Syntax {
                text: "(a value mixing text and a reference)".into(),
            });
        }
        return Ok(None);
    };
    inner
        .trim()
        .strip_prefix("secrets.")
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(Some)
        .ok_or_else(|| SecretError::Syntax {
            text: trimmed.to_owned(),
        })
}

/// Replaces known secret values in text with `***`.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// Adds a value to scrub (values shorter than 4 bytes would scrub ordinary words: skipped).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 4 && !self.values.iter().any(|v| v == secret) {
            self.values.push(secret.to_owned());
            // Longest first, so a value containing another is scrubbed whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every known value replaced by `***`, longest values first.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }

    /// Scrubs every string (and key) in a JSON value.
    pub fn scrub_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.values.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.scrub(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.scrub_json(v)).collect())
            }
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (self.scrub(&k), self.scrub_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn references_resolve_from_overrides_and_report_missing_names_only() {
        let mut src = SecretSource::env();
        src.set("LAB_TOKEN", "tok-123456");
        assert_eq!(
            src.resolve("${{ secrets.LAB_TOKEN }}").unwrap().expose(),
            "tok-123456"
        );
        let e = src
            .resolve("${{ secrets.BELAY_TEST_SURELY_UNSET_9F2 }}")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("BELAY_SECRET_BELAY_TEST_SURELY_UNSET_9F2")
        );
        assert!(matches!(
            src.resolve("${{ secret.X }}"),
            Err(SecretError::Syntax { .. })
        ));
    }

    /// `secrets.toml` in `dir` holding `text`, with permission bits `mode` (Unix only).
    fn secrets_file(dir: &tempfile::TempDir, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.path().join("secrets.toml");
        std::fs::write(&p, text).unwrap();
        chmod(&p, mode);
        p
    }

    /// Sets `p`'s permission bits (nothing to do off Unix).
    fn chmod(p: &std::path::Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = (p, mode);
    }

    #[test]
    fn a_secrets_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = secrets_file(&dir, "EDR_TOKEN = \"from-file-abc\"\n", 0o644);
        #[cfg(unix)]
        {
            let e = SecretSource::with_file(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        chmod(&p, 0o600);
        let src = SecretSource::with_file(&p).unwrap();
        assert_eq!(
            src.resolve("${{ secrets.EDR_TOKEN }}").unwrap().expose(),
            "from-file-abc"
        );
    }

    #[test]
    fn a_malformed_secrets_file_error_does_not_quote_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = secrets_file(&dir, "A = \"ok\"\nB = supersecretvalue-unquoted\n", 0o600);
        let e = SecretSource::with_file(&p).unwrap_err().to_string();
        assert!(!e.contains("supersecretvalue"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn redactor_scrubs_nested_json() {
        let mut r = Redactor::default();
        r.add("s3cr3t-token");
        let v = serde_json::json!({ "a": ["x s3cr3t-token y"], "s3cr3t-token": 1 });
        let out = r.scrub_json(v).to_string();
        assert!(!out.contains("s3cr3t-token"), "{out}");
    }
}
