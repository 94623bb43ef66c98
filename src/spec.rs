//! The spec: what the operator wants to run, as typed, validated data.
//!
//! Parsing is strict (`deny_unknown_fields`, newtypes that reject bad scalars) so a
//! typo is an error with a file, line and column, never a silently ignored field.
//! After parsing, the checks that span several fields run, then those of the
//! files the spec names (its env files). Every problem is reported, not only the
//! first. The engine is never asked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::spec_error::{Positions, RemovedItems, SpecError, SpecErrors, recover, within};

/// The whole spec file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Project name: labels every container gemctl makes, names the default network.
    /// Lowercase letters, digits, `-` and `_`.
    pub project: String,
    /// The generation that should be live. Bump it to deploy a change; set it back to
    /// a retained generation to roll back.
    pub generation: Generation,
    /// How many previous generations to keep (containers stopped, data on disk) for
    /// rollback. Older ones are pruned, each deletion a visible plan step.
    #[serde(default)]
    pub retain: Retain,
    /// Private bridge network shared by the app and the db. Default: `<project>-net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Host directory holding each generation's database under `<storage>/<n>/` and
    /// gemctl's own records under `<storage>/.gemctl/`. Relative paths are resolved
    /// against the spec file's directory.
    pub storage: PathBuf,
    /// When to pull images: `never`, `missing` (default) or `always`.
    #[serde(default)]
    pub pull: PullPolicy,
    /// Which containers must be recognised: `host` (default: every container on the
    /// engine must belong to this spec or match `ignore`) or `project` (only containers
    /// labelled with this project or named like its containers).
    #[serde(default)]
    pub scope: Scope,
    /// Container-name patterns (`*` matches any run of characters) that gemctl leaves
    /// alone under `scope: host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// Refuse to apply, reconcile, roll back or restore while the spec file has
    /// uncommitted changes (as if `gemctl apply --require-clean` were always given).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_clean: bool,
    /// Who to tell when a deploy fails, is refused or rolls back, a restore goes
    /// live, or a scheduled backup fails; once per incident, and when it clears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
    /// Database backups: where they go, how often reconcile takes them, how long
    /// they are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// How the first generation on a fresh host starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
    /// A front door: one long-lived `<project>-front` container (HAProxy) that owns
    /// the public ports and forwards them to the live generation's app, holding
    /// requests through a cut-over instead of refusing them. Without it, the app
    /// container publishes `app.ports` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<FrontSpec>,
    /// Previews of the next generation on a copy of live data (`gemctl preview`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewSpec>,
    /// The stateless application container.
    pub app: AppSpec,
    /// Services deployed, health-gated and rolled back with the app, each
    /// generation its own (workers, a cache…): name → service. They run on the
    /// private network only; the app (or the front) owns the public ports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceSpec>,
    /// The PostgreSQL container.
    pub db: DbSpec,
}

/// A service of the stack beside the app: generation n runs it as
/// `<name>-<n>` (or `<name>-<n>-<i>` with `replicas` above 1). A generation goes
/// live only when every service passes its checks; the old generation's services
/// stop before its app does (before the data is frozen and copied), so two
/// generations' workers never run at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Image with an explicit tag (or digest).
    pub image: ImageRef,
    /// The command, replacing the image's (`["bundle", "exec", "sidekiq"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The entrypoint, replacing the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Literal environment variables. Shown in plans; put secrets in `env_file`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// File of `KEY=value` lines passed to the container; never echoed anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    /// Name of the variable that tells the service its generation's database host.
    #[serde(default = "default_db_host_var")]
    pub db_host_var: String,
    /// Checks every replica must pass before the generation goes live, as the
    /// app's; `tcp` and `http` connect to the container on the private network
    /// (any container port: services publish none). Without checks, each replica
    /// must stay running for `settle`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthCheck>,
    /// How long a service without health checks must stay running to pass.
    #[serde(default = "default_settle")]
    pub settle: HumanDuration,
    /// How many containers run it (1 to 16).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Docker's restart policy: `unless-stopped` (default), `always`,
    /// `on-failure` or `no`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Services started (and checked) before this one, e.g. a worker after the
    /// cache it uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// How the container runs beyond its image and environment: user, limits,
    /// volumes (not copied between generations), operator labels, logging.
    #[serde(default, skip_serializing_if = "RunSpec::is_empty")]
    pub run: RunSpec,
}

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restarted when it exits, unless it was stopped (gemctl's own stops included).
    #[default]
    UnlessStopped,
    /// Always restarted, also after the engine restarts.
    Always,
    /// Restarted when it exits with a non-zero status.
    OnFailure,
    /// Never restarted: a one-off task (it must still pass its checks).
    No,
}

impl RestartPolicy {
    /// Docker's name for it.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::No => "no",
        }
    }
}

/// The front door: the public ports, forwarded to the live app over the private
/// network by an HAProxy container that gemctl configures and switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrontSpec {
    /// HAProxy image with an explicit tag: the official `haproxy:2.6` (or later) in
    /// production; `gemctl-test/haproxy:2.6` is built offline by `scripts/build-images`.
    pub image: ImageRef,
    /// The public ports: Docker's syntax, host side → the app's container port
    /// (`"80:8080"`), each `http` or `tcp`. With a front, `app.ports` stays empty.
    pub ports: Vec<FrontPort>,
    /// How long a request or connection that arrives while no app can take it (the
    /// freeze of a cut-over) is held before it gets the maintenance answer.
    #[serde(default = "default_front_hold")]
    pub hold: HumanDuration,
    /// How long connections already open to an app that is about to stop may
    /// finish (new ones are held meanwhile) before it is stopped.
    #[serde(default = "default_front_drain")]
    pub drain: HumanDuration,
    /// An HTML file (beside the spec, or an absolute path) answered with status 503
    /// to HTTP requests in maintenance and to requests held longer than `hold`;
    /// `{{message}}` in it is replaced by the maintenance message (as text). At most
    /// 8 kB: HAProxy answers from one buffer. Without it, a small built-in page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PathBuf>,
    /// The one line TCP ports answer in maintenance before they close; `{message}`
    /// is replaced by the maintenance message.
    #[serde(default = "default_front_line")]
    pub line: String,
    /// The page's text, read with the spec.
    #[serde(skip)]
    #[schemars(skip)]
    pub page_html: Option<String>,
}

/// The largest page the front answers with.
pub const FRONT_PAGE_MAX: usize = 8 * 1024;

fn default_front_line() -> String {
    "MAINT {message}".into()
}

/// One public port of the front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrontPort {
    /// Docker's port syntax: `[ip:]host_port:app_port`; the app's side is the
    /// container port the front forwards to.
    pub port: PortMapping,
    /// `http` (requests held and answered 503 with a page after `hold`) or `tcp`
    /// (connections held, closed after `hold`).
    pub mode: FrontMode,
}

/// How the front forwards a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FrontMode {
    /// HTTP/1.1 requests.
    Http,
    /// Plain TCP connections.
    Tcp,
}

impl fmt::Display for FrontMode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            FrontMode::Http => "http",
            FrontMode::Tcp => "tcp",
        })
    }
}

fn default_front_hold() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_front_drain() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// Alerts on failure, refusal, rollback, restore and failed scheduled backups,
/// once per incident, and `recovered` when a reconcile round runs clean after one.
/// Each receives a JSON document (the event — `failed`, `refused`, `rollback`,
/// `restore`, `backup_failed` or `recovered` —, the project, a message, and the
/// deployment report when there is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// A command (and its arguments) run with the JSON on standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// An `http://` or `https://` URL the JSON is POSTed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// A PEM file of the certificate authorities an `https://` webhook's
    /// certificate is checked against, instead of the built-in (Mozilla) roots:
    /// for a webhook behind a private CA. Relative paths are resolved against the
    /// spec file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_ca: Option<PathBuf>,
}

