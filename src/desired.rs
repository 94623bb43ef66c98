//! What the spec asks of each container of a generation: the one description both
//! the planner (to recognise and compare) and the executor (to create) use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::labels;
use crate::settings::Settings;
use crate::spec::Spec;

/// The app or the database.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The stateless application.
    App,
    /// PostgreSQL.
    Db,
    /// One of the spec's `services:` (a worker, a cache…).
    Service,
}

impl Role {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Role::App => labels::ROLE_APP,
            Role::Db => labels::ROLE_DB,
            Role::Service => labels::ROLE_SERVICE,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A container as the spec wants it, minus how it is exposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerConfig {
    /// `gem-7`, `db-7`.
    pub name: String,
    /// App or db.
    pub role: Role,
    /// Generation number.
    pub generation: u64,
    /// Image reference.
    pub image: String,
    /// Literal environment, including the variables gemctl adds.
    pub env: BTreeMap<String, String>,
    /// Secret environment file (path only; its contents never leave the host).
    pub env_file: Option<PathBuf>,
    /// Private network to join.
    pub network: String,
    /// Public ports (app only), Docker syntax, sorted: the order of the spec's list
    /// means nothing to Docker, so it must not move the fingerprint.
    pub ports: Vec<String>,
    /// Host directory → container directory bind mount (db only).
    pub data_mount: Option<(PathBuf, String)>,
    /// The command replacing the image's (the db: `postgres` and its args).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// User, limits, volumes, operator labels, logging.
    #[serde(skip_serializing_if = "RunConfig::is_empty")]
    pub run: RunConfig,
    /// A service's name and replica (app and db: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceOf>,
}

/// Which service a container runs, and which of its replicas it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceOf {
    /// The service's name in the spec.
    pub name: String,
    /// From 1.
    pub replica: u32,
    /// The entrypoint replacing the image's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Docker's restart policy.
    pub restart: String,
}

/// How a container runs beyond its image and environment, as the engine takes
/// it (sizes in bytes, CPUs in billionths). Empty fields are left out of the
/// fingerprint, so containers made before these settings existed still match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunConfig {
    /// The user (and group) the command runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Memory limit, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU limit, in billionths of a CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<u64>,
    /// `/dev/shm` size, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// `SOURCE:TARGET[:ro]`, as the spec writes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// The operator's labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Log driver and options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<crate::spec::LogSpec>,
}

impl RunConfig {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == RunConfig::default()
    }

    /// From the spec's (validated) settings.
    pub fn of(run: &crate::spec::RunSpec) -> RunConfig {
        RunConfig {
            user: run.user.clone(),
            memory: run.memory.as_deref().and_then(crate::spec::parse_size),
            nano_cpus: run.cpus.map(|c| (c * 1e9).round() as u64),
            shm_size: run.shm_size.as_deref().and_then(crate::spec::parse_size),
            volumes: run.volumes.clone(),
            labels: run.labels.clone(),
            log: run.log.clone(),
        }
    }
}

/// Extra variable telling the app which generation it is.
pub const GENERATION_VAR: &str = "GEM_GENERATION";

impl ContainerConfig {
    /// Fingerprint of everything the spec decides about this container.
    pub fn spec_hash(&self) -> String {
        let canonical = serde_json::to_string(self).expect("config serialises");
        format!("{:016x}", fnv1a(canonical.as_bytes()))
    }

    /// The labels to set when creating it (exposure added by the caller for apps).
    pub fn labels(&self, project: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (labels::PROJECT.to_string(), project.to_string()),
            (labels::ROLE.to_string(), self.role.label().to_string()),
            (labels::GENERATION.to_string(), self.generation.to_string()),
            (labels::SPEC_HASH.to_string(), self.spec_hash()),
            (labels::SETTINGS.to_string(), Settings::of(self).label()),
        ]);
        if let Some(s) = &self.service {
            labels.insert(labels::SERVICE.into(), s.name.clone());
            labels.insert(labels::REPLICA.into(), s.replica.to_string());
        }
        labels
    }
}

/// A short, stable fingerprint of some bytes (hex).
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(bytes))
}

/// FNV-1a, 64 bit: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Container name of a role's generation (a service's: [`service_container_name`]).
pub fn container_name(spec: &Spec, role: Role, generation: u64) -> String {
    match role {
        Role::App => format!("{}-{generation}", spec.app.name),
        Role::Db => format!("{}-{generation}", spec.db.name),
        Role::Service => panic!("a service's container is named by service_container_name"),
    }
}

/// Container name of a service's replica: `<service>-<n>`, or `<service>-<n>-<i>`
/// when the service runs more than one.
pub fn service_container_name(
    service: &str,
    generation: u64,
    replica: u32,
    replicas: u32,
) -> String {
    if replicas > 1 {
        format!("{service}-{generation}-{replica}")
    } else {
        format!("{service}-{generation}")
    }
}

/// Name of the one-shot container copying data into `generation`.
pub fn copy_container_name(spec: &Spec, generation: u64) -> String {
    format!("{}-copy-{generation}", spec.project)
}

