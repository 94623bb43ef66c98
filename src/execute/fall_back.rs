//! The fall back: when a step of a new generation fails, say why, record the
//! failure, report it, and let the planner take the host back to the previous
//! generation. When even that fails, the error says the cause first, then why the
//! fall back failed, what runs now and what to do.
//!
//! Not here: which failures fall back is decided from the plan alone
//! ([`fall_back_from`]); the records themselves are written by `records`.

use std::path::PathBuf;

use serde::Serialize;

use super::{Event, Outcome, Run, StepError, StepFailure, known};
use crate::desired::{self, Role};
use crate::engine::Engine;
use crate::error::Error;
use crate::health::HealthOutcome;
use crate::observe;
use crate::observed::{FailedGeneration, Marker, Observation};
use crate::plan::{self, Action, Plan, PlanKind, PlanOptions};
use crate::port_holder;
use crate::spec::{PortMapping, Spec};
use crate::state;

/// Lines of each container's logs kept in a failure report.
const LOG_LINES: usize = 200;

/// The failure report written under `<storage>/.gemctl/failures/`.
#[derive(Debug, Serialize)]
pub struct FailureReport {
    /// Project.
    pub project: String,
    /// The generation that failed.
    pub generation: u64,
    /// The generation that was live before.
    pub previous: Option<u64>,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// One line.
    pub reason: String,
    /// The step that failed.
    pub step: String,
    /// The whole error (for a db that would not start, its last log lines).
    pub error: String,
    /// Every check's outcome, when the health checks failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthOutcome>,
    /// Last lines of the new app's logs.
    pub app_logs: String,
    /// Last lines of the new db's logs.
    pub db_logs: String,
    /// Last lines of each of the new generation's service containers' logs.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub service_logs: std::collections::BTreeMap<String, String>,
}

/// The generation a failure falls back from: the plan's target, when the plan
/// makes it new and the failure came at or after the first step that makes it (or
/// stops the old app: the freeze) and before it was recorded live. After that the
/// new generation is live and what failed is clean-up; before, nothing of it
/// exists. A stale plan never falls back.
pub(super) fn fall_back_from(plan: &Plan, failure: &StepFailure) -> Option<u64> {
    let index = failure.index?;
    let t = plan.target;
    if matches!(failure.error, StepError::Stale(_)) || plan.hold.is_some() || plan.live == Some(t) {
        return None;
    }
    let makes_new = |a: &Action| {
        matches!(a, Action::CreateDb { generation, fresh: true, .. }
            | Action::BaseBackup { to: generation, .. }
            | Action::ShareDb { generation, .. }
            | Action::CreateAppProbe { generation, .. } if *generation == t)
    };
    if !plan.steps.iter().any(|s| makes_new(&s.action)) {
        return None;
    }
    let first = plan.steps.iter().position(|s| {
        makes_new(&s.action)
            || matches!(
                s.action,
                Action::StopApp { .. } | Action::StopService { .. }
            )
    })?;
    let live = plan
        .steps
        .iter()
        .position(|s| matches!(s.action, Action::SetLive { generation } if generation == t))?;
    (first..=live).contains(&index).then_some(t)
}

/// A failure of a new generation, as it is said, recorded and reported.
struct Failure {
    generation: u64,
    /// `step 9/14 (expose gem-2 on its public ports)`.
    step: String,
    /// The previous generation's app served throughout (the failure came before it
    /// was stopped).
    kept_serving: bool,
    /// The whole error, with whoever holds a port it wanted.
    error: String,
    /// Its first line.
    why: String,
    health: Option<HealthOutcome>,
    /// A restore failed (not recorded as a failed release).
    restore: bool,
    /// The history's entry; its report path is set once the report is written.
    failed: FailedGeneration,
}

/// What became of writing down a failure.
struct Written {
    report: Result<PathBuf, Error>,
    recorded: Result<(), Error>,
}

impl Written {
    /// What could not be written about the failure, after the fall back tried again.
    fn secondary(&self) -> Vec<String> {
        let mut also = Vec::new();
        if let Err(e) = &self.report {
            also.push(format!("the failure report could not be written: {e}"));
        }
        if let Err(e) = &self.recorded {
            also.push(format!(
                "the failure could not be recorded ({e}); a later apply tries this generation \
                 again"
            ));
        }
        also
    }
}