/// Backups of the live generation's databases (`gemctl backup`, and reconcile on a
/// schedule). Retention: with `keep`, only the newest `keep` backups stay; with
/// `max_age`, backups older than that go; with both, a backup must pass both. The
/// newest backup is never pruned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// Directory the backups are written to (put it on long-term storage).
    /// Default: `<storage>/backups`. Relative paths are resolved against the spec
    /// file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// How often `gemctl reconcile` takes a backup, e.g. `24h`. Without it,
    /// reconcile takes none (run `gemctl backup` yourself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<HumanDuration>,
    /// How many backups to keep (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Backups older than this are pruned, e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<HumanDuration>,
    /// Restore drills: proof that backups restore (`gemctl backups --drill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
}

/// Restore drills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    /// How often `gemctl reconcile` drills the newest backup not drilled yet,
    /// e.g. `24h` (a failed drill alerts once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<HumanDuration>,
    /// A query run on the restored copy (in the db's `POSTGRES_DB`) that must
    /// return at least one row, e.g. `select 1 from orders limit 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// Previews (`gemctl preview`): the spec's generation on a copy of live data,
/// for testers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewSpec {
    /// Where testers reach the preview's app, Docker's port syntax
    /// (`"127.0.0.1:19080:8080"`); other host ports than the public ones.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

/// How the first generation starts on a host that has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSpec {
    /// A backup made by `gemctl backup` (path to its `.tar`): the first generation's
    /// database is restored from it instead of starting empty. Its checksum file
    /// must sit next to it. Relative paths are resolved against the spec file's
    /// directory.
    pub from_backup: PathBuf,
}

/// The application container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Container name prefix: generation n runs as `<name>-<n>`.
    #[serde(default = "default_app_name")]
    pub name: String,
    /// Image with an explicit tag (or digest), e.g. `registry.example.com/gem:1.4.2`.
    pub image: ImageRef,
    /// Literal environment variables. Shown in plans; put secrets in `env_file`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// File of `KEY=value` lines passed to the container; never echoed anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    /// Public ports in Docker's syntax: `"80:8080"`, `"127.0.0.1:7000:7000"`, `"53:53/udp"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Name of the variable that tells the app its database host.
    #[serde(default = "default_db_host_var")]
    pub db_host_var: String,
    /// Health checks run before the new generation is exposed, all of which must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthCheck>,
    /// The command, replacing the image's (`["bundle", "exec", "puma"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// How the container runs beyond its image and environment: user, limits,
    /// volumes, operator labels, logging.
    #[serde(default, skip_serializing_if = "RunSpec::is_empty")]
    pub run: RunSpec,
}

/// The PostgreSQL container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DbSpec {
    /// Container name prefix: generation n runs as `<name>-<n>`.
    #[serde(default = "default_db_name")]
    pub name: String,
    /// Image with an explicit tag, e.g. `postgres:15`.
    pub image: ImageRef,
    /// The image's data directory, bind-mounted from `<storage>/<n>/pgdata`.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Literal environment (`POSTGRES_USER`, `POSTGRES_DB`…). Shown in plans.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// File of `KEY=value` lines (`POSTGRES_PASSWORD`…); never echoed anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    /// How data moves from the old generation's db to the new one.
    #[serde(default)]
    pub copy: CopyMode,
    /// How the new generation's data is checked against the old one's.
    #[serde(default)]
    pub verify: VerifyMode,
    /// Arguments for the PostgreSQL server (`["-c", "shared_buffers=256MB"]`),
    /// given to the image's entrypoint after `postgres`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// How the container runs beyond its image and environment: user, limits,
    /// volumes, operator labels, logging.
    #[serde(default, skip_serializing_if = "RunSpec::is_empty")]
    pub run: RunSpec,
}

/// How a container runs, beyond its image and environment; the same for the app
/// and the db. Volumes are mounted as they are: they are *not* copied from one
/// generation to the next (only the database's data is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The user (and group) the command runs as: `"1000"`, `"1000:1000"`, `"app"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Memory limit: bytes, or with a unit `k`, `m`, `g` (powers of 1024): `"512m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[bkmgBKMG]?$"), example = &"512m")]
    pub memory: Option<String>,
    /// CPU limit, in CPUs: `1.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Size of `/dev/shm` (as `memory`): PostgreSQL's parallel queries want more
    /// than Docker's 64m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[bkmgBKMG]?$"), example = &"256m")]
    pub shm_size: Option<String>,
    /// Host paths or named volumes: `"/srv/uploads:/app/uploads"`,
    /// `"cache:/tmp/cache:ro"`. Not copied between generations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// The operator's own labels, kept apart from gemctl's (`io.gemctl.*` is
    /// refused).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The log driver and its options (`{ driver: json-file, options: { max-size:
    /// 10m } }`); default: the engine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSpec>,
}

/// A container's logging.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// `json-file`, `local`, `journald`, `syslog`…
    pub driver: String,
    /// The driver's options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl RunSpec {
    /// Nothing set: the container runs as the image says.
    pub fn is_empty(&self) -> bool {
        *self == RunSpec::default()
    }

    /// The problems of these settings, each with its field under `at` (`app.run`).
    fn problems(&self, at: &str, bad: &mut impl FnMut(String, String)) {
        for (field, value) in [("memory", &self.memory), ("shm_size", &self.shm_size)] {
            if let Some(v) = value
                && parse_size(v).is_none()
            {
                bad(
                    format!("{at}.{field}"),
                    format!(
                        "{v:?} is not a size: bytes, or a number with k, m or g (\"512m\", \"2g\")"
                    ),
                );
            }
        }
        if let Some(c) = self.cpus
            && !(c > 0.0 && c <= 1024.0)
        {
            bad(
                format!("{at}.cpus"),
                format!("{c}: a number of CPUs above 0 (\"0.5\", \"2\")"),
            );
        }
        for (i, v) in self.volumes.iter().enumerate() {
            if let Err(why) = parse_volume(v) {
                bad(format!("{at}.volumes[{i}]"), format!("{v:?}: {why}"));
            }
        }
        for key in self.labels.keys() {
            if key.starts_with("io.gemctl.") {
                bad(
                    format!("{at}.labels"),
                    format!("{key:?}: io.gemctl.* labels are gemctl's own; choose another prefix"),
                );
            }
        }
        if let Some(log) = &self.log
            && log.driver.trim().is_empty()
        {
            bad(
                format!("{at}.log.driver"),
                "name the log driver (`json-file`, `local`, `journald`…)".into(),
            );
        }
    }
}

/// Bytes from `"512m"` (k, m, g: powers of 1024, as Docker reads them).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_lowercase()),
        _ => (t, 'b'),
    };
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor).filter(|b| *b > 0)
}

/// A volume: `(source, target, read_only)`; the source an absolute host path or
/// a volume name, the target an absolute path in the container.
pub fn parse_volume(text: &str) -> Result<(String, String, bool), String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, ro) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        [_, _, mode] => return Err(format!("the mode is {mode:?}: `ro` or `rw`")),
        _ => return Err("write it SOURCE:TARGET[:ro] (a host path or a volume name, then a path in the container)".into()),
    };
    let named = !source.is_empty()
        && source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !(source.starts_with('/') || named) {
        return Err(format!(
            "the source {source:?} is neither an absolute host path nor a volume name"
        ));
    }
    if !target.starts_with('/') {
        return Err(format!(
            "the target {target:?} must be an absolute path in the container"
        ));
    }
    Ok((source.to_string(), target.to_string(), ro))
}

