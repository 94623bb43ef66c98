//! Steps that touch the engine's network and containers: create, start, stop,
//! remove, the app's probe (health ports on 127.0.0.1 only) and its exposure on the
//! public ports; and the environment containers are made with.
//!
//! Not here: the data a db container mounts (`data`), waiting on it and checking
//! the app (`checks`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Run, StepError};
use crate::desired::{self, ContainerConfig, Role};
use crate::engine::{CreateContainer, Engine, EngineError, PortBinding, parse_env_file};
use crate::error::Error;
use crate::labels;
use crate::spec::Spec;

/// Grace time before `docker stop` kills: a db gets time for a clean shutdown.
const DB_STOP_GRACE: Duration = Duration::from_secs(60);
const APP_STOP_GRACE: Duration = Duration::from_secs(10);

/// A generation's app as the spec asks for it, on the database its marker says it
/// runs on (its own, or the one it shares with `db.copy: none`).
fn app_config(spec: &Spec, generation: u64) -> ContainerConfig {
    desired::app_on(
        spec,
        generation,
        crate::state::db_generation(&spec.storage, generation),
    )
}

impl<E: Engine> Run<'_, E> {
    pub(super) async fn create_network(&mut self, network: &str) -> Result<(), StepError> {
        let labels = BTreeMap::from([(labels::PROJECT.to_string(), self.spec.project.clone())]);
        self.engine.create_network(network, &labels).await?;
        Ok(())
    }

    /// Makes (or finds) the generation's data, then its db container on it.
    pub(super) async fn create_db(
        &mut self,
        generation: u64,
        fresh: bool,
    ) -> Result<(), StepError> {
        self.prepare_data(generation, fresh)?;
        self.create(&desired::db(self.spec, generation), None, Vec::new())
            .await
    }

    pub(super) async fn start(&mut self, container: &str) -> Result<(), StepError> {
        self.engine.start_container(container).await?;
        Ok(())
    }

    pub(super) async fn stop_app(&mut self, container: &str) -> Result<(), StepError> {
        self.engine
            .stop_container(container, APP_STOP_GRACE)
            .await?;
        Ok(())
    }

    pub(super) async fn stop_db(&mut self, container: &str) -> Result<(), StepError> {
        self.engine.stop_container(container, DB_STOP_GRACE).await?;
        Ok(())
    }

    /// The new app with only its health ports published, on 127.0.0.1.
    pub(super) async fn create_app_probe(&mut self, generation: u64) -> Result<(), StepError> {
        let spec = self.spec;
        self.create(
            &app_config(spec, generation),
            Some(labels::EXPOSURE_PROBE),
            probe_ports(spec),
        )
        .await
    }

    /// The probe app made again with the public ports.
    pub(super) async fn expose_app(
        &mut self,
        generation: u64,
        container: &str,
    ) -> Result<(), StepError> {
        let spec = self.spec;
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
            &app_config(spec, generation),
            Some(labels::EXPOSURE_PUBLIC),
            bindings,
        )
        .await?;
        // Clients may have written to it from the moment it started (until this is
        // on disk, its running public container says so): its data is never
        // deleted as debris again.
        self.record_served(generation)
    }

    pub(super) async fn remove(&mut self, name: &str) -> Result<(), StepError> {
        self.engine.remove_container(name).await?;
        self.known.remove(name);
        Ok(())
    }

    pub(super) async fn create(
        &mut self,
        config: &ContainerConfig,
        exposure: Option<&str>,
        ports: Vec<PortBinding>,
    ) -> Result<(), StepError> {
        // The operator's labels first: gemctl's own win (validation refuses
        // `io.gemctl.*` in the spec anyway).
        let mut labels = config.run.labels.clone();
        labels.extend(config.labels(&self.spec.project));
        if let Some(e) = exposure {
            labels.insert(labels::EXPOSURE.into(), e.into());
        }
        let ports_empty = ports.is_empty();
        let mut request = request(
            self.spec,
            config,
            labels,
            ports,
            exposure != Some(labels::EXPOSURE_PROBE),
        )?;
        // The public ports only once it runs: clients that connect while it starts
        // are refused (and try again) instead of waiting a second for a SYN Docker
        // dropped (see `CreateContainer::ports_after_start`).
        request.ports_after_start = exposure == Some(labels::EXPOSURE_PUBLIC) && !ports_empty;
        // A container a killed gemctl asked for may be taken as this step's (see
        // `made_by_a_killed_run`); the engine may still undo it, as a create whose
        // client went away can end (seen in CI: "No such container" at the start
        // right after). Then it is asked for again, a few times.
        let mut undone = 0;
        let started = loop {
            let (id, adopted) = match self.engine.create_container(&request).await {
                Ok(id) => (id, false),
                Err(e) => (self.made_by_a_killed_run(&request).await.ok_or(e)?, true),
            };
            self.known.insert(config.name.clone(), id);
            match self.engine.start_container(&config.name).await {
                Err(EngineError::NotFound { .. }) if adopted && undone < 3 => {
                    undone += 1;
                    self.known.remove(&config.name);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                started => break started,
            }
        };
        if let Err(e) = started {
            if request.ports_after_start {
                // Its public ports could not be given (taken, say): it ran off
                // its network, so no client reached it. It goes again, as a
                // start that failed to bind left it never started before: the
                // fall back may then delete its generation's data as never served.
                let _ = self.engine.remove_container(&config.name).await;
                self.known.remove(&config.name);
            }
            return Err(e.into());
        }
        Ok(())
    }
}

