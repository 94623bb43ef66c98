//! `gemctl validate` and `gemctl schema`: the spec on its own, no engine asked.

use std::path::PathBuf;

use clap::Args;

use super::{json, print};
use crate::error::{Error, exit};
use crate::spec::{EnvFiles, Spec};

/// Check a spec file: syntax, field names, values, cross-field rules (a safe
/// storage root, each host port once) and the env files it names (readable
/// UTF-8 KEY=value lines; values are never shown). The engine is not asked.
///
/// Prints every problem as FILE:LINE:COLUMN: FIELD: MESSAGE. Every command
/// that reads the spec makes the same checks.
/// Exit codes: 0 valid, 1 invalid (or bad arguments).
#[derive(Debug, Args)]
pub(super) struct ValidateArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Do not read the env files (on a machine without the secrets, e.g. CI).
    #[arg(long)]
    no_env_files: bool,
}

/// Print the JSON Schema of the spec (committed as schema/gemctl.schema.json).
///
/// Editors use it to check specs as you type. Exit codes: 0 ok, 1 error.
#[derive(Debug, Args)]
pub(super) struct SchemaArgs {}

pub(super) fn validate(args: ValidateArgs) -> Result<u8, Error> {
    let ValidateArgs { file, no_env_files } = args;
    let env_files = if no_env_files {
        EnvFiles::Skip
    } else {
        EnvFiles::Check
    };
    let spec = Spec::load_with(&file, env_files)?;
    print(&format!(
        "{}: valid (project {}, generation {}, retain {}){}\n",
        file.display(),
        spec.project,
        spec.generation,
        spec.retain.0,
        if no_env_files {
            "; env files not checked"
        } else {
            ""
        }
    ))?;
    Ok(exit::OK)
}

pub(super) fn schema() -> Result<u8, Error> {
    print(&schema_json())?;
    Ok(exit::OK)
}

/// The JSON Schema of the spec, pretty-printed.
pub fn schema_json() -> String {
    json(&schemars::schema_for!(Spec))
}
