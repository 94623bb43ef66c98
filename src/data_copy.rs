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
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

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
/// which exists and is empty: first its directories and links, then its files, the
/// largest first, on up to [`COPY_THREADS`] threads (a data directory is a thousand
/// files or more, where one thread waits on each file's creation in turn).
pub fn copy_data_dir(from: &Path, to: &Path) -> Result<Copied, Error> {
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from, "read", e))?;
    let mut files = Vec::new();
    lay_out(from, to, true, &mut files).map_err(|(path, e)| Error::io(&path, "copy", e))?;
    files.sort_by_key(|f| std::cmp::Reverse(f.size));
    let copied = copy_files(&files).map_err(|(path, e)| Error::io(&path, "copy", e))?;
    set_owner_and_mode(to, &meta).map_err(|e| Error::io(to, "set the owner of", e))?;
    Ok(copied)
}

/// The most threads a copy uses (fewer on a machine with fewer cores).
pub const COPY_THREADS: usize = 4;

/// A file to copy.
struct File {
    source: PathBuf,
    target: PathBuf,
    uid: u32,
    gid: u32,
    size: u64,
}

/// An error and the path it is about.
type PathError = (PathBuf, io::Error);

fn at(path: &Path) -> impl FnOnce(io::Error) -> PathError + '_ {
    move |e| (path.to_path_buf(), e)
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

/// Makes `from`'s directories (with their owners and modes) and links under `to`,
/// and lists its files.
fn lay_out(from: &Path, to: &Path, top: bool, files: &mut Vec<File>) -> Result<(), PathError> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if !top && vanished(&e) => return Ok(()),
        Err(e) => return Err((from.to_path_buf(), e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err((from.to_path_buf(), e)),
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
            Err(e) => return Err((source, e)),
        };
        if top && EMPTY_DIRS.contains(&name_text.as_ref()) {
            // `pg_wal` may be a link to a directory elsewhere (`initdb --waldir`):
            // the copy gets a directory of its own, owned as the data directory.
            let dir_meta = if meta.is_dir() {
                meta
            } else {
                std::fs::metadata(from).map_err(at(from))?
            };
            empty_dir(&dir_meta, &target).map_err(at(&target))?;
            if name_text == "pg_wal" {
                let status = target.join("archive_status");
                empty_dir(&dir_meta, &status).map_err(at(&status))?;
            }
            continue;
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&target).map_err(at(&target))?;
            set_owner_and_mode(&target, &meta).map_err(at(&target))?;
            lay_out(&source, &target, false, files)?;
        } else if kind.is_symlink() {
            let link = match std::fs::read_link(&source) {
                Ok(link) => link,
                Err(e) if vanished(&e) => continue,
                Err(e) => return Err((source, e)),
            };
            std::os::unix::fs::symlink(link, &target).map_err(at(&target))?;
            std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid()))
                .map_err(at(&target))?;
        } else if kind.is_file() {
            files.push(File {
                source,
                target,
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.len(),
            });
        }
        // Sockets, fifos and devices have no place in a data directory: skipped.
    }
    Ok(())
}

/// Copies `files` on up to [`COPY_THREADS`] threads; the first error stops them.
fn copy_files(files: &[File]) -> Result<Copied, PathError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, COPY_THREADS)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<PathError>> = Mutex::new(None);
    let copied = Mutex::new(Copied::default());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = Copied::default();
                while failed.lock().map(|f| f.is_none()).unwrap_or(false) {
                    let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match copy_file(file) {
                        Ok(Some(bytes)) => {
                            mine.files += 1;
                            mine.bytes += bytes;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            if let Ok(mut first) = failed.lock() {
                                first.get_or_insert(e);
                            }
                            break;
                        }
                    }
                }
                if let Ok(mut all) = copied.lock() {
                    all.files += mine.files;
                    all.bytes += mine.bytes;
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(copied.into_inner().unwrap_or_default())
}

/// One file, up to its end as it is then (`None`: it went before it was copied).
fn copy_file(file: &File) -> Result<Option<u64>, PathError> {
    // `copy` copies in the kernel (copy_file_range) and gives the copy the
    // source's mode.
    let bytes = match std::fs::copy(&file.source, &file.target) {
        Ok(bytes) => bytes,
        Err(e) if vanished(&e) => {
            let _ = std::fs::remove_file(&file.target);
            return Ok(None);
        }
        Err(e) => return Err((file.source.clone(), e)),
    };
    std::os::unix::fs::chown(&file.target, Some(file.uid), Some(file.gid))
        .map_err(at(&file.target))?;
    Ok(Some(bytes))
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