/// How a new generation's database receives the previous one's data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// `stream` when the old generation's data and the db image are the same
    /// PostgreSQL major version, `dump` otherwise (or when either cannot be told).
    #[default]
    Auto,
    /// Streaming replication: the new db follows the old one while the app serves;
    /// the app is down only for the switch (about a second, whatever the size).
    /// Same PostgreSQL major version only; refused otherwise.
    Stream,
    /// `pg_dumpall` of the old db restored into the new one: every database and role.
    /// Works across major versions; the app is down for the length of the copy.
    Dump,
    /// No copy: the new generation's app runs on the previous generation's database
    /// (an app-only release, a hotfix). The new app starts beside the old one and
    /// takes over once healthy: no freeze, and rolling back to the previous
    /// generation is code-only (same data). The spec's `db` section must then
    /// describe that database unchanged.
    None,
}

/// How a copy is verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// `full` for a dump; for a stream, by construction (same system identifier,
    /// replayed past the old db's clean shutdown checkpoint, promoted, accepts a
    /// write), checked cheaply.
    #[default]
    Auto,
    /// Every table's exact row count and checksum compared with the source, in both
    /// modes (a stream then compares during the freeze).
    Full,
}

/// When images are pulled from a registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Never pull: every image must already be on the host.
    Never,
    /// Pull only images that are not on the host.
    #[default]
    Missing,
    /// Pull before every generation change.
    Always,
}

/// Which containers on the engine gemctl must recognise before it acts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every container on the engine belongs to this spec or matches `ignore`.
    #[default]
    Host,
    /// Only containers labelled with this project, or named like its containers.
    Project,
}

/// One health check: exactly one of `tcp`, `http`, `exec`, plus its timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Connect to a port, optionally send text, expect text in the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// GET a path and expect a status (and optionally a body match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// Run a command in the container; exit 0 means healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
    /// Time between probes.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Time one probe may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Grace time after start during which failures are expected.
    #[serde(default = "default_start_period")]
    pub start_period: HumanDuration,
    /// Give up (and roll back) when the check has not passed by then.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

/// The "telnet health report": connect, send, read a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// Container port (must be one of `app.ports`).
    pub port: u16,
    /// Text sent after connecting (escape `\n` as needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Text the reply must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Regular expression the reply must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_regex: Option<String>,
}

/// An HTTP GET.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Container port (must be one of `app.ports`).
    pub port: u16,
    /// Request path.
    #[serde(default = "default_http_path")]
    pub path: String,
    /// Expected status code.
    #[serde(default = "default_http_status")]
    pub status: u16,
    /// Regular expression the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A command run inside the app container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecProbe {
    /// The command and its arguments (no shell unless you call one).
    pub command: Vec<String>,
}

/// What kind of probe a check runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbeKind<'a> {
    /// See [`TcpProbe`].
    Tcp(&'a TcpProbe),
    /// See [`HttpProbe`].
    Http(&'a HttpProbe),
    /// See [`ExecProbe`].
    Exec(&'a ExecProbe),
}

impl HealthCheck {
    /// The probe this check runs; `None` only for a spec that failed validation.
    pub fn probe(&self) -> Option<ProbeKind<'_>> {
        match (&self.tcp, &self.http, &self.exec) {
            (Some(t), None, None) => Some(ProbeKind::Tcp(t)),
            (None, Some(h), None) => Some(ProbeKind::Http(h)),
            (None, None, Some(e)) => Some(ProbeKind::Exec(e)),
            _ => None,
        }
    }

    /// The container port the probe connects to, if any.
    pub fn port(&self) -> Option<u16> {
        match self.probe()? {
            ProbeKind::Tcp(t) => Some(t.port),
            ProbeKind::Http(h) => Some(h.port),
            ProbeKind::Exec(_) => None,
        }
    }
}

fn default_app_name() -> String {
    "gem".into()
}
fn default_db_name() -> String {
    "db".into()
}
fn default_db_host_var() -> String {
    "GEM_DB_HOST".into()
}
fn default_data_dir() -> String {
    "/var/lib/postgresql/data".into()
}
fn default_settle() -> HumanDuration {
    HumanDuration(Duration::from_secs(3))
}
fn default_replicas() -> u32 {
    1
}
fn default_http_path() -> String {
    "/".into()
}
fn default_http_status() -> u16 {
    200
}
fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn default_start_period() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
fn default_deadline() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// A YAML scalar as a newtype's check sees it.
enum Scalar {
    Int(i64),
    Float(f64),
    Str(String),
    Other(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Float(n) => write!(f, "{n}"),
            Scalar::Str(s) => write!(f, "{s:?}"),
            Scalar::Other(s) => f.write_str(s),
        }
    }
}

/// Deserialises a scalar and checks it *inside* the deserializer's visit, so
/// serde_yaml reports the error at the scalar's own line and field path.
fn scalar<'de, D, T>(d: D, check: impl FnOnce(Scalar) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F>(F);
    impl<'de, T, F: FnOnce(Scalar) -> Result<T, String>> serde::de::Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a scalar")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            (self.0)(Scalar::Int(v)).map_err(E::custom)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            (self.0)(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX))).map_err(E::custom)
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
            (self.0)(Scalar::Float(v)).map_err(E::custom)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(Scalar::Str(v.to_string())).map_err(E::custom)
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<T, E> {
            (self.0)(Scalar::Other(v.to_string())).map_err(E::custom)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<T, E> {
            (self.0)(Scalar::Other("an empty value".into())).map_err(E::custom)
        }
    }
    d.deserialize_any(V(check))
}

/// A generation number: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[schemars(transparent)]
pub struct Generation(#[schemars(range(min = 1))] pub u64);

impl<'de> Deserialize<'de> for Generation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |v| match v {
            Scalar::Int(n) if n >= 1 => Ok(Generation(n as u64)),
            other => Err(format!(
                "{other} is not a generation: generations are positive integers (1, 2, 3…)"
            )),
        })
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many previous generations are kept: at least 1, so a rollback is always possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(transparent)]
pub struct Retain(#[schemars(range(min = 1))] pub u32);

impl Default for Retain {
    fn default() -> Self {
        Retain(2)
    }
}

impl<'de> Deserialize<'de> for Retain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |v| match v {
            Scalar::Int(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(Retain(n as u32)),
            other => Err(format!(
                "{other} generations cannot be retained: keep at least 1 so there is \
                 always a generation to roll back to (e.g. retain: 2)"
            )),
        })
    }
}

/// The schema's pattern for a duration: what `humantime` parses, a number (a
/// fraction allowed) and a unit, repeated (`1h 30m`), e.g. `"5 sekunden"` fails.
/// Written for both ECMA-262 (editors) and the `regex` crate (the tests).
pub const DURATION_PATTERN: &str = "^\\s*([0-9][0-9\\s]*(\\.[0-9\\s]*[0-9][0-9\\s]*)?\
     (nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|\
     minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|\
     months|month|M|years|year|yrs|yr|y)\\s*)+$";

/// The schema's pattern for an image reference, the rule [`ImageRef`] checks: no
/// whitespace, and a digest (`@sha256:…`) or a tag on the last path segment that is
/// not `latest` (spelt out, as the `regex` crate has no look-ahead).
pub const IMAGE_PATTERN: &str = "^(\\S*@\\S*|([^\\s/@]*/)*[^\\s/@:]*:(\
     [^\\s/@]{1,5}|[^\\s/@]{7,}|[^\\s/@l][^\\s/@]{5}|l[^\\s/@a][^\\s/@]{4}|\
     la[^\\s/@t][^\\s/@]{3}|lat[^\\s/@e][^\\s/@]{2}|late[^\\s/@s][^\\s/@]|lates[^\\s/@t]))$";

/// One port number in [`PORT_PATTERN`]: 1–65535, leading zeros allowed (as `u16`
/// parsing allows them).
macro_rules! port_number {
    () => {
        "0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
    };
}

