//! The [`Engine`] on the real Docker engine, through bollard: the engine `docker ps`
//! would use ([`crate::engine_endpoint`]), over its unix socket or tcp (TLS when
//! asked), negotiating the API version, so older engines (API 1.41) work.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, NetworkCreateRequest, PortBinding as DockerPort,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptions, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::engine::{CreateContainer, Engine, EngineError, ExecOutput};
use crate::engine_endpoint::{self, Endpoint, Inputs, Tls};
use crate::observed::{Container, ContainerState};

/// A connection to the Docker engine.
pub struct Docker {
    client: bollard::Docker,
    endpoint: Endpoint,
}

impl Docker {
    /// The engine the docker CLI would use, or the refusal when it is on another
    /// machine; no connection is made. A command checks it before it takes the
    /// project's lock, so that a refusal leaves nothing behind.
    pub fn local_endpoint() -> Result<Endpoint, EngineError> {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let read = |path: &Path| std::fs::read_to_string(path);
        let endpoint = engine_endpoint::resolve(&Inputs {
            env: &env,
            read: &read,
        })
        .map_err(EngineError::Endpoint)?;
        if !endpoint.is_local() {
            return Err(EngineError::NotLocal {
                endpoint: endpoint.to_string(),
                host: endpoint.host_name().to_string(),
            });
        }
        Ok(endpoint)
    }
}

/// Seconds an engine request may take: bollard's default.
const REQUEST_TIMEOUT: u64 = 120;

impl Docker {
    /// Connects to the engine the docker CLI would use (DOCKER_HOST, DOCKER_CONTEXT,
    /// the current context, the default socket), negotiates the API version and
    /// pings, so an unreachable engine is reported here. An engine on another
    /// machine is refused before any connection: every command that talks to the
    /// engine also reads the storage, and health-checks, on this one.
    pub async fn connect() -> Result<Docker, EngineError> {
        let endpoint = Docker::local_endpoint()?;
        let unreachable = |e: BollardError| EngineError::Unreachable {
            endpoint: endpoint.to_string(),
            message: with_causes(&e),
        };
        let client = client(&endpoint)?;
        let client = client.negotiate_version().await.map_err(unreachable)?;
        client.ping().await.map_err(unreachable)?;
        Ok(Docker { client, endpoint })
    }

    /// The engine this connection talks to, and what chose it.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// The bollard client for a local `endpoint`: its unix socket, or tcp on the
/// loopback (the only two [`Endpoint::is_local`] lets through), with TLS when
/// the endpoint asks for it.
fn client(endpoint: &Endpoint) -> Result<bollard::Docker, EngineError> {
    let host = endpoint.endpoint.as_str();
    let version = bollard::API_DEFAULT_VERSION;
    let built = if host.starts_with("unix://") {
        bollard::Docker::connect_with_unix(host, REQUEST_TIMEOUT, version)
    } else {
        match &endpoint.tls {
            None => bollard::Docker::connect_with_http(host, REQUEST_TIMEOUT, version),
            Some(tls) => {
                let [ca, cert, key] = tls_files(endpoint, tls)?;
                bollard::Docker::connect_with_ssl(host, &key, &cert, &ca, REQUEST_TIMEOUT, version)
            }
        }
    };
    built.map_err(|e| EngineError::Unreachable {
        endpoint: endpoint.to_string(),
        message: with_causes(&e),
    })
}

/// An error and its causes: bollard's own text for a failed connection is
/// "client error (Connect)", the certificate the engine was refused for or the
/// refused connection is further down.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The CA, certificate and key for TLS to `endpoint`, each checked to exist:
/// bollard would read a missing client certificate as "none" and fail later in
/// the handshake, and gemctl never falls back to plain HTTP. It also always
/// verifies the engine's certificate (bollard has no switch to skip that).
fn tls_files(endpoint: &Endpoint, tls: &Tls) -> Result<[std::path::PathBuf; 3], EngineError> {
    let fix = if endpoint.context == engine_endpoint::DEFAULT_CONTEXT {
        "put ca.pem, cert.pem and key.pem there, or point DOCKER_CERT_PATH at the directory that has them".to_string()
    } else {
        format!(
            "give the context its files: `docker context update {} --docker host={},ca=…,cert=…,key=…`",
            endpoint.context, endpoint.endpoint
        )
    };
    if !tls.verify {
        return Err(EngineError::Endpoint(format!(
            "{endpoint} asks for TLS without verifying the engine's certificate \
             (DOCKER_TLS without DOCKER_TLS_VERIFY, or a context's SkipTLSVerify); gemctl always \
             verifies it: set DOCKER_TLS_VERIFY=1 or clear skip-tls-verify, with the CA in {}",
            tls.dir.display()
        )));
    }
    let files = tls.files();
    for file in &files {
        if !file.is_file() {
            return Err(EngineError::Endpoint(format!(
                "TLS to {endpoint} needs {}, which does not exist (TLS material from {}: {}); \
                 gemctl never falls back to plain HTTP: {fix}",
                file.display(),
                tls.named_by,
                tls.dir.display()
            )));
        }
    }
    Ok(files)
}

fn failed(op: impl Into<String>) -> impl FnOnce(BollardError) -> EngineError {
    let op = op.into();
    move |e| match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => EngineError::NotFound {
            what: format!("{op} ({message})"),
        },
        other => EngineError::Failed {
            op,
            message: other.to_string(),
        },
    }
}

fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl Docker {
    /// Streams a container's logs (stdout and stderr, the last `tail` lines, or
    /// those since a time, then new ones while `follow`) to `out`, until the
    /// container stops or `out` fails. With a `prefix`, every line starts with it.
    pub async fn stream_logs(
        &self,
        name: &str,
        what: &LogsWanted,
        prefix: Option<&str>,
        out: &(dyn Fn(&[u8]) -> std::io::Result<()> + Sync),
    ) -> Result<(), EngineError> {
        let mut options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(what.follow)
            .timestamps(what.timestamps)
            .tail(&what.tail.to_string());
        if let Some(since) = what.since {
            options = options.since(i32::try_from(since).unwrap_or(i32::MAX));
        }
        let mut stream = self.client.logs(name, Some(options.build()));
        let mut partial: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let bytes = chunk
                .map_err(failed(format!("logs of {name}")))?
                .into_bytes();
            let Some(prefix) = prefix else {
                if out(&bytes).is_err() {
                    break;
                }
                continue;
            };
            // Whole lines only, each with the prefix: two containers' lines are
            // interleaved, never mixed.
            partial.extend_from_slice(&bytes);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let mut text = prefix.as_bytes().to_vec();
                text.extend_from_slice(&line);
                if out(&text).is_err() {
                    return Ok(());
                }
            }
        }
        if let Some(prefix) = prefix.filter(|_| !partial.is_empty()) {
            let mut text = prefix.as_bytes().to_vec();
            text.extend_from_slice(&partial);
            text.push(b'\n');
            let _ = out(&text);
        }
        Ok(())
    }
}

/// Which log lines to stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogsWanted {
    /// The last lines to show (with `since`: of those since then).
    pub tail: usize,
    /// Only lines since this Unix time.
    pub since: Option<i64>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// Each line with the engine's RFC 3339 timestamp.
    pub timestamps: bool,
}

/// How long a re-run waits for a container removal already under way.
const REMOVAL_WAIT: Duration = Duration::from_secs(60);

/// The user-defined network a running container was made for but is not on
/// (`network_mode` names it, and it is on no network at all), if so.
fn unplugged_network(running: bool, networks: usize, network_mode: Option<&str>) -> Option<&str> {
    let mode = network_mode?;
    let builtin =
        ["", "default", "bridge", "host", "none"].contains(&mode) || mode.starts_with("container:");
    (running && networks == 0 && !builtin).then_some(mode)
}

