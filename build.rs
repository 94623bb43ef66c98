//! Records the git commit gemctl is built from, for `gemctl --version` and the
//! records it writes: `GEMCTL_COMMIT` is `git rev-parse --short HEAD`, or the
//! value of `GEMCTL_COMMIT` in the build's environment (for packagers building
//! from a tarball), or `unknown` without git.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=GEMCTL_COMMIT");
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it points to
    // (a commit), and packed-refs (a branch packed by git gc). In a worktree
    // `.git` is a file, so ask git where they are.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            rerun_if_exists(PathBuf::from(p));
        }
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &reference])
    {
        rerun_if_exists(PathBuf::from(p));
    }
    let commit = std::env::var("GEMCTL_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=GEMCTL_COMMIT={commit}");
}

/// `cargo:rerun-if-changed` on a path that does not exist would rebuild every
/// time; a missing ref file (a packed branch) is covered by packed-refs.
fn rerun_if_exists(path: PathBuf) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
