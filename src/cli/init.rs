//! `gemctl init`: a commented starter spec for the runbook's stack (app +
//! PostgreSQL, the front door commented out), its secrets file and the schema.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{print, schema_json};
use crate::error::{Error, exit};
use crate::spec::{EnvFiles, Spec};

/// The starter spec; `{project}` is replaced by the project's name.
const SPEC: &str = include_str!("init/gemctl.yaml");
/// The env file template, with empty secrets to fill in.
const SECRETS: &str = include_str!("init/secrets.env");

/// Write a commented starter spec for an app + PostgreSQL stack
///
/// Writes three files into DIR (default: the current directory):
///
///   gemctl.yaml          the spec: every setting explained, a front door
///                        (HAProxy) section commented out
///   secrets.env          its env file, POSTGRES_PASSWORD= to fill in;
///                        mode 0600, keep it out of git
///   gemctl.schema.json   the JSON Schema the spec's first line names, so
///                        editors check it as you type
///
/// Then set the images, fill secrets.env, and run `gemctl validate -f
/// gemctl.yaml` and `gemctl diff -f gemctl.yaml`. Existing files are never
/// overwritten: if one of them is there, nothing is written.
///
/// Exit codes: 0 written, 1 error (a file already there, a bad project name,
/// a directory that cannot be written).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(super) struct InitArgs {
    /// Where to write the files (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The project's name: lowercase letters, digits, '-' and '_'. It labels
    /// the containers and names them (NAME-1, NAME-db-1). Default: the
    /// directory's name, if it is one.
    #[arg(long, value_name = "NAME")]
    project: Option<String>,
}

pub(super) fn run(args: InitArgs) -> Result<u8, Error> {
    let InitArgs { dir, project } = args;
    let project = match project {
        Some(p) if valid_name(&p) => p,
        Some(p) => {
            return Err(Error::Usage(format!(
                "--project {p:?} is not a project name: use lowercase letters, digits, \
                 '-' and '_', starting with a letter or digit"
            )));
        }
        None => default_project(&dir)?,
    };
    let spec_path = dir.join("gemctl.yaml");
    let spec = SPEC.replace("{project}", &project);
    // What init writes must validate (the env file aside: its secrets are empty).
    Spec::parse_with(&spec_path, &spec, EnvFiles::Skip).map_err(|e| {
        Error::Usage(format!(
            "--project {project:?} does not make a valid spec:\n{e}"
        ))
    })?;
    let files = [
        (spec_path, spec, 0o644),
        (
            dir.join("secrets.env"),
            SECRETS.replace("{project}", &project),
            0o600,
        ),
        (dir.join("gemctl.schema.json"), schema_json(), 0o644),
    ];
    let there: Vec<String> = files
        .iter()
        .filter(|(path, ..)| path.symlink_metadata().is_ok())
        .map(|(path, ..)| path.display().to_string())
        .collect();
    if !there.is_empty() {
        return Err(Error::Usage(format!(
            "{} already there: gemctl init never overwrites a file, and wrote nothing \
             (move it away, or pick another --dir)",
            there.join(", ")
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    let mut written: Vec<&Path> = Vec::new();
    for (path, text, mode) in &files {
        if let Err(e) = write_new(path, text, *mode) {
            // All or nothing: take back what this run wrote.
            for done in written {
                let _ = std::fs::remove_file(done);
            }
            return Err(e);
        }
        written.push(path);
    }
    print(&format!(
        "wrote {} (project {project}), {} (mode 0600: fill in POSTGRES_PASSWORD and \
         PGPASSWORD) and {}\nnext: set app.image and db.image, then\n  \
         gemctl validate -f {}\n  gemctl diff -f {}\n",
        files[0].0.display(),
        files[1].0.display(),
        files[2].0.display(),
        files[0].0.display(),
        files[0].0.display(),
    ))?;
    Ok(exit::OK)
}

/// The directory's name, when it is a valid project name.
fn default_project(dir: &Path) -> Result<String, Error> {
    let absolute = std::path::absolute(dir).map_err(|e| Error::io(dir, "resolve", e))?;
    let name = absolute
        .components()
        .next_back()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if valid_name(&name) {
        Ok(name)
    } else {
        Err(Error::Usage(format!(
            "{} is not a project name (lowercase letters, digits, '-' and '_'): \
             give one with --project NAME",
            absolute.display()
        )))
    }
}

/// The rule `validate` has for names: lowercase letters, digits, `-` and `_`,
/// starting with a letter or digit.
fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Creates `path` with `mode`, failing if anything is there already (even one
/// made since the check above).
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, "create", e))?;
    file.write_all(text.as_bytes()).map_err(|e| {
        let _ = std::fs::remove_file(path);
        Error::io(path, "write", e)
    })
}
