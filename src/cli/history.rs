//! `gemctl history`: the deployment reports of this host, as a table, as JSON, or
//! one report whole.

use std::path::PathBuf;

use std::io::Write;

use clap::{Args, ValueEnum};

use super::table::{self, left};
use super::{Output, json, print};
use crate::audit::Record;
use crate::error::{Error, exit};
use crate::report::Report;
use crate::spec::Spec;

/// List what was done on this host, newest first, or show one entry whole.
///
/// Every apply that changes anything writes a deployment report under
/// <storage>/.gemctl/reports/: when, who, the spec and its git commit, the
/// generation before and after, each step with its duration and outcome, the
/// health results. Every command that changes something or is refused — apply
/// (also refused or held), rollback, restore, backup, unpin, unlock,
/// maintenance, repair-state — also appends a line to the audit trail
/// (<storage>/.gemctl/audit.jsonl): who (the OS user, and who ran sudo), host,
/// gemctl version and commit, the spec's git commit, the outcome. Both are
/// listed here, a report with the command that wrote it; `--kind` keeps one
/// kind. Exit codes: 0 ok, 1 error (no such entry).
#[derive(Debug, Args)]
pub(super) struct HistoryArgs {
    /// The spec file (names the storage root).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Print one entry whole (an ID as the list shows it).
    #[arg(long, value_name = "ID")]
    show: Option<String>,
    /// Only entries of this kind.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Apply,
    Rollback,
    Restore,
    Backup,
    Unpin,
    Unlock,
    Maintenance,
    RepairState,
    Reconcile,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Apply => "apply",
            Kind::Rollback => "rollback",
            Kind::Restore => "restore",
            Kind::Backup => "backup",
            Kind::Unpin => "unpin",
            Kind::Unlock => "unlock",
            Kind::Maintenance => "maintenance",
            Kind::RepairState => "repair-state",
            Kind::Reconcile => "reconcile",
        }
    }
}

/// One entry: a deployment report (with the audit record of the command that
/// wrote it, when there is one), or a command that wrote no report.
struct Entry {
    id: String,
    at: String,
    /// Order among entries of the same second: the audit trail's line number
    /// (it is written in order), 0 for a report it does not know.
    seq: usize,
    kind: String,
    report: Option<Report>,
    record: Option<Record>,
}

impl Entry {
    /// As JSON: the report's fields (or the record's) with `kind`, and the
    /// record under `audit` beside a report.
    fn json(&self) -> serde_json::Value {
        let mut v = match (&self.report, &self.record) {
            (Some(r), record) => {
                let mut v = serde_json::to_value(r).expect("a report serialises");
                if let Some(record) = record {
                    v["audit"] = serde_json::to_value(record).expect("a record serialises");
                }
                v
            }
            (None, Some(record)) => serde_json::to_value(record).expect("a record serialises"),
            (None, None) => serde_json::Value::Null,
        };
        v["kind"] = self.kind.clone().into();
        v
    }
}

/// Reports and records, newest first.
fn entries(reports: Vec<Report>, records: Vec<Record>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for report in reports {
        let found = records
            .iter()
            .enumerate()
            .find(|(_, r)| r.reports.contains(&report.id));
        let seq = found.map_or(0, |(i, _)| i + 1);
        let record = found.map(|(_, r)| r.clone());
        let kind = match &record {
            Some(r) => r.kind.clone(),
            None => kind_of_command(&report.command).into(),
        };
        out.push(Entry {
            id: report.id.clone(),
            at: report.finished.clone(),
            seq,
            kind,
            report: Some(report),
            record,
        });
    }
    for (i, record) in records.into_iter().enumerate() {
        if !record.reports.is_empty() {
            continue;
        }
        out.push(Entry {
            id: record.id.clone(),
            at: record.at.clone(),
            seq: i + 1,
            kind: record.kind.clone(),
            report: None,
            record: Some(record),
        });
    }
    out.sort_by(|a, b| b.at.cmp(&a.at).then(b.seq.cmp(&a.seq)));
    out
}

/// The kind of a report the audit trail does not know (an older gemctl's, or a
/// reconcile round's), from the command that wrote it.
fn kind_of_command(command: &str) -> &'static str {
    let words: Vec<&str> = command.split_whitespace().collect();
    ["rollback", "restore", "reconcile"]
        .into_iter()
        .find(|k| words.contains(k))
        .unwrap_or("apply")
}

pub(super) fn run(args: HistoryArgs) -> Result<u8, Error> {
    let HistoryArgs {
        file,
        show,
        kind,
        output,
    } = args;
    let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
    let reports = crate::report::list(&spec.storage)?;
    let (records, skipped) = crate::audit::read(&spec.storage)?;
    if skipped > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "warning: {skipped} line(s) of {} could not be read and are not shown",
            crate::audit::path(&spec.storage).display()
        );
    }
    let mut all = entries(reports, records);
    if let Some(id) = show {
        let entry = all.iter().find(|e| e.id == id).ok_or_else(|| {
            Error::Usage(format!(
                "no history entry {id} under {}; `gemctl history -f {}` lists them",
                spec.storage.join(crate::observed::STATE_DIR).display(),
                file.display()
            ))
        })?;
        print(&json(&entry.json()))?;
        return Ok(exit::OK);
    }
    if let Some(k) = kind {
        all.retain(|e| e.kind == k.name());
    }
    match output {
        Output::Json => print(&json(&serde_json::json!({
            "entries": all.iter().map(Entry::json).collect::<Vec<_>>(),
        })))?,
        Output::Text => print(&history_text(&all))?,
    }
    Ok(exit::OK)
}

fn history_text(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "nothing recorded on this host yet\n".into();
    }
    let rows = entries
        .iter()
        .map(|e| {
            let generation = |g: Option<u64>| g.map_or("-".to_string(), |g| g.to_string());
            let git = e
                .report
                .as_ref()
                .and_then(|r| r.git.as_ref())
                .or_else(|| e.record.as_ref().and_then(|r| r.git.as_ref()));
            let commit = git.map_or("-".to_string(), |g| {
                format!(
                    "{}{}",
                    &g.commit[..g.commit.len().min(8)],
                    if g.dirty { "+" } else { "" }
                )
            });
            let (generations, outcome, copy, by) = match (&e.report, &e.record) {
                (Some(r), _) => (
                    format!("{}→{}", generation(r.before), generation(r.after)),
                    r.outcome.clone(),
                    copy_text(r.copy.as_ref()),
                    format!("{}@{}", r.user, r.host),
                ),
                (None, Some(r)) => (
                    "-".into(),
                    r.outcome.clone(),
                    "-".into(),
                    format!("{}@{}", r.user, r.host),
                ),
                (None, None) => Default::default(),
            };
            vec![
                e.id.clone(),
                e.at.clone(),
                e.kind.clone(),
                generations,
                outcome,
                copy,
                commit,
                by,
            ]
        })
        .collect();
    let columns = [
        left("ID", 32),
        left("FINISHED", 20),
        left("KIND", 12),
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
