//! Backups of the live generation's databases, and loading one into a new
//! generation.
//!
//! A backup is one tar file, `<project>-gen<n>-<UTC time>.tar`, holding
//! `gemctl-backup.txt` (format, project, generation, time, server version),
//! `globals.sql` (`pg_dumpall --globals-only`: roles and their passwords),
//! `databases.tsv` and one `pg_dump` custom-format archive per database. Each
//! database's dump is consistent on its own (one snapshot): every row committed
//! before the dump began is in it. The dump is taken by a one-shot container of the
//! live db's own image on the private network, while the app keeps running.
//!
//! The container writes `.<name>.partial`; gemctl syncs it, writes
//! `<name>.sha256` (the `sha256sum` format, so `sha256sum -c` checks it too) and
//! only then renames the tar into place, so a crash never leaves a file that
//! looks whole. A restore verifies the checksum before anything is touched.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::copy::{DbCredentials, OneShot, run_one_shot};
use crate::desired::{self, Role};
use crate::engine::Engine;
use crate::error::Error;
use crate::spec::Spec;

/// The backup file's extension.
pub const EXT: &str = ".tar";
/// The checksum file's extension (appended to the backup's name).
pub const SUM_EXT: &str = ".sha256";
const PARTIAL_EXT: &str = ".partial";
const FORMAT_LINE: &str = "format=gemctl-backup-1";

/// `<project>-gen<n>-<YYYYMMDDTHHMMSS.mmmZ>.tar`.
pub fn file_name(project: &str, generation: u64, taken: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_millis(taken)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{project}-gen{generation}-{stamp}{EXT}")
}

/// Project, generation and time read back from a backup's file name.
pub fn parse_name(name: &str) -> Option<(String, u64, SystemTime)> {
    let stem = name.strip_suffix(EXT)?;
    let (rest, stamp) = stem.rsplit_once('-')?;
    let (project, generation) = rest.rsplit_once("-gen")?;
    let generation = generation.parse().ok()?;
    // 20261125T235745.123Z → 2026-11-25T23:57:45.123Z
    let b = stamp.as_bytes();
    if b.len() < 16 || b[8] != b'T' {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..]
    );
    let taken = humantime::parse_rfc3339(&rfc).ok()?;
    (!project.is_empty()).then(|| (project.to_string(), generation, taken))
}

/// What a backup's checksum file says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Checksum {
    /// The file's SHA-256 matches its checksum file.
    Ok {
        /// The SHA-256.
        sha256: String,
    },
    /// It does not: the file is damaged.
    Mismatch {
        /// What the checksum file says.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
    /// No (readable) checksum file.
    Missing,
    /// Not checked (`gemctl backups` without `--verify`).
    Unchecked,
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Checksum::Ok { .. } => write!(f, "ok"),
            Checksum::Mismatch { .. } => write!(f, "MISMATCH"),
            Checksum::Missing => write!(f, "MISSING"),
            Checksum::Unchecked => write!(f, "present"),
        }
    }
}

/// One backup in the backup directory.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// The generation it was taken from.
    pub generation: u64,
    /// When it was taken (RFC 3339 UTC).
    pub taken: String,
    /// Seconds since it was taken.
    pub age_seconds: u64,
    /// Size in bytes.
    pub size: u64,
    /// Checksum status.
    pub checksum: Checksum,
    /// Its last restore drill (`gemctl backups --drill`), if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<crate::throwaway::Drill>,
    #[serde(skip)]
    taken_at: SystemTime,
}

impl BackupInfo {
    /// When it was taken.
    pub fn taken_at(&self) -> SystemTime {
        self.taken_at
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn sum_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(SUM_EXT);
    PathBuf::from(s)
}

/// Hashes a backup and compares it with its checksum file.
pub fn check(path: &Path) -> Result<Checksum, Error> {
    let expected = match std::fs::read_to_string(sum_path(path)) {
        Ok(text) => text
            .split_whitespace()
            .next()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checksum::Missing),
        Err(e) => return Err(Error::io(&sum_path(path), "read", e)),
    };
    let actual = sha256_file(path).map_err(|e| Error::io(path, "read", e))?;
    Ok(if actual == expected {
        Checksum::Ok { sha256: actual }
    } else {
        Checksum::Mismatch { expected, actual }
    })
}

