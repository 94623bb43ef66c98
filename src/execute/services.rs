//! Steps that touch the target's services: create a replica from the spec, stop
//! one, and check a service — its health checks against every replica on the
//! private network, or, without checks, that every replica stays running for
//! `settle`.

use std::time::{Duration, Instant};

use super::{Event, Run, StepError};
use crate::desired;
use crate::engine::Engine;
use crate::error::Error;
use crate::health::{self, CheckOutcome, HealthOutcome, ProbeEvent};
use crate::labels;
use crate::observed::ContainerState;
use crate::spec::Spec;

/// Grace before `docker stop` kills a service: a worker finishes its job.
const SERVICE_STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a service without checks passes for when the spec no longer names it.
const DEFAULT_SETTLE: Duration = Duration::from_secs(3);

impl<E: Engine> Run<'_, E> {
    /// One replica of a service, as the spec asks for it.
    pub(super) async fn create_service(
        &mut self,
        generation: u64,
        container: &str,
    ) -> Result<(), StepError> {
        let db = crate::state::db_generation(&self.spec.storage, generation);
        let config = desired::services_on(self.spec, generation, db)
            .into_iter()
            .find(|c| c.name == container)
            .ok_or_else(|| {
                Error::Apply(format!(
                    "{container} is not a replica of any service in the spec: make the plan \
                     again (`gemctl diff`)"
                ))
            })?;
        self.create(&config, None, Vec::new()).await
    }

    pub(super) async fn stop_service(&mut self, container: &str) -> Result<(), StepError> {
        self.engine
            .stop_container(container, SERVICE_STOP_GRACE)
            .await?;
        Ok(())
    }

    /// Every replica of `service` in `generation` passes the service's checks (or
    /// stays running for `settle`); unhealthy is the step's failure.
    pub(super) async fn check_service(
        &mut self,
        generation: u64,
        service: &str,
    ) -> Result<(), StepError> {
        let replicas = self.replicas(generation, service).await?;
        if replicas.is_empty() {
            return Err(Error::Apply(format!(
                "service {service} of generation {generation} has no container to check"
            ))
            .into());
        }
        let on_event = &mut *self.on_event;
        let mut progress = |message: String| on_event(Event::Progress { message });
        let outcome =
            check_replicas(self.engine, self.spec, service, &replicas, &mut progress).await?;
        self.report_health(generation, Some(service), outcome)
    }

    /// The names of a service's replicas in a generation, as the engine has them.
    async fn replicas(&self, generation: u64, service: &str) -> Result<Vec<String>, StepError> {
        let generation = generation.to_string();
        let mut names: Vec<String> = self
            .engine
            .list_containers()
            .await?
            .into_iter()
            .filter(|c| {
                let label = |k: &str| c.labels.get(k).map(String::as_str);
                label(labels::PROJECT) == Some(self.spec.project.as_str())
                    && label(labels::ROLE) == Some(labels::ROLE_SERVICE)
                    && label(labels::GENERATION) == Some(generation.as_str())
                    && label(labels::SERVICE) == Some(service)
            })
            .map(|c| c.name)
            .collect();
        names.sort();
        Ok(names)
    }
}

/// A service's checks against each of `replicas` (container names), or without
/// checks that each stays running for `settle`; the outcome names each replica.
pub(crate) async fn check_replicas<E: Engine>(
    engine: &E,
    spec: &Spec,
    service: &str,
    replicas: &[String],
    progress: &mut dyn FnMut(String),
) -> Result<HealthOutcome, Error> {
    let spec_service = spec.services.get(service);
    let checks = spec_service.map(|s| s.health.clone()).unwrap_or_default();
    let mut outcome = HealthOutcome {
        healthy: true,
        checks: Vec::new(),
    };
    if checks.is_empty() {
        let wait = spec_service.map_or(DEFAULT_SETTLE, |s| s.settle.get());
        outcome.checks = settle(engine, replicas, wait, progress).await?;
    } else {
        let network = spec.network_name();
        for replica in replicas {
            let one = replica_healthy(engine, &network, replica, &checks, progress).await?;
            outcome.checks.extend(one.checks.into_iter().map(|mut c| {
                c.description = format!("{replica}: {}", c.description);
                c
            }));
        }
    }
    outcome.healthy = outcome.checks.iter().all(|c| c.passed);
    Ok(outcome)
}

