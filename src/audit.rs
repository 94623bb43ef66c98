//! The audit trail: one line per command that changed something on a host or was
//! refused — apply (also refused or held), rollback, restore, backup, unpin,
//! unlock, maintenance, repair-state — in `<storage>/.gemctl/audit.jsonl`, only
//! ever appended to. Each says who (the OS user, and who ran sudo), where, which
//! gemctl, the spec and its git commit, the outcome, and the deployment reports
//! the command wrote. `gemctl history` lists them beside the reports.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::git::GitInfo;
use crate::observed::STATE_DIR;

/// The file under `<storage>/.gemctl/`.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One command as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `<finished, digits only>-<milliseconds>-<kind>`.
    pub id: String,
    /// When it finished (RFC 3339 UTC).
    pub at: String,
    /// `apply`, `rollback`, `restore`, `backup`, `unpin`, `unlock`,
    /// `maintenance`, `repair-state`.
    pub kind: String,
    /// The command line.
    pub command: String,
    /// The OS user it ran as (from the password database, not `$USER`), with
    /// `(sudo: NAME)` when run through sudo.
    pub user: String,
    /// The numeric user id.
    pub uid: u32,
    /// The host name.
    pub host: String,
    /// The gemctl and the commit it was built from.
    pub gemctl: String,
    /// The spec file.
    pub spec_file: String,
    /// The spec's git commit, when it is in a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    /// `ok`, `refused`, `rolled_back`, `failed`.
    pub outcome: String,
    /// The exit code.
    pub exit_code: u8,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The deployment reports it wrote (`gemctl history --show ID`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<String>,
}

/// The OS user this process runs as: its name in the password database (else
/// `$USER`, else the number), with the sudo caller when there is one.
pub fn os_user() -> (String, u32) {
    let uid = rustix::process::getuid().as_raw();
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string());
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != name => (format!("{name} (sudo: {by})"), uid),
        _ => (name, uid),
    }
}

/// The audit file of a storage root.
pub fn path(storage: &Path) -> PathBuf {
    storage.join(STATE_DIR).join(AUDIT_FILE)
}

/// Appends one record (one line, synced to disk).
pub fn append(storage: &Path, record: &Record) -> Result<(), Error> {
    let file = path(storage);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    }
    let mut line = serde_json::to_string(record).expect("a record serialises");
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .map_err(|e| Error::io(&file, "open", e))?;
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&file, "write", e))
}

/// Every record, oldest first; a line that cannot be read (a torn write) is
/// skipped, and counted in the second value.
pub fn read(storage: &Path) -> Result<(Vec<Record>, usize), Error> {
    let file = path(storage);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::io(&file, "read", e)),
    };
    let mut skipped = 0;
    let records = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let r = serde_json::from_str(l).ok();
            skipped += usize::from(r.is_none());
            r
        })
        .collect();
    Ok((records, skipped))
}

/// The outcome word for an exit code.
pub fn outcome(code: u8) -> &'static str {
    match code {
        crate::error::exit::OK => "ok",
        crate::error::exit::REFUSED => "refused",
        crate::error::exit::ROLLED_BACK => "rolled_back",
        crate::error::exit::CHANGES => "changes_pending",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str) -> Record {
        let (user, uid) = os_user();
        Record {
            id: format!("20261205T000000Z-{kind}"),
            at: "2026-12-05T00:00:00Z".into(),
            kind: kind.into(),
            command: format!("gemctl {kind}"),
            user,
            uid,
            host: "h".into(),
            gemctl: crate::version::LONG.into(),
            spec_file: "s.yaml".into(),
            git: None,
            outcome: "ok".into(),
            exit_code: 0,
            message: None,
            reports: Vec::new(),
        }
    }

    #[test]
    fn records_are_appended_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &record("backup")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(path(dir.path()))
            .unwrap()
            .write_all(b"{\"id\": \"torn")
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(path(dir.path()))
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        append(dir.path(), &record("unpin")).unwrap();
        let (records, skipped) = read(dir.path()).unwrap();
        assert_eq!(skipped, 1);
        let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["backup", "unpin"]);
    }

    #[test]
    fn the_user_comes_from_the_password_database() {
        let (user, uid) = os_user();
        assert!(!user.is_empty());
        if uid == 0 {
            assert!(user.starts_with("root"), "{user}");
        }
    }
}