impl Engine for Docker {
    async fn list_containers(&self) -> Result<Vec<Container>, EngineError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let list = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(failed("list containers"))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let status = c.status.unwrap_or_default();
                let health = ["(healthy)", "(unhealthy)", "(health: starting)"]
                    .iter()
                    .find(|h| status.contains(*h))
                    .map(|h| h.trim_matches(['(', ')']).replace("health: ", ""));
                let mut ports: Vec<String> = c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| {
                        let public = p.public_port?;
                        let proto = p.typ.map_or("tcp".to_string(), |t| t.to_string());
                        Some(format!(
                            "{}:{public}->{}/{proto}",
                            p.ip.unwrap_or_default(),
                            p.private_port
                        ))
                    })
                    .collect();
                ports.sort();
                ports.dedup();
                Container {
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    id: c.id.unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    labels: c.labels.unwrap_or_default().into_iter().collect(),
                    state: match ContainerState::from_docker(
                        &c.state.map(|s| s.to_string()).unwrap_or_default(),
                    ) {
                        // Running off the network it was made for: a gemctl was
                        // killed between its start and its connection (see
                        // `start_container`). It serves nobody: for the plan it is
                        // stopped, and starting it puts it on its network.
                        ContainerState::Running
                            if unplugged_network(
                                true,
                                c.network_settings
                                    .as_ref()
                                    .and_then(|n| n.networks.as_ref())
                                    .map_or(0, |n| n.len()),
                                c.host_config
                                    .as_ref()
                                    .and_then(|h| h.network_mode.as_deref()),
                            )
                            .is_some() =>
                        {
                            ContainerState::Exited
                        }
                        state => state,
                    },
                    health,
                    ports,
                    created: c.created.and_then(|t| u64::try_from(t).ok()).map(|t| {
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + Duration::from_secs(t),
                        )
                        .to_string()
                    }),
                }
            })
            .collect())
    }

    async fn list_networks(&self) -> Result<Vec<String>, EngineError> {
        let list = self
            .client
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(failed("list networks"))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }

    async fn create_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        if self.list_networks().await?.iter().any(|n| n == name) {
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.client.create_network(request).await {
            Err(e) if status(&e) == Some(409) => Ok(()),
            other => other
                .map(|_| ())
                .map_err(failed(format!("create network {name}"))),
        }
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        match self.client.remove_network(name).await {
            Err(e) if status(&e) == Some(404) => Ok(()),
            other => other.map_err(failed(format!("remove network {name}"))),
        }
    }

    async fn image_present(&self, image: &str) -> Result<bool, EngineError> {
        match self.client.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(failed(format!("inspect image {image}"))(e)),
        }
    }

    async fn image_env(&self, image: &str) -> Result<Option<Vec<String>>, EngineError> {
        match self.client.inspect_image(image).await {
            Ok(info) => Ok(Some(info.config.and_then(|c| c.env).unwrap_or_default())),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(failed(format!("inspect image {image}"))(e)),
        }
    }

    async fn pull_image(&self, image: &str) -> Result<(), EngineError> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self.client.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item.map_err(failed(format!("pull {image}")))?;
        }
        Ok(())
    }

    async fn create_container(&self, spec: &CreateContainer) -> Result<String, EngineError> {
        let mut port_bindings: HashMap<String, Option<Vec<DockerPort>>> = HashMap::new();
        for p in &spec.ports {
            port_bindings
                .entry(format!("{}/{}", p.container_port, p.proto))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(DockerPort {
                    host_ip: Some(p.host_ip.clone().unwrap_or_default()),
                    host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
                });
        }
        let host_config = HostConfig {
            binds: Some(
                spec.binds
                    .iter()
                    .map(|(host, inside)| format!("{}:{inside}", host.display()))
                    .chain(spec.volumes.iter().cloned())
                    .collect(),
            ),
            memory: spec.memory.and_then(|m| i64::try_from(m).ok()),
            nano_cpus: spec.nano_cpus.and_then(|c| i64::try_from(c).ok()),
            shm_size: spec.shm_size.and_then(|s| i64::try_from(s).ok()),
            log_config: spec.log.as_ref().map(|(driver, options)| {
                bollard::models::HostConfigLogConfig {
                    typ: Some(driver.clone()),
                    config: Some(options.clone().into_iter().collect()),
                }
            }),
            port_bindings: Some(port_bindings.clone()),
            network_mode: spec.network.clone(),
            restart_policy: match spec.restart_policy.as_deref() {
                Some(name) => Some(RestartPolicy {
                    name: Some(match name {
                        "always" => RestartPolicyNameEnum::ALWAYS,
                        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                        "no" => RestartPolicyNameEnum::NO,
                        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
                    }),
                    maximum_retry_count: None,
                }),
                None => spec.restart.then_some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
            },
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            user: spec.user.clone(),
            exposed_ports: Some(port_bindings.keys().cloned().collect()),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(failed(format!("create {}", spec.name)))?;
        if let (true, Some(network)) = (spec.ports_after_start, &spec.network) {
            // Off its network until it runs: `start_container` puts it back, and
            // Docker sets up its published ports then, with its interface up.
            self.client
                .disconnect_network(
                    network,
                    bollard::models::NetworkDisconnectRequest {
                        container: spec.name.clone(),
                        force: Some(false),
                    },
                )
                .await
                .map_err(failed(format!("take {} off {network}", spec.name)))?;
        }
        Ok(created.id)
    }

    async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        match self.client.start_container(name, None).await {
            Err(e) if status(&e) == Some(304) => {}
            other => other.map_err(failed(format!("start {name}")))?,
        }
        // Made with `ports_after_start` (or left so by a gemctl killed between its
        // start and this): on its network now that its process runs. Docker sets up
        // its published ports in this call, after its interface is up.
        let info = self
            .client
            .inspect_container(name, None)
            .await
            .map_err(failed(format!("inspect {name}")))?;
        if let Some(network) = unplugged_network(
            info.state.as_ref().and_then(|s| s.running).unwrap_or(false),
            info.network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .map_or(0, |n| n.len()),
            info.host_config
                .as_ref()
                .and_then(|h| h.network_mode.as_deref()),
        ) {
            match self
                .client
                .connect_network(
                    network,
                    bollard::models::NetworkConnectRequest {
                        container: name.to_string(),
                        endpoint_config: None,
                    },
                )
                .await
            {
                // Two runs at once cannot happen (the lock); already on it is fine.
                Err(e) if status(&e) == Some(403) && e.to_string().contains("already exists") => {}
                other => other.map_err(failed(format!("put {name} on {network}")))?,
            }
        }
        Ok(())
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), EngineError> {
        let secs = grace.as_secs_f64().ceil() as i32;
        let options = StopContainerOptionsBuilder::default().t(secs).build();
        match self.client.stop_container(name, Some(options)).await {
            Err(e) if status(&e) == Some(304) => Ok(()),
            other => other.map_err(failed(format!("stop {name}"))),
        }
    }

    async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(false)
            .build();
        match self.client.remove_container(name, Some(options)).await {
            Err(e) if status(&e) == Some(404) => Ok(()),
            // A removal asked for by a gemctl that was killed goes on in the engine;
            // a re-run waits for it instead of failing (I4).
            Err(e) if status(&e) == Some(409) && e.to_string().contains("already in progress") => {
                let started = std::time::Instant::now();
                while started.elapsed() < REMOVAL_WAIT {
                    match self.client.inspect_container(name, None).await {
                        Err(e) if status(&e) == Some(404) => return Ok(()),
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                Err(EngineError::Failed {
                    op: format!("remove {name}"),
                    message: format!(
                        "its removal was still in progress after {}s",
                        REMOVAL_WAIT.as_secs()
                    ),
                })
            }
            other => other.map_err(failed(format!("remove {name}"))),
        }
    }

    async fn wait_container(&self, name: &str) -> Result<i64, EngineError> {
        let mut stream = self.client.wait_container(name, None);
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(failed(format!("wait for {name}"))(e)),
            None => Err(EngineError::Failed {
                op: format!("wait for {name}"),
                message: "the engine closed the stream".into(),
            }),
        }
    }

    async fn exec(&self, name: &str, cmd: &[String]) -> Result<ExecOutput, EngineError> {
        let op = || format!("exec in {name}");
        let id = self.create_exec(name, cmd, None).await?;
        let mut out = ExecOutput {
            exit_code: -1,
            ..ExecOutput::default()
        };
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .client
            .start_exec(&id, None)
            .await
            .map_err(failed(op()))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(failed(op()))? {
                    bollard::container::LogOutput::StdErr { message } => {
                        out.stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => out
                        .stdout
                        .push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        out.exit_code = self.exec_exit_code(name, &id).await?;
        Ok(out)
    }

    async fn logs(&self, name: &str, tail: usize) -> Result<String, EngineError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        let mut stream = self.client.logs(name, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(failed(format!("logs of {name}")))?;
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok(text)
    }

    async fn published_port(
        &self,
        name: &str,
        container_port: u16,
    ) -> Result<Option<(String, u16)>, EngineError> {
        let info = self
            .client
            .inspect_container(name, None)
            .await
            .map_err(failed(format!("inspect {name}")))?;
        let binding = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|mut p| p.remove(&format!("{container_port}/tcp")))
            .flatten()
            .and_then(|b| b.into_iter().find(|b| b.host_port.is_some()));
        Ok(binding.and_then(|b| {
            let port = b.host_port?.parse().ok()?;
            Some((b.host_ip.unwrap_or_default(), port))
        }))
    }

    async fn container_address(
        &self,
        name: &str,
        network: &str,
    ) -> Result<Option<String>, EngineError> {
        let info = self
            .client
            .inspect_container(name, None)
            .await
            .map_err(failed(format!("inspect {name}")))?;
        Ok(info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()))
    }
}

