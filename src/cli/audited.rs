//! Which commands leave a line in the audit trail, and writing it once the
//! command has run (`crate::audit`). An apply that found nothing to do leaves
//! none; one that was refused or held does.

use std::path::{Path, PathBuf};

use super::Command;
use crate::audit::{self, Record};
use crate::error::{Error, exit};
use crate::spec::{EnvFiles, Spec};

/// The kind of record a command leaves, and its spec file; `None` for a command
/// that changes nothing (status, diff, logs…).
pub(super) fn audited(command: &Command) -> Option<(&'static str, PathBuf)> {
    match command {
        Command::Apply(a) => a.audit_spec().map(|f| ("apply", f)),
        Command::Rollback(a) => Some(("rollback", a.spec_file().into())),
        Command::Restore(a) => Some(("restore", a.spec_file().into())),
        Command::Backup(a) => Some(("backup", a.spec_file().into())),
        Command::Preview(a) => Some(("preview", a.spec_file().into())),
        Command::Unpin(a) => Some(("unpin", a.spec_file().into())),
        Command::Unlock(a) => Some(("unlock", a.spec_file().into())),
        Command::Maintenance(a) => Some(("maintenance", a.spec_file().into())),
        Command::RepairState(a) => Some(("repair-state", a.spec_file().into())),
        _ => None,
    }
}

/// Appends the record of a command of `kind` on `file` that started at
/// `started` (RFC 3339) and came to `result`. A spec that cannot be read, or a
/// storage root that does not exist, has no trail to add to: nothing was done.
pub(super) fn record(kind: &str, file: &Path, started: &str, result: &Result<u8, Error>) {
    let Ok(spec) = Spec::load_with(file, EnvFiles::Skip) else {
        return;
    };
    if !spec.storage.is_dir() {
        return;
    }
    let code = match result {
        Ok(code) => *code,
        Err(e) => e.code(),
    };
    let reports: Vec<String> = crate::report::list(&spec.storage)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.started.as_str() >= started)
        .map(|r| r.id)
        .collect();
    if kind == "apply" && code == exit::OK && reports.is_empty() {
        return;
    }
    let (user, uid) = audit::os_user();
    let at = crate::state::now_rfc3339();
    let stamp: String = at.chars().filter(char::is_ascii_alphanumeric).collect();
    // Two commands in one second still get two ids.
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    let record = Record {
        id: format!("{stamp}-{millis:03}-{kind}"),
        at,
        kind: kind.to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        user,
        uid,
        host: crate::lock::hostname(),
        gemctl: crate::version::LONG.to_string(),
        spec_file: file.display().to_string(),
        git: crate::git::info(file),
        outcome: audit::outcome(code).to_string(),
        exit_code: code,
        message: result.as_ref().err().map(ToString::to_string),
        reports,
    };
    if let Err(e) = audit::append(&spec.storage, &record) {
        eprintln!("also: the audit record of this command could not be written: {e}");
    }
}