/// Without checks: every replica must be running from now until `settle` has
/// passed (a crash, even one Docker restarts, fails it).
async fn settle<E: Engine>(
    engine: &E,
    replicas: &[String],
    settle: Duration,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<CheckOutcome>, Error> {
    let started = Instant::now();
    let mut polls = 0u32;
    let mut failed: Vec<CheckOutcome> = Vec::new();
    loop {
        polls += 1;
        let now = engine.list_containers().await?;
        for replica in replicas {
            let state = now.iter().find(|c| &c.name == replica).map(|c| c.state);
            if state != Some(ContainerState::Running)
                && !failed
                    .iter()
                    .any(|f| f.description.starts_with(replica.as_str()))
            {
                let logs = engine.logs(replica, 5).await.unwrap_or_default();
                failed.push(CheckOutcome {
                    description: format!(
                        "{replica}: stays running for {}",
                        humantime::format_duration(settle)
                    ),
                    passed: false,
                    attempts: polls,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last_output: format!(
                        "it is {} after {:.1}s; its last log lines: {}",
                        state.map_or("gone".to_string(), |s| s.to_string()),
                        started.elapsed().as_secs_f64(),
                        logs.trim().replace('\n', " | ")
                    ),
                });
            }
        }
        if !failed.is_empty() || started.elapsed() >= settle {
            break;
        }
        progress(format!(
            "waiting {:.1}s more: {} must stay running",
            (settle.saturating_sub(started.elapsed())).as_secs_f64(),
            replicas.join(", ")
        ));
        tokio::time::sleep(Duration::from_millis(250).min(settle)).await;
    }
    if !failed.is_empty() {
        return Ok(failed);
    }
    Ok(replicas
        .iter()
        .map(|replica| CheckOutcome {
            description: format!(
                "{replica}: stays running for {}",
                humantime::format_duration(settle)
            ),
            passed: true,
            attempts: polls,
            elapsed_ms: started.elapsed().as_millis() as u64,
            last_output: "running".into(),
        })
        .collect())
}

/// A replica's checks: `tcp` and `http` against its address on the private
/// network, `exec` inside it.
async fn replica_healthy<E: Engine>(
    engine: &E,
    network: &str,
    replica: &str,
    checks: &[crate::spec::HealthCheck],
    progress: &mut dyn FnMut(String),
) -> Result<HealthOutcome, Error> {
    let needs_address = checks.iter().any(|c| c.port().is_some());
    let host = match engine.container_address(replica, network).await? {
        Some(ip) => ip,
        None if needs_address => {
            let logs = engine.logs(replica, 20).await.unwrap_or_default();
            return Ok(HealthOutcome {
                healthy: false,
                checks: vec![CheckOutcome {
                    description: format!("address on {network}"),
                    passed: false,
                    attempts: 1,
                    elapsed_ms: 0,
                    last_output: format!(
                        "{replica} has no address on {network} (is it running?); its last \
                         log lines: {}",
                        logs.trim().replace('\n', " | ")
                    ),
                }],
            });
        }
        None => String::new(),
    };
    let target = health::Target {
        container: replica,
        host,
        ports: checks
            .iter()
            .filter_map(|c| c.port())
            .map(|p| (p, p))
            .collect(),
    };
    let mut on_probe = |p: &ProbeEvent| progress(p.line(replica));
    Ok(health::wait_healthy(engine, &target, checks, &mut on_probe).await)
}