/// The local terminal in raw mode while a command in a container owns it; put
/// back as it was when dropped.
struct RawTerminal(rustix::termios::Termios);

impl RawTerminal {
    fn enter() -> std::io::Result<RawTerminal> {
        let stdin = std::io::stdin();
        let before = rustix::termios::tcgetattr(&stdin)?;
        let mut raw = before.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)?;
        Ok(RawTerminal(before))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.0,
        );
    }
}

impl Docker {
    /// Runs `cmd` in container `name` with this process's stdin, stdout and
    /// stderr attached, as `docker exec -i` does (with a terminal, `-it`: the
    /// local terminal is put in raw mode and its size passed on). Returns the
    /// command's exit code.
    pub async fn exec_attached(&self, name: &str, cmd: &[String]) -> Result<i64, EngineError> {
        use std::io::{IsTerminal, Write};
        use tokio::io::AsyncWriteExt;

        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let op = || format!("exec in {name}");
        let id = self.create_exec(name, cmd, Some(tty)).await?;
        let started = self
            .client
            .start_exec(
                &id,
                Some(bollard::exec::StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(failed(op()))?;
        let bollard::exec::StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(EngineError::Failed {
                op: op(),
                message: "the engine did not attach to the command".into(),
            });
        };
        let raw = if tty {
            let raw = RawTerminal::enter().map_err(|e| EngineError::Failed {
                op: op(),
                message: format!("cannot put the terminal in raw mode: {e}"),
            })?;
            if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout()) {
                let _ = self
                    .client
                    .resize_exec(
                        &id,
                        bollard::exec::ResizeExecOptions {
                            height: size.ws_row,
                            width: size.ws_col,
                        },
                    )
                    .await;
            }
            Some(raw)
        } else {
            None
        };
        // A plain thread reads stdin: a read blocked on a terminal must not keep
        // the runtime from shutting down once the command has ended.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let pump = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if input.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            // End of input: the command reads its end of file (psql < file).
            let _ = input.shutdown().await;
        });
        let mut result = Ok(());
        while let Some(chunk) = output.next().await {
            let written = match chunk {
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    let mut err = std::io::stderr();
                    err.write_all(&message).and_then(|_| err.flush())
                }
                Ok(other) => {
                    let mut out = std::io::stdout();
                    out.write_all(&other.into_bytes()).and_then(|_| out.flush())
                }
                Err(e) => {
                    result = Err(failed(op())(e));
                    break;
                }
            };
            if written.is_err() {
                break;
            }
        }
        pump.abort();
        drop(raw);
        result?;
        self.exec_exit_code(name, &id).await
    }

    /// Creates `cmd` in container `name` with its output attached; with
    /// `stdin_tty` (`Some(tty)`), stdin attached too, on a terminal or not.
    async fn create_exec(
        &self,
        name: &str,
        cmd: &[String],
        stdin_tty: Option<bool>,
    ) -> Result<String, EngineError> {
        self.client
            .create_exec(
                name,
                ExecConfig {
                    attach_stdin: stdin_tty.map(|_| true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: stdin_tty,
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map(|created| created.id)
            .map_err(failed(format!("exec in {name}")))
    }

    /// The exit code of a finished exec (`-1` when the engine does not say).
    async fn exec_exit_code(&self, name: &str, id: &str) -> Result<i64, EngineError> {
        let inspect = self
            .client
            .inspect_exec(id)
            .await
            .map_err(failed(format!("exec in {name}")))?;
        Ok(inspect.exit_code.unwrap_or(-1))
    }
}

#[cfg(test)]
mod tests {
    use super::unplugged_network;

    #[test]
    fn a_running_container_off_the_network_it_was_made_for_is_unplugged() {
        assert_eq!(
            unplugged_network(true, 0, Some("shop-net")),
            Some("shop-net")
        );
        assert_eq!(unplugged_network(true, 1, Some("shop-net")), None);
        assert_eq!(unplugged_network(false, 0, Some("shop-net")), None);
        for builtin in ["", "default", "bridge", "host", "none", "container:abc"] {
            assert_eq!(unplugged_network(true, 0, Some(builtin)), None, "{builtin}");
        }
        assert_eq!(unplugged_network(true, 0, None), None);
    }
}