/// One IPv4 octet in [`PORT_PATTERN`], without leading zeros (as `Ipv4Addr` takes it).
macro_rules! ipv4_octet {
    () => {
        "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    };
}

/// The schema's pattern for a port mapping, the syntax [`PortMapping::parse`]
/// takes: `[ipv4:][host_port]:container_port[/tcp|/udp]`, ports 1–65535.
pub const PORT_PATTERN: &str = concat!(
    "^((",
    ipv4_octet!(),
    "\\.){3}",
    ipv4_octet!(),
    ":(",
    port_number!(),
    ")?:|",
    port_number!(),
    ":)?",
    port_number!(),
    "(/(tcp|udp))?$"
);

/// A duration written the humantime way: `500ms`, `5s`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(transparent)]
pub struct HumanDuration(
    #[schemars(
        with = "String",
        regex(pattern = DURATION_PATTERN),
        extend("examples" = ["5s", "500ms", "2m", "1h 30m", "24h", "30d"])
    )]
    pub Duration,
);

impl HumanDuration {
    /// The duration itself.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |v| match v {
            Scalar::Str(text) => {
                humantime::parse_duration(&text)
                    .map(HumanDuration)
                    .map_err(|_| {
                        format!(
                            "{text:?} is not a duration (try {:?})",
                            suggest_duration(&text)
                        )
                    })
            }
            Scalar::Int(n) => Err(format!("{n} is not a duration: give a unit (try \"{n}s\")")),
            other => Err(format!(
                "{other} is not a duration (try \"5s\", \"500ms\" or \"2m\")"
            )),
        })
    }
}

/// Best guess at what a mistyped duration meant: `"5 sec"` → `"5s"`.
fn suggest_duration(text: &str) -> String {
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    let letters: String = text
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_lowercase();
    let unit = match letters.as_str() {
        l if l.starts_with("ms") || l.starts_with("milli") => "ms",
        l if l.starts_with("mi") || l == "m" => "m",
        l if l.starts_with('h') => "h",
        l if l.starts_with('d') => "d",
        _ => "s",
    };
    if digits.is_empty() {
        "5s".into()
    } else {
        format!("{digits}{unit}")
    }
}

/// An image reference that pins a version: `name:tag` or `name@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(transparent)]
pub struct ImageRef(
    #[schemars(
        regex(pattern = IMAGE_PATTERN),
        extend("examples" = [
            "registry.example.com/gem:2.14.1",
            "postgres:15.8",
            "haproxy:2.6",
            "registry.example.com:5000/team/gem@sha256:4c1f0a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a"
        ])
    )]
    pub String,
);

impl ImageRef {
    /// The reference as Docker takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(s: &str) -> Result<(), String> {
        if s.is_empty() || s.chars().any(char::is_whitespace) {
            return Err(format!("{s:?} is not an image reference"));
        }
        if s.contains('@') {
            return Ok(());
        }
        let last = s.rsplit('/').next().unwrap_or(s);
        match last.split_once(':') {
            Some((_, tag)) if !tag.is_empty() && tag != "latest" => Ok(()),
            Some((name, "latest")) => Err(format!(
                "{s:?} uses the moving tag \"latest\": pin a version (e.g. \"{name}:1.2.3\") \
                 so each generation runs what it was deployed with"
            )),
            _ => Err(format!(
                "{s:?} has no tag: pin a version, e.g. \"{s}:1.2.3\" \
                 (an untagged image means \"latest\", which moves)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |v| match v {
            Scalar::Str(s) => ImageRef::check(&s).map(|_| ImageRef(s)),
            other => Err(format!("{other} is not an image reference")),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A port mapping in Docker's syntax: `[ipv4:][host_port:]container_port[/tcp|/udp]`.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(transparent)]
pub struct PortMapping {
    /// The text as written in the spec.
    #[schemars(
        with = "String",
        regex(pattern = PORT_PATTERN),
        extend("examples" = ["80:8080", "127.0.0.1:7000:7000", "127.0.0.1::8080", "53:53/udp", "8080"])
    )]
    pub raw: String,
    /// Host address to bind, if restricted.
    #[schemars(skip)]
    pub host_ip: Option<String>,
    /// Host port; `None` lets Docker choose.
    #[schemars(skip)]
    pub host_port: Option<u16>,
    /// Port inside the container.
    #[schemars(skip)]
    pub container_port: u16,
    /// `tcp` or `udp`.
    #[schemars(skip)]
    pub proto: String,
}

impl PortMapping {
    /// The host address and port it binds, when it names a host port (any address:
    /// `None`).
    pub fn host_binding(&self) -> Option<(Option<std::net::IpAddr>, u16)> {
        Some((
            self.host_ip.as_deref().and_then(|ip| ip.parse().ok()),
            self.host_port?,
        ))
    }

    /// Parses Docker's port syntax.
    pub fn parse(raw: &str) -> Result<PortMapping, String> {
        let bad = || {
            format!(
                "{raw:?} is not a port mapping (try \"8080:80\", \"127.0.0.1:8080:80\" or \"53:53/udp\")"
            )
        };
        let (spec, proto) = match raw.rsplit_once('/') {
            Some((s, p @ ("tcp" | "udp"))) => (s, p.to_string()),
            Some(_) => return Err(bad()),
            None => (raw, "tcp".to_string()),
        };
        // Digits only: `u16` parsing would take "+80".
        let port = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u16>().ok())
                .flatten()
                .filter(|p| *p > 0)
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host_ip, host_port, container) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(port(h).ok_or_else(bad)?), *c),
            [ip, h, c] => {
                // Docker takes an address here; anything else would silently
                // listen on every address.
                if ip.parse::<std::net::Ipv4Addr>().is_err() {
                    return Err(format!(
                        "{raw:?} is not a port mapping: {ip:?} is not an IPv4 address \
                         (try \"127.0.0.1:8080:80\")"
                    ));
                }
                let hp = if h.is_empty() {
                    None
                } else {
                    Some(port(h).ok_or_else(bad)?)
                };
                (Some(ip.to_string()), hp, *c)
            }
            _ => return Err(bad()),
        };
        Ok(PortMapping {
            raw: raw.to_string(),
            host_ip,
            host_port,
            container_port: port(container).ok_or_else(bad)?,
            proto,
        })
    }
}

impl Serialize for PortMapping {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for PortMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, |v| match v {
            Scalar::Str(s) => PortMapping::parse(&s),
            Scalar::Int(n) => Err(format!(
                "{n} is a number, not a port mapping: quote it, e.g. \"{n}:{n}\" to publish \
                 host port {n} (a bare \"{n}\" lets Docker pick a random host port)"
            )),
            other => Err(format!("{other} is not a port mapping (try \"8080:80\")")),
        })
    }
}

/// Whether loading a spec also checks the env files it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFiles {
    /// Each must be a readable UTF-8 file of `KEY=value` lines.
    Check,
    /// Not read: for a machine without the secrets (CI, planning offline).
    Skip,
}

