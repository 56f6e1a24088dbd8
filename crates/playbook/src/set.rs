//! A directory of playbooks, indexed by trigger so matching an event never scans them all.

use crate::catalog::Catalog;
use crate::lint;
use crate::playbook::{Call, Playbook};
use crate::yaml::Diagnostic;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors found in one file.
#[derive(Debug)]
pub struct FileDiagnostics {
    /// The file (empty when the problem is not in one file).
    pub path: PathBuf,
    /// Its problems, sorted by position; line 0 means the file as a whole.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for FileDiagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if d.pos.line == 0 {
                write!(f, "{}: error: {}", self.path.display(), d.message)?;
            } else {
                write!(f, "{}:{d}", self.path.display())?;
            }
        }
        Ok(())
    }
}

/// Loaded, checked playbooks and their trigger index.
#[derive(Default)]
pub struct PlaybookSet {
    playbooks: Vec<Arc<Playbook>>,
    by_name: HashMap<String, usize>,
    exact: HashMap<String, Vec<usize>>,
    globs: GlobSet,
    glob_owner: Vec<usize>,
}

/// Playbook files under a path: the file itself, or `*.yaml`/`*.yml` in a directory
/// (not recursive), without playbook tests (`*.test.yaml`).
pub fn playbook_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !name.ends_with(".test.yaml")
                && !name.ends_with(".test.yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

impl PlaybookSet {
    /// Loads and checks playbooks from files; any error in any file fails the whole load.
    pub fn load(paths: &[PathBuf], catalog: &Catalog) -> Result<PlaybookSet, Vec<FileDiagnostics>> {
        let mut parsed = Vec::new();
        let mut errors = Vec::new();
        let mut parse_errors: HashMap<PathBuf, Vec<Diagnostic>> = HashMap::new();
        for path in paths {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    let d = Diagnostic::new(Default::default(), format!("cannot read: {e}"));
                    errors.push(FileDiagnostics {
                        path: path.clone(),
                        diagnostics: vec![d],
                    });
                    continue;
                }
            };
            match Playbook::parse_partial(path, &text) {
                (Some(pb), diags) => {
                    if !diags.is_empty() {
                        parse_errors.insert(path.clone(), diags);
                    }
                    parsed.push(pb);
                }
                (None, diagnostics) => errors.push(FileDiagnostics {
                    path: path.clone(),
                    diagnostics,
                }),
            }
        }
        let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pb in &parsed {
            let subs = pb.steps.iter().filter_map(|s| match &s.call {
                Call::Playbook(n) => Some(n.clone()),
                Call::Action(_) => None,
            });
            calls.entry(pb.name.clone()).or_default().extend(subs);
        }
        let mut seen: HashMap<&str, &Path> = HashMap::new();
        for pb in &parsed {
            let mut diagnostics = parse_errors.remove(&pb.path).unwrap_or_default();
            diagnostics.extend(lint::check(pb, catalog, &calls));
            diagnostics.sort_by_key(|d| d.pos);
            diagnostics.dedup();
            if let Some(first) = seen.insert(&pb.name, &pb.path) {
                diagnostics.insert(
                    0,
                    Diagnostic::new(
                        crate::yaml::Pos { line: 1, col: 1 },
                        format!(
                            "playbook name `{}` is also used by {}",
                            pb.name,
                            first.display()
                        ),
                    ),
                );
            }
            if !diagnostics.is_empty() {
                errors.push(FileDiagnostics {
                    path: pb.path.clone(),
                    diagnostics,
                });
            }
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| a.path.cmp(&b.path));
            return Err(errors);
        }
        PlaybookSet::from_playbooks(parsed).map_err(|e| vec![e])
    }

    /// Checks one playbook given as text (named `path` in its diagnostics) as if it were
    /// added to this set, replacing one of the same name: the same checks as [`Self::load`],
    /// its sub-playbook calls resolved against this set. Empty when it is clean.
    pub fn lint_text(&self, path: &Path, text: &str, catalog: &Catalog) -> Vec<Diagnostic> {
        let (pb, mut diagnostics) = Playbook::parse_partial(path, text);
        let Some(pb) = pb else {
            return diagnostics;
        };
        let calls_of = |p: &Playbook| -> Vec<String> {
            p.steps
                .iter()
                .filter_map(|s| match &s.call {
                    Call::Playbook(n) => Some(n.clone()),
                    Call::Action(_) => None,
                })
                .collect()
        };
        let mut calls: BTreeMap<String, Vec<String>> =
            self.iter().map(|p| (p.name.clone(), calls_of(p))).collect();
        calls.insert(pb.name.clone(), calls_of(&pb));
        diagnostics.extend(lint::check(&pb, catalog, &calls));
        diagnostics.sort_by_key(|d| d.pos);
        diagnostics.dedup();
        diagnostics
    }

    /// Loads every playbook under the given files or directories.
    pub fn load_paths(
        paths: &[PathBuf],
        catalog: &Catalog,
    ) -> Result<PlaybookSet, Vec<FileDiagnostics>> {
        let mut files = Vec::new();
        for p in paths {
            match playbook_files(p) {
                Ok(f) => files.extend(f),
                Err(e) => {
                    return Err(vec![FileDiagnostics {
                        path: p.clone(),
                        diagnostics: vec![Diagnostic::new(
                            Default::default(),
                            format!("cannot read: {e}"),
                        )],
                    }]);
                }
            }
        }
        PlaybookSet::load(&files, catalog)
    }

    fn from_playbooks(parsed: Vec<Playbook>) -> Result<PlaybookSet, FileDiagnostics> {
        let mut set = PlaybookSet::default();
        let mut globs = GlobSetBuilder::new();
        for (i, pb) in parsed.into_iter().enumerate() {
            if let Some(ev) = &pb.trigger.event {
                if ev.contains(['*', '?', '[', '{']) {
                    let glob = Glob::new(ev).map_err(|e| FileDiagnostics {
                        path: pb.path.clone(),
                        diagnostics: vec![Diagnostic::new(pb.trigger.pos, e.to_string())],
                    })?;
                    globs.add(glob);
                    set.glob_owner.push(i);
                } else {
                    set.exact.entry(ev.clone()).or_default().push(i);
                }
            }
            set.by_name.insert(pb.name.clone(), i);
            set.playbooks.push(Arc::new(pb));
        }
        set.globs = globs.build().map_err(|e| FileDiagnostics {
            path: PathBuf::new(),
            diagnostics: vec![Diagnostic::new(Default::default(), e.to_string())],
        })?;
        Ok(set)
    }

    /// Playbooks whose `on.event` matches `kind` (conditions are not evaluated here).
    pub fn matching(&self, kind: &str) -> Vec<Arc<Playbook>> {
        let mut idx: Vec<usize> = self.exact.get(kind).cloned().unwrap_or_default();
        if !self.glob_owner.is_empty() {
            idx.extend(
                self.globs
                    .matches(kind)
                    .into_iter()
                    .map(|g| self.glob_owner[g]),
            );
            idx.sort_unstable();
            idx.dedup();
        }
        idx.into_iter().map(|i| self.playbooks[i].clone()).collect()
    }

    /// The playbook named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Playbook>> {
        self.by_name.get(name).map(|i| self.playbooks[*i].clone())
    }

    /// Every playbook, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Playbook>> {
        self.playbooks.iter()
    }

    /// Number of playbooks.
    pub fn len(&self) -> usize {
        self.playbooks.len()
    }

    /// True when the set has no playbook.
    pub fn is_empty(&self) -> bool {
        self.playbooks.is_empty()
    }
}
