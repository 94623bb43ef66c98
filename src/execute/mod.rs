//! `gemctl apply`: carries out a plan against the engine, step by step.
//!
//! This file is the walk: observe and plan ([`apply`]), check before anything is
//! touched (images, env files, space), then each step in turn, looking at the
//! engine again before each destructive one and stopping if the container it is
//! about to touch is no longer the one the plan saw (a stale plan). What a step
//! does lives with what it touches: `containers` (network and containers),
//! `data` (the space check, copy, verify, restore, removal), `checks` (the db's
//! readiness, the app's health), `records` (markers and records under the storage
//! root), `stream` (the streamed upgrade's steps). A new kind of step is a new
//! handler in one of them, or a new file, and one line in `Run::step`.
//!
//! When a step of a new generation fails — its health checks, or anything from its
//! database's start or base backup (or the old app's stop) until it is recorded
//! live — `fall_back`
//! shows the cause first, records the failure (so a crash from here on still falls
//! back, I4), writes a report with the error and the logs, and lets the planner —
//! now holding the failed generation back — produce the plan that returns the host
//! to the previous generation. Trouble recording or reporting is shown after the
//! cause, never instead of it.

mod checks;
mod containers;
mod data;
mod fall_back;
mod front;
mod records;
mod services;
mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::desired::{self, Role};
use crate::engine::{Engine, EngineError};
use crate::error::Error;
use crate::health::HealthOutcome;
use crate::labels;
use crate::observe;
use crate::observed::Observation;
use crate::plan::{self, Action, Plan, PlanOptions, Refusal, Step};
use crate::saved_plan::{Basis, SavedPlan};
use crate::spec::{PullPolicy, Spec};

pub use checks::ready_command;
pub use containers::{db_env, probe_ports, request};
pub use fall_back::FailureReport;
pub(crate) use services::check_replicas;

/// Options of one apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Try again a generation that failed its health checks before.
    pub retry: bool,
    /// Carry out this saved plan instead of planning (`gemctl apply PLAN`).
    pub saved: Option<std::sync::Arc<SavedPlan>>,
}

/// What happened, step by step, for progress output.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The plan about to run.
    Plan {
        /// The plan.
        plan: Plan,
    },
    /// A step starts.
    StepStarted {
        /// 1-based position.
        index: usize,
        /// Number of steps.
        total: usize,
        /// The step.
        step: Step,
    },
    /// A step finished.
    StepFinished {
        /// 1-based position.
        index: usize,
        /// Number of steps.
        total: usize,
        /// How long it took, in milliseconds.
        duration_ms: u64,
    },
    /// A long step is still going.
    Progress {
        /// What it is doing.
        message: String,
    },
    /// The outcome of a health check step.
    Health {
        /// The generation checked.
        generation: u64,
        /// Every check's outcome.
        outcome: HealthOutcome,
    },
    /// The new generation failed; what gemctl does about it.
    Failure {
        /// What failed and what happens next.
        message: String,
    },
    /// What the data copy measured so far (each event adds what it knows).
    Copy {
        /// The facts.
        facts: CopyFacts,
    },
}

/// What an upgrade's data copy measured, for reports and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CopyFacts {
    /// `stream` or `dump`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<plan::Mode>,
    /// Bytes copied by the base backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// WAL bytes the standby was behind when the freeze started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// From the old app's stop to the new app's exposure, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_ms: Option<u64>,
}

impl CopyFacts {
    /// Adds what `other` knows.
    pub fn merge(&mut self, other: &CopyFacts) {
        self.mode = other.mode.or(self.mode);
        self.bytes = other.bytes.or(self.bytes);
        self.lag_bytes = other.lag_bytes.or(self.lag_bytes);
        self.freeze_ms = other.freeze_ms.or(self.freeze_ms);
    }
}

