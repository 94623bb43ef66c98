//! Test support for the pure planner: a fake engine that applies plan steps to an
//! `Observed` with Docker's semantics (name conflicts, port conflicts, starting what
//! does not exist all fail), and a builder for host states.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use gemctl::desired::{self, Role};
use gemctl::labels;
use gemctl::observed::{Container, ContainerState, GenerationData, History, Marker, Observed};
use gemctl::plan::{self, Action, Plan, PlanOptions, Refusal};
use gemctl::spec::Spec;

/// A spec for project `shop` at `generation`, with `retain` and an app image tag.
pub fn spec_with(generation: u64, retain: u32, app_tag: &str, scope: &str) -> Spec {
    let text = format!(
        r#"
project: shop
generation: {generation}
retain: {retain}
storage: /srv/shop
scope: {scope}
ignore: ["monitoring-*"]
app:
  image: "example/shop:{app_tag}"
  ports: ["80:8080", "127.0.0.1:7000:7000"]
  health:
    - tcp: {{ port: 7000, send: "status\n", expect: "OK" }}
db:
  image: "postgres:15"
  env: {{ POSTGRES_USER: shop }}
"#
    );
    Spec::parse(Path::new("shop.yaml"), &text).expect("test spec is valid")
}

/// Project `shop` behind a front door at `generation`, with `db_lines` in its
/// db section.
pub fn front_spec_with(generation: u64, db_lines: &str) -> Spec {
    let text = format!(
        r#"
project: shop
generation: {generation}
retain: 2
storage: /srv/shop
scope: project
front:
  image: "haproxy:2.6"
  ports:
    - {{ port: "80:8080", mode: http }}
    - {{ port: "127.0.0.1:7000:7000", mode: tcp }}
app:
  image: "example/shop:v{generation}"
  health:
    - tcp: {{ port: 7000, send: "status\n", expect: "OK" }}
db:
  image: "postgres:15"
{db_lines}"#
    );
    Spec::parse(Path::new("shop.yaml"), &text).expect("front spec is valid")
}

/// The usual spec: `generation`, retain 2, tag `v<generation>`, scope host.
pub fn spec(generation: u64) -> Spec {
    spec_with(generation, 2, &format!("v{generation}"), "host")
}

/// The fake engine's verdict on a step it cannot carry out.
pub type SimError = String;