impl Spec {
    /// Reads, parses and validates a spec file and its env files. Relative paths
    /// in the spec are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Spec, SpecErrors> {
        Spec::load_with(path, EnvFiles::Check)
    }

    /// As [`Spec::load`], checking the env files or not.
    pub fn load_with(path: &Path, env_files: EnvFiles) -> Result<Spec, SpecErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecErrors::one(SpecError::file(path, format!("cannot read the spec: {e}")))
        })?;
        Spec::parse_with(path, &text, env_files)
    }

    /// Parses and validates spec text and its env files; `path` names it in errors
    /// and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecErrors> {
        Spec::parse_with(path, text, EnvFiles::Check)
    }

    /// As [`Spec::parse`], checking the env files or not.
    pub fn parse_with(path: &Path, text: &str, env_files: EnvFiles) -> Result<Spec, SpecErrors> {
        if text.trim().is_empty() {
            return Err(SpecErrors::one(SpecError::file(
                path,
                "the spec is empty (see specs/prod.yaml for an annotated example)".into(),
            )));
        }
        let positions = Positions::of(text);
        let (mut spec, mut errors, replaced, removed) = match serde_yaml::from_str::<Spec>(text) {
            Ok(spec) => (spec, Vec::new(), Vec::new(), RemovedItems::default()),
            Err(e) => {
                let first = SpecError::from_yaml(path, &e, &positions.fields);
                let found = recover::<Spec>(path, text, &positions, first);
                match found.value {
                    Some(spec) => (spec, found.errors, found.replaced, found.removed),
                    None => return Err(SpecErrors(found.errors)),
                }
            }
        };
        // A check of a value that was left out or stood in for would report what
        // is not in the file; so would a health port, checked against app.ports.
        let ports_replaced = replaced.iter().any(|r| within(r, &["app.ports".into()]));
        let health_port =
            |field: &str| field.starts_with("app.health[") && field.ends_with(".port");
        let moot = |field: &str| within(field, &replaced) || (ports_replaced && health_port(field));
        for (field, message) in spec.problems() {
            let field = removed.file_indices(&field);
            if !moot(&field) {
                let message = removed.file_indices(&message);
                errors.push(SpecError::at_field(
                    path,
                    &positions.fields,
                    &field,
                    message,
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut spec.storage);
        if let Some(p) = spec.app.env_file.as_mut() {
            resolve(p)
        }
        if let Some(p) = spec.db.env_file.as_mut() {
            resolve(p)
        }
        for svc in spec.services.values_mut() {
            if let Some(p) = svc.env_file.as_mut() {
                resolve(p)
            }
        }
        if let Some(p) = spec.backup.as_mut().and_then(|b| b.dir.as_mut()) {
            resolve(p)
        }
        if let Some(b) = spec.bootstrap.as_mut() {
            resolve(&mut b.from_backup)
        }
        if let Some(p) = spec.notify.as_mut().and_then(|n| n.webhook_ca.as_mut()) {
            resolve(p)
        }
        if let Some(front) = spec.front.as_mut()
            && let Some(p) = front.page.as_mut()
        {
            resolve(p);
            match read_page(p) {
                Ok(html) => front.page_html = Some(html),
                Err(message) => {
                    errors.push(SpecError::at_value(path, &positions, "front.page", message))
                }
            }
        }
        if !moot("storage")
            && let Some(message) = storage_problem(&spec.storage)
        {
            errors.push(SpecError::at_value(path, &positions, "storage", message));
        }
        if env_files == EnvFiles::Check {
            let service_fields: Vec<(String, Option<&PathBuf>)> = spec
                .services
                .iter()
                .map(|(name, svc)| (format!("services.{name}.env_file"), svc.env_file.as_ref()))
                .collect();
            let named: Vec<(&str, &PathBuf)> = [
                ("app.env_file", spec.app.env_file.as_ref()),
                ("db.env_file", spec.db.env_file.as_ref()),
            ]
            .into_iter()
            .chain(service_fields.iter().map(|(f, p)| (f.as_str(), *p)))
            .filter_map(|(field, file)| Some((field, file?)))
            .filter(|(field, _)| !moot(field))
            .collect();
            errors.extend(env_file_errors(path, &positions, &named));
        }
        // In the spec's order, then the env files' own problems, file by file.
        let (mut own, env): (Vec<SpecError>, Vec<SpecError>) =
            errors.into_iter().partition(|e| e.file == path);
        own.sort_by_key(|e| (e.position.is_none(), e.position));
        own.extend(env);
        if own.is_empty() {
            Ok(spec)
        } else {
            Err(SpecErrors(own))
        }
    }

    /// Where backups are written: `backup.dir`, else `<storage>/backups`.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup
            .as_ref()
            .and_then(|b| b.dir.clone())
            .unwrap_or_else(|| self.storage.join("backups"))
    }

    /// The network the generation's containers share.
    pub fn network_name(&self) -> String {
        self.network
            .clone()
            .unwrap_or_else(|| format!("{}-net", self.project))
    }

    /// The checks that span fields, as (field path, message) pairs.
    /// Every public port with the field it is written in: the front's when there is
    /// a front, else the app's.
    fn public_ports(&self) -> Vec<(String, &PortMapping)> {
        let app = self
            .app
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("app.ports[{i}]"), p));
        let front = self.front.iter().flat_map(|f| {
            f.ports
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("front.ports[{i}].port"), &p.port))
        });
        app.chain(front).collect()
    }

    fn front_problems(&self, front: &FrontSpec, bad: &mut impl FnMut(String, String)) {
        if !self.app.ports.is_empty() {
            bad(
                "app.ports".into(),
                "with a `front:`, the front owns the public ports: move these to `front.ports` \
                 (e.g. `- { port: \"80:8080\", mode: http }`) and leave `app.ports` out"
                    .into(),
            );
        }
        if front.ports.is_empty() {
            bad(
                "front.ports".into(),
                "a front needs at least one port (e.g. `- { port: \"80:8080\", mode: http }`)"
                    .into(),
            );
        }
        for (i, p) in front.ports.iter().enumerate() {
            if p.port.proto != "tcp" {
                bad(
                    format!("front.ports[{i}].port"),
                    format!(
                        "{:?}: the front forwards TCP (and HTTP over it) only",
                        p.port.raw
                    ),
                );
            }
            if p.port.host_port.is_none() {
                bad(
                    format!("front.ports[{i}].port"),
                    format!(
                        "{:?} names no host port: a public port must be fixed (e.g. \"80:{}\")",
                        p.port.raw, p.port.container_port
                    ),
                );
            }
            if let Some(first) = front.ports[..i]
                .iter()
                .position(|q| q.port.container_port == p.port.container_port)
            {
                bad(
                    format!("front.ports[{i}].port"),
                    format!(
                        "the app's port {} is already forwarded by front.ports[{first}]: the \
                         front listens on the app's port number, so each app port may appear once",
                        p.port.container_port
                    ),
                );
            }
        }
        if front.line.contains(['\n', '\r']) {
            bad(
                "front.line".into(),
                "the TCP maintenance answer is one line: remove the line break".into(),
            );
        }
        if front.hold.get() < Duration::from_secs(1) {
            bad(
                "front.hold".into(),
                format!(
                    "{}: the front retries once a second, so it holds for at least 1s",
                    humantime::format_duration(front.hold.get())
                ),
            );
        }
    }

    /// The services' own problems: names that could be taken for another
    /// container's, dependencies, counts, their run settings and checks.
    fn service_problems(&self, bad: &mut impl FnMut(String, String)) {
        let reserved = [
            ("app.name", self.app.name.clone()),
            ("db.name", self.db.name.clone()),
            ("the copy containers", format!("{}-copy", self.project)),
            ("the backup containers", format!("{}-backup", self.project)),
            ("the front door", crate::front::container_name(self)),
            (
                "the preview's containers",
                format!("{}-preview", self.project),
            ),
            (
                "a deploy check's containers",
                format!("{}-check", self.project),
            ),
            (
                "a restore drill's containers",
                format!("{}-drill", self.project),
            ),
        ];
        for (name, svc) in &self.services {
            let at = format!("services.{name}");
            let segments_ok = !name.is_empty()
                && name.split('-').all(|seg| {
                    seg.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && seg
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !segments_ok {
                bad(
                    at.clone(),
                    format!(
                        "{name:?} is not a valid service name: lowercase letters, digits, '_' \
                         and '-', each part after a '-' starting with a letter (its containers \
                         are named {name}-<generation>-<replica>)"
                    ),
                );
            }
            if ["app", "db", "front"].contains(&name.as_str()) {
                bad(
                    at.clone(),
                    format!(
                        "{name:?} names a role of its own (`gemctl logs --role {name}`): \
                         choose another service name"
                    ),
                );
            }
            for (what, other) in &reserved {
                let clash = name == other
                    || other.starts_with(&format!("{name}-"))
                    || name.starts_with(&format!("{other}-"));
                if clash {
                    bad(
                        at.clone(),
                        format!(
                            "{name:?} could be taken for {what} ({other:?}): choose a service \
                             name that neither equals nor starts another container's name"
                        ),
                    );
                }
            }
            if !(1..=16).contains(&svc.replicas) {
                bad(
                    format!("{at}.replicas"),
                    format!("{}: between 1 and 16 replicas", svc.replicas),
                );
            }
            if svc.db_host_var.is_empty() || svc.db_host_var.contains('=') {
                bad(
                    format!("{at}.db_host_var"),
                    format!("{:?} is not an environment variable name", svc.db_host_var),
                );
            }
            if svc.health.is_empty() && svc.settle.get().is_zero() {
                bad(
                    format!("{at}.settle"),
                    "a service without health checks must stay running for a while to pass: \
                     settle must be longer than 0s (e.g. settle: 3s)"
                        .into(),
                );
            }
            for (i, dep) in svc.depends_on.iter().enumerate() {
                if dep == name {
                    bad(
                        format!("{at}.depends_on[{i}]"),
                        format!("{name} cannot depend on itself"),
                    );
                } else if !self.services.contains_key(dep) {
                    let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
                    bad(
                        format!("{at}.depends_on[{i}]"),
                        format!("{dep:?} is not a service of this spec (services: {known:?})"),
                    );
                }
            }
            svc.run.problems(&format!("{at}.run"), bad);
            health_problems(&format!("{at}.health"), &svc.health, None, bad);
        }
        if let Err(cycle) = self.service_order() {
            bad(
                format!("services.{}.depends_on", cycle[0]),
                format!(
                    "the services depend on each other in a circle ({}): one must start first",
                    cycle.join(" → ")
                ),
            );
        }
    }

    /// The services in the order they start: each after those it depends on, else
    /// by name. `Err`: the names of a dependency circle.
    pub fn service_order(&self) -> Result<Vec<String>, Vec<String>> {
        let mut order: Vec<String> = Vec::new();
        let mut left: Vec<&String> = self.services.keys().collect();
        while !left.is_empty() {
            let next = left.iter().position(|name| {
                self.services[*name]
                    .depends_on
                    .iter()
                    .filter(|d| self.services.contains_key(*d) && *d != *name)
                    .all(|d| order.contains(d))
            });
            match next {
                Some(i) => order.push(left.remove(i).clone()),
                None => return Err(left.into_iter().cloned().collect()),
            }
        }
        Ok(order)
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |field: String, msg: String| out.push((field, msg));
        self.app.run.problems("app.run", &mut bad);
        self.db.run.problems("db.run", &mut bad);

        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        for (field, value) in [
            ("project", &self.project),
            ("app.name", &self.app.name),
            ("db.name", &self.db.name),
        ] {
            if !name_ok(value) {
                bad(
                    field.into(),
                    format!(
                        "{value:?} is not a valid name: use lowercase letters, digits, '-' and '_', \
                         starting with a letter or digit"
                    ),
                );
            }
        }
        if self.app.name == self.db.name {
            bad(
                "db.name".into(),
                format!(
                    "{:?} is also app.name: the app and the db need different container names",
                    self.db.name
                ),
            );
        }
        if let Some(net) = &self.network
            && net.is_empty()
        {
            bad("network".into(), "the network name is empty".into());
        }
        if self.storage.as_os_str().is_empty() {
            bad(
                "storage".into(),
                "the storage root is empty (e.g. storage: /var/lib/gemctl/prod)".into(),
            );
        }
        if self.storage.starts_with("~") {
            bad(
                "storage".into(),
                "gemctl does not expand `~`: write the whole path (e.g. /home/ops/gemctl)".into(),
            );
        }
        for (field, var) in [("app.db_host_var", &self.app.db_host_var)] {
            if var.is_empty() || var.contains('=') {
                bad(
                    field.into(),
                    format!("{var:?} is not an environment variable name"),
                );
            }
        }
        let envs = [
            ("app.env".to_string(), &self.app.env),
            ("db.env".into(), &self.db.env),
        ]
        .into_iter()
        .chain(
            self.services
                .iter()
                .map(|(name, svc)| (format!("services.{name}.env"), &svc.env)),
        );
        for (field, env) in envs {
            for (key, value) in env {
                if key.is_empty() || key.contains('=') || !key.chars().all(|c| c.is_ascii_graphic())
                {
                    bad(
                        format!("{field}.{key}"),
                        format!(
                            "{key:?} is not an environment variable name \
                             (printable ASCII, no space or `=`)"
                        ),
                    );
                }
                // A line break is allowed here, unlike in an env file: a YAML
                // block scalar is how a multi-line value (a certificate) is written.
                if let Some((at, c)) = value
                    .chars()
                    .enumerate()
                    .find(|(_, c)| *c != '\n' && crate::env_file::forbidden(*c))
                {
                    bad(
                        format!("{field}.{key}"),
                        format!(
                            "the value contains {} at character {}: Docker cannot pass it to \
                             the container (the value is not shown)",
                            crate::env_file::describe(c),
                            at + 1
                        ),
                    );
                }
            }
        }
        if !self.db.data_dir.starts_with('/') {
            bad(
                "db.data_dir".into(),
                format!(
                    "{:?} must be an absolute path inside the container",
                    self.db.data_dir
                ),
            );
        }
        if let Some(b) = &self.backup {
            if b.keep == Some(0) {
                bad(
                    "backup.keep".into(),
                    "keep: 0 would delete every backup: keep at least 1 (e.g. keep: 14), \
                     or leave it out to prune by max_age only"
                        .into(),
                );
            }
            if b.every.is_some_and(|d| d.get().is_zero()) {
                bad(
                    "backup.every".into(),
                    "a backup every 0s is not a schedule (e.g. every: 24h)".into(),
                );
            }
            if b.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
                bad("backup.dir".into(), "the backup directory is empty".into());
            }
        }
        if let Some(n) = &self.notify {
            if n.command.as_ref().is_some_and(Vec::is_empty) {
                bad("notify.command".into(), "the command is empty".into());
            }
            if let Some(url) = &n.webhook
                && !url.starts_with("http://")
                && !url.starts_with("https://")
            {
                bad(
                    "notify.webhook".into(),
                    format!("{url:?}: a webhook is an http:// or https:// URL"),
                );
            }
            if n.webhook_ca.is_some()
                && !n
                    .webhook
                    .as_ref()
                    .is_some_and(|u| u.starts_with("https://"))
            {
                bad(
                    "notify.webhook_ca".into(),
                    "a CA file is for an https:// webhook, and there is none".into(),
                );
            }
        }
        for (i, pattern) in self.ignore.iter().enumerate() {
            if pattern.is_empty() {
                bad(
                    format!("ignore[{i}]"),
                    "an empty pattern matches nothing".into(),
                );
            }
        }

        // Ports: no two mappings may claim the same host port and protocol on
        // overlapping addresses; no address (or 0.0.0.0, ::) means every address.
        let every = |ip: &Option<String>| {
            matches!(ip.as_deref(), None | Some("" | "0.0.0.0" | "::" | "[::]"))
        };
        let public = self.public_ports();
        for (i, (at, p)) in public.iter().enumerate() {
            let Some(hp) = p.host_port else { continue };
            let first = public[..i].iter().position(|(_, q)| {
                q.host_port == Some(hp)
                    && q.proto == p.proto
                    && (every(&q.host_ip) || every(&p.host_ip) || q.host_ip == p.host_ip)
            });
            if let Some(first) = first {
                let ip = if every(&p.host_ip) {
                    "every address".to_string()
                } else {
                    p.host_ip.clone().unwrap_or_default()
                };
                bad(
                    at.clone(),
                    format!(
                        "host port {hp}/{} on {ip} is already taken by {} ({:?}); \
                         a host port may appear once (a mapping without an address, or with \
                         0.0.0.0, listens on every address)",
                        p.proto, public[first].0, public[first].1.raw
                    ),
                );
            }
        }
        if let Some(front) = &self.front {
            self.front_problems(front, &mut bad);
        }
        if let Some(preview) = &self.preview {
            for (i, p) in preview.ports.iter().enumerate() {
                if p.host_port.is_none() {
                    bad(
                        format!("preview.ports[{i}]"),
                        format!(
                            "{:?} names no host port: testers need a fixed one (e.g. \
                             \"127.0.0.1:19080:{}\")",
                            p.raw, p.container_port
                        ),
                    );
                }
                let taken = public.iter().find(|(_, q)| {
                    q.host_port.is_some() && q.host_port == p.host_port && q.proto == p.proto
                });
                if let Some((at, q)) = taken {
                    bad(
                        format!("preview.ports[{i}]"),
                        format!(
                            "host port {} is already {at} ({:?}): a preview needs host ports \
                             of its own",
                            p.host_port.unwrap_or_default(),
                            q.raw
                        ),
                    );
                }
            }
        }

        let exposed: Vec<u16> = public
            .iter()
            .filter(|(_, p)| p.proto == "tcp")
            .map(|(_, p)| p.container_port)
            .collect();
        health_problems("app.health", &self.app.health, Some(&exposed), &mut bad);
        self.service_problems(&mut bad);
        out
    }
}