/// The one-shot container that backs up generation n: `<project>-backup-<n>`.
pub fn backup_container_name(spec: &Spec, generation: u64) -> String {
    format!("{}-backup-{generation}", spec.project)
}

/// `<storage>/<n>`: everything of generation n on the host.
pub fn generation_dir(spec: &Spec, generation: u64) -> PathBuf {
    spec.storage.join(generation.to_string())
}

/// `<storage>/<n>/pgdata`: the database files, bind-mounted into db-n.
pub fn data_dir(spec: &Spec, generation: u64) -> PathBuf {
    generation_dir(spec, generation).join("pgdata")
}

/// Whether a container's fingerprint says it was made as `want`: today's
/// fingerprint, or — for an app made by a gemctl that fingerprinted `ports` in the
/// spec's order — that one, so upgrading gemctl refuses nothing on its own.
pub fn made_as(spec: &Spec, want: &ContainerConfig, hash: Option<&str>) -> bool {
    let Some(hash) = hash else { return false };
    if hash == want.spec_hash() {
        return true;
    }
    let mut in_spec_order = want.clone();
    in_spec_order.ports = match want.role {
        Role::App => spec.app.ports.iter().map(|p| p.raw.clone()).collect(),
        Role::Db | Role::Service => return false,
    };
    hash == in_spec_order.spec_hash()
}

/// The app container of a generation on its own database, as the spec asks for it.
pub fn app(spec: &Spec, generation: u64) -> ContainerConfig {
    app_on(spec, generation, generation)
}

/// The app container of a generation running on generation `db`'s database (its
/// own, or the one it shares with `db.copy: none`).
pub fn app_on(spec: &Spec, generation: u64, db: u64) -> ContainerConfig {
    let mut env = spec.app.env.clone();
    env.insert(
        spec.app.db_host_var.clone(),
        container_name(spec, Role::Db, db),
    );
    env.insert(GENERATION_VAR.into(), generation.to_string());
    ContainerConfig {
        name: container_name(spec, Role::App, generation),
        role: Role::App,
        generation,
        image: spec.app.image.to_string(),
        env,
        env_file: spec.app.env_file.clone(),
        network: spec.network_name(),
        ports: {
            let mut ports: Vec<String> = spec.app.ports.iter().map(|p| p.raw.clone()).collect();
            ports.sort();
            ports
        },
        data_mount: None,
        command: spec.app.command.clone(),
        run: RunConfig::of(&spec.app.run),
        service: None,
    }
}

/// Every service container of a generation running on generation `db`'s
/// database, in the order they start (dependencies first, replicas in order).
pub fn services_on(spec: &Spec, generation: u64, db: u64) -> Vec<ContainerConfig> {
    let order = spec
        .service_order()
        .unwrap_or_else(|_| spec.services.keys().cloned().collect());
    order
        .iter()
        .flat_map(|name| {
            let svc = &spec.services[name];
            (1..=svc.replicas).map(move |replica| {
                let mut env = svc.env.clone();
                env.insert(svc.db_host_var.clone(), container_name(spec, Role::Db, db));
                env.insert(GENERATION_VAR.into(), generation.to_string());
                ContainerConfig {
                    name: service_container_name(name, generation, replica, svc.replicas),
                    role: Role::Service,
                    generation,
                    image: svc.image.to_string(),
                    env,
                    env_file: svc.env_file.clone(),
                    network: spec.network_name(),
                    ports: Vec::new(),
                    data_mount: None,
                    command: svc.command.clone(),
                    run: RunConfig::of(&svc.run),
                    service: Some(ServiceOf {
                        name: name.clone(),
                        replica,
                        entrypoint: svc.entrypoint.clone(),
                        restart: svc.restart.name().to_string(),
                    }),
                }
            })
        })
        .collect()
}

/// The db container of a generation, as the spec asks for it.
pub fn db(spec: &Spec, generation: u64) -> ContainerConfig {
    let mut env = spec.db.env.clone();
    env.insert("PGDATA".into(), spec.db.data_dir.clone());
    ContainerConfig {
        name: container_name(spec, Role::Db, generation),
        role: Role::Db,
        generation,
        image: spec.db.image.to_string(),
        env,
        env_file: spec.db.env_file.clone(),
        network: spec.network_name(),
        ports: Vec::new(),
        data_mount: Some((data_dir(spec, generation), spec.db.data_dir.clone())),
        command: if spec.db.args.is_empty() {
            Vec::new()
        } else {
            std::iter::once("postgres".to_string())
                .chain(spec.db.args.iter().cloned())
                .collect()
        },
        run: RunConfig::of(&spec.db.run),
        service: None,
    }
}

/// One fingerprint for a generation as a whole (app and db), used to tell whether
/// a failed generation is being asked for again unchanged.
pub fn generation_hash(spec: &Spec, generation: u64) -> String {
    let mut both = format!(
        "{}{}",
        app(spec, generation).spec_hash(),
        db(spec, generation).spec_hash()
    );
    // Without services, the hash stays what it was before they existed.
    for s in services_on(spec, generation, generation) {
        both.push_str(&s.spec_hash());
    }
    format!("{:016x}", fnv1a(both.as_bytes()))
}
