//! One writer at a time per project and host (I7): `<storage>/.gemctl/lock`, an OS
//! file lock (`flock`, through std's `File::try_lock`) held for as long as the
//! [`Lock`] lives, in a file that names who took it. The kernel lets go of the lock
//! when its process ends, however it ends, so a lock file that nobody holds was
//! left by a process that is gone and is taken over — pid reuse cannot keep it.
//!
//! Not for several hosts sharing the storage (NFS and the like): whether their
//! locks reach each other depends on the file system, so a left lock that names
//! another host is never taken over; a person removes it with `gemctl unlock -f`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
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
    /// Holds the OS lock until it is closed, after `drop` removed the file.
    _file: File,
    /// A stale holder that was taken over, if any.
    pub took_over: Option<Holder>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked: a gemctl that opened the file before this and
        // locks it once it is closed sees that the path no longer names it.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Holder {
    /// This process.
    pub fn me(command: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            user: crate::audit::os_user().0,
            host: hostname(),
            command: command.to_string(),
            since: crate::state::now_rfc3339(),
        }
    }
}

/// An unreadable lock nobody holds is taken over once it is this old: younger, it
/// may be one another gemctl has just created and is about to lock, and gemctl
/// gives way to it rather than race it.
const UNREADABLE_STALE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long ago the file was last written; a file that cannot be inspected counts
/// as brand new (so it is not taken over).
fn age(file: &File) -> std::time::Duration {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

/// The holder a lock file names, or its text when it names none.
fn read_holder(mut file: &File) -> Result<Holder, String> {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    serde_json::from_str(&text).map_err(|_| text)
}

/// Opens the lock file, creating it if absent (`true` when this call created it);
/// `None` when it vanished between the two tries.
fn open(path: &Path) -> Result<Option<(File, bool)>, Error> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => return Ok(Some((file, true))),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(path, "create", e)),
    }
    match OpenOptions::new().read(true).open(path) {
        Ok(file) => Ok(Some((file, false))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "open", e)),
    }
}

/// Whether `path` still names the file `file` was opened from: a holder removes
/// its file on release, so a lock won on a removed file is no lock.
fn still_named(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Takes the lock of the project whose storage root is `storage`, or fails at once
/// naming the holder.
pub fn acquire(storage: &Path, command: &str) -> Result<Lock, Error> {
    let dir = storage.join(STATE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    let path = dir.join("lock");
    let mut took_over = None;
    for _ in 0..3 {
        let Some((mut file, created)) = open(&path)? else {
            continue;
        };
        try_lock_briefly(&path, &file)?;
        if !still_named(&path, &file) {
            continue;
        }
        if created {
            let text = serde_json::to_string(&Holder::me(command)).expect("serialisable");
            file.write_all(text.as_bytes())
                .map_err(|e| Error::io(&path, "write", e))?;
            return Ok(Lock {
                path,
                _file: file,
                took_over,
            });
        }
        // Nobody holds it: whoever wrote it is gone. Removed under the lock so that
        // one gemctl takes it over, and made anew by create-new on the next turn.
        took_over = Some(left_behind(&path, &file)?);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, "remove", e))?;
    }
    Err(Error::Usage(format!(
        "another gemctl took the lock {} at the same moment; try again",
        path.display()
    )))
}

/// A lock just let go of can still look held for a moment: a child process forked
/// by any thread shares the open file until it has exec'd (std opens files
/// close-on-exec, but the fork comes first). So a lock that is held is tried again
/// a few times over a tenth of a second before it counts as held.
fn try_lock_briefly(path: &Path, file: &File) -> Result<(), Error> {
    let mut retries = 4;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if retries > 0 => {
                retries -= 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(TryLockError::WouldBlock) => return Err(held(path, file)),
            Err(TryLockError::Error(e)) => return Err(Error::io(path, "lock", e)),
        }
    }
}

/// The refusal while another gemctl holds the lock.
fn held(path: &Path, file: &File) -> Error {
    Error::Usage(match read_holder(file) {
        Ok(h) => format!(
            "another gemctl is working on this project: {h}. Wait for it to finish: the lock \
             goes with that process, however it ends"
        ),
        Err(_) => format!(
            "another gemctl is taking the lock {} right now; try again in a moment",
            path.display()
        ),
    })
}

