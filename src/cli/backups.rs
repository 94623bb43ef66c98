//! `gemctl backup` and `gemctl backups`: taking a backup of the live generation
//! (also on schedule, for `reconcile`) and listing or verifying the backups.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::lock::take_lock;
use super::table::{self, left, right};
use super::{Output, json, print, runtime};
use crate::error::{Error, exit};
use crate::spec::Spec;

/// Back up the live generation's databases, roles included, while the app
/// keeps running.
///
/// Writes one tar file, <project>-gen<n>-<UTC time>.tar, into the spec's
/// `backup.dir` (default <storage>/backups): a pg_dump custom-format archive
/// per database (each one consistent: every row committed before its dump
/// began is in it) and pg_dumpall's roles, taken by a one-shot container of
/// the db's image. Next to it, <name>.sha256 (`sha256sum -c` reads it). The
/// file is written under a temporary name and renamed only when complete.
/// Then the spec's retention (`backup.keep`, `backup.max_age`) is applied.
/// Holds the project's lock while it runs.
///
/// Exit codes: 0 written, 1 error (nothing half-written is left behind).
#[derive(Debug, Args)]
pub(super) struct BackupArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl BackupArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &std::path::Path {
        &self.file
    }
}

/// List the project's backups: generation, when taken, age, size, checksum.
///
/// Without --verify the CHECKSUM column says whether the checksum file is
/// there (`present` / `MISSING`); --verify reads every backup and compares
/// (`ok` / `MISMATCH`).
///
/// Exit codes: 0 listed (with --verify: every backup intact), 3 with
/// --verify: some backup is damaged or has no checksum file, 1 any other error.
#[derive(Debug, Args)]
pub(super) struct BackupsArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Hash every backup and compare it with its checksum file.
    #[arg(long)]
    verify: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(super) fn backup(args: BackupArgs) -> Result<u8, Error> {
    let BackupArgs { file, output } = args;
    let spec = Spec::load(&file)?;
    // An engine on another machine is refused before the lock leaves anything.
    crate::docker::Docker::local_endpoint()?;
    let _lock = take_lock(&spec)?;
    let (info, pruned) = backup_now(&spec, output == Output::Text)?;
    match output {
        Output::Json => print(&json(
            &serde_json::json!({ "backup": info, "pruned": pruned, "exit_code": exit::OK }),
        ))?,
        Output::Text => {
            let mut text = format!(
                "project {}: backed up generation {} to {} ({})\nsha256 {} (in {}{})\n",
                spec.project,
                info.generation,
                info.path.display(),
                crate::status::human_bytes(info.size),
                match &info.checksum {
                    crate::backup::Checksum::Ok { sha256 } => sha256.as_str(),
                    _ => "-",
                },
                info.name,
                crate::backup::SUM_EXT
            );
            for name in &pruned {
                text.push_str(&format!("pruned {name} (backup retention)\n"));
            }
            print(&text)?;
        }
    }
    Ok(exit::OK)
}

pub(super) fn list(args: BackupsArgs) -> Result<u8, Error> {
    let BackupsArgs {
        file,
        verify,
        output,
    } = args;
    let spec = Spec::load(&file)?;
    let dir = spec.backup_dir();
    let list = crate::backup::list(&dir, &spec.project, verify)?;
    let bad = list
        .iter()
        .any(|b| !matches!(b.checksum, crate::backup::Checksum::Ok { .. }));
    match output {
        Output::Json => print(&json(&serde_json::json!({ "dir": dir, "backups": list })))?,
        Output::Text => print(&backups_text(&spec, &dir, &list))?,
    }
    Ok(if verify && bad {
        exit::REFUSED
    } else {
        exit::OK
    })
}

/// Takes a backup of the live generation and applies the retention; the caller
/// holds the lock.
pub(super) fn backup_now(
    spec: &Spec,
    progress: bool,
) -> Result<(crate::backup::BackupInfo, Vec<String>), Error> {
    let live = crate::state::read_storage(&spec.storage)?
        .live
        .ok_or_else(|| {
            Error::Usage(format!(
                "project {} has no live generation on this host: nothing to back up",
                spec.project
            ))
        })?;
    if progress {
        let _ = writeln!(
            std::io::stderr(),
            "backing up generation {live} of project {} into {} …",
            spec.project,
            spec.backup_dir().display()
        );
    }
    let env = crate::execute::db_env(spec)?;
    let info = runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        crate::backup::take(&docker, spec, &env, live).await
    })?;
    let pruned = crate::backup::prune(spec)?;
    Ok((info, pruned))
}

fn backups_text(spec: &Spec, dir: &Path, list: &[crate::backup::BackupInfo]) -> String {
    if list.is_empty() {
        return format!(
            "project {}: no backups in {} (take one with `gemctl backup -f SPEC`)\n",
            spec.project,
            dir.display()
        );
    }
    let rows = list
        .iter()
        .map(|b| {
            let age = if b.age_seconds < 60 {
                "<1m".to_string()
            } else {
                humantime::format_duration(std::time::Duration::from_secs(
                    b.age_seconds - b.age_seconds % 60,
                ))
                .to_string()
            };
            vec![
                b.name.clone(),
                b.generation.to_string(),
                b.taken.clone(),
                age,
                crate::status::human_bytes(b.size),
                b.checksum.to_string(),
            ]
        })
        .collect();
    let columns = [
        left("NAME", 52),
        right("GEN", 4),
        left("TAKEN", 24),
        right("AGE", 10),
        right("SIZE", 10),
        left("CHECKSUM", 0),
    ];
    table::render(&columns, rows) + &format!("in {}\n", dir.display())
}
