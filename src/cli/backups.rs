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
/// LAST DRILL says when each backup was last proven to restore, and whether it
/// did. `--drill NAME` (or `--drill --latest`) proves it now: the backup is
/// restored into a throwaway database (`<project>-drill-db`, its data in
/// <storage>/drill), every database of its manifest must be there, the rows of
/// every table are counted, the spec's `backup.drill.check` query must return
/// a row; the result is written next to the backup (<name>.drill.json) and the
/// copy is discarded. The live generation is not touched and no lock is taken.
///
/// Exit codes: 0 listed (with --verify: every backup intact; with --drill: it
/// restored and passed), 3 with --verify: some backup is damaged or has no
/// checksum file, 4 with --drill: the backup did not restore or failed a
/// check, 1 any other error.
#[derive(Debug, Args)]
pub(super) struct BackupsArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Hash every backup and compare it with its checksum file.
    #[arg(long)]
    verify: bool,
    /// Restore this backup (a name as listed, or a path) into a throwaway
    /// database, check it and record the result.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "verify",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    drill: Option<String>,
    /// With --drill: the newest backup.
    #[arg(long, requires = "drill")]
    latest: bool,
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
        drill,
        latest,
        output,
    } = args;
    let spec = Spec::load(&file)?;
    if let Some(name) = drill {
        return drill_now(&spec, &name, latest, output);
    }
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

/// `backups --drill`: the backup named (or the newest) restored into a throwaway
/// database, checked, recorded and discarded.
fn drill_now(spec: &Spec, name: &str, latest: bool, output: Output) -> Result<u8, Error> {
    let path = match (name, latest) {
        ("", true) => crate::backup::list(&spec.backup_dir(), &spec.project, false)?
            .pop()
            .map(|b| b.path)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "project {} has no backup in {} to drill",
                    spec.project,
                    spec.backup_dir().display()
                ))
            })?,
        ("", false) => {
            return Err(Error::Usage(
                "--drill needs a backup: --drill NAME (as `gemctl backups` lists it), or \
                 --drill --latest"
                    .into(),
            ));
        }
        (name, _) => crate::backup::resolve(spec, name),
    };
    crate::docker::Docker::local_endpoint()?;
    let result = drill_one(spec, &path, output == Output::Text)?;
    match output {
        Output::Json => print(&json(&serde_json::json!({
            "drill": result,
            "record": crate::throwaway::drill_path(&path),
            "exit_code": if result.passed { exit::OK } else { exit::ROLLED_BACK },
        })))?,
        Output::Text => print(&drill_text(&result, &path))?,
    }
    Ok(if result.passed {
        exit::OK
    } else {
        exit::ROLLED_BACK
    })
}

/// Runs one drill (progress on stderr when asked).
pub(super) fn drill_one(
    spec: &Spec,
    path: &Path,
    progress: bool,
) -> Result<crate::throwaway::Drill, Error> {
    let _in_use = crate::throwaway::hold(spec, crate::throwaway::Kind::Drill, "backups --drill")?;
    runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        let mut say = |m: String| {
            if progress {
                let _ = writeln!(std::io::stderr(), "  {m}");
            }
        };
        crate::throwaway::drill(&docker, spec, path, &mut say).await
    })
}

fn drill_text(d: &crate::throwaway::Drill, path: &Path) -> String {
    let mut text = if d.passed {
        format!(
            "drill of {} PASSED in {:.1}s: it restores, with {} database(s)\n",
            d.backup,
            d.duration_ms as f64 / 1000.0,
            d.databases.len()
        )
    } else {
        format!(
            "drill of {} FAILED: {}\n",
            d.backup,
            d.error.as_deref().unwrap_or("?")
        )
    };
    for (db, tables) in &d.tables {
        for (table, rows) in tables {
            text.push_str(&format!("  {db}: {table} {rows} rows\n"));
        }
    }
    if let Some(n) = d.check_rows {
        text.push_str(&format!("  backup.drill.check returned {n} row(s)\n"));
    }
    text.push_str(&format!(
        "recorded in {}\n",
        crate::throwaway::drill_path(path).display()
    ));
    text
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
                match &b.drill {
                    None => "-".to_string(),
                    Some(d) if d.passed => format!("passed {}", d.at),
                    Some(d) => format!("FAILED {}", d.at),
                },
            ]
        })
        .collect();
    let columns = [
        left("NAME", 52),
        right("GEN", 4),
        left("TAKEN", 24),
        right("AGE", 10),
        right("SIZE", 10),
        left("CHECKSUM", 10),
        left("LAST DRILL", 0),
    ];
    table::render(&columns, rows) + &format!("in {}\n", dir.display())
}
