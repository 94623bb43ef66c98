//! The spec's place in git: the commit it was read at, whether it has uncommitted
//! changes, and reading it as committed at a revision. Uses the `git` command.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Where the spec came from in git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    /// The commit the spec was read at (HEAD, or the `--from-git` revision).
    pub commit: String,
    /// Whether the spec file had uncommitted changes (always false with `--from-git`).
    pub dirty: bool,
}

fn dir_of(file: &Path) -> &Path {
    file.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Git facts about a file, if it lives in a git work tree.
pub fn info(file: &Path) -> Option<GitInfo> {
    let dir = dir_of(file);
    let commit = git(dir, &["rev-parse", "HEAD"]).ok()?;
    Some(GitInfo {
        commit,
        dirty: !dirty_files(&[file]).ok()?.is_empty(),
    })
}

/// Which of these files have uncommitted changes (or are not committed at all).
pub fn dirty_files(files: &[&Path]) -> Result<Vec<String>, String> {
    let Some(first) = files.first() else {
        return Ok(Vec::new());
    };
    let dir = dir_of(first);
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| std::path::absolute(f).ok())
        .map(|f| f.display().to_string())
        .collect();
    let mut args = vec!["status", "--porcelain", "--untracked-files=all", "--"];
    args.extend(names.iter().map(String::as_str));
    let out = git(dir, &args)?;
    Ok(out
        .lines()
        .filter_map(|l| l.get(3..).map(str::to_string))
        .collect())
}

/// `require_clean`: the refusal every command that deploys or changes the live
/// generation makes while the spec file has uncommitted changes (or is not in a
/// git work tree); `None` when it is committed as it is.
pub fn require_clean(file: &Path) -> Result<Option<String>, Error> {
    let dirty = match info(file) {
        None => vec![format!("{} (not in a git work tree)", file.display())],
        Some(_) => dirty_files(&[file]).map_err(Error::Usage)?,
    };
    Ok((!dirty.is_empty()).then(|| {
        format!(
            "refused: the spec has uncommitted changes and a clean spec is required \
             (`require_clean: true` or `--require-clean`):\n  {}\nCommit them (or deploy a \
             commit with `gemctl apply --from-git REV`). Nothing was touched.",
            dirty.join("\n  ")
        )
    }))
}

/// The spec file as committed at `rev`, and that commit.
pub fn show(file: &Path, rev: &str) -> Result<(String, String), Error> {
    let dir = dir_of(file);
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{} is not a file name", file.display())))?;
    let commit = git(
        dir,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )
    .map_err(|e| Error::Usage(format!("--from-git {rev}: not a revision here ({e})")))?;
    let text = git(dir, &["show", &format!("{commit}:./{name}")]).map_err(|e| {
        Error::Usage(format!(
            "--from-git {rev}: {} is not in commit {} ({e})",
            file.display(),
            &commit[..12.min(commit.len())]
        ))
    })?;
    Ok((text + "\n", commit))
}
