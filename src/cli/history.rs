//! `gemctl history`: the deployment reports of this host, as a table, as JSON, or
//! one report whole.

use std::path::PathBuf;

use clap::Args;

use super::table::{self, left};
use super::{Output, json, print};
use crate::error::{Error, exit};
use crate::spec::Spec;

/// List the deployment reports of this host, newest first, or show one.
///
/// Every apply that changes anything writes a report under
/// <storage>/.gemctl/reports/: when, who, the spec and its git commit, the
/// generation before and after, each step with its duration and outcome, the
/// health results. Exit codes: 0 ok, 1 error (no such report).
#[derive(Debug, Args)]
pub(super) struct HistoryArgs {
    /// The spec file (names the storage root).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Print one report whole (an ID as the list shows it).
    #[arg(long, value_name = "ID")]
    show: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(super) fn run(args: HistoryArgs) -> Result<u8, Error> {
    let HistoryArgs { file, show, output } = args;
    let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
    let reports = crate::report::list(&spec.storage)?;
    if let Some(id) = show {
        let report = reports.iter().find(|r| r.id == id).ok_or_else(|| {
            Error::Usage(format!(
                "no report {id} under {}; `gemctl history -f {}` lists them",
                crate::report::reports_dir(&spec.storage).display(),
                file.display()
            ))
        })?;
        print(&json(report))?;
        return Ok(exit::OK);
    }
    match output {
        Output::Json => print(&json(&reports))?,
        Output::Text => print(&history_text(&reports))?,
    }
    Ok(exit::OK)
}

fn history_text(reports: &[crate::report::Report]) -> String {
    if reports.is_empty() {
        return "no deployments recorded on this host yet\n".into();
    }
    let rows = reports
        .iter()
        .map(|r| {
            let generation = |g: Option<u64>| g.map_or("-".to_string(), |g| g.to_string());
            let commit = r.git.as_ref().map_or("-".to_string(), |g| {
                format!(
                    "{}{}",
                    &g.commit[..g.commit.len().min(8)],
                    if g.dirty { "+" } else { "" }
                )
            });
            vec![
                r.id.clone(),
                r.finished.clone(),
                format!("{}→{}", generation(r.before), generation(r.after)),
                r.outcome.clone(),
                copy_text(r.copy.as_ref()),
                commit,
                format!("{}@{}", r.user, r.host),
            ]
        })
        .collect();
    let columns = [
        left("ID", 32),
        left("FINISHED", 20),
        left("GEN", 9),
        left("OUTCOME", 12),
        left("COPY", 20),
        left("COMMIT", 10),
        left("BY", 0),
    ];
    table::render(&columns, rows)
}

/// An upgrade's copy in a few words: the mode and the write freeze.
pub(super) fn copy_text(copy: Option<&crate::execute::CopyFacts>) -> String {
    let Some(c) = copy else { return "-".into() };
    let mode = c.mode.map_or("-".to_string(), |m| m.to_string());
    match c.freeze_ms {
        Some(ms) => format!("{mode}, freeze {:.1}s", ms as f64 / 1000.0),
        None => mode,
    }
}
