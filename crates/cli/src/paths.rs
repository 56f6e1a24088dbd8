//! Where a command finds its playbooks: a playbook's own directory, the directory given or
//! configured, without loading a file twice.
//!
//! Paths only: it never reads or parses a playbook.

use crate::context::Ctx;
use std::path::{Path, PathBuf};

/// The directory holding `file`: `.` for a bare file name.
pub fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `paths` without the files a directory among them already covers.
pub fn dedup_paths(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    // A directory already covers the files in it.
    let dirs: Vec<PathBuf> = paths
        .iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    paths
        .into_iter()
        .filter(|p| {
            !(p.is_file()
                && p.canonicalize()
                    .ok()
                    .and_then(|c| c.parent().map(Path::to_path_buf))
                    .is_some_and(|d| dirs.contains(&d)))
        })
        .collect()
}

/// The playbook directory given with `--playbooks`, else `playbooks` in belay.toml.
pub fn playbook_dir(ctx: &Ctx, given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| ctx.config.playbooks.clone())
}
