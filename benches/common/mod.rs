//! What the real-engine benchmarks share: removing what a run made.

use std::path::Path;
use std::process::Command;

/// Removes the containers labelled with `project`, its network and `dir`, even
/// after a failed run (call it before resuming a caught panic).
pub fn clean_up(project: &str, dir: &Path) {
    let filter = format!("label=io.gemctl.project={project}");
    if let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
    {
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
    let _ = Command::new("docker")
        .args(["network", "rm", &format!("{project}-net")])
        .output();
    let _ = std::fs::remove_dir_all(dir);
}
