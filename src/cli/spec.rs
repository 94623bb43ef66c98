//! `gemctl validate` and `gemctl schema`: the spec on its own, no engine asked.

use std::path::PathBuf;

use clap::Args;

use std::io::Write;

use super::{Output, json, print};
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
    /// Output format: JSON lists every problem with its file, line, column and
    /// field.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Print the JSON Schema of the spec (committed as schema/gemctl.schema.json).
///
/// Editors use it to check specs as you type. Exit codes: 0 ok, 1 error.
#[derive(Debug, Args)]
pub(super) struct SchemaArgs {}

pub(super) fn validate(args: ValidateArgs) -> Result<u8, Error> {
    let ValidateArgs {
        file,
        no_env_files,
        output,
    } = args;
    let env_files = if no_env_files {
        EnvFiles::Skip
    } else {
        EnvFiles::Check
    };
    let loaded = Spec::load_with(&file, env_files);
    if output == Output::Json {
        return validate_json(&file, loaded, !no_env_files);
    }
    let spec = loaded?;
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

/// `validate --output json`: the verdict, and every problem where it is; the
/// problems also go to stderr as text.
fn validate_json(
    file: &std::path::Path,
    loaded: Result<Spec, crate::spec_error::SpecErrors>,
    env_files_checked: bool,
) -> Result<u8, Error> {
    match loaded {
        Ok(spec) => {
            print(&json(&serde_json::json!({
                "valid": true,
                "spec_file": file,
                "project": spec.project,
                "generation": spec.generation.0,
                "env_files_checked": env_files_checked,
                "exit_code": exit::OK,
            })))?;
            Ok(exit::OK)
        }
        Err(errors) => {
            let _ = writeln!(std::io::stderr(), "{errors}");
            let list: Vec<serde_json::Value> = errors
                .0
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "file": e.file,
                        "line": e.position.map(|p| p.0),
                        "column": e.position.map(|p| p.1),
                        "field": e.field,
                        "message": e.message,
                    })
                })
                .collect();
            print(&json(&serde_json::json!({
                "valid": false,
                "spec_file": file,
                "errors": list,
                "exit_code": exit::ERROR,
            })))?;
            Ok(exit::ERROR)
        }
    }
}

pub(super) fn schema() -> Result<u8, Error> {
    print(&schema_json())?;
    Ok(exit::OK)
}

/// The JSON Schema of the spec, pretty-printed.
pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Spec)).expect("the schema serialises")
        + "\n"
}