/// Applies one action to the observed state the way Docker and gemctl's executor
/// would, healthy apps assumed.
pub fn apply_step(spec: &Spec, obs: &mut Observed, action: &Action) -> Result<(), SimError> {
    let find = |obs: &Observed, name: &str| obs.containers.iter().position(|c| c.name == name);
    let data_ready = |obs: &Observed, g: u64| {
        obs.storage
            .generations
            .iter()
            .any(|d| d.generation == g && d.ready())
    };
    match action {
        Action::CreateNetwork { network } => {
            if obs.networks.contains(network) {
                return Err(format!("network {network} already exists"));
            }
            obs.networks.push(network.clone());
        }
        Action::CreateDb {
            generation,
            container,
            fresh,
        } => {
            need_network(spec, obs)?;
            if find(obs, container).is_some() {
                return Err(format!("conflict: {container} already exists"));
            }
            let has_dir = obs
                .storage
                .generations
                .iter()
                .any(|d| d.generation == *generation);
            if *fresh {
                if has_dir {
                    return Err(format!("data dir of {generation} is not fresh"));
                }
                // As the executor does: the record of what served exists before
                // any data that may later be deleted as never served.
                if obs.storage.served.is_none() {
                    obs.storage.served = Some(gemctl::state::seed_served(&obs.storage));
                }
                obs.storage.generations.push(GenerationData {
                    generation: *generation,
                    marker: Marker::Preparing,
                    pg_major: None,
                });
                obs.storage.generations.sort_by_key(|d| d.generation);
            } else if !has_dir {
                return Err(format!("no data dir for {generation}"));
            }
            let want = desired::db(spec, *generation);
            obs.containers.push(made(spec, &want, None));
        }
        Action::StartDb { container, .. } | Action::StartApp { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            if obs.containers[i]
                .labels
                .get(labels::EXPOSURE)
                .map(String::as_str)
                == Some(labels::EXPOSURE_PUBLIC)
            {
                ports_free(obs, container)?;
            }
            obs.containers[i].state = ContainerState::Running;
        }
        Action::StopApp { container, .. } | Action::StopDb { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            obs.containers[i].state = ContainerState::Exited;
        }
        Action::WaitDb { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            if !obs.containers[i].state.is_up() {
                return Err(format!("{container} is not running"));
            }
        }
        Action::RestoreBackup { generation, .. } => {
            let name = desired::container_name(spec, Role::Db, *generation);
            if !find(obs, &name).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("restore needs {name} running"));
            }
            if data_ready(obs, *generation) {
                return Err(format!(
                    "restore into {generation}, whose data is already ready"
                ));
            }
        }
        Action::CopyData { from, to } | Action::VerifyCopy { from, to } => {
            let writing = services_up(obs, *from);
            if !writing.is_empty() {
                return Err(format!("services {writing:?} still write during the copy"));
            }
            for g in [from, to] {
                let name = desired::container_name(spec, Role::Db, *g);
                let up = find(obs, &name).is_some_and(|i| obs.containers[i].state.is_up());
                if !up {
                    return Err(format!("copy needs {name} running"));
                }
            }
            if !data_ready(obs, *from) {
                return Err(format!("copy source {from} is not ready"));
            }
            let app = desired::container_name(spec, Role::App, *from);
            if find(obs, &app).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("{app} still writes during the copy"));
            }
        }
        Action::MarkReady {
            generation,
            copied_from,
        } => {
            let d = obs
                .storage
                .generations
                .iter_mut()
                .find(|d| d.generation == *generation)
                .ok_or(format!("no data dir for {generation}"))?;
            d.marker = Marker::Ready {
                copied_from: *copied_from,
            };
        }
        Action::CreateAppProbe {
            generation,
            container,
        } => {
            need_network(spec, obs)?;
            if find(obs, container).is_some() {
                return Err(format!("conflict: {container} already exists"));
            }
            if !data_ready(obs, *generation) {
                return Err(format!("app {generation} started before its data is ready"));
            }
            let want = desired::app_on(spec, *generation, db_gen(obs, *generation));
            obs.containers
                .push(made(spec, &want, Some(labels::EXPOSURE_PROBE)));
        }
        Action::CheckHealth { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            if !obs.containers[i].state.is_up() {
                return Err(format!("health check of stopped {container}"));
            }
            let db = desired::container_name(
                spec,
                Role::Db,
                db_gen(obs, generation_of(&obs.containers[i])),
            );
            if !find(obs, &db).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("{container} checked while {db} is down"));
            }
        }
        Action::ExposeApp {
            container,
            generation,
        } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            served(obs, *generation);
            ports_free(obs, container)?;
            let c = &mut obs.containers[i];
            c.labels
                .insert(labels::EXPOSURE.into(), labels::EXPOSURE_PUBLIC.into());
            c.state = ContainerState::Running;
        }
        Action::SetLive { generation } => {
            if !data_ready(obs, *generation) {
                return Err(format!("live generation {generation} has no ready data"));
            }
            served(obs, *generation);
            obs.storage.live = Some(*generation);
        }
        Action::CreateFront { container, replace } => {
            need_network(spec, obs)?;
            let front = spec.front.as_ref().ok_or("a front step without `front:`")?;
            match (find(obs, container), replace) {
                (Some(i), true) => {
                    obs.containers.remove(i);
                }
                (Some(_), false) => return Err(format!("conflict: {container} already exists")),
                (None, _) => {}
            }
            // The front binds the public ports: no app may hold them.
            ports_free(obs, container)?;
            obs.containers.push(Container {
                name: container.clone(),
                id: format!("id-{container}"),
                image: front.image.to_string(),
                labels: gemctl::front::labels(spec, front),
                state: ContainerState::Running,
                health: None,
                ports: Vec::new(),
                created: None,
            });
        }
        Action::StartFront { container } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            ports_free(obs, container)?;
            obs.containers[i].state = ContainerState::Running;
        }
        Action::RemoveFront { container } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            obs.containers.remove(i);
        }
        Action::PrepareFront { generation, .. } => {
            let state = obs.storage.front.clone().unwrap_or_default();
            obs.storage.front = Some(state.prepared(*generation).1);
        }
        Action::DrainFront { generation } => {
            let state = obs.storage.front.clone().unwrap_or_default();
            if state.live_generation() == Some(*generation) {
                return Err(format!(
                    "draining generation {generation}, which the front serves"
                ));
            }
        }
        Action::ShareDb { generation, db } => {
            if obs
                .storage
                .generations
                .iter()
                .any(|d| d.generation == *generation)
            {
                return Err(format!("data dir of {generation} is not fresh"));
            }
            if !data_ready(obs, *db) || db_gen(obs, *db) != *db {
                return Err(format!(
                    "generation {generation} shares {db}, which has no data"
                ));
            }
            let name = desired::container_name(spec, Role::Db, *db);
            if !find(obs, &name).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!(
                    "generation {generation} shares {name}, which is down"
                ));
            }
            obs.storage.generations.push(GenerationData {
                generation: *generation,
                marker: Marker::Shares { db: *db },
                pg_major: None,
            });
            obs.storage.generations.sort_by_key(|d| d.generation);
        }
        Action::HoldFront { .. } => {
            let state = obs.storage.front.clone().unwrap_or_default();
            obs.storage.front = Some(state.held());
        }
        Action::SwitchFront {
            generation,
            container,
        } => {
            let front = gemctl::front::container_name(spec);
            if !find(obs, &front).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("switched while {front} is down"));
            }
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            if !obs.containers[i].state.is_up() {
                return Err(format!("the front switched to stopped {container}"));
            }
            served(obs, *generation);
            let state = obs.storage.front.clone().unwrap_or_default();
            obs.storage.front = Some(state.switched(*generation));
        }
        Action::CreateService {
            generation,
            container,
            ..
        } => {
            need_network(spec, obs)?;
            if find(obs, container).is_some() {
                return Err(format!("conflict: {container} already exists"));
            }
            let db = db_gen(obs, *generation);
            if !data_ready(obs, db) {
                return Err(format!(
                    "service {container} started before its data is ready"
                ));
            }
            let want = desired::services_on(spec, *generation, db)
                .into_iter()
                .find(|c| c.name == *container)
                .ok_or(format!("{container} is no service replica of the spec"))?;
            obs.containers.push(made(spec, &want, None));
            one_database_served_by_services(obs)?;
        }
        Action::StartService { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            obs.containers[i].state = ContainerState::Running;
            one_database_served_by_services(obs)?;
        }
        Action::StopService { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            obs.containers[i].state = ContainerState::Exited;
        }
        Action::CheckService {
            generation,
            service,
        } => {
            let replicas: Vec<&Container> = obs
                .containers
                .iter()
                .filter(|c| {
                    c.labels.get(labels::SERVICE) == Some(service)
                        && c.labels.get(labels::GENERATION) == Some(&generation.to_string())
                })
                .collect();
            if replicas.is_empty() {
                return Err(format!(
                    "service {service} of {generation} has no container"
                ));
            }
            if let Some(c) = replicas.iter().find(|c| !c.state.is_up()) {
                return Err(format!("check of stopped {}", c.name));
            }
            let db = desired::container_name(spec, Role::Db, db_gen(obs, *generation));
            if !find(obs, &db).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("service {service} checked while {db} is down"));
            }
        }
        Action::DiscardThrowaway { kind } => {
            obs.containers.retain(|c| {
                !(c.labels.get(labels::PROJECT) == Some(&spec.project)
                    && c.labels.get(labels::THROWAWAY) == Some(kind))
            });
            obs.storage.throwaways.retain(|k| k != kind);
        }
        Action::RemoveContainer { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            if obs.containers[i]
                .labels
                .get(labels::ROLE)
                .map(String::as_str)
                == Some(labels::ROLE_THROWAWAY)
            {
                return Err(format!(
                    "removed {container}, a throwaway copy's, one by one"
                ));
            }
            if obs.containers[i].labels.get(labels::PROJECT) != Some(&spec.project) {
                return Err(format!("removed {container}, which gemctl did not make"));
            }
            obs.containers.remove(i);
        }
        Action::AllowReplication { container, .. } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            if !obs.containers[i].state.is_up() {
                return Err(format!("{container} is not running"));
            }
        }
        Action::BaseBackup { from, to } => {
            need_network(spec, obs)?;
            let name = desired::container_name(spec, Role::Db, *from);
            if !find(obs, &name).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("base backup needs {name} running"));
            }
            if !data_ready(obs, *from) {
                return Err(format!("base backup source {from} is not ready"));
            }
            if obs.storage.generations.iter().any(|d| d.generation == *to) {
                return Err(format!("data dir of {to} is not fresh"));
            }
            if obs.storage.served.is_none() {
                obs.storage.served = Some(gemctl::state::seed_served(&obs.storage));
            }
            obs.storage.generations.push(GenerationData {
                generation: *to,
                marker: Marker::Preparing,
                pg_major: None,
            });
            obs.storage.generations.sort_by_key(|d| d.generation);
        }
        Action::WaitCatchUp { from, to } => {
            for g in [from, to] {
                let name = desired::container_name(spec, Role::Db, *g);
                if !find(obs, &name).is_some_and(|i| obs.containers[i].state.is_up()) {
                    return Err(format!("catch-up needs {name} running"));
                }
            }
        }
        Action::StopPrimary {
            generation,
            container,
        } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            let app = desired::container_name(spec, Role::App, *generation);
            if find(obs, &app).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("{app} still writes when its db stops"));
            }
            let writing = services_up(obs, *generation);
            if !writing.is_empty() {
                return Err(format!(
                    "services {writing:?} still write when their db stops"
                ));
            }
            obs.containers[i].state = ContainerState::Exited;
        }
        Action::WaitReplay { from, to } => {
            let primary = desired::container_name(spec, Role::Db, *from);
            if find(obs, &primary).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("replay awaited while {primary} still runs"));
            }
            let standby = desired::container_name(spec, Role::Db, *to);
            if !find(obs, &standby).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("replay needs {standby} running"));
            }
        }
        Action::Promote {
            generation,
            container,
        } => {
            let i = find(obs, container).ok_or(format!("no such container {container}"))?;
            if !obs.containers[i].state.is_up() {
                return Err(format!("{container} is not running"));
            }
            // Never two writable databases serving: no app of another generation
            // writes anywhere when the standby takes over.
            if let Some(other) = obs.containers.iter().find(|c| {
                c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_APP)
                    && c.state.is_up()
                    && generation_of(c) != *generation
            }) {
                return Err(format!("{container} promoted while {} runs", other.name));
            }
        }
        Action::RemoveData { generation } => {
            if let Some(user) = obs
                .storage
                .generations
                .iter()
                .find(|d| d.shares() == Some(*generation))
            {
                return Err(format!(
                    "deleting generation {generation}'s data, which generation {} runs on",
                    user.generation
                ));
            }
            let db = desired::container_name(spec, Role::Db, *generation);
            if find(obs, &db).is_some_and(|i| obs.containers[i].state.is_up()) {
                return Err(format!("deleting data under running {db}"));
            }
            let before = obs.storage.generations.len();
            obs.storage
                .generations
                .retain(|d| d.generation != *generation);
            if before == obs.storage.generations.len() {
                return Err(format!("no data dir for {generation}"));
            }
        }
    }
    Ok(())
}