/// Who left a lock file nobody holds (locked now by this process), or why it is not
/// taken over: it names another host, or it is unreadable and still fresh.
fn left_behind(path: &Path, file: &File) -> Result<Holder, Error> {
    match read_holder(file) {
        Ok(h) if h.host == hostname() => Ok(h),
        Ok(h) => Err(Error::Usage(format!(
            "another gemctl is working on this project: {h}. Wait for it to finish; if that \
             process is really gone, remove {}",
            path.display()
        ))),
        Err(_) if age(file) >= UNREADABLE_STALE => Ok(Holder {
            pid: 0,
            user: "unknown".into(),
            host: "unknown".into(),
            command: format!("an unreadable lock file, {}s old", age(file).as_secs()),
            since: "unknown".into(),
        }),
        Err(_) => Err(Error::Usage(format!(
            "{} exists but cannot be read yet (a gemctl may be writing it right now); try \
             again in a few seconds: an unreadable lock older than {}s is taken over. \
             `gemctl unlock -f SPEC` removes it by force",
            path.display(),
            UNREADABLE_STALE.as_secs()
        ))),
    }
}

/// The lock file of a storage root.
pub fn path(storage: &Path) -> PathBuf {
    storage.join(STATE_DIR).join("lock")
}

/// Who the lock file names, if there is one (an unreadable lock file counts as
/// held by an unknown holder). It may be a holder that is gone and whose lock the
/// next taker takes over.
pub fn holder(storage: &Path) -> Option<Result<Holder, String>> {
    let text = std::fs::read_to_string(path(storage)).ok()?;
    Some(serde_json::from_str(&text).map_err(|_| text))
}

/// The gemctl holding the project's lock right now, if one does (for `status`).
/// A lock file nobody holds (its process is gone) is no holder. Looks without
/// taking the lock: another gemctl's take is never disturbed.
pub fn held_by(storage: &Path) -> Option<Result<Holder, String>> {
    let file = File::open(path(storage)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(read_holder(&file)),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_with_its_holder_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(held_by(dir.path()).is_none());
        let lock = acquire(dir.path(), "gemctl apply -f s.yaml").unwrap();
        let seen = held_by(dir.path()).unwrap().unwrap();
        assert_eq!(seen.command, "gemctl apply -f s.yaml");
        assert_eq!(seen.pid, std::process::id());
        drop(lock);
        assert!(held_by(dir.path()).is_none());
        // The holder's take is undisturbed by a look.
        let _again = acquire(dir.path(), "gemctl apply").unwrap();
    }

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

    #[test]
    fn a_left_lock_naming_a_live_pid_is_taken_over_since_nobody_holds_it() {
        // The pid of a gone gemctl may be reused by another process (here: this one).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_DIR).join("lock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let left = Holder {
            command: "gemctl reconcile".into(),
            ..Holder::me("")
        };
        std::fs::write(&path, serde_json::to_string(&left).unwrap()).unwrap();
        let lock = acquire(dir.path(), "gemctl apply").unwrap();
        assert_eq!(lock.took_over, Some(left));
        assert_eq!(holder(dir.path()).unwrap().unwrap().command, "gemctl apply");
    }

    #[test]
    fn a_left_lock_naming_another_host_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_DIR).join("lock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let elsewhere = Holder {
            host: "elsewhere".into(),
            ..Holder::me("gemctl apply")
        };
        let text = serde_json::to_string(&elsewhere).unwrap();
        std::fs::write(&path, &text).unwrap();
        let err = acquire(dir.path(), "gemctl apply").unwrap_err().to_string();
        assert!(
            err.contains("@elsewhere") && err.contains("really gone"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "left as it was"
        );
    }

    #[test]
    fn the_lock_is_held_until_dropped_and_a_taker_waiting_on_a_removed_file_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "gemctl apply").unwrap();
        // A taker that opened the file while it was held, and locks it after release.
        let late = File::open(path(dir.path())).unwrap();
        assert!(matches!(late.try_lock(), Err(TryLockError::WouldBlock)));
        drop(first);
        late.try_lock().unwrap();
        assert!(!still_named(&path(dir.path()), &late), "its file is gone");
        let second = acquire(dir.path(), "gemctl apply").unwrap();
        assert!(second.took_over.is_none());
    }
}