/// Refuses a backup that is missing, has no checksum file, or does not match it.
pub fn verify(path: &Path) -> Result<String, Error> {
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "backup {} does not exist (list them with `gemctl backups -f SPEC`). Nothing was changed.",
            path.display()
        )));
    }
    match check(path)? {
        Checksum::Ok { sha256 } => Ok(sha256),
        Checksum::Missing | Checksum::Unchecked => Err(Error::Usage(format!(
            "backup {} has no checksum file {}: gemctl does not restore a backup it cannot verify. \
             Nothing was changed.",
            path.display(),
            sum_path(path).display()
        ))),
        Checksum::Mismatch { expected, actual } => Err(Error::Usage(format!(
            "backup {} is damaged (truncated or corrupted): its SHA-256 is {actual}, its checksum \
             file says {expected}. Nothing was changed. Pick another backup \
             (`gemctl backups -f SPEC --verify` shows which are intact).",
            path.display()
        ))),
    }
}

/// The project's backups in `dir`, oldest first. `verify` hashes each one.
pub fn list(dir: &Path, project: &str, verify: bool) -> Result<Vec<BackupInfo>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, "read", e)),
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "read", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((p, generation, taken_at)) = parse_name(&name) else {
            continue;
        };
        if p != project {
            continue;
        }
        let path = entry.path();
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let checksum = if verify {
            check(&path)?
        } else if sum_path(&path).is_file() {
            Checksum::Unchecked
        } else {
            Checksum::Missing
        };
        out.push(BackupInfo {
            name,
            path,
            generation,
            taken: humantime::format_rfc3339_millis(taken_at).to_string(),
            age_seconds: now.duration_since(taken_at).unwrap_or_default().as_secs(),
            size,
            checksum,
            drill: crate::throwaway::last_drill(&entry.path()),
            taken_at,
        });
    }
    out.sort_by_key(|b| b.taken_at);
    Ok(out)
}

/// A backup named on the command line: a path, or a name in the backup directory
/// (with or without `.tar`).
pub fn resolve(spec: &Spec, arg: &str) -> PathBuf {
    let path = PathBuf::from(arg);
    if arg.contains('/') || path.is_file() {
        return path;
    }
    let dir = spec.backup_dir();
    if arg.ends_with(EXT) {
        dir.join(arg)
    } else {
        dir.join(format!("{arg}{EXT}"))
    }
}

/// Which backups retention removes, as indexes into `taken` (oldest first). The
/// newest is always kept; any other must be among the newest `keep` (when set) and
/// no older than `max_age` (when set).
pub fn to_prune(
    taken: &[SystemTime],
    keep: Option<u32>,
    max_age: Option<Duration>,
    now: SystemTime,
) -> Vec<usize> {
    let n = taken.len();
    (0..n)
        .filter(|&i| {
            let rank = n - 1 - i; // 0 = newest
            if rank == 0 {
                return false;
            }
            let too_many = keep.is_some_and(|k| rank >= k as usize);
            let too_old =
                max_age.is_some_and(|max| now.duration_since(taken[i]).is_ok_and(|age| age > max));
            too_many || too_old
        })
        .collect()
}

/// Applies the spec's retention to the backup directory: removes what
/// [`to_prune`] selects (with checksum files), leftovers of interrupted backups
/// and checksum files whose backup is gone. Call under the project's lock.
/// Returns the names removed.
pub fn prune(spec: &Spec) -> Result<Vec<String>, Error> {
    let dir = spec.backup_dir();
    let (keep, max_age) = spec
        .backup
        .as_ref()
        .map_or((None, None), |b| (b.keep, b.max_age.map(|d| d.get())));
    let mut removed = Vec::new();
    let remove = |path: &Path| match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, "remove", e)),
    };
    if keep.is_some() || max_age.is_some() {
        let backups = list(&dir, &spec.project, false)?;
        let taken: Vec<SystemTime> = backups.iter().map(|b| b.taken_at).collect();
        for i in to_prune(&taken, keep, max_age, SystemTime::now()) {
            let b = &backups[i];
            remove(&sum_path(&b.path))?;
            remove(&b.path)?;
            removed.push(b.name.clone());
        }
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = |n: &str| parse_name(n).is_some_and(|(p, _, _)| p == spec.project);
            let leftover = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(PARTIAL_EXT))
                .is_some_and(ours);
            let orphan_sum = name
                .strip_suffix(SUM_EXT)
                .or_else(|| name.strip_suffix(".drill.json"))
                .is_some_and(|n| ours(n) && !dir.join(n).exists());
            if leftover || orphan_sum {
                remove(&entry.path())?;
                removed.push(name);
            }
        }
    }
    Ok(removed)
}