/// The problems of a list of health checks written at `field` (`app.health`);
/// `exposed`: the container ports a tcp or http check may use (`None`: any).
fn health_problems(
    field: &str,
    checks: &[HealthCheck],
    exposed: Option<&[u16]>,
    bad: &mut impl FnMut(String, String),
) {
    for (i, check) in checks.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let kinds = [
            check.tcp.is_some(),
            check.http.is_some(),
            check.exec.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            bad(
                at.clone(),
                format!("a check needs exactly one of `tcp`, `http` or `exec` (found {kinds})"),
            );
        }
        if let Some(port) = check.port()
            && let Some(exposed) = exposed
            && !exposed.contains(&port)
        {
            let kind = if check.tcp.is_some() { "tcp" } else { "http" };
            bad(
                format!("{at}.{kind}.port"),
                format!(
                    "port {port} is not among app.ports (container ports: {exposed:?}): \
                     the health port must be exposed so gemctl can reach it"
                ),
            );
        }
        for (name, d) in [
            ("interval", check.interval),
            ("timeout", check.timeout),
            ("deadline", check.deadline),
        ] {
            if d.get().is_zero() {
                bad(
                    format!("{at}.{name}"),
                    format!("{name} must be longer than 0s"),
                );
            }
        }
        if check.timeout.get() > check.deadline.get() {
            bad(
                format!("{at}.timeout"),
                format!(
                    "a probe timeout of {} is longer than the deadline of {}",
                    humantime::format_duration(check.timeout.get()),
                    humantime::format_duration(check.deadline.get())
                ),
            );
        }
        if let Some(tcp) = &check.tcp
            && let Some(re) = &tcp.expect_regex
            && let Err(e) = regex::Regex::new(re)
        {
            bad(
                format!("{at}.tcp.expect_regex"),
                format!("not a regular expression: {e}"),
            );
        }
        if let Some(http) = &check.http {
            if let Some(re) = &http.body
                && let Err(e) = regex::Regex::new(re)
            {
                bad(
                    format!("{at}.http.body"),
                    format!("not a regular expression: {e}"),
                );
            }
            if !http.path.starts_with('/') {
                bad(
                    format!("{at}.http.path"),
                    format!("{:?} must start with '/'", http.path),
                );
            }
            if !(100..=599).contains(&http.status) {
                bad(
                    format!("{at}.http.status"),
                    format!("{} is not an HTTP status", http.status),
                );
            }
        }
        if let Some(exec) = &check.exec
            && exec.command.is_empty()
        {
            bad(format!("{at}.exec.command"), "the command is empty".into());
        }
    }
}

