//! The small interface gemctl needs from a container engine. [`crate::docker`]
//! implements it with bollard against the real Docker engine; the planner never
//! sees it, and the executor, health checks and copy only talk through it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::observed::Container;

/// An engine call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot be reached at all.
    #[error(
        "cannot reach the Docker engine at {endpoint}: {message}. Is the daemon running, and is that \
         the engine you mean? gemctl uses the one `docker ps` would (DOCKER_HOST, DOCKER_CONTEXT, \
         `docker context use`)"
    )]
    Unreachable {
        /// Where gemctl looked, and what chose it (see [`crate::engine_endpoint`]).
        endpoint: String,
        /// What the client said.
        message: String,
    },
    /// The environment or the docker config does not name an engine gemctl can
    /// use: a context that does not exist, an unreadable config, missing TLS
    /// material, TLS without verification.
    #[error("{0}")]
    Endpoint(String),
    /// The engine is on another machine, whose filesystem gemctl cannot see.
    #[error(
        "the Docker engine is {endpoint}, which is not on this machine. gemctl reads its storage, \
         health-checks the app on 127.0.0.1 and writes its records on the machine it runs on, so it \
         must run on the engine's host: `ssh {host} gemctl …`. If the engine is on this machine, \
         point at its socket: DOCKER_HOST=unix:///var/run/docker.sock (or `docker context use default`)"
    )]
    NotLocal {
        /// The endpoint, and what chose it.
        endpoint: String,
        /// Its host name, for the `ssh` hint.
        host: String,
    },
    /// The named object does not exist.
    #[error("{what} not found")]
    NotFound {
        /// `container gem-7`, `image postgres:15`…
        what: String,
    },
    /// Any other engine error.
    #[error("docker {op} failed: {message}")]
    Failed {
        /// The operation (`create gem-7`, `start db-7`…).
        op: String,
        /// What the engine said.
        message: String,
    },
}

/// A published port: where on the host a container port answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    /// Host address (`None`: all addresses).
    pub host_ip: Option<String>,
    /// Host port (`None`: the engine picks one).
    pub host_port: Option<u16>,
    /// Port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// Everything needed to create a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateContainer {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// `KEY=value` pairs, secrets included (never logged).
    pub env: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Network to join; the container is reachable there under its name.
    pub network: Option<String>,
    /// Ports to publish.
    pub ports: Vec<PortBinding>,
    /// Host directory → container directory bind mounts.
    pub binds: Vec<(PathBuf, String)>,
    /// Override of the image's command.
    pub cmd: Option<Vec<String>>,
    /// Override of the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Restart the container if it dies (`unless-stopped`), for long-running ones.
    pub restart: bool,
    /// Another restart policy by Docker's name (`always`, `on-failure`, `no`),
    /// instead of `restart`'s.
    pub restart_policy: Option<String>,
    /// The user the command runs as, when not the image's.
    pub user: Option<String>,
    /// Memory limit, bytes.
    pub memory: Option<u64>,
    /// CPU limit, billionths of a CPU.
    pub nano_cpus: Option<u64>,
    /// `/dev/shm` size, bytes.
    pub shm_size: Option<u64>,
    /// Further mounts, Docker's `SOURCE:TARGET[:ro]` (host paths or named volumes).
    pub volumes: Vec<String>,
    /// Log driver and its options.
    pub log: Option<(String, BTreeMap<String, String>)>,
    /// Publish the ports only once the container runs: it is created on its
    /// network, taken off it before it starts, and put back on it by
    /// [`Engine::start_container`] once its process runs (see `docker.rs`).
    /// Docker otherwise sets up a published port (its `docker-proxy`, its DNAT
    /// rule) while it starts the container, before the container's network
    /// interface is up: a client that connects then has its SYN dropped and waits
    /// for TCP's retransmission, a second later.
    pub ports_after_start: bool,
}

/// The result of a command run in a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// Exit code (`-1` if unknown).
    pub exit_code: i64,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The container engine, as gemctl uses it. Every method is one or a few engine
/// round trips; none retries on its own.
#[allow(async_fn_in_trait)]
pub trait Engine {
    /// Every container, in every state, with labels and published ports.
    async fn list_containers(&self) -> Result<Vec<Container>, EngineError>;
    /// Names of all networks.
    async fn list_networks(&self) -> Result<Vec<String>, EngineError>;
    /// Creates a bridge network with labels (idempotent: an existing one is fine).
    async fn create_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Removes a network (missing is fine).
    async fn remove_network(&self, name: &str) -> Result<(), EngineError>;
    /// Whether an image is present locally.
    async fn image_present(&self, image: &str) -> Result<bool, EngineError>;
    /// The environment an image's containers start with (`KEY=value`), `None` when
    /// the image is not on this host.
    async fn image_env(&self, image: &str) -> Result<Option<Vec<String>>, EngineError>;
    /// Pulls an image.
    async fn pull_image(&self, image: &str) -> Result<(), EngineError>;
    /// Creates (does not start) a container; returns its id.
    async fn create_container(&self, spec: &CreateContainer) -> Result<String, EngineError>;
    /// Starts a container (already running is fine). A container that runs
    /// without the network it was made for (made with
    /// [`CreateContainer::ports_after_start`]) is put on it then.
    async fn start_container(&self, name: &str) -> Result<(), EngineError>;
    /// Stops a container, killing it after `grace` (already stopped is fine).
    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), EngineError>;
    /// Removes a container, running or not (missing is fine).
    async fn remove_container(&self, name: &str) -> Result<(), EngineError>;
    /// Waits for a container to exit; returns its exit code.
    async fn wait_container(&self, name: &str) -> Result<i64, EngineError>;
    /// Runs a command in a running container and collects its output.
    async fn exec(&self, name: &str, cmd: &[String]) -> Result<ExecOutput, EngineError>;
    /// The last `tail` lines of a container's logs (stdout and stderr).
    async fn logs(&self, name: &str, tail: usize) -> Result<String, EngineError>;
    /// Where a container port is published on the host, if it is.
    async fn published_port(
        &self,
        name: &str,
        container_port: u16,
    ) -> Result<Option<(String, u16)>, EngineError>;
    /// A running container's address on a network (`None`: not attached, or this
    /// engine cannot say).
    async fn container_address(
        &self,
        name: &str,
        network: &str,
    ) -> Result<Option<String>, EngineError> {
        let _ = (name, network);
        Ok(None)
    }
}

/// Parses `KEY=value` lines of an env file (blank lines and `#` comments skipped);
/// see [`crate::env_file`], which checked the file when the spec was loaded.
pub fn parse_env_file(text: &str) -> Vec<String> {
    crate::env_file::entries(text)
}
