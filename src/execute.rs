//! `gemctl apply`: carries out a plan against the engine, step by step.
//!
//! Before each destructive step the executor looks at the engine again and stops if
//! the container it is about to touch is no longer the one the plan saw (a stale
//! plan). When the new generation fails its health checks, the failure is recorded
//! first (so a crash from here on still falls back, I4), a report with the health
//! output and logs is written, and the planner — now holding the failed generation
//! back — produces the plan that returns the host to the previous generation.

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
use crate::observed::{FailedGeneration, Observation};
use crate::plan::{self, Action, Plan, PlanKind, PlanOptions, Refusal, Step};
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
    /// The new generation failed its health checks and the previous one is live again.
    RolledBack {
        /// The failed generation was a restore (not recorded as a failed release).
        restore: bool,
        /// The generation that failed.
        failed: u64,
        /// The generation live now, if any.
        restored: Option<u64>,
        /// The failure report.
        report: PathBuf,
        /// One line: why it failed.
        reason: String,
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
    /// Every check's outcome.
    pub health: HealthOutcome,
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
    Failed(Error),
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
        Err(StepError::Failed(e)) => Err(e),
        Err(StepError::Unhealthy {
            generation,
            outcome,
        }) => {
            let new_generation = plan.live != Some(generation)
                && plan.steps.iter().any(|s| {
                    matches!(s.action, Action::CreateAppProbe { generation: g, .. } if g == generation)
                });
            if !new_generation {
                return Err(Error::Apply(format!(
                    "{} fails its health checks: {}. Nothing was rolled back: it is the generation \
                     that was live. Look at `docker logs {}`",
                    desired::container_name(spec, Role::App, generation),
                    outcome.summary(),
                    desired::container_name(spec, Role::App, generation),
                )));
            }
            run.fail_and_fall_back(&plan, generation, outcome).await
        }
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

    async fn steps(&mut self, plan: &Plan) -> Result<(), StepError> {
        self.preflight(plan).await?;
        let total = plan.steps.len();
        for (i, step) in plan.steps.iter().enumerate() {
            let index = i + 1;
            (self.on_event)(Event::StepStarted {
                index,
                total,
                step: step.clone(),
            });
            let started = Instant::now();
            self.check_not_stale(&step.action, index).await?;
            self.step(&step.action).await?;
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
            StepError::Failed(Error::Apply(format!(
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
            if seen != self.known.get(&name).cloned() {
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
                // From here on clients may write to it: its data is never deleted
                // as debris again.
                records::record_served(&spec.storage, *generation)?;
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

    /// The new generation failed: record it, report it, and let the planner take
    /// the host back to the previous generation.
    async fn fail_and_fall_back(
        &mut self,
        plan: &Plan,
        generation: u64,
        outcome: HealthOutcome,
    ) -> Result<Outcome, Error> {
        let spec = self.spec;
        let at = records::now_rfc3339();
        let reason = outcome.summary();
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
        let report = records::write_failure_report(
            &spec.storage,
            generation,
            &at,
            &FailureReport {
                project: spec.project.clone(),
                generation,
                previous: plan.live,
                at: at.clone(),
                reason: reason.clone(),
                health: outcome,
                app_logs,
                db_logs,
            },
        )?;
        let restore = plan.kind == PlanKind::Restore;
        // Given up before it was exposed, its data positively never served and the
        // plan below clears it away; once exposed, it stays. The order keeps a kill
        // between two writes safe: a restore is redone, a release stays held.
        let served = records::ensure_served_record(&spec.storage)?;
        let discard = |at: &str| -> Result<(), Error> {
            if served.contains(&generation) {
                return Ok(());
            }
            records::mark_discarded(
                &desired::generation_dir(spec, generation),
                &format!("failed its health checks at {at}: {reason}"),
            )
        };
        if restore {
            // The spec is not at fault, so no failure is recorded; the restore's
            // pin goes and the next plan returns to the previous generation.
            discard(&at)?;
            records::clear_pin(&spec.storage)?;
        } else {
            records::record_failure(
                &spec.storage,
                FailedGeneration {
                    generation,
                    spec_hash: desired::generation_hash(spec, generation),
                    at: at.clone(),
                    reason: reason.clone(),
                    report: Some(report.display().to_string()),
                },
            )?;
            discard(&at)?;
        }
        (self.on_event)(Event::Failure {
            message: format!(
                "generation {generation} failed its health checks ({reason}); report: {}. \
                 Returning to {}",
                report.display(),
                plan.live
                    .map_or("no generation (bootstrap)".into(), |l| format!(
                        "generation {l}"
                    ))
            ),
        });

        let observation = observe::observe(self.engine, spec).await?;
        let back = plan::plan(
            spec,
            &observation.observed,
            &observation.history,
            PlanOptions::default(),
        )
        .map_err(|r| Error::Apply(format!("cannot fall back after the failure: {r}")))?;
        self.known = observation
            .observed
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect();
        (self.on_event)(Event::Plan { plan: back.clone() });
        match self.steps(&back).await {
            Ok(()) => Ok(Outcome::RolledBack {
                restore,
                failed: generation,
                restored: (back.target != generation).then_some(back.target),
                report,
                reason,
            }),
            Err(StepError::Failed(e)) => Err(Error::Apply(format!(
                "generation {generation} failed its health checks, and returning to the \
                 previous generation failed too: {e}"
            ))),
            Err(StepError::Unhealthy { generation: g, .. }) => Err(Error::Apply(format!(
                "generation {generation} failed its health checks, and generation {g} fails \
                 them too after the fall back; the report is {}",
                report.display()
            ))),
        }
    }
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