/// Directories gemctl must never use as its storage root: it keeps one directory
/// per generation in it and deletes those of old generations.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/tmp",
];

/// Why the (resolved) storage root is unsafe, if it is.
fn storage_problem(storage: &Path) -> Option<String> {
    let absolute = std::path::absolute(storage).unwrap_or_else(|_| storage.to_path_buf());
    let mut clean = PathBuf::from("/");
    for part in absolute.components() {
        match part {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::Normal(p) => clean.push(p),
            _ => {}
        }
    }
    let real = std::fs::canonicalize(&clean).unwrap_or_else(|_| clean.clone());
    let system = |p: &Path| SYSTEM_DIRS.iter().any(|d| p == Path::new(d));
    if !system(&clean) && !system(&real) {
        return None;
    }
    let shown = if real != clean {
        format!("{} (which is {})", clean.display(), real.display())
    } else {
        clean.display().to_string()
    };
    Some(format!(
        "the storage root is {shown}: gemctl keeps each generation's data in \
         <storage>/<n>/ and deletes old generations there, so it needs a directory of \
         its own, e.g. storage: /var/lib/gemctl/<project>"
    ))
}

/// How many problems of one env file are listed before the rest are counted.
const ENV_FILE_PROBLEMS_SHOWN: usize = 10;