/// The service containers of generation `g` that are up.
fn services_up(obs: &Observed, g: u64) -> Vec<String> {
    obs.containers
        .iter()
        .filter(|c| {
            c.state.is_up()
                && c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_SERVICE)
                && c.labels.get(labels::GENERATION) == Some(&g.to_string())
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Services of generations on two different databases never run at once.
fn one_database_served_by_services(obs: &Observed) -> Result<(), SimError> {
    let dbs: std::collections::BTreeSet<u64> = obs
        .containers
        .iter()
        .filter(|c| {
            c.state.is_up()
                && c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_SERVICE)
        })
        .map(|c| db_gen(obs, generation_of(c)))
        .collect();
    if dbs.len() > 1 {
        return Err(format!(
            "services of generations on databases {dbs:?} run at once"
        ));
    }
    Ok(())
}

fn served(obs: &mut Observed, generation: u64) {
    let seed = gemctl::state::seed_served(&obs.storage);
    obs.storage.served.get_or_insert(seed).insert(generation);
}

fn need_network(spec: &Spec, obs: &Observed) -> Result<(), SimError> {
    if obs.networks.contains(&spec.network_name()) {
        Ok(())
    } else {
        Err("network missing".into())
    }
}

/// The generation whose database generation `n` runs on.
pub fn db_gen(obs: &Observed, n: u64) -> u64 {
    obs.storage
        .generations
        .iter()
        .find(|d| d.generation == n)
        .and_then(GenerationData::shares)
        .unwrap_or(n)
}

fn generation_of(c: &Container) -> u64 {
    c.labels[labels::GENERATION].parse().unwrap()
}

/// Two public apps of the same spec, or a public app and the front door, would bind
/// the same host ports.
fn ports_free(obs: &Observed, except: &str) -> Result<(), SimError> {
    fn label<'c>(c: &'c Container, k: &str) -> Option<&'c str> {
        c.labels.get(k).map(String::as_str)
    }
    match obs.containers.iter().find(|c| {
        c.name != except
            && c.state.is_up()
            && (label(c, labels::EXPOSURE) == Some(labels::EXPOSURE_PUBLIC)
                || label(c, labels::ROLE) == Some(labels::ROLE_FRONT))
    }) {
        Some(c) => Err(format!("port conflict: {} holds the public ports", c.name)),
        None => Ok(()),
    }
}

