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
}

impl Role {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Role::App => labels::ROLE_APP,
            Role::Db => labels::ROLE_DB,
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
        BTreeMap::from([
            (labels::PROJECT.to_string(), project.to_string()),
            (labels::ROLE.to_string(), self.role.label().to_string()),
            (labels::GENERATION.to_string(), self.generation.to_string()),
            (labels::SPEC_HASH.to_string(), self.spec_hash()),
            (labels::SETTINGS.to_string(), Settings::of(self).label()),
        ])
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

/// Container name of a role's generation.
pub fn container_name(spec: &Spec, role: Role, generation: u64) -> String {
    match role {
        Role::App => format!("{}-{generation}", spec.app.name),
        Role::Db => format!("{}-{generation}", spec.db.name),
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
        Role::Db => return false,
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
    }
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
    }
}

/// One fingerprint for a generation as a whole (app and db), used to tell whether
/// a failed generation is being asked for again unchanged.
pub fn generation_hash(spec: &Spec, generation: u64) -> String {
    let both = format!(
        "{}{}",
        app(spec, generation).spec_hash(),
        db(spec, generation).spec_hash()
    );
    format!("{:016x}", fnv1a(both.as_bytes()))
}