/// The script the backup container runs; `H` is the db host, `OUT` the file to write.
const DUMP_SCRIPT: &str = r#"set -euo pipefail
umask 077
w=$(mktemp -d)
pg_dumpall -h "$H" --globals-only -f "$w/globals.sql"
psql -h "$H" -d postgres -XAtq -v ON_ERROR_STOP=1 \
  -c "select datname from pg_database where datallowconn and not datistemplate order by 1" > "$w/names"
: > "$w/databases.tsv"
i=0
while IFS= read -r d; do
  i=$((i+1))
  pg_dump -h "$H" -Fc -d "$d" -f "$w/$i.dump"
  printf '%s.dump\t%s\n' "$i" "$d" >> "$w/databases.tsv"
done < "$w/names"
printf '%s\nproject=%s\ngeneration=%s\ntaken=%s\nserver=%s\n' "$FORMAT" "$GEMCTL_PROJECT" \
  "$GEMCTL_GENERATION" "$GEMCTL_TAKEN" \
  "$(psql -h "$H" -d postgres -XAtq -c 'show server_version')" > "$w/gemctl-backup.txt"
cd "$w"
tar -cf "/backup/$OUT" gemctl-backup.txt globals.sql databases.tsv $(cut -f1 databases.tsv)
"#;

/// Takes a backup of generation `generation`'s databases (its db must be running)
/// into the spec's backup directory. `env` is the db's environment (secrets
/// included, never printed). Call under the project's lock.
pub async fn take<E: Engine>(
    engine: &E,
    spec: &Spec,
    env: &[String],
    generation: u64,
) -> Result<BackupInfo, Error> {
    let db = desired::container_name(
        spec,
        Role::Db,
        crate::state::db_generation(&spec.storage, generation),
    );
    let containers = engine.list_containers().await?;
    let db_container = containers
        .iter()
        .find(|c| c.name == db && c.state.is_up())
        .ok_or_else(|| {
            Error::Apply(format!(
                "{db}, the live generation's database, is not running: nothing to back up. \
                 `gemctl apply -f SPEC` starts it."
            ))
        })?;
    let dir = spec.backup_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    let taken = SystemTime::now();
    let name = file_name(&spec.project, generation, taken);
    let partial = dir.join(format!(".{name}{PARTIAL_EXT}"));
    let path = dir.join(&name);
    let creds = DbCredentials::from_env(env);
    let mut container_env = creds.pg_env();
    container_env.extend([
        format!("H={db}"),
        format!("OUT=.{name}{PARTIAL_EXT}"),
        format!("FORMAT={FORMAT_LINE}"),
        format!("GEMCTL_PROJECT={}", spec.project),
        format!("GEMCTL_GENERATION={generation}"),
        format!("GEMCTL_TAKEN={}", humantime::format_rfc3339_millis(taken)),
    ]);
    let result = run_one_shot(
        engine,
        spec,
        OneShot {
            name: desired::backup_container_name(spec, generation),
            generation,
            image: db_container.image.clone(),
            env: container_env,
            binds: vec![(dir.clone(), "/backup".into())],
            script: DUMP_SCRIPT.into(),
            what: format!("the backup of generation {generation}"),
        },
    )
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Apply(format!("{e}\nNo backup was written.")));
    }
    let finish = || -> Result<String, Error> {
        let file = std::fs::File::open(&partial).map_err(|e| Error::io(&partial, "open", e))?;
        file.sync_all()
            .map_err(|e| Error::io(&partial, "sync", e))?;
        let sha = sha256_file(&partial).map_err(|e| Error::io(&partial, "read", e))?;
        crate::state::write_atomic(&sum_path(&path), format!("{sha}  {name}\n").as_bytes())?;
        std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, "rename into", e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(sha)
    };
    let sha256 = finish().inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(BackupInfo {
        name,
        path,
        generation,
        taken: humantime::format_rfc3339_millis(taken).to_string(),
        age_seconds: 0,
        size,
        checksum: Checksum::Ok { sha256 },
        drill: None,
        taken_at: taken,
    })
}

/// The script the restore container runs; `H` is the new db, `/restore/backup.tar`
/// the backup, `SUPERUSER` the role the image already created.
const RESTORE_SCRIPT: &str = r#"set -euo pipefail
B=/restore/backup.tar
if ! tar -xOf "$B" gemctl-backup.txt | grep -qx "$FORMAT"; then
  echo "this file is not a gemctl backup (no $FORMAT in gemctl-backup.txt)" >&2
  exit 3