fn made(spec: &Spec, want: &desired::ContainerConfig, exposure: Option<&str>) -> Container {
    let mut labels = want.labels(&spec.project);
    if let Some(e) = exposure {
        labels.insert(labels::EXPOSURE.into(), e.into());
    }
    Container {
        name: want.name.clone(),
        id: format!("id-{}", want.name),
        image: want.image.clone(),
        labels,
        state: ContainerState::Running,
        health: None,
        ports: Vec::new(),
        created: None,
    }
}

/// Applies a whole plan.
pub fn apply(spec: &Spec, obs: &mut Observed, plan: &Plan) -> Result<(), SimError> {
    for (i, step) in plan.steps.iter().enumerate() {
        apply_step(spec, obs, &step.action)
            .map_err(|e| format!("step {} ({}): {e}", i + 1, step.action.describe()))?;
    }
    Ok(())
}

/// Plans with default options and no history.
pub fn plan_for(spec: &Spec, obs: &Observed) -> Result<Plan, Refusal> {
    plan::plan(spec, obs, &History::default(), PlanOptions::default())
}

/// A host converged through the given generations, in order (each a spec applied).
pub fn deployed(generations: &[u64]) -> Observed {
    let mut obs = Observed::default();
    for g in generations {
        let s = spec(*g);
        let p = plan_for(&s, &obs).expect("no refusal while deploying");
        apply(&s, &mut obs, &p).expect("plan applies");
    }
    obs
}

