//! Steps that check before going on: that a db accepts queries, and that the new
//! app passes its health checks (through [`crate::health`], which runs them).
//!
//! Not here: what happens when a check fails (`fall_back`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Event, Run, StepError};
use crate::copy;
use crate::engine::Engine;
use crate::error::Error;
use crate::health::{self, HealthOutcome, ProbeEvent};
use crate::observed::ContainerState;

/// The command that prints `1` once a db container's PostgreSQL accepts queries
/// on TCP (the official image's init server listens on the socket only, so TCP
/// means the real server).
pub fn ready_command(creds: &copy::DbCredentials) -> Vec<String> {
    [
        "sh",
        "-c",
        "pg_isready -q -h 127.0.0.1 -U \"$1\" -d \"$2\" && psql -X -tA -U \"$1\" -d \"$2\" -c 'select 1'",
        "wait-db",
        &creds.user,
        &creds.database,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// How long to wait for PostgreSQL to accept queries.
const DB_READY_TIMEOUT: Duration = Duration::from_secs(180);

impl<E: Engine> Run<'_, E> {
    /// Runs the app's health checks; unhealthy is the step's failure.
    pub(super) async fn check_health(
        &mut self,
        generation: u64,
        container: &str,
    ) -> Result<(), StepError> {
        let outcome = self.wait_healthy(container).await?;
        self.report_health(generation, None, outcome)
    }

    /// Tells the checks' outcome of generation `generation`'s app (or `service`);
    /// unhealthy is the step's failure.
    pub(super) fn report_health(
        &mut self,
        generation: u64,
        service: Option<&str>,
        outcome: crate::health::HealthOutcome,
    ) -> Result<(), StepError> {
        (self.on_event)(Event::Health {
            generation,
            outcome: outcome.clone(),
        });
        if !outcome.healthy {
            return Err(StepError::Unhealthy {
                generation,
                service: service.map(str::to_string),
                outcome,
            });
        }
        Ok(())
    }

    /// Waits until PostgreSQL answers on TCP (the official image's init server
    /// listens on the socket only, so TCP means the real server) and runs a query.
    pub(super) async fn wait_db(&mut self, container: &str) -> Result<(), StepError> {
        let creds = copy::DbCredentials::from_env(&super::db_env(self.spec)?);
        let cmd = ready_command(&creds);
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < DB_READY_TIMEOUT {
            match self.engine.exec(container, &cmd).await {
                Ok(out) if out.exit_code == 0 && out.stdout.trim() == "1" => {
                    // A slot a killed streamed upgrade left would hold this db's WAL
                    // forever: a db that starts (for a rollback, a fall back) has none.
                    crate::stream::drop_stale_slots(self.engine, container, &creds).await?;
                    return Ok(());
                }
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

    /// The app's health checks, against its health ports as published on 127.0.0.1.
    async fn wait_healthy(&mut self, container: &str) -> Result<HealthOutcome, StepError> {
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
                message: p.line(container),
            })
        };
        Ok(health::wait_healthy(self.engine, &target, &self.spec.app.health, &mut on_probe).await)
    }
}