impl<E: Engine> Run<'_, E> {
    /// The new generation failed: say why, record it, report it, and let the
    /// planner take the host back to the previous generation.
    pub(super) async fn fail_and_fall_back(
        &mut self,
        plan: &Plan,
        generation: u64,
        failure: StepFailure,
    ) -> Result<Outcome, Error> {
        let mut f = self.describe(plan, generation, failure).await;
        let previous = plan.live.map_or("no generation (bootstrap)".into(), |l| {
            format!("generation {l}")
        });
        (self.on_event)(Event::Failure {
            message: format!(
                "generation {generation} failed at {}: {}\nReturning to {previous}.",
                f.step, f.error
            ),
        });
        let body = self.failure_report(plan, &f).await;
        let report = self.write_report(&mut f, &body);
        let recorded = self.record_failed(f.restore, &f.failed);
        let mut written = Written { report, recorded };

        let mut cause = format!("generation {generation} failed at {}: {}", f.step, f.error);
        if let Ok(path) = &written.report {
            cause.push_str(&format!("\nFailure report: {}", path.display()));
        }
        self.drop_base_backup_slot(plan).await;
        let back = match self.plan_back(&f, written.recorded.is_err()).await {
            Ok(back) => back,
            Err(why) => {
                let also = written.secondary();
                return Err(self.cannot_fall_back(&cause, plan.live, &why, also).await);
            }
        };
        (self.on_event)(Event::Plan { plan: back.clone() });
        if let Err(failure) = self.steps(&back).await {
            let why = why_fall_back_failed(self.spec, &back, failure);
            let also = written.secondary();
            return Err(self.cannot_fall_back(&cause, plan.live, &why, also).await);
        }

        if written.report.is_err() || written.recorded.is_err() {
            if written.report.is_err() {
                written.report = self.write_report(&mut f, &body);
            }
            written.recorded = self.record_failed(f.restore, &f.failed);
        }
        Ok(Outcome::RolledBack {
            restore: f.restore,
            failed: generation,
            restored: (back.target != generation).then_some(back.target),
            step: f.step,
            kept_serving: f.kept_serving,
            also: written.secondary(),
            report: written.report.ok(),
            reason: f.why,
        })
    }

    /// A streamed upgrade that failed before its standby streamed left the base
    /// backup's slot in the old db, which serves on: it goes now, or it would hold
    /// that db's WAL. Best effort: the next start of that db or the next streamed
    /// upgrade drops it too.
    async fn drop_base_backup_slot(&self, plan: &Plan) {
        let Some((from, to)) = plan.steps.iter().find_map(|s| match s.action {
            Action::BaseBackup { from, to } => Some((from, to)),
            _ => None,
        }) else {
            return;
        };
        if let Ok(env) = super::db_env(self.spec) {
            let creds = crate::copy::DbCredentials::from_env(&env);
            let _ = crate::stream::drop_slot(self.engine, self.spec, &creds, from, to).await;
        }
    }

    /// Which step failed and why, in the words said, recorded and reported.
    async fn describe(&self, plan: &Plan, generation: u64, failure: StepFailure) -> Failure {
        let spec = self.spec;
        let at = state::now_rfc3339();
        let index = failure.index.unwrap_or_default();
        let step = format!(
            "step {}/{} ({})",
            index + 1,
            plan.steps.len(),
            plan.steps[index].action.describe()
        );
        let kept_serving = !plan.steps[..index]
            .iter()
            .any(|s| matches!(s.action, Action::StopApp { .. }));
        let (mut error, health) = match failure.error {
            StepError::Unhealthy {
                outcome,
                service: Some(service),
                ..
            } => (
                format!("service {service} failed its checks: {}", outcome.summary()),
                Some(outcome),
            ),
            StepError::Unhealthy { outcome, .. } => (
                format!("it failed its health checks: {}", outcome.summary()),
                Some(outcome),
            ),
            StepError::Failed(e) | StepError::Stale(e) => (e.to_string(), None),
        };
        self.name_port_holders(&mut error).await;
        let why = error.lines().next().unwrap_or_default().to_string();
        // The history's line is what `diff` shows for a held generation.
        let reason = match &health {
            Some(outcome) => outcome.summary(),
            None => format!("{step} failed: {why}"),
        };
        Failure {
            generation,
            kept_serving,
            error,
            why,
            health,
            restore: plan.kind == PlanKind::Restore,
            failed: FailedGeneration {
                generation,
                spec_hash: desired::generation_hash(spec, generation),
                at,
                reason,
                report: None,
            },
            step,
        }
    }

    /// The failure report: the error, the health outcome and both containers' logs.
    async fn failure_report(&self, plan: &Plan, f: &Failure) -> FailureReport {
        let spec = self.spec;
        let logs = |role: Role| async move {
            let name = desired::container_name(spec, role, f.generation);
            self.engine
                .logs(&name, LOG_LINES)
                .await
                .unwrap_or_else(|e| e.to_string())
        };
        FailureReport {
            project: spec.project.clone(),
            generation: f.generation,
            previous: plan.live,
            at: f.failed.at.clone(),
            reason: f.failed.reason.clone(),
            step: f.step.clone(),
            error: f.error.clone(),
            health: f.health.clone(),
            app_logs: logs(Role::App).await,
            db_logs: logs(Role::Db).await,
            service_logs: self.service_logs(f.generation).await,
        }
    }

    /// The last log lines of each service container of `generation`.
    async fn service_logs(&self, generation: u64) -> std::collections::BTreeMap<String, String> {
        let generation = generation.to_string();
        let containers = self.engine.list_containers().await.unwrap_or_default();
        let mut out = std::collections::BTreeMap::new();
        for c in containers {
            let label = |k: &str| c.labels.get(k).map(String::as_str);
            if label(crate::labels::PROJECT) == Some(self.spec.project.as_str())
                && label(crate::labels::ROLE) == Some(crate::labels::ROLE_SERVICE)
                && label(crate::labels::GENERATION) == Some(generation.as_str())
            {
                let logs = self
                    .engine
                    .logs(&c.name, LOG_LINES)
                    .await
                    .unwrap_or_else(|e| e.to_string());
                out.insert(c.name.clone(), logs);
            }
        }
        out
    }

    /// Writes the failure report, and names it in the history's entry.
    fn write_report(&self, f: &mut Failure, body: &FailureReport) -> Result<PathBuf, Error> {
        let report =
            state::write_failure_report(&self.spec.storage, f.generation, &f.failed.at, body);
        f.failed.report = report.as_ref().ok().map(|p| p.display().to_string());
        report
    }

    /// The plan back to the previous generation, from a new look at the host; why
    /// there is none, as a line for the error.
    async fn plan_back(&mut self, f: &Failure, not_recorded: bool) -> Result<Plan, String> {
        let spec = self.spec;
        let mut observation = observe::observe(self.engine, spec)
            .await
            .map_err(|e| e.to_string())?;
        if not_recorded {
            assume_recorded(&mut observation, f);
        }
        let back = plan::plan(
            spec,
            &observation.observed,
            &observation.history,
            PlanOptions::default(),
        )
        .map_err(|r| r.to_string())?;
        self.known = known(&observation);
        Ok(back)
    }

    /// Adds to an error about a port in use who holds it; whether it was about one.
    async fn name_port_holders(&self, error: &mut String) -> bool {
        if !port_holder::is_port_conflict(error) {
            return false;
        }
        for holder in port_holder::explain(self.engine, error, &public_ports(self.spec)).await {
            error.push_str(&format!("; {holder}"));
        }
        true
    }

    /// The name of this project's app that is up with the public ports, if any.
    async fn public_app_up(&self) -> Option<String> {
        let spec = self.spec;
        let containers = self.engine.list_containers().await.ok()?;
        containers
            .into_iter()
            .find(|c| c.is_public_app_of(&spec.project) && c.state.is_up())
            .map(|c| c.name)
    }

    /// The error when even the fall back failed: the cause first, then why the
    /// fall back failed (naming whoever holds a port), what runs now, and what to
    /// do; what could not be recorded comes last.
    async fn cannot_fall_back(
        &self,
        cause: &str,
        previous: Option<u64>,
        why: &str,
        also: Vec<String>,
    ) -> Error {
        let mut why = why.to_string();
        let conflict = self.name_port_holders(&mut why).await;
        let now = match (self.public_app_up().await, previous) {
            (Some(app), _) => format!("{app} is running."),
            (None, Some(p)) => format!(
                "No app is running; generation {p} is the last good one (its data is untouched)."
            ),
            (None, None) => "No app is running (no generation was live before).".into(),
        };
        let fix = if conflict {
            "Free the port"
        } else {
            "Fix that"
        };
        let next = match previous {
            Some(p) => format!(
                "{fix}, then run `gemctl apply`: it brings generation {p} back (the failed \
                 generation stays held back; `gemctl apply --retry` tries it again)."
            ),
            None => format!("{fix}, then run `gemctl apply`."),
        };
        let e = Error::Apply(format!(
            "{cause}\nReturning to {} failed too: {why}\n{now} {next}",
            previous.map_or("no generation".into(), |p| format!("generation {p}"))
        ));
        if also.is_empty() {
            e
        } else {
            Error::Also {
                source: Box::new(e),
                also,
            }
        }
    }
}