/// The problems of each env file the spec names: the file itself (missing, a
/// directory, unreadable) at the spec's field, its lines at the file's line and
/// column. A file named twice is read once.
/// The maintenance page's text, or why it cannot be the page.
fn read_page(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > FRONT_PAGE_MAX {
        return Err(format!(
            "{}: {} bytes; HAProxy answers from one buffer, so the page must stay under {} \
             bytes (link images and styles instead of inlining them)",
            path.display(),
            bytes.len(),
            FRONT_PAGE_MAX
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{}: is not UTF-8 text", path.display()))
}

fn env_file_errors(
    spec: &Path,
    positions: &Positions,
    named: &[(&str, &PathBuf)],
) -> Vec<SpecError> {
    let mut out = Vec::new();
    let mut done: Vec<&PathBuf> = Vec::new();
    for (field, file) in named {
        let whole = |message: String| {
            SpecError::at_value(
                spec,
                positions,
                field,
                format!("{}: {message}", file.display()),
            )
        };
        match std::fs::metadata(file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(whole(
                    "no such file (a relative path is read from the spec's directory)".into(),
                ));
                continue;
            }
            Ok(m) if m.is_dir() => {
                out.push(whole(
                    "is a directory, not a file of KEY=value lines".into(),
                ));
                continue;
            }
            Ok(m) if !m.is_file() => {
                out.push(whole("is not a regular file".into()));
                continue;
            }
            _ => {}
        }
        if done.contains(file) {
            continue;
        }
        done.push(file);
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) => {
                out.push(whole(format!("cannot be read: {e}")));
                continue;
            }
        };
        let users: Vec<&str> = named
            .iter()
            .filter(|(_, f)| f == file)
            .map(|(f, _)| *f)
            .collect();
        let problems = crate::env_file::problems(&bytes);
        for p in problems.iter().take(ENV_FILE_PROBLEMS_SHOWN) {
            out.push(SpecError {
                file: file.to_path_buf(),
                position: Some((p.line, p.column)),
                field: Some(users.join(", ")),
                message: p.message.clone(),
            });
        }
        if problems.len() > ENV_FILE_PROBLEMS_SHOWN {
            out.push(SpecError {
                file: file.to_path_buf(),
                position: None,
                field: Some(users.join(", ")),
                message: format!(
                    "and {} more problems: is this an env file of KEY=value lines?",
                    problems.len() - ENV_FILE_PROBLEMS_SHOWN
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Spec::parse_with(Path::new("/specs/s.yaml"), text, EnvFiles::Skip) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const REST: &str = "app: { image: \"a:1\" }\ndb: { image: \"postgres:15\" }\n";

    #[test]
    fn storage_is_resolved_then_refused_when_it_is_a_system_directory() {
        assert!(storage_problem(Path::new("/var/lib/gemctl/x")).is_none());
        assert!(storage_problem(Path::new("/srv/shop")).is_none());
        for bad in ["/", "/etc", "/var/lib/../../usr", "/tmp/.", "/home/"] {
            assert!(storage_problem(Path::new(bad)).is_some(), "{bad}");
        }
        let up = errors(&format!(
            "project: p\ngeneration: 1\nstorage: ../..\n{REST}"
        ));
        assert_eq!(up.len(), 1, "{up:?}");
        assert!(up[0].starts_with("/specs/s.yaml:3:10: storage: the storage root is /:"));
        let tilde = errors(&format!("project: p\ngeneration: 1\nstorage: ~/g\n{REST}"));
        assert!(tilde[0].contains("does not expand `~`"), "{tilde:?}");
    }

    #[test]
    fn run_settings_are_checked_and_each_problem_is_named_where_it_is() {
        let good = "project: p\ngeneration: 1\nstorage: /srv/p\napp:\n  image: \"a:1\"\n  \
                    command: [\"serve\", \"--port\", \"8080\"]\n  run:\n    user: \"1000:1000\"\n    \
                    memory: 512m\n    cpus: 1.5\n    volumes: [\"/srv/up:/up\", \"cache:/cache:ro\"]\n    \
                    labels: { team: shop }\n    log: { driver: local, options: { max-size: 10m } }\n\
                    db:\n  image: \"postgres:15\"\n  args: [\"-c\", \"shared_buffers=256MB\"]\n  \
                    run: { shm_size: 256m }\n";
        assert_eq!(errors(good), Vec::<String>::new());
        let bad = "project: p\ngeneration: 1\nstorage: /srv/p\napp:\n  image: \"a:1\"\n  run:\n    \
                   memory: lots\n    cpus: 0\n    volumes: [\"up:/up\", \"/a:b\", \"/a:/b:rx\"]\n    \
                   labels: { io.gemctl.role: app }\n    log: { driver: \"\" }\n\
                   db: { image: \"postgres:15\", run: { shm_size: 1x } }\n";
        let e = errors(bad).join("\n");
        for needle in [
            "/specs/s.yaml:7:5: app.run.memory: \"lots\" is not a size",
            "app.run.cpus: 0",
            "app.run.volumes[1]: \"/a:b\": the target \"b\" must be an absolute path",
            "app.run.volumes[2]: \"/a:/b:rx\": the mode is \"rx\"",
            "app.run.labels: \"io.gemctl.role\"",
            "app.run.log.driver",
            "db.run.shm_size: \"1x\" is not a size",
        ] {
            assert!(e.contains(needle), "{needle}\n{e}");
        }
        assert!(!e.contains("volumes[0]"), "a named volume is fine: {e}");
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("0m"), None);
    }

    #[test]
    fn a_front_owns_the_public_ports_and_each_problem_is_named_where_it_is() {
        let spec = |front: &str, app_ports: &str| {
            format!(
                "project: p\ngeneration: 1\nstorage: /srv/p\nfront:\n{front}\
                 app:\n  image: \"a:1\"\n{app_ports}  health:\n    - tcp: {{ port: 7000 }}\n\
                 db: {{ image: \"postgres:15\" }}\n"
            )
        };
        let good = "  image: haproxy:2.6\n  ports:\n    - { port: \"80:8080\", mode: http }\n    \
                    - { port: \"127.0.0.1:7000:7000\", mode: tcp }\n";
        assert_eq!(errors(&spec(good, "")), Vec::<String>::new());
        let with_app_ports = errors(&spec(good, "  ports: [\"81:8080\"]\n"));
        assert!(
            with_app_ports
                .iter()
                .any(|e| e.contains("app.ports") && e.contains("front.ports")),
            "{with_app_ports:?}"
        );
        let bad = "  image: haproxy:2.6\n  hold: 500ms\n  ports:\n    - { port: \"8080\", mode: http }\n    \
                   - { port: \"9000:8080\", mode: tcp }\n";
        let e = errors(&spec(bad, "")).join("\n");
        assert!(e.contains("front.hold"), "{e}");
        assert!(e.contains("names no host port"), "{e}");
        assert!(e.contains("already forwarded by front.ports[0]"), "{e}");
        let smtp = "  image: haproxy:2.6\n  ports:\n    - { port: \"80:7000\", mode: smtp }\n";
        let e = errors(&spec(smtp, "")).join("\n");
        assert!(
            e.contains("front.ports[0].mode") && e.contains("`http` or `tcp`"),
            "{e}"
        );
        // The front's ports count in the health checks' ports and in clashes.
        let clash = "  image: haproxy:2.6\n  ports:\n    - { port: \"80:8080\", mode: http }\n    \
                     - { port: \"80:7000\", mode: tcp }\n";
        let e = errors(&spec(clash, "")).join("\n");
        assert!(e.contains("already taken by front.ports[0].port"), "{e}");
        // The page is read with the spec, and named where it is when it cannot be.
        let e = errors(&spec(
            &format!("{good}  page: /nonexistent/page.html\n"),
            "",
        ))
        .join("\n");
        assert!(e.contains("front.page: /nonexistent/page.html"), "{e}");
        let big = std::env::temp_dir().join(format!("gemctl-big-page-{}.html", std::process::id()));
        std::fs::write(&big, "x".repeat(FRONT_PAGE_MAX + 1)).unwrap();
        let e = errors(&spec(&format!("{good}  page: {}\n", big.display()), "")).join("\n");
        std::fs::remove_file(&big).unwrap();
        assert!(e.contains("front.page") && e.contains("one buffer"), "{e}");
        let e = errors(&spec(&format!("{good}  line: \"a\\nb\"\n"), "")).join("\n");
        assert!(e.contains("front.line"), "{e}");
    }

    #[test]
    fn a_host_port_clashes_on_overlapping_addresses_only() {
        let clash = |a: &str, b: &str| {
            let text = format!(
                "project: p\ngeneration: 1\nstorage: s\n\
                 app: {{ image: \"a:1\", ports: [\"{a}\", \"{b}\"] }}\ndb: {{ image: \"postgres:15\" }}\n"
            );
            !errors(&text).is_empty()
        };
        assert!(clash("80:80", "80:81"));
        assert!(clash("0.0.0.0:80:80", "127.0.0.1:80:81"));
        assert!(clash("127.0.0.1:80:80", "80:81"));
        assert!(clash("127.0.0.1:80:80", "127.0.0.1:80:81"));
        assert!(!clash("127.0.0.1:80:80", "127.0.0.2:80:81"));
        assert!(!clash("53:53/udp", "53:53/tcp"));
        assert!(!clash("80", "80"), "Docker picks distinct host ports");
    }

    #[test]
    fn later_errors_keep_the_file_indices_of_a_shortened_sequence() {
        let text = "project: p\ngeneration: 1\nstorage: s\napp:\n  image: \"a:1\"\n  ports:\n    - 1\n    - 2\n    - \"9:9\"\n    - \"9:8\"\ndb: { image: \"postgres:15\" }\n";
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains(":7:7: app.ports[0]: 1 is a number"), "{e:?}");
        assert!(e[1].contains(":8:7: app.ports[1]: 2 is a number"), "{e:?}");
        assert!(
            e[2].contains(":10:7: app.ports[3]: host port 9/tcp on every address is already taken by app.ports[2]"),
            "{e:?}"
        );
    }

    #[test]
    fn a_missing_required_field_is_stood_in_for_so_the_rest_is_checked() {
        let e = errors("project: p\nstorage: /\napp: { image: \"a\" }\ndb: { image: 15 }\n");
        assert!(
            e.iter().any(|e| e.contains("missing field `generation`")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("storage: the storage root is /")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.contains("app.image: \"a\" has no tag")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("db.image: 15 is not an image reference")),
            "{e:?}"
        );
        assert_eq!(e.len(), 4, "{e:?}");
    }
}