impl<E: Engine> Run<'_, E> {
    /// The id of a container named as `request` that carries exactly the labels it
    /// asks for (project, role, generation, fingerprint, exposure): one a gemctl
    /// killed while it asked for this very container left, which the engine made
    /// (and maybe started) after this run looked at the host. It is taken as this
    /// step's, and started if it is not; anything else under the name stays a
    /// conflict.
    async fn made_by_a_killed_run(&self, request: &CreateContainer) -> Option<String> {
        let seen = self.engine.list_containers().await.ok()?;
        let c = seen.into_iter().find(|c| c.name == request.name)?;
        let same = [
            labels::PROJECT,
            labels::ROLE,
            labels::GENERATION,
            labels::SPEC_HASH,
            labels::EXPOSURE,
        ]
        .iter()
        .all(|k| c.labels.get(*k) == request.labels.get(*k));
        same.then_some(c.id)
    }
}

/// The app's health ports, each published on an ephemeral port of 127.0.0.1.
pub fn probe_ports(spec: &Spec) -> Vec<PortBinding> {
    let ports: BTreeSet<u16> = spec.app.health.iter().filter_map(|c| c.port()).collect();
    ports
        .into_iter()
        .map(|p| PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: None,
            container_port: p,
            proto: "tcp".into(),
        })
        .collect()
}

/// What the engine is asked to create for `config`: its environment (secrets
/// included), `labels`, `ports`, mounts, command and run settings; `restart`:
/// Docker restarts it when it dies (a service's own policy wins).
pub fn request(
    spec: &Spec,
    config: &ContainerConfig,
    labels: BTreeMap<String, String>,
    ports: Vec<PortBinding>,
    restart: bool,
) -> Result<CreateContainer, Error> {
    Ok(CreateContainer {
        name: config.name.clone(),
        image: config.image.clone(),
        env: container_env(spec, config)?,
        labels,
        network: Some(config.network.clone()),
        ports,
        binds: config.data_mount.clone().into_iter().collect(),
        restart,
        restart_policy: config.service.as_ref().map(|s| s.restart.clone()),
        cmd: (!config.command.is_empty()).then(|| config.command.clone()),
        entrypoint: config
            .service
            .as_ref()
            .filter(|s| !s.entrypoint.is_empty())
            .map(|s| s.entrypoint.clone()),
        user: config.run.user.clone(),
        memory: config.run.memory,
        nano_cpus: config.run.nano_cpus,
        shm_size: config.run.shm_size,
        volumes: config.run.volumes.clone(),
        log: config
            .run
            .log
            .as_ref()
            .map(|l| (l.driver.clone(), l.options.clone())),
        ports_after_start: false,
    })
}

/// The lines of a role's env file (secrets; never printed).
pub(super) fn env_file(spec: &Spec, role: Role) -> Result<Vec<String>, Error> {
    let file = match role {
        Role::App => &spec.app.env_file,
        Role::Db => &spec.db.env_file,
        Role::Service => &None,
    };
    read_env_file(file.as_ref())
}

/// Every service's env file (secrets; never printed), read to see that it can be.
pub(super) fn service_env_files(spec: &Spec) -> Result<(), Error> {
    for svc in spec.services.values() {
        read_env_file(svc.env_file.as_ref())?;
    }
    Ok(())
}

fn read_env_file(file: Option<&std::path::PathBuf>) -> Result<Vec<String>, Error> {
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
    let mut env = match config.role {
        Role::Service => read_env_file(config.env_file.as_ref())?,
        role => env_file(spec, role)?,
    };
    env.extend(config.env.iter().map(|(k, v)| format!("{k}={v}")));
    Ok(env)
}

/// The db's environment (secrets included, never printed), for the credentials
/// the copy, backups and checks use.
pub fn db_env(spec: &Spec) -> Result<Vec<String>, Error> {
    container_env(spec, &desired::db(spec, 0))
}