/// How an apply ended.
#[derive(Debug)]
pub enum Outcome {
    /// The host matches the spec (possibly it already did).
    Converged {
        /// The plan that ran.
        plan: Plan,
    },
    /// Unrecognised containers or an unsafe state: nothing was touched.
    Refused(Refusal),
    /// The desired generation failed before and is held back; the host is on the
    /// previous one (repaired if needed).
    Held {
        /// The plan that ran (maybe empty).
        plan: Plan,
    },
    /// A step of the new generation failed; it was removed and the previous
    /// generation serves (again).
    RolledBack {
        /// The failed generation was a restore (not recorded as a failed release).
        restore: bool,
        /// The generation that failed.
        failed: u64,
        /// The generation live now, if any.
        restored: Option<u64>,
        /// The step that failed (`step 9/14 (expose gem-2 on its public ports)`).
        step: String,
        /// Whether the previous generation's app served throughout (the failure came
        /// before it was stopped).
        kept_serving: bool,
        /// The failure report, if it could be written.
        report: Option<PathBuf>,
        /// One line: why it failed (the first line of the error).
        reason: String,
        /// What went wrong recording or reporting the failure (shown after it).
        also: Vec<String>,
    },
}

enum StepError {
    Unhealthy {
        generation: u64,
        /// A service's checks failed, not the app's.
        service: Option<String>,
        outcome: HealthOutcome,
    },
    /// The host changed under the plan: someone else is acting on it, and gemctl
    /// must not fight them with a fall back.
    Stale(Error),
    Failed(Error),
}

/// Where a walk through a plan stopped.
struct StepFailure {
    /// 0-based position of the failing step; `None`: before the first (preflight).
    index: Option<usize>,
    error: StepError,
}

impl StepFailure {
    /// The error as reported when there is no fall back: which step, then why.
    fn into_error(self, spec: &Spec, plan: &Plan) -> Error {
        match self.error {
            StepError::Unhealthy {
                generation,
                service: Some(service),
                outcome,
            } => Error::Apply(format!(
                "service {service} of generation {generation} fails its checks: {}. Nothing \
                 was rolled back: it is the generation that was live. Look at `gemctl logs \
                 --role {service}`",
                outcome.summary(),
            )),
            StepError::Unhealthy {
                generation,
                outcome,
                ..
            } => Error::Apply(format!(
                "{} fails its health checks: {}. Nothing was rolled back: it is the generation \
                 that was live. Look at `docker logs {}`",
                desired::container_name(spec, Role::App, generation),
                outcome.summary(),
                desired::container_name(spec, Role::App, generation),
            )),
            StepError::Stale(e) => e,
            StepError::Failed(e) => match self.index {
                Some(i) => Error::Step {
                    index: i + 1,
                    total: plan.steps.len(),
                    step: plan.steps[i].action.describe(),
                    source: Box::new(e),
                },
                None => e,
            },
        }
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        StepError::Failed(e)
    }
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        StepError::Failed(Error::Engine(e))
    }
}

