//! The file part of a base backup made with PostgreSQL's low-level backup API
//! (`pg_backup_start` … `pg_backup_stop`, see `stream::base_backup`): a running
//! db's data directory copied on the host, as gemctl (root) reads it, into the new
//! generation's, keeping modes and owners.
//!
//! Left out, as PostgreSQL's documentation says a base backup may leave them out
//! ("Backing Up the Data Directory", the same list `pg_basebackup` omits): the
//! contents of `pg_wal` (the standby streams the WAL it needs from the primary,
//! which a replication slot keeps from before the backup started), `pg_replslot`,
//! `pg_dynshmem`, `pg_notify`, `pg_serial`, `pg_snapshots`, `pg_stat_tmp` and
//! `pg_subtrans` (their directories are made, empty); `postmaster.pid`,
//! `postmaster.opts`, `backup_label`, `tablespace_map`, `backup_manifest`,
//! `current_logfiles`, `postgresql.auto.conf.tmp`, the signal files,
//! `pg_internal.init` files and anything named `pgsql_tmp*`. Files may change,
//! grow, shrink or go while they are copied: the server is running. That is what
//! the backup API is for: full-page writes are forced while the backup is held, and
//! the standby replays the WAL from the backup's checkpoint to its end before it is
//! consistent. A file that went is skipped.
//!
//! Nothing is fsynced here: the copy's control file says `in production`, so
//! PostgreSQL's startup (`StartupXLOG`) syncs the whole data directory before it
//! replays anything (see `stream::base_backup`).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::Error;

/// Top-level directories whose contents a base backup leaves out.
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];

/// Top-level files a base backup leaves out.
const SKIPPED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "backup_manifest",
    "current_logfiles",
    "postgresql.auto.conf.tmp",
    "standby.signal",
    "recovery.signal",
    crate::stream::PASSFILE,
];

/// What a copy wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Files copied.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The tablespaces (`pg_tblspc` entries) of a data directory: their files live
/// outside it, which this copy does not follow.
pub fn tablespaces(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("pg_tblspc"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Copies the data directory `from` of a running db (held in a backup) into `to`,
/// which exists and is empty.
pub fn copy_data_dir(from: &Path, to: &Path) -> Result<Copied, Error> {
    let mut copied = Copied::default();
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from, "read", e))?;
    copy_dir(from, to, true, &mut copied).map_err(|e| Error::io(from, "copy", e))?;
    set_owner_and_mode(to, &meta).map_err(|e| Error::io(to, "set the owner of", e))?;
    Ok(copied)
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn set_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

/// An empty directory in place of `from`'s (its owner and mode).
fn empty_dir(from_meta: &std::fs::Metadata, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    set_owner_and_mode(to, from_meta)
}

fn copy_dir(from: &Path, to: &Path, top: bool, copied: &mut Copied) -> io::Result<()> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if !top && vanished(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text.starts_with("pgsql_tmp")
            || name_text == "pg_internal.init"
            || (top && SKIPPED_FILES.contains(&name_text.as_ref()))
        {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        let meta = match std::fs::symlink_metadata(&source) {
            Ok(meta) => meta,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        if top && EMPTY_DIRS.contains(&name_text.as_ref()) {
            // `pg_wal` may be a link to a directory elsewhere (`initdb --waldir`):
            // the copy gets a directory of its own, owned as the data directory.
            let dir_meta = if meta.is_dir() {
                meta
            } else {
                std::fs::metadata(from)?
            };
            empty_dir(&dir_meta, &target)?;
            if name_text == "pg_wal" {
                empty_dir(&dir_meta, &target.join("archive_status"))?;
            }
            continue;
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_dir(&source, &target, false, copied)?;
            set_owner_and_mode(&target, &meta)?;
        } else if kind.is_symlink() {
            let link = match std::fs::read_link(&source) {
                Ok(link) => link,
                Err(e) if vanished(&e) => continue,
                Err(e) => return Err(e),
            };
            std::os::unix::fs::symlink(link, &target)?;
            std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid()))?;
        } else if kind.is_file() {
            // `copy` copies in the kernel (copy_file_range) up to the end of the file
            // as it is then, and gives the copy the source's mode.
            match std::fs::copy(&source, &target) {
                Ok(bytes) => {
                    copied.files += 1;
                    copied.bytes += bytes;
                }
                Err(e) if vanished(&e) => {
                    let _ = std::fs::remove_file(&target);
                    continue;
                }
                Err(e) => return Err(e),
            }
            std::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid()))?;
        }
        // Sockets, fifos and devices have no place in a data directory: skipped.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_leaves_out_what_a_base_backup_leaves_out_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        for d in [
            "base/1",
            "global",
            "pg_wal/archive_status",
            "pg_replslot/gemctl_2",
            "pg_stat_tmp",
            "pg_tblspc",
            "base/pgsql_tmp",
        ] {
            std::fs::create_dir_all(from.join(d)).unwrap();
        }
        for (f, text) in [
            ("PG_VERSION", "15\n"),
            ("base/1/1259", "pages"),
            ("global/pg_control", "control"),
            ("global/pg_internal.init", "cache"),
            ("pg_wal/000000010000000000000001", "wal"),
            ("pg_replslot/gemctl_2/state", "slot"),
            ("pg_stat_tmp/global.stat", "stats"),
            ("base/pgsql_tmp/pgsql_tmp1.0", "sort"),
            ("postmaster.pid", "1"),
            ("postmaster.opts", "postgres"),
            ("postgresql.auto.conf", "# auto\n"),
        ] {
            std::fs::write(from.join(f), text).unwrap();
        }
        std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir(&to).unwrap();
        let copied = copy_data_dir(&from, &to).unwrap();
        let mut found = Vec::new();
        let mut stack = vec![to.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let rel = e.path().strip_prefix(&to).unwrap().display().to_string();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                    found.push(format!("{rel}/"));
                } else {
                    found.push(rel);
                }
            }
        }
        found.sort();
        assert_eq!(
            found,
            [
                "PG_VERSION",
                "base/",
                "base/1/",
                "base/1/1259",
                "global/",
                "global/pg_control",
                "pg_replslot/",
                "pg_stat_tmp/",
                "pg_tblspc/",
                "pg_wal/",
                "pg_wal/archive_status/",
                "postgresql.auto.conf",
            ]
        );
        assert_eq!(copied.files, 4);
        assert_eq!(copied.bytes, (3 + 5 + 7 + 7) as u64);
        assert_eq!(
            std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::read_to_string(to.join("base/1/1259")).unwrap(),
            "pages"
        );
        assert!(tablespaces(&from).is_empty());
        std::os::unix::fs::symlink("/elsewhere", from.join("pg_tblspc/16400")).unwrap();
        assert_eq!(tablespaces(&from), ["16400"]);
    }
}
