//! `gemctl apply`: carries out a plan against the engine, step by step.
//!
//! Before each destructive step the executor looks at the engine again and stops if
//! the container it is about to touch is no longer the one the plan saw (a stale
//! plan). When a step of a new generation fails — its health checks, or anything
//! from its database's start (or the old app's stop) until it is recorded live —
//! the cause is shown first, the failure is recorded (so a crash from here on still
//! falls back, I4), a report with the error and the logs is written, and the
//! planner — now holding the failed generation back — produces the plan that
//! returns the host to the previous generation. Trouble recording or reporting is
//! shown after the cause, never instead of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::copy;
use crate::desired::{self, ContainerConfig, Role};
use crate::engine::{CreateContainer, Engine, EngineError, PortBinding, parse_env_file};
use crate::error::Error;
use crate::health::{self, HealthOutcome, ProbeEvent};
use crate::labels;
use crate::observe;
use crate::observed::{ContainerState, FailedGeneration, Marker, Observation};
use crate::plan::{self, Action, Plan, PlanKind, PlanOptions, Refusal, Step};
use crate::port_holder;
use crate::records;
use crate::spec::{PullPolicy, Spec};

/// Options of one apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Try again a generation that failed its health checks before.
    pub retry: bool,
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
}

enum StepError {
    Unhealthy {
        generation: u64,
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
                outcome,
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

/// The generation a failure falls back from: the plan's target, when the plan
/// makes it new and the failure came at or after the first step that makes it (or
/// stops the old app: the freeze) and before it was recorded live. After that the
/// new generation is live and what failed is clean-up; before, nothing of it
/// exists. A stale plan never falls back.
fn fall_back_from(plan: &Plan, failure: &StepFailure) -> Option<u64> {
    let index = failure.index?;
    let t = plan.target;
    if matches!(failure.error, StepError::Stale(_)) || plan.hold.is_some() || plan.live == Some(t) {
        return None;
    }
    let makes_new = |a: &Action| {
        matches!(a, Action::CreateDb { generation, fresh: true, .. }
            | Action::CreateAppProbe { generation, .. } if *generation == t)
    };
    if !plan.steps.iter().any(|s| makes_new(&s.action)) {
        return None;
    }
    let first = plan
        .steps
        .iter()
        .position(|s| makes_new(&s.action) || matches!(s.action, Action::StopApp { .. }))?;
    let live = plan
        .steps
        .iter()
        .position(|s| matches!(s.action, Action::SetLive { generation } if generation == t))?;
    (first..=live).contains(&index).then_some(t)
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

/// How long to wait for PostgreSQL to accept queries.
const DB_READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Grace time before `docker stop` kills: a db gets time for a clean shutdown.
const DB_STOP_GRACE: Duration = Duration::from_secs(60);
const APP_STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_LINES: usize = 200;
/// What an empty PostgreSQL data directory takes, with room to start.
const FRESH_DB_BYTES: u64 = 64 * 1024 * 1024;

/// Observes, plans and carries out the plan.
pub async fn apply<E: Engine>(
    engine: &E,
    spec: &Spec,
    options: ApplyOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, Error> {
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
    let mut run = Run::new(engine, spec, &observation, on_event);
    (run.on_event)(Event::Plan { plan: plan.clone() });
    match run.steps(&plan).await {
        Ok(()) => Ok(if plan.hold.is_some() {
            Outcome::Held { plan }
        } else {
            Outcome::Converged { plan }
        }),
        Err(failure) => match fall_back_from(&plan, &failure) {
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
        let known = observation
            .observed
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect();
        Run {
            engine,
            spec,
            on_event,
            known,
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
        for (i, step) in plan.steps.iter().enumerate() {
            let index = i + 1;
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
        }
        Ok(())
    }

    /// Images the plan will create containers from must be here (or pullable), and
    /// env files readable, before anything is touched.
    async fn preflight(&mut self, plan: &Plan) -> Result<(), StepError> {
        let mut images = BTreeSet::new();
        for step in &plan.steps {
            match step.action {
                Action::CreateDb { .. } | Action::CopyData { .. } => {
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
            self.env_file(Role::App)?;
            self.env_file(Role::Db)?;
        }
        self.check_space(plan)?;
        Ok(())
    }

    /// New data needs room: a fresh database, plus about as much as the data it
    /// is copied from or a few times the backup it is restored from. Refused
    /// before anything is touched, rather than failing in the middle.
    fn check_space(&self, plan: &Plan) -> Result<(), Error> {
        let mut need: u64 = 0;
        let mut what = Vec::new();
        for step in &plan.steps {
            match &step.action {
                Action::CreateDb {
                    fresh: true,
                    generation,
                    ..
                } => {
                    need += FRESH_DB_BYTES;
                    what.push(format!(
                        "a fresh database for generation {generation} (about {})",
                        crate::status::human_bytes(FRESH_DB_BYTES)
                    ));
                }
                Action::CopyData { from, .. } => {
                    let size = crate::status::dir_size(&desired::data_dir(self.spec, *from));
                    need += size + size / 10;
                    what.push(format!(
                        "a copy of generation {from}'s data ({})",
                        crate::status::human_bytes(size)
                    ));
                }
                Action::RestoreBackup { backup, .. } => {
                    let size = std::fs::metadata(backup).map(|m| m.len()).unwrap_or(0);
                    need += size * 4;
                    what.push(format!(
                        "the data of backup {backup} ({}, about four times that loaded)",
                        crate::status::human_bytes(size)
                    ));
                }
                _ => {}
            }
        }
        let storage = &self.spec.storage;
        match records::free_bytes(storage) {
            Some(free) if need > free => Err(Error::Apply(format!(
                "not enough space under {}: {} free, about {} needed for {}. Free some space \
                 (`gemctl status` shows each generation's size; a lower `retain` prunes old \
                 ones) or give the storage a larger file system. Nothing was touched.",
                storage.display(),
                crate::status::human_bytes(free),
                crate::status::human_bytes(need),
                what.join(" and ")
            ))),
            _ => Ok(()),
        }
    }

    async fn pull(&mut self, image: &str) -> Result<(), StepError> {
        self.progress(format!("pulling {image}"));
        self.engine.pull_image(image).await.map_err(|e| {
            StepError::Failed(Error::Apply(format!(
                "cannot pull {image}: {e}. Nothing was touched."
            )))
        })
    }

    fn env_file(&self, role: Role) -> Result<Vec<String>, Error> {
        env_file(self.spec, role)
    }

    fn container_env(&self, config: &ContainerConfig) -> Result<Vec<String>, Error> {
        container_env(self.spec, config)
    }

    fn db_env(&self) -> Result<Vec<String>, Error> {
        db_env(self.spec)
    }

    /// Stops with an error when the container a destructive step acts on is not
    /// the one the plan saw, or an unknown container took one of our names.
    async fn check_not_stale(&mut self, action: &Action, index: usize) -> Result<(), StepError> {
        let target = match action {
            Action::StopApp { container, .. }
            | Action::StopDb { container, .. }
            | Action::RemoveContainer { container, .. }
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

    async fn create(
        &mut self,
        config: &ContainerConfig,
        exposure: Option<&str>,
        ports: Vec<PortBinding>,
    ) -> Result<(), StepError> {
        let mut labels = config.labels(&self.spec.project);
        if let Some(e) = exposure {
            labels.insert(labels::EXPOSURE.into(), e.into());
        }
        let id = self
            .engine
            .create_container(&CreateContainer {
                name: config.name.clone(),
                image: config.image.clone(),
                env: self.container_env(config)?,
                labels,
                network: Some(config.network.clone()),
                ports,
                binds: config.data_mount.clone().into_iter().collect(),
                restart: exposure != Some(labels::EXPOSURE_PROBE),
                ..CreateContainer::default()
            })
            .await?;
        self.known.insert(config.name.clone(), id);
        self.engine.start_container(&config.name).await?;
        Ok(())
    }

    async fn remove(&mut self, name: &str) -> Result<(), StepError> {
        self.engine.remove_container(name).await?;
        self.known.remove(name);
        Ok(())
    }

    async fn step(&mut self, action: &Action) -> Result<(), StepError> {
        let spec = self.spec;
        match action {
            Action::CreateNetwork { network } => {
                let labels = BTreeMap::from([(labels::PROJECT.to_string(), spec.project.clone())]);
                self.engine.create_network(network, &labels).await?;
            }
            Action::CreateDb {
                generation, fresh, ..
            } => {
                let dir = desired::data_dir(spec, *generation);
                if *fresh {
                    let gen_dir = desired::generation_dir(spec, *generation);
                    if gen_dir.exists() {
                        return Err(Error::Apply(format!(
                            "{} already exists, but generation {generation} needs a fresh data \
                             directory; gemctl never reuses one it did not plan to. Move it away \
                             and apply again.",
                            gen_dir.display()
                        ))
                        .into());
                    }
                    // The record of what served exists before any data that may be
                    // deleted as never served (see plan::Evidence).
                    records::ensure_served_record(&spec.storage)?;
                    records::create_generation_dir(&spec.storage, *generation)?;
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
                } else if !dir.is_dir() {
                    return Err(Error::Apply(format!(
                        "generation {generation}'s data directory {} is missing",
                        dir.display()
                    ))
                    .into());
                }
                self.create(&desired::db(spec, *generation), None, Vec::new())
                    .await?;
            }
            Action::StartDb { container, .. } | Action::StartApp { container, .. } => {
                self.engine.start_container(container).await?;
            }
            Action::WaitDb { container, .. } => self.wait_db(container).await?,
            Action::StopApp { container, .. } => {
                self.engine
                    .stop_container(container, APP_STOP_GRACE)
                    .await?;
            }
            Action::StopDb { container, .. } => {
                self.engine.stop_container(container, DB_STOP_GRACE).await?;
            }
            Action::CopyData { from, to } => {
                self.progress(format!(
                    "copying generation {from} into {to} (pg_dumpall | psql)"
                ));
                let env = self.db_env()?;
                copy::copy(self.engine, spec, &env, *from, *to).await?;
            }
            Action::RestoreBackup { generation, backup } => {
                self.progress(format!(
                    "restoring {backup} into generation {generation} (pg_restore)"
                ));
                let env = self.db_env()?;
                crate::backup::restore(
                    self.engine,
                    spec,
                    &env,
                    *generation,
                    std::path::Path::new(backup),
                )
                .await?;
            }
            Action::VerifyCopy { from, to } => {
                let env = self.db_env()?;
                let v = copy::verify(self.engine, spec, &env, *from, *to).await?;
                self.progress(format!(
                    "verified {} rows in {} tables of {} databases (count + md5 per table)",
                    v.rows, v.tables, v.databases
                ));
            }
            Action::MarkReady {
                generation,
                copied_from,
            } => records::mark_ready(&desired::generation_dir(spec, *generation), *copied_from)?,
            Action::CreateAppProbe { generation, .. } => {
                let ports: BTreeSet<u16> =
                    spec.app.health.iter().filter_map(|c| c.port()).collect();
                let bindings = ports
                    .into_iter()
                    .map(|p| PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: None,
                        container_port: p,
                        proto: "tcp".into(),
                    })
                    .collect();
                self.create(
                    &desired::app(spec, *generation),
                    Some(labels::EXPOSURE_PROBE),
                    bindings,
                )
                .await?;
            }
            Action::CheckHealth {
                generation,
                container,
            } => {
                let outcome = self.check_health(container).await?;
                (self.on_event)(Event::Health {
                    generation: *generation,
                    outcome: outcome.clone(),
                });
                if !outcome.healthy {
                    return Err(StepError::Unhealthy {
                        generation: *generation,
                        outcome,
                    });
                }
            }
            Action::ExposeApp {
                generation,
                container,
            } => {
                self.remove(container).await?;
                let bindings = spec
                    .app
                    .ports
                    .iter()
                    .map(|p| PortBinding {
                        host_ip: p.host_ip.clone(),
                        host_port: p.host_port,
                        container_port: p.container_port,
                        proto: p.proto.clone(),
                    })
                    .collect();
                self.create(
                    &desired::app(spec, *generation),
                    Some(labels::EXPOSURE_PUBLIC),
                    bindings,
                )
                .await?;
                // Clients may have written to it from the moment it started (until
                // this is on disk, its running public container says so): its data
                // is never deleted as debris again.
                records::record_served(&spec.storage, *generation)?;
            }
            Action::SetLive { generation } => {
                records::record_served(&spec.storage, *generation)?;
                records::set_live(&spec.storage, *generation)?;
            }
            Action::RemoveContainer { container, .. } => self.remove(container).await?,
            Action::RemoveData { generation } => {
                let dir = desired::generation_dir(spec, *generation);
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&dir, "delete", e).into());
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Waits until PostgreSQL answers on TCP (the official image's init server
    /// listens on the socket only, so TCP means the real server) and runs a query.
    async fn wait_db(&mut self, container: &str) -> Result<(), StepError> {
        let creds = copy::DbCredentials::from_env(&self.db_env()?);
        let cmd: Vec<String> = [
            "sh",
            "-c",
            "pg_isready -q -h 127.0.0.1 -U \"$1\" -d \"$2\" && psql -X -tA -U \"$1\" -d \"$2\" -c 'select 1'",
            "wait-db",
            &creds.user,
            &creds.database,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < DB_READY_TIMEOUT {
            match self.engine.exec(container, &cmd).await {
                Ok(out) if out.exit_code == 0 && out.stdout.trim() == "1" => return Ok(()),
                Ok(out) => last = format!("{}{}", out.stdout, out.stderr).trim().to_string(),
                Err(e) => last = e.to_string(),
            }
            // A db that exits (no space for initdb, a bad setting) is restarted by
            // Docker again and again and never answers: say so now, in its own
            // words, rather than after the whole timeout.
            let state = self
                .engine
                .list_containers()
                .await?
                .into_iter()
                .find(|c| c.name == container)
                .map(|c| c.state);
            let restarting = last.contains("is restarting");
            if state != Some(ContainerState::Running) || restarting {
                return Err(self.db_cannot_start(container, state, restarting).await);
            }
            self.progress(format!(
                "waiting for {container} to accept queries ({}s)",
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let logs = self.engine.logs(container, 30).await.unwrap_or_default();
        Err(Error::Apply(format!(
            "{container} did not accept queries within {}s (last: {last}). Its last log lines:\n{}",
            DB_READY_TIMEOUT.as_secs(),
            logs.trim_end()
        ))
        .into())
    }

    /// Why a db will not start: its state, the line of its logs that says why, and
    /// its last log lines.
    async fn db_cannot_start(
        &self,
        container: &str,
        state: Option<ContainerState>,
        restarting: bool,
    ) -> StepError {
        let logs = self
            .engine
            .logs(container, 30)
            .await
            .unwrap_or_else(|e| format!("(its logs cannot be read: {e})"));
        let how = match state {
            None => "it is gone".to_string(),
            Some(ContainerState::Restarting) => "it exits and Docker restarts it".to_string(),
            Some(_) if restarting => "it exits and Docker restarts it".to_string(),
            Some(s) => format!("it is {s}"),
        };
        let telling = logs
            .lines()
            .rev()
            .find(|l| {
                let l = l.to_ascii_lowercase();
                ["fatal", "error", "panic", "no space left"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .or_else(|| logs.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("it logged nothing")
            .trim();
        StepError::Failed(Error::Apply(format!(
            "{container} cannot start ({how}): {telling}\nIts last log lines:\n{}",
            logs.trim_end()
        )))
    }

    async fn check_health(&mut self, container: &str) -> Result<HealthOutcome, StepError> {
        let mut ports = BTreeMap::new();
        for port in self.spec.app.health.iter().filter_map(|c| c.port()) {
            match self.engine.published_port(container, port).await? {
                Some((_, host_port)) => {
                    ports.insert(port, host_port);
                }
                None => {
                    return Err(Error::Apply(format!(
                        "{container} does not publish port {port} that its health check uses"
                    ))
                    .into());
                }
            }
        }
        let target = health::Target {
            container,
            host: "127.0.0.1".into(),
            ports,
        };
        let on_event = &mut *self.on_event;
        let mut on_probe = |p: &ProbeEvent| {
            on_event(Event::Progress {
                message: format!(
                    "health check {} attempt {} ({:.1}s): {} {}",
                    p.check + 1,
                    p.attempt,
                    p.elapsed.as_secs_f64(),
                    if p.result.passed { "pass" } else { "fail" },
                    p.result.output
                ),
            })
        };
        Ok(health::wait_healthy(self.engine, &target, &self.spec.app.health, &mut on_probe).await)
    }

    /// The new generation failed: say why, record it, report it, and let the
    /// planner take the host back to the previous generation.
    async fn fail_and_fall_back(
        &mut self,
        plan: &Plan,
        generation: u64,
        failure: StepFailure,
    ) -> Result<Outcome, Error> {
        let spec = self.spec;
        let at = records::now_rfc3339();
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
            StepError::Unhealthy { outcome, .. } => (
                format!("it failed its health checks: {}", outcome.summary()),
                Some(outcome),
            ),
            StepError::Failed(e) | StepError::Stale(e) => (e.to_string(), None),
        };
        if port_holder::is_port_conflict(&error) {
            for holder in port_holder::explain(self.engine, &error, &public_ports(spec)).await {
                error.push_str(&format!("; {holder}"));
            }
        }
        let why = error.lines().next().unwrap_or_default().to_string();
        // The history's line is what `diff` shows for a held generation.
        let recorded_reason = match &health {
            Some(outcome) => outcome.summary(),
            None => format!("{step} failed: {why}"),
        };
        let previous = plan.live.map_or("no generation (bootstrap)".into(), |l| {
            format!("generation {l}")
        });
        (self.on_event)(Event::Failure {
            message: format!(
                "generation {generation} failed at {step}: {error}\nReturning to {previous}."
            ),
        });

        let app = desired::container_name(spec, Role::App, generation);
        let db = desired::container_name(spec, Role::Db, generation);
        let app_logs = self
            .engine
            .logs(&app, LOG_LINES)
            .await
            .unwrap_or_else(|e| e.to_string());
        let db_logs = self
            .engine
            .logs(&db, LOG_LINES)
            .await
            .unwrap_or_else(|e| e.to_string());
        let body = FailureReport {
            project: spec.project.clone(),
            generation,
            previous: plan.live,
            at: at.clone(),
            reason: recorded_reason.clone(),
            step: step.clone(),
            error: error.clone(),
            health,
            app_logs,
            db_logs,
        };
        let restore = plan.kind == PlanKind::Restore;
        let mut failed = FailedGeneration {
            generation,
            spec_hash: desired::generation_hash(spec, generation),
            at: at.clone(),
            reason: recorded_reason,
            report: None,
        };
        let mut report = records::write_failure_report(&spec.storage, generation, &at, &body);
        failed.report = report.as_ref().ok().map(|p| p.display().to_string());
        let mut recorded = self.record_failed(restore, &failed);

        let mut cause = format!("generation {generation} failed at {step}: {error}");
        if let Ok(path) = &report {
            cause.push_str(&format!("\nFailure report: {}", path.display()));
        }
        let mut observation = match observe::observe(self.engine, spec).await {
            Ok(o) => o,
            Err(e) => {
                let also = secondary(&report, &recorded);
                return Err(self
                    .cannot_fall_back(&cause, plan.live, &e.to_string(), also)
                    .await);
            }
        };
        if recorded.is_err() {
            // Not on disk (a full disk, most often), but the planner must know all
            // the same, or it would redo the failed generation instead of going
            // back. Removing that generation frees its space; the record is
            // written again below.
            let storage = &mut observation.observed.storage;
            if storage
                .served
                .as_ref()
                .is_some_and(|s| !s.contains(&generation))
            {
                for g in &mut storage.generations {
                    if g.generation == generation {
                        g.marker = Marker::Discarded {
                            reason: failed.reason.clone(),
                        };
                    }
                }
            }
            if restore {
                storage.pin = None;
            } else {
                observation
                    .history
                    .failed
                    .retain(|f| f.generation != generation);
                observation.history.failed.push(failed.clone());
            }
        }
        let back = match plan::plan(
            spec,
            &observation.observed,
            &observation.history,
            PlanOptions::default(),
        ) {
            Ok(back) => back,
            Err(r) => {
                let also = secondary(&report, &recorded);
                return Err(self
                    .cannot_fall_back(&cause, plan.live, &r.to_string(), also)
                    .await);
            }
        };
        self.known = observation
            .observed
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect();
        (self.on_event)(Event::Plan { plan: back.clone() });
        if let Err(f) = self.steps(&back).await {
            let why = match f.error {
                StepError::Unhealthy {
                    generation: g,
                    outcome,
                } => format!(
                    "generation {g} fails its health checks too: {}",
                    outcome.summary()
                ),
                other => StepFailure {
                    index: f.index,
                    error: other,
                }
                .into_error(spec, &back)
                .to_string(),
            };
            let also = secondary(&report, &recorded);
            return Err(self.cannot_fall_back(&cause, plan.live, &why, also).await);
        }

        if report.is_err() || recorded.is_err() {
            if report.is_err() {
                report = records::write_failure_report(&spec.storage, generation, &at, &body);
                failed.report = report.as_ref().ok().map(|p| p.display().to_string());
            }
            recorded = self.record_failed(restore, &failed);
        }
        Ok(Outcome::RolledBack {
            restore,
            failed: generation,
            restored: (back.target != generation).then_some(back.target),
            step,
            kept_serving,
            also: secondary(&report, &recorded),
            report: report.ok(),
            reason: why,
        })
    }

    /// Records that `generation` failed, so that the planner returns to the
    /// previous generation and a later run holds it back (I6).
    fn record_failed(&self, restore: bool, failed: &FailedGeneration) -> Result<(), Error> {
        let spec = self.spec;
        // Given up before it was exposed, its data positively never served and the
        // plan clears it away; once exposed, it stays. The order keeps a kill
        // between two writes safe: a restore is redone, a release stays held.
        let served = records::ensure_served_record(&spec.storage)?;
        let discard = || -> Result<(), Error> {
            if served.contains(&failed.generation) {
                return Ok(());
            }
            records::mark_discarded(
                &desired::generation_dir(spec, failed.generation),
                &format!("failed at {}: {}", failed.at, failed.reason),
            )
        };
        if restore {
            // The spec is not at fault, so no failure is recorded; the restore's
            // pin goes and the next plan returns to the previous generation.
            discard()?;
            records::clear_pin(&spec.storage)?;
        } else {
            records::record_failure(&spec.storage, failed.clone())?;
            discard()?;
        }
        Ok(())
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
        let spec = self.spec;
        let mut why = why.to_string();
        let conflict = port_holder::is_port_conflict(&why);
        if conflict {
            for holder in port_holder::explain(self.engine, &why, &public_ports(spec)).await {
                why.push_str(&format!("; {holder}"));
            }
        }
        let serving = self
            .engine
            .list_containers()
            .await
            .ok()
            .and_then(|cs| {
                cs.into_iter().find(|c| {
                    c.labels.get(labels::PROJECT) == Some(&spec.project)
                        && c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_APP)
                        && c.labels.get(labels::EXPOSURE).map(String::as_str)
                            == Some(labels::EXPOSURE_PUBLIC)
                        && c.state.is_up()
                })
            })
            .map(|c| c.name);
        let now = match (serving, previous) {
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

/// The host addresses and ports the spec publishes, to look for their holders.
fn public_ports(spec: &Spec) -> Vec<(Option<std::net::IpAddr>, u16)> {
    spec.app
        .ports
        .iter()
        .filter_map(|p| Some((p.host_ip.as_deref()?.parse().ok(), p.host_port?)))
        .collect()
}

/// What could not be written about a failure, after the fall back tried again.
fn secondary(report: &Result<PathBuf, Error>, recorded: &Result<(), Error>) -> Vec<String> {
    let mut also = Vec::new();
    if let Err(e) = report {
        also.push(format!("the failure report could not be written: {e}"));
    }
    if let Err(e) = recorded {
        also.push(format!(
            "the failure could not be recorded ({e}); a later apply tries this generation again"
        ));
    }
    also
}

/// The lines of a role's env file (secrets; never printed).
fn env_file(spec: &Spec, role: Role) -> Result<Vec<String>, Error> {
    let file = match role {
        Role::App => &spec.app.env_file,
        Role::Db => &spec.db.env_file,
    };
    match file {
        Some(path) => Ok(parse_env_file(
            &std::fs::read_to_string(path).map_err(|e| Error::io(path, "read the env_file", e))?,
        )),
        None => Ok(Vec::new()),
    }
}

/// A container's environment: its env file's lines, then the spec's literal
/// values and gemctl's own variables (which win).
fn container_env(spec: &Spec, config: &ContainerConfig) -> Result<Vec<String>, Error> {
    let mut env = env_file(spec, config.role)?;
    env.extend(config.env.iter().map(|(k, v)| format!("{k}={v}")));
    Ok(env)
}

/// The db's environment (secrets included, never printed), for the credentials
/// the copy, backups and checks use.
pub fn db_env(spec: &Spec) -> Result<Vec<String>, Error> {
    container_env(spec, &desired::db(spec, 0))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
