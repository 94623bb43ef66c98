//! Deployment reports: every apply that changes something leaves one under
//! `<storage>/.gemctl/reports/` — when, who, which spec at which git commit, the
//! generation before and after, each step with its duration and outcome, the
//! health results, and for a failure where its logs went. `gemctl history` lists
//! them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::execute::{CopyFacts, Event};
use crate::git::GitInfo;
use crate::health::HealthOutcome;
use crate::plan::Plan;

/// One step as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based position in its plan.
    pub index: usize,
    /// What it did.
    pub description: String,
    /// Why.
    pub reason: String,
    /// `ok`, `failed` (the apply stopped here) or `unhealthy`.
    pub outcome: String,
    /// How long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// A deployment report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `<UTC time>-<project>`; also the file name.
    pub id: String,
    /// Project.
    pub project: String,
    /// Start (RFC 3339 UTC).
    pub started: String,
    /// End (RFC 3339 UTC).
    pub finished: String,
    /// User name.
    pub user: String,
    /// Host name.
    pub host: String,
    /// The command line.
    pub command: String,
    /// The spec file.
    pub spec_file: String,
    /// The spec's git commit, if it is in a work tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    /// The spec's generation.
    pub desired: u64,
    /// The live generation before.
    pub before: Option<u64>,
    /// The live generation after.
    pub after: Option<u64>,
    /// `converged`, `rolled_back`, `held`, `failed`.
    pub outcome: String,
    /// The exit code.
    pub exit_code: u8,
    /// One paragraph.
    pub message: String,
    /// Notes of the plans (writes a rollback leaves behind…).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Every step of every plan run, in order.
    pub steps: Vec<StepRecord>,
    /// Health results, in order.
    #[serde(default)]
    pub health: Vec<HealthRecord>,
    /// A failure report with the logs, if the new generation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_report: Option<String>,
    /// That failure report's contents: health output and the captured logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<serde_json::Value>,
    /// The data copy of an upgrade: its mode, bytes copied, the lag at the freeze
    /// and the freeze's length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyFacts>,
    /// Set when the front door answered in maintenance as the apply ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<crate::front::Maintenance>,
}

/// One health check step's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthRecord {
    /// Generation checked.
    pub generation: u64,
    /// The outcome.
    pub outcome: serde_json::Value,
}

/// Collects apply events into a report.
#[derive(Debug, Default)]
pub struct Recorder {
    /// The first plan's live generation and desired generation.
    first: Option<(Option<u64>, u64)>,
    notes: Vec<String>,
    steps: Vec<StepRecord>,
    health: Vec<HealthRecord>,
    changed: bool,
    started: String,
    copy: Option<CopyFacts>,
}

impl Recorder {
    /// Starts recording now.
    pub fn new() -> Recorder {
        Recorder {
            started: crate::state::now_rfc3339(),
            ..Recorder::default()
        }
    }

    /// Takes one event.
    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Plan { plan } => self.plan(plan),
            Event::StepStarted { index, step, .. } => {
                self.changed = true;
                self.steps.push(StepRecord {
                    index: *index,
                    description: step.action.describe(),
                    reason: step.reason.clone(),
                    outcome: "failed".into(),
                    duration_ms: None,
                });
            }
            Event::StepFinished { duration_ms, .. } => {
                if let Some(last) = self.steps.last_mut() {
                    last.outcome = "ok".into();
                    last.duration_ms = Some(*duration_ms);
                }
            }
            Event::Health {
                generation,
                outcome,
            } => {
                self.health.push(HealthRecord {
                    generation: *generation,
                    outcome: health_json(outcome),
                });
                if !outcome.healthy
                    && let Some(last) = self.steps.last_mut()
                {
                    last.outcome = "unhealthy".into();
                }
            }
            Event::Copy { facts } => self.copy.get_or_insert_default().merge(facts),
            Event::Progress { .. } | Event::Failure { .. } => {}
        }
    }

    fn plan(&mut self, plan: &Plan) {
        if self.first.is_none() {
            self.first = Some((plan.live, plan.desired));
        }
        self.notes.extend(plan.notes.iter().cloned());
        if let Some(h) = &plan.hold {
            self.notes.push(h.clone());
        }
    }

    /// Whether anything was done (only then is a report worth writing).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The finished report.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        self,
        project: &str,
        spec_file: &Path,
        git: Option<GitInfo>,
        after: Option<u64>,
        outcome: &str,
        exit_code: u8,
        message: &str,
        failure_report: Option<PathBuf>,
    ) -> Report {
        let finished = crate::state::now_rfc3339();
        let (before, desired) = self.first.unwrap_or((None, 0));
        let stamp: String = finished
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let holder = crate::lock::Holder::me(&std::env::args().collect::<Vec<_>>().join(" "));
        Report {
            id: format!("{stamp}-{project}"),
            project: project.to_string(),
            started: self.started,
            finished,
            user: holder.user,
            host: holder.host,
            command: holder.command,
            spec_file: spec_file.display().to_string(),
            git,
            desired,
            before,
            after,
            outcome: outcome.to_string(),
            exit_code,
            message: message.to_string(),
            notes: self.notes,
            steps: self.steps,
            health: self.health,
            failure: failure_report
                .as_deref()
                .and_then(crate::state::read_failure_report),
            failure_report: failure_report.map(|p| p.display().to_string()),
            copy: self.copy,
            maintenance: None,
        }
    }
}

fn health_json(outcome: &HealthOutcome) -> serde_json::Value {
    serde_json::to_value(outcome).unwrap_or_default()
}

/// The reports directory of a storage root.
pub fn reports_dir(storage: &Path) -> PathBuf {
    crate::state::reports_dir(storage)
}

/// Writes a report into `dir` as `<id>.json`; returns the path.
pub fn write(dir: &Path, report: &Report) -> Result<PathBuf, Error> {
    let path = dir.join(format!("{}.json", report.id));
    let mut bytes = serde_json::to_vec_pretty(report).expect("serialisable");
    bytes.push(b'\n');
    crate::state::write_atomic(&path, &bytes)?;
    Ok(path)
}

/// Every report under the storage root, newest first.
pub fn list(storage: &Path) -> Result<Vec<Report>, Error> {
    let mut reports: Vec<Report> = crate::state::read_reports(storage)?;
    reports.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(reports)
}