fi
# The image created its superuser already, with this spec's password: every other
# role (and the superuser's own settings) comes from the backup.
tar -xOf "$B" globals.sql \
  | awk -v u="$SUPERUSER" '$0 != "CREATE ROLE " u ";" && $0 != "CREATE ROLE \"" u "\";" &&
      index($0, "ALTER ROLE " u " WITH ") != 1 && index($0, "ALTER ROLE \"" u "\" WITH ") != 1' \
  | psql -h "$H" -d postgres -X -q -v ON_ERROR_STOP=1 -o /dev/null
tar -xOf "$B" databases.tsv > /tmp/databases.tsv
while IFS=$'\t' read -r f d; do
  exists=$(printf '%s' "select 1 from pg_database where datname = :'d'" \
    | psql -h "$H" -d postgres -XAtq -v ON_ERROR_STOP=1 -v d="$d")
  if [ "$exists" = 1 ]; then
    tar -xOf "$B" "$f" | pg_restore -h "$H" -d "$d" --exit-on-error
  else
    tar -xOf "$B" "$f" | pg_restore -h "$H" -d postgres --create --exit-on-error
  fi
  echo "restored database $d"
done < /tmp/databases.tsv
"#;

/// Loads a backup into generation `generation`'s fresh, running database.
pub async fn restore<E: Engine>(
    engine: &E,
    spec: &Spec,
    env: &[String],
    generation: u64,
    backup: &Path,
) -> Result<(), Error> {
    let job = restore_job(
        spec,
        env,
        &desired::container_name(spec, Role::Db, generation),
        desired::copy_container_name(spec, generation),
        generation,
        backup,
    )?;
    run_one_shot(engine, spec, job).await
}

/// The one-shot that loads `backup` into the fresh, running database `db` (a
/// container on the private network), named `name`; its output ends with a
/// `restored database <name>` line per database.
pub fn restore_job(
    spec: &Spec,
    env: &[String],
    db: &str,
    name: String,
    generation: u64,
    backup: &Path,
) -> Result<OneShot, Error> {
    let creds = DbCredentials::from_env(env);
    let mut container_env = creds.pg_env();
    container_env.extend([
        format!("H={db}"),
        format!("FORMAT={FORMAT_LINE}"),
        format!("SUPERUSER={}", creds.user),
    ]);
    let backup = std::fs::canonicalize(backup).map_err(|e| Error::io(backup, "find", e))?;
    Ok(OneShot {
        name,
        generation,
        image: spec.db.image.to_string(),
        env: container_env,
        binds: vec![(backup.clone(), "/restore/backup.tar:ro".into())],
        script: RESTORE_SCRIPT.into(),
        what: format!("restoring {} into {db}", backup.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let t = humantime::parse_rfc3339("2026-11-25T23:57:45.123Z").unwrap();
        let name = file_name("shop-eu", 12, t);
        assert_eq!(name, "shop-eu-gen12-20261125T235745.123Z.tar");
        assert_eq!(parse_name(&name), Some(("shop-eu".into(), 12, t)));
        assert_eq!(parse_name("shop-gen1.tar"), None);
        assert_eq!(parse_name("notes.txt"), None);
    }

    #[test]
    fn retention_keeps_the_newest_and_what_the_spec_says() {
        let now = humantime::parse_rfc3339("2026-11-25T00:00:00Z").unwrap();
        let day = Duration::from_secs(86_400);
        // Oldest first: 10, 5, 3, 1 and 0 days old.
        let taken: Vec<SystemTime> = [10u32, 5, 3, 1, 0].iter().map(|d| now - day * *d).collect();
        assert_eq!(to_prune(&taken, None, None, now), Vec::<usize>::new());
        assert_eq!(to_prune(&taken, Some(2), None, now), vec![0, 1, 2]);
        assert_eq!(to_prune(&taken, None, Some(day * 4), now), vec![0, 1]);
        assert_eq!(to_prune(&taken, Some(4), Some(day * 4), now), vec![0, 1]);
        assert_eq!(
            to_prune(&taken, Some(1), Some(day * 30), now),
            vec![0, 1, 2, 3]
        );
        // The newest stays even when it is older than max_age.
        assert_eq!(
            to_prune(&taken[..1], Some(1), Some(day), now),
            Vec::<usize>::new()
        );
    }
}
