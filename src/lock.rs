//! One writer at a time per project and host (I7): `<storage>/.gemctl/lock`, made
//! with create-new so two gemctls cannot both take it, holding who took it. A lock
//! whose process is gone from this host is stale and taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::observed::STATE_DIR;

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// User name.
    pub user: String,
    /// Host name.
    pub host: String,
    /// The command line.
    pub command: String,
    /// When it was taken (RFC 3339 UTC).
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}@{}), `{}`, since {}",
            self.pid, self.user, self.host, self.command, self.since
        )
    }
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    /// A stale holder that was taken over, if any.
    pub took_over: Option<Holder>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Holder {
    /// This process.
    pub fn me(command: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            host: hostname(),
            command: command.to_string(),
            since: crate::records::now_rfc3339(),
        }
    }
}

/// An unreadable lock older than this was left by a crash, not being written.
const UNREADABLE_STALE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long ago the file was last written; a file that cannot be inspected counts
/// as brand new (so it is not taken over).
fn age(path: &Path) -> std::time::Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Takes the lock of the project whose storage root is `storage`, or fails at once
/// naming the holder.
pub fn acquire(storage: &Path, command: &str) -> Result<Lock, Error> {
    let dir = storage.join(STATE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    let path = dir.join("lock");
    let mut took_over = None;
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                let text = serde_json::to_string(&Holder::me(command)).expect("serialisable");
                file.write_all(text.as_bytes())
                    .map_err(|e| Error::io(&path, "write", e))?;
                return Ok(Lock { path, took_over });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Holder>(&t).ok());
                match holder {
                    Some(h) if h.host == hostname() && !alive(h.pid) => {
                        // Its process is gone: a crash or a kill left it.
                        let _ = std::fs::remove_file(&path);
                        took_over = Some(h);
                    }
                    Some(h) => {
                        return Err(Error::Usage(format!(
                            "another gemctl is working on this project: {h}. Wait for it to \
                             finish; if that process is really gone, remove {}",
                            path.display()
                        )));
                    }
                    None if age(&path) >= UNREADABLE_STALE => {
                        // A holder writes its line right after creating the file; one
                        // still empty or garbled after this long was left by a crash.
                        let _ = std::fs::remove_file(&path);
                        took_over = Some(Holder {
                            pid: 0,
                            user: "unknown".into(),
                            host: "unknown".into(),
                            command: format!(
                                "an unreadable lock file, {}s old",
                                age(&path).as_secs()
                            ),
                            since: "unknown".into(),
                        });
                    }
                    None => {
                        return Err(Error::Usage(format!(
                            "{} exists but cannot be read yet (a gemctl may be writing it right \
                             now); try again in a few seconds: an unreadable lock older than {}s \
                             is taken over. `gemctl unlock -f SPEC` removes it by force",
                            path.display(),
                            UNREADABLE_STALE.as_secs()
                        )));
                    }
                }
            }
            Err(e) => return Err(Error::io(&path, "create", e)),
        }
    }
    Err(Error::Usage(format!(
        "another gemctl took the lock {} at the same moment; try again",
        path.display()
    )))
}

/// The lock file of a storage root.
pub fn path(storage: &Path) -> PathBuf {
    storage.join(STATE_DIR).join("lock")
}

/// Who holds the lock now, if anyone (an unreadable lock file counts as held by
/// an unknown holder).
pub fn holder(storage: &Path) -> Option<Result<Holder, String>> {
    let text = std::fs::read_to_string(path(storage)).ok()?;
    Some(serde_json::from_str(&text).map_err(|_| text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_fails_naming_the_first_and_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "gemctl apply").unwrap();
        let err = acquire(dir.path(), "gemctl apply").unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("`gemctl apply`"), "{err}");
        drop(first);
        let again = acquire(dir.path(), "gemctl apply").unwrap();
        assert!(again.took_over.is_none());
        drop(again);

        let dead = Holder {
            pid: u32::MAX - 1,
            user: "root".into(),
            host: hostname(),
            command: "gemctl apply".into(),
            since: "2026-01-01T00:00:00Z".into(),
        };
        let path = dir.path().join(STATE_DIR).join("lock");
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = acquire(dir.path(), "gemctl apply").unwrap();
        assert_eq!(lock.took_over, Some(dead));
        drop(lock);
        assert!(!path.exists(), "released on drop");
    }

    #[test]
    fn empty_or_garbled_lock_is_taken_over_once_it_is_old_not_while_new() {
        for content in ["", "{\"pid\": 12", "garbage\n"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(STATE_DIR).join("lock");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            let err = acquire(dir.path(), "gemctl apply").unwrap_err().to_string();
            assert!(err.contains("cannot be read yet"), "{err}");
            let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
            let lock = acquire(dir.path(), "gemctl apply").unwrap();
            let took = lock.took_over.clone().expect("taken over");
            assert!(took.command.contains("unreadable lock file"), "{took:?}");
            let holder = holder(dir.path()).unwrap().unwrap();
            assert_eq!(holder.pid, std::process::id());
        }
    }
}