/// Small edits of a host state, for scenarios.
pub trait HostEdit {
    /// Sets a container's state.
    fn set_state(self, name: &str, state: ContainerState) -> Self;
    /// Removes a container.
    fn without(self, name: &str) -> Self;
    /// Adds a container that gemctl did not make.
    fn stranger(self, name: &str, image: &str) -> Self;
    /// Adds a container with these labels.
    fn labelled(self, name: &str, labels: &[(&str, &str)], state: ContainerState) -> Self;
    /// Adds or replaces a data directory: ready, or being prepared (never served).
    fn data(self, generation: u64, ready: bool) -> Self;
    /// Adds or replaces a data directory with this marker.
    fn marker(self, generation: u64, marker: Marker) -> Self;
}

impl HostEdit for Observed {
    fn set_state(mut self, name: &str, state: ContainerState) -> Self {
        self.containers
            .iter_mut()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"))
            .state = state;
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.containers.retain(|c| c.name != name);
        self
    }

    fn stranger(self, name: &str, image: &str) -> Self {
        self.labelled(name, &[], ContainerState::Running)
            .with_image(name, image)
    }

    fn labelled(mut self, name: &str, labels: &[(&str, &str)], state: ContainerState) -> Self {
        self.containers.push(Container {
            name: name.into(),
            id: format!("id-{name}"),
            image: "unknown:1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            state,
            health: None,
            ports: Vec::new(),
            created: None,
        });
        self
    }

    fn data(self, generation: u64, ready: bool) -> Self {
        self.marker(
            generation,
            if ready {
                Marker::Ready { copied_from: None }
            } else {
                Marker::Preparing
            },
        )
    }

    fn marker(mut self, generation: u64, marker: Marker) -> Self {
        self.storage
            .generations
            .retain(|d| d.generation != generation);
        self.storage.generations.push(GenerationData {
            generation,
            marker,
            pg_major: None,
        });
        self.storage.generations.sort_by_key(|d| d.generation);
        if self.storage.served.is_none() {
            self.storage.served = Some(Default::default());
        }
        self
    }
}

trait WithImage {
    fn with_image(self, name: &str, image: &str) -> Self;
}

impl WithImage for Observed {
    fn with_image(mut self, name: &str, image: &str) -> Self {
        if let Some(c) = self.containers.iter_mut().find(|c| c.name == name) {
            c.image = image.into();
        }
        self
    }
}

/// The actions of a plan, described, for compact assertions.
pub fn described(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(|s| s.action.describe()).collect()
}

/// A host converged through `specs`, in order, by the fake engine.
pub fn deployed_with(specs: &[Spec]) -> Observed {
    let mut obs = Observed::default();
    for s in specs {
        let p = plan_for(s, &obs).expect("no refusal while deploying");
        apply(s, &mut obs, &p).expect("plan applies");
    }
    obs
}
