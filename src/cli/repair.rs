//! `gemctl repair-state`: rebuilds gemctl's records from evidence (what
//! `crate::repair` decides and carries out) and prints what it did and what is left.

use std::path::PathBuf;

use clap::Args;

use super::lock::take_lock;
use super::{Output, json, observe_engine, print};
use crate::error::{Error, exit};
use crate::spec::Spec;

/// Rebuild gemctl's records under the storage root from evidence, after an
/// accident left one missing or corrupt.
///
/// gemctl refuses to act (exit 3) when a record it needs cannot be trusted: a
/// generation's marker (`<storage>/<n>/gemctl-ready.json`), `.gemctl/live`,
/// `.gemctl/served.json`, `.gemctl/history.json` or `.gemctl/pin`. This command
/// rebuilds what the engine's labels and the other records prove: the marker of
/// a generation that served (ready), the record of served generations, the live
/// pointer from the app serving now. A corrupt record is moved aside
/// (`<file>.bad-<time>`), never deleted. What it cannot prove it leaves, and says
/// how to decide: `--discard N` declares a generation's data debris that never
/// served (the next apply deletes it; refused if anything says it served),
/// `--ready N` declares it complete, `--reset-history` starts an empty failure
/// history. A corrupt pin is removed with `gemctl unpin`. `--dry-run` shows the
/// repairs without making them.
///
/// Exit codes: 0 the records can be trusted now, 3 problems are left (listed,
/// with what to do), 1 any other error.
#[derive(Debug, Args)]
pub(super) struct RepairStateArgs {
    /// The spec file (names the storage root).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Declare generation N's data debris that never served (repeatable).
    #[arg(long, value_name = "N")]
    discard: Vec<u64>,
    /// Declare generation N's data complete (repeatable).
    #[arg(long, value_name = "N")]
    ready: Vec<u64>,
    /// Move a corrupt `.gemctl/history.json` aside and start an empty one.
    #[arg(long)]
    reset_history: bool,
    /// Show the repairs, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl RepairStateArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &std::path::Path {
        &self.file
    }
}

pub(super) fn run(args: RepairStateArgs) -> Result<u8, Error> {
    let RepairStateArgs {
        file,
        discard,
        ready,
        reset_history,
        dry_run,
        output,
    } = args;
    let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
    let _lock = take_lock(&spec)?;
    let observation = observe_engine(&spec)?;
    let options = crate::repair::RepairOptions {
        discard,
        ready,
        reset_history,
    };
    let decided = crate::repair::decide(&spec, &observation, &options);
    let moved = if dry_run {
        Vec::new()
    } else {
        crate::repair::carry_out(&spec, &decided)?
    };
    let code = if decided.left.is_empty() {
        exit::OK
    } else {
        exit::REFUSED
    };
    match output {
        Output::Json => print(&json(&serde_json::json!({
            "dry_run": dry_run,
            "repairs": decided.repairs,
            "moved_aside": moved,
            "left": decided.left,
        })))?,
        Output::Text => {
            let mut text = String::new();
            let verb = if dry_run { "would" } else { "did" };
            if decided.repairs.is_empty() {
                text.push_str(&format!("project {}: nothing to rebuild\n", spec.project));
            }
            for r in &decided.repairs {
                text.push_str(&format!("{verb}: {r}\n"));
            }
            for m in &moved {
                text.push_str(&format!("moved aside: {}\n", m.display()));
            }
            for l in &decided.left {
                text.push_str(&format!("left: {l}\n"));
            }
            if code == exit::OK && !dry_run {
                text.push_str(
                    "the records can be trusted: `gemctl diff` shows what apply would do\n",
                );
            }
            print(&text)?;
        }
    }
    Ok(code)
}