/// Observes, plans and carries out the plan.
pub async fn apply<E: Engine>(
    engine: &E,
    spec: &Spec,
    options: ApplyOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, Error> {
    if let Some(saved) = &options.saved {
        return apply_saved(engine, spec, saved, on_event).await;
    }
    let observation = observe::observe(engine, spec).await?;
    let plan = match plan::plan(
        spec,
        &observation.observed,
        &observation.history,
        PlanOptions {
            retry_failed: options.retry,
        },
    ) {
        Ok(p) => p,
        Err(refusal) => return Ok(Outcome::Refused(refusal)),
    };
    run_plan(engine, spec, &observation, plan, on_event).await
}

/// Carries out a plan saved by `gemctl diff --out` exactly as written, once the
/// host and spec are what it was computed from; refuses it as stale otherwise,
/// saying what changed.
pub async fn apply_saved<E: Engine>(
    engine: &E,
    spec: &Spec,
    saved: &SavedPlan,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, Error> {
    let observation = observe::observe(engine, spec).await?;
    let now = Basis::of(spec, &observation, saved.basis.retry);
    let changes = now.changes_since(&saved.basis);
    if !changes.is_empty() || saved.plan.project != spec.project {
        let what = if saved.plan.project != spec.project {
            format!(
                "it was made for project {}, the spec is project {}",
                saved.plan.project, spec.project
            )
        } else {
            changes.join("; ")
        };
        return Ok(Outcome::Refused(crate::plan::Refusal {
            project: spec.project.clone(),
            problems: vec![crate::plan::Problem {
                container: None,
                seen: format!("plan is stale (made {}): {what}", saved.made),
                fix: format!(
                    "make it again (`gemctl diff -f {} --out PLAN`), review it, and apply that",
                    saved.spec_file.display()
                ),
            }],
        }));
    }
    run_plan(engine, spec, &observation, saved.plan.clone(), on_event).await
}

/// Carries out `plan`, made on `observation`, falling back when a new generation
/// fails.
async fn run_plan<E: Engine>(
    engine: &E,
    spec: &Spec,
    observation: &Observation,
    plan: Plan,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, Error> {
    let mut run = Run::new(engine, spec, observation, on_event);
    (run.on_event)(Event::Plan { plan: plan.clone() });
    match run.steps(&plan).await {
        Ok(()) => Ok(if plan.hold.is_some() {
            Outcome::Held { plan }
        } else {
            Outcome::Converged { plan }
        }),
        Err(failure) => match fall_back::fall_back_from(&plan, &failure) {
            Some(generation) => run.fail_and_fall_back(&plan, generation, failure).await,
            None => Err(failure.into_error(spec, &plan)),
        },
    }
}

struct Run<'a, E: Engine> {
    engine: &'a E,
    spec: &'a Spec,
    on_event: &'a mut dyn FnMut(Event),
    /// Container name → the id gemctl expects it to have.
    known: BTreeMap<String, String>,
}

impl<'a, E: Engine> Run<'a, E> {
    fn new(
        engine: &'a E,
        spec: &'a Spec,
        observation: &Observation,
        on_event: &'a mut dyn FnMut(Event),
    ) -> Self {
        Run {
            engine,
            spec,
            on_event,
            known: known(observation),
        }
    }

    fn progress(&mut self, message: String) {
        (self.on_event)(Event::Progress { message });
    }

    async fn steps(&mut self, plan: &Plan) -> Result<(), StepFailure> {
        self.preflight(plan)
            .await
            .map_err(|error| StepFailure { index: None, error })?;
        let total = plan.steps.len();
        if let Some(copy) = &plan.copy {
            (self.on_event)(Event::Copy {
                facts: CopyFacts {
                    mode: Some(copy.mode),
                    ..CopyFacts::default()
                },
            });
        }
        // The write freeze: from the old app's stop to the new app's exposure.
        let mut freeze: Option<Instant> = None;
        for (i, step) in plan.steps.iter().enumerate() {
            let index = i + 1;
            if let Action::StopApp { generation, .. } = step.action
                && generation != plan.target
                && freeze.is_none()
            {
                freeze = Some(Instant::now());
            }
            (self.on_event)(Event::StepStarted {
                index,
                total,
                step: step.clone(),
            });
            let started = Instant::now();
            let done = match self.check_not_stale(&step.action, index).await {
                Ok(()) => self.step(&step.action).await,
                Err(e) => Err(e),
            };
            done.map_err(|error| StepFailure {
                index: Some(i),
                error,
            })?;
            (self.on_event)(Event::StepFinished {
                index,
                total,
                duration_ms: started.elapsed().as_millis() as u64,
            });
            if let (
                Action::ExposeApp { generation, .. } | Action::SwitchFront { generation, .. },
                Some(since),
            ) = (&step.action, freeze)
                && *generation == plan.target
            {
                (self.on_event)(Event::Copy {
                    facts: CopyFacts {
                        freeze_ms: Some(since.elapsed().as_millis() as u64),
                        ..CopyFacts::default()
                    },
                });
            }
        }
        Ok(())
    }

    /// Images the plan will create containers from must be here (or pullable), and
    /// env files readable, before anything is touched.
    async fn preflight(&mut self, plan: &Plan) -> Result<(), StepError> {
        let mut images = BTreeSet::new();
        for step in &plan.steps {
            match step.action {
                Action::CreateDb { .. } | Action::CopyData { .. } | Action::BaseBackup { .. } => {
                    images.insert(self.spec.db.image.to_string());
                }
                Action::RestoreBackup { ref backup, .. } => {
                    let path = std::path::Path::new(backup);
                    self.progress(format!("verifying the checksum of {backup}"));
                    crate::backup::verify(path)?;
                }
                Action::CreateAppProbe { .. } => {
                    images.insert(self.spec.app.image.to_string());
                }
                Action::CreateService { ref service, .. } => {
                    if let Some(s) = self.spec.services.get(service) {
                        images.insert(s.image.to_string());
                    }
                }
                Action::CreateFront { .. } => {
                    if let Some(front) = &self.spec.front {
                        images.insert(front.image.to_string());
                    }
                }
                _ => {}
            }
        }
        for image in images {
            let present = self.engine.image_present(&image).await?;
            match self.spec.pull {
                PullPolicy::Always => self.pull(&image).await?,
                PullPolicy::Missing if !present => self.pull(&image).await?,
                PullPolicy::Never if !present => {
                    return Err(Error::Apply(format!(
                        "image {image} is not on this host and the spec says `pull: never`: \
                         load it (docker load / scripts/build-images) or set `pull: missing`. \
                         Nothing was touched."
                    ))
                    .into());
                }
                _ => {}
            }
        }
        if !plan.steps.is_empty() {
            containers::env_file(self.spec, Role::App)?;
            containers::env_file(self.spec, Role::Db)?;
            containers::service_env_files(self.spec)?;
        }
        self.check_space(plan)?;
        Ok(())
    }

    async fn pull(&mut self, image: &str) -> Result<(), StepError> {
        self.progress(format!("pulling {image}"));
        self.engine.pull_image(image).await.map_err(|e| {
            StepError::Failed(Error::Apply(format!(
                "cannot pull {image}: {e}. Nothing was touched."
            )))
        })
    }

    /// Stops with an error when the container a destructive step acts on is not
    /// the one the plan saw, or an unknown container took one of our names.
    async fn check_not_stale(&mut self, action: &Action, index: usize) -> Result<(), StepError> {
        let target = match action {
            Action::StopApp { container, .. }
            | Action::StopDb { container, .. }
            | Action::StopService { container, .. }
            | Action::StopPrimary { container, .. }
            | Action::RemoveContainer { container, .. }
            | Action::RemoveFront { container }
            | Action::ExposeApp { container, .. } => Some(container.clone()),
            Action::RemoveData { .. } => None,
            _ => return Ok(()),
        };
        let now = self.engine.list_containers().await?;
        let stale = |detail: String| {
            StepError::Stale(Error::Apply(format!(
                "the host changed while applying: {detail}. Stopped before step {index} ({}); \
                 the steps before it are done. Run `gemctl diff` to see what is left.",
                action.describe()
            )))
        };
        for c in &now {
            let ours = c.labels.get(labels::PROJECT) == Some(&self.spec.project);
            if ours && self.known.get(&c.name) != Some(&c.id) {
                return Err(stale(format!("{} appeared, made by someone else", c.name)));
            }
        }
        if let Some(name) = target {
            let seen = now.iter().find(|c| c.name == name).map(|c| c.id.clone());
            // A container to be removed that is already gone is where the step
            // leads anyway (a killed gemctl's removal finished in the engine).
            let gone_as_planned =
                seen.is_none() && matches!(action, Action::RemoveContainer { .. });
            if seen != self.known.get(&name).cloned() && !gone_as_planned {
                return Err(stale(format!(
                    "{name} is not the container the plan saw ({})",
                    seen.map_or("it is gone".into(), |id| format!("now id {}", short(&id)))
                )));
            }
        }
        Ok(())
    }

    /// Carries out one step: a short dispatch to the handler of what it touches.
    async fn step(&mut self, action: &Action) -> Result<(), StepError> {
        match action {
            Action::CreateNetwork { network } => self.create_network(network).await,
            Action::CreateDb {
                generation, fresh, ..
            } => self.create_db(*generation, *fresh).await,
            Action::StartDb { container, .. } | Action::StartApp { container, .. } => {
                self.start(container).await
            }
            Action::WaitDb { container, .. } => self.wait_db(container).await,
            Action::StopApp { container, .. } => self.stop_app(container).await,
            Action::StopDb { container, .. } => self.stop_db(container).await,
            Action::CopyData { from, to } => self.copy_data(*from, *to).await,
            Action::RestoreBackup { generation, backup } => {
                self.restore_backup(*generation, backup).await
            }
            Action::VerifyCopy { from, to } => self.verify_copy(*from, *to).await,
            Action::MarkReady {
                generation,
                copied_from,
            } => {
                // A database gemctl initialised (bootstrap, restore) is ready to be
                // followed by the next generation's; a copy inherits it or gets it
                // from the next streamed upgrade's first step.
                if copied_from.is_none() {
                    let db = desired::container_name(self.spec, Role::Db, *generation);
                    self.allow_replication(&db).await?;
                }
                self.mark_ready(*generation, *copied_from)
            }
            Action::CreateAppProbe { generation, .. } => self.create_app_probe(*generation).await,
            Action::CheckHealth {
                generation,
                container,
            } => self.check_health(*generation, container).await,
            Action::ExposeApp {
                generation,
                container,
            } => self.expose_app(*generation, container).await,
            Action::SetLive { generation } => self.set_live(*generation),
            Action::CreateService {
                generation,
                container,
                ..
            } => self.create_service(*generation, container).await,
            Action::StartService { container, .. } => self.start(container).await,
            Action::StopService { container, .. } => self.stop_service(container).await,
            Action::CheckService {
                generation,
                service,
            } => self.check_service(*generation, service).await,
            Action::RemoveContainer { container, .. } => self.remove(container).await,
            Action::DiscardThrowaway { kind } => {
                let kind = match kind.as_str() {
                    "preview" => crate::throwaway::Kind::Preview,
                    "check" => crate::throwaway::Kind::Check,
                    _ => crate::throwaway::Kind::Drill,
                };
                let gone = crate::throwaway::discard(self.engine, self.spec, kind).await?;
                for name in gone {
                    self.known.remove(&name);
                }
                Ok(())
            }
            Action::RemoveData { generation } => self.remove_data(*generation),
            Action::AllowReplication { container, .. } => self.allow_replication(container).await,
            Action::BaseBackup { from, to } => self.base_backup(*from, *to).await,
            Action::WaitCatchUp { from, to } => self.wait_catch_up(*from, *to).await,
            Action::StopPrimary { container, .. } => self.stop_primary(container).await,
            Action::WaitReplay { from, to } => self.wait_replay(*from, *to).await,
            Action::Promote { container, .. } => self.promote(container).await,
            Action::CreateFront { container, replace } => {
                self.create_front(container, *replace).await
            }
            Action::StartFront { container } => self.start_front(container).await,
            Action::RemoveFront { container } => self.remove(container).await,
            Action::PrepareFront { generation, .. } => self.prepare_front(*generation).await,
            Action::SwitchFront { generation, .. } => self.switch_front(*generation).await,
            Action::HoldFront { .. } => self.hold_front().await,
            Action::DrainFront { generation } => self.drain_front(*generation).await,
            Action::ShareDb { generation, db } => Ok(crate::state::mark_shares(
                &self.spec.storage,
                *generation,
                *db,
            )?),
        }
    }
}

/// Container name → id, for every container in an observation.
fn known(observation: &Observation) -> BTreeMap<String, String> {
    observation
        .observed
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.id.clone()))
        .collect()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