/// The failure is not on disk (a full disk, most often), but the planner must know
/// all the same, or it would redo the failed generation instead of going back.
/// Removing that generation frees its space; the record is written again after.
fn assume_recorded(observation: &mut Observation, f: &Failure) {
    let storage = &mut observation.observed.storage;
    if storage
        .served
        .as_ref()
        .is_some_and(|s| !s.contains(&f.generation))
    {
        for g in &mut storage.generations {
            if g.generation == f.generation {
                g.marker = Marker::Discarded {
                    reason: f.failed.reason.clone(),
                };
            }
        }
    }
    if f.restore {
        storage.pin = None;
    } else {
        let failed = &mut observation.history.failed;
        failed.retain(|x| x.generation != f.generation);
        failed.push(f.failed.clone());
    }
}

/// Why the plan back failed, as a line for the error.
fn why_fall_back_failed(spec: &Spec, back: &Plan, failure: StepFailure) -> String {
    match failure.error {
        StepError::Unhealthy {
            generation,
            outcome,
            ..
        } => format!(
            "generation {generation} fails its health checks too: {}",
            outcome.summary()
        ),
        error => StepFailure {
            index: failure.index,
            error,
        }
        .into_error(spec, back)
        .to_string(),
    }
}

/// The host addresses and ports the spec publishes, to look for their holders.
fn public_ports(spec: &Spec) -> Vec<(Option<std::net::IpAddr>, u16)> {
    spec.app
        .ports
        .iter()
        .filter_map(PortMapping::host_binding)
        .collect()
}
