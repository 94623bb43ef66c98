//! Which Docker engine gemctl talks to: the one `docker ps` would, found the way
//! the docker CLI finds it, so gemctl never acts on another engine than the one
//! the operator looks at. Pure: [`resolve`] sees the environment and the docker
//! config directory only through its [`Inputs`]; [`crate::docker`] connects.
//!
//! Followed from the docker CLI's source (github.com/docker/cli):
//! - `cli/command/cli.go`, `resolveContextName`: a non-empty `DOCKER_HOST` means
//!   the default context; else `DOCKER_CONTEXT`; else `currentContext` in
//!   `config.json`; else `default`. The context named `default` is built from
//!   `DOCKER_HOST` and the TLS variables, never read from the store.
//! - `cli/config/config.go`, `Dir`: the config directory is `$DOCKER_CONFIG`, else
//!   `~/.docker`.
//! - `cli/context/store` (`metadatastore.go`, `tlsstore.go`, `contextdirOf`): a
//!   named context lives in `contexts/meta/<sha256 of its name>/meta.json`
//!   (`Endpoints.docker.Host`, `Endpoints.docker.SkipTLSVerify`), its TLS
//!   material in `contexts/tls/<sha256>/docker/{ca,cert,key}.pem`.
//! - `cli/context/docker/load.go`: a context endpoint uses TLS when it has TLS
//!   material or `SkipTLSVerify`; a socket (`unix://`) never does.
//! - `cli/flags/options.go`: `DOCKER_TLS_VERIFY` (any non-empty value) turns TLS
//!   on with verification, `DOCKER_TLS` without; the certificates are in
//!   `DOCKER_CERT_PATH`, else the config directory.
//! - `opts/hosts.go`, `ParseHost`: an empty host is `unix:///var/run/docker.sock`,
//!   or `tcp://localhost:2376` when TLS is on; a host without a scheme is
//!   `tcp://`; a tcp host without a port gets 2375 (2376 with TLS).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The engine's socket when nothing says otherwise.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// The docker CLI's default when TLS is on and no host is given.
const DEFAULT_TLS_HOST: &str = "tcp://localhost:2376";
/// The context built from `DOCKER_HOST` and the TLS variables.
pub const DEFAULT_CONTEXT: &str = "default";

/// What chose the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Source {
    /// The `DOCKER_HOST` environment variable.
    #[serde(rename = "DOCKER_HOST")]
    DockerHost,
    /// The `DOCKER_CONTEXT` environment variable.
    #[serde(rename = "DOCKER_CONTEXT")]
    DockerContext,
    /// `currentContext` in the docker config (`docker context use`).
    #[serde(rename = "config")]
    Config,
    /// Nothing: the default socket.
    #[serde(rename = "default")]
    Default,
}

/// The engine gemctl talks to, and why that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// `unix:///var/run/docker.sock`, `tcp://host:2376`, `ssh://user@host`…
    pub endpoint: String,
    /// The docker context (`default` unless a named one was chosen).
    pub context: String,
    /// What chose it.
    pub source: Source,
    /// Whether gemctl speaks TLS to it.
    #[serde(rename = "tls", serialize_with = "is_some")]
    pub tls: Option<Tls>,
}

fn is_some<S: serde::Serializer>(tls: &Option<Tls>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(tls.is_some())
}

/// Where the TLS material is, and whether the engine's certificate is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The directory of `ca.pem`, `cert.pem` and `key.pem`.
    pub dir: PathBuf,
    /// What named the directory, for messages (`DOCKER_CERT_PATH`, `context "x"`).
    pub named_by: String,
    /// `false` for `DOCKER_TLS` without `DOCKER_TLS_VERIFY`, or a context's
    /// `SkipTLSVerify`.
    pub verify: bool,
}

impl Tls {
    /// The CA, the client certificate and its key, in the names docker uses.
    pub fn files(&self) -> [PathBuf; 3] {
        ["ca.pem", "cert.pem", "key.pem"].map(|f| self.dir.join(f))
    }
}

impl Endpoint {
    /// Whether the engine runs on this machine, so that the paths gemctl binds
    /// into containers and its health checks on 127.0.0.1 reach what the engine
    /// sees: a unix socket, or tcp to a loopback address (an engine serving TLS
    /// on this machine). A tcp host elsewhere and `ssh://` are not.
    pub fn is_local(&self) -> bool {
        if self.endpoint.starts_with("unix://") {
            return true;
        }
        let Some(rest) = self.endpoint.strip_prefix("tcp://") else {
            return false;
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The host part of a remote endpoint, for `ssh HOST gemctl …` in messages.
    pub fn host_name(&self) -> &str {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.starts_with('[') {
            return host.split_inclusive(']').next().unwrap_or(host);
        }
        host.split(':').next().unwrap_or(host)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.endpoint)?;
        let tls = if self.tls.is_some() { ", TLS" } else { "" };
        match self.source {
            Source::DockerHost => write!(f, " (from DOCKER_HOST{tls})"),
            Source::DockerContext => {
                write!(
                    f,
                    " (context \"{}\" from DOCKER_CONTEXT{tls})",
                    self.context
                )
            }
            Source::Config => write!(
                f,
                " (context \"{}\", the current one in the docker config{tls})",
                self.context
            ),
            Source::Default => write!(f, " (the default context{tls})"),
        }
    }
}

/// What [`resolve`] may look at.
pub struct Inputs<'a> {
    /// The environment (`DOCKER_HOST`, `DOCKER_CONTEXT`, `DOCKER_CONFIG`,
    /// `DOCKER_TLS_VERIFY`, `DOCKER_TLS`, `DOCKER_CERT_PATH`, `HOME`).
    pub env: &'a BTreeMap<String, String>,
    /// Reads a file of the docker config directory.
    pub read: &'a dyn Fn(&Path) -> std::io::Result<String>,
}

impl Inputs<'_> {
    fn var(&self, name: &str) -> Option<&str> {
        // The docker CLI treats an empty variable as unset.
        self.env
            .get(name)
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `$DOCKER_CONFIG`, else `~/.docker`.
    fn config_dir(&self) -> PathBuf {
        match self.var("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(self.var("HOME").unwrap_or("/")).join(".docker"),
        }
    }

    /// Reads `path`; `None` when it does not exist.
    fn read_optional(&self, path: &Path) -> Result<Option<String>, String> {
        match (self.read)(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// The endpoint the docker CLI would use with these inputs, or why there is none
/// (a context that does not exist, an unreadable config): the message says what
/// was seen and what to do.
pub fn resolve(inputs: &Inputs) -> Result<Endpoint, String> {
    if let Some(host) = inputs.var("DOCKER_HOST") {
        return Ok(default_context(inputs, host, Source::DockerHost));
    }
    let config_dir = inputs.config_dir();
    let (name, source) = match inputs.var("DOCKER_CONTEXT") {
        Some(name) => (name.to_string(), Source::DockerContext),
        None => match current_context(inputs, &config_dir)? {
            Some(name) => (name, Source::Config),
            None => return Ok(default_context(inputs, "", Source::Default)),
        },
    };
    if name == DEFAULT_CONTEXT {
        return Ok(default_context(inputs, "", source));
    }
    named_context(inputs, &config_dir, name, source)
}

/// The default context: `host` (from `DOCKER_HOST`, or empty) with the TLS
/// variables.
fn default_context(inputs: &Inputs, host: &str, source: Source) -> Endpoint {
    let verify = inputs.var("DOCKER_TLS_VERIFY").is_some();
    let tls_on = verify || inputs.var("DOCKER_TLS").is_some();
    let endpoint = parse_host(host, tls_on);
    let tls = (tls_on && endpoint.starts_with("tcp://")).then(|| {
        let (dir, named_by) = match inputs.var("DOCKER_CERT_PATH") {
            Some(dir) => (PathBuf::from(dir), "DOCKER_CERT_PATH".to_string()),
            None => (
                inputs.config_dir(),
                "DOCKER_CERT_PATH (unset: the docker config directory)".to_string(),
            ),
        };
        Tls {
            dir,
            named_by,
            verify,
        }
    });
    Endpoint {
        endpoint,
        context: DEFAULT_CONTEXT.to_string(),
        source,
        tls,
    }
}

/// `currentContext` of `config.json`, if it is set.
fn current_context(inputs: &Inputs, config_dir: &Path) -> Result<Option<String>, String> {
    let path = config_dir.join("config.json");
    let Some(text) = inputs.read_optional(&path)? else {
        return Ok(None);
    };
    // Stricter than the docker CLI, which warns and goes on with the default
    // context: gemctl would rather stop than act on an engine it only guessed.
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not valid JSON ({e}), so gemctl cannot tell which docker context is current; \
             fix it, or choose the engine with DOCKER_HOST or DOCKER_CONTEXT",
            path.display()
        )
    })?;
    Ok(config
        .get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_string))
}

/// A context of the store: its `meta.json` and its TLS material.
fn named_context(
    inputs: &Inputs,
    config_dir: &Path,
    name: String,
    source: Source,
) -> Result<Endpoint, String> {
    let id = format!("{:x}", Sha256::digest(name.as_bytes()));
    let contexts = config_dir.join("contexts");
    let meta_path = contexts.join("meta").join(&id).join("meta.json");
    let chosen_by = match source {
        Source::DockerContext => "DOCKER_CONTEXT",
        _ => "the docker config's currentContext",
    };
    let Some(text) = inputs.read_optional(&meta_path)? else {
        return Err(format!(
            "docker context \"{name}\" (chosen by {chosen_by}) does not exist: no {}; \
             `docker context ls` lists the contexts, `docker context use default` goes back to the local socket",
            meta_path.display()
        ));
    };
    let meta: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", meta_path.display()))?;
    let Some(docker) = meta.get("Endpoints").and_then(|e| e.get("docker")) else {
        return Err(format!(
            "docker context \"{name}\" has no docker endpoint ({}); \
             set one with `docker context update {name} --docker host=…`",
            meta_path.display()
        ));
    };
    let host = docker.get("Host").and_then(|h| h.as_str()).unwrap_or("");
    let skip_verify = docker
        .get("SkipTLSVerify")
        .and_then(|s| s.as_bool())
        .unwrap_or(false);
    let endpoint = parse_host(host, false);
    let tls_dir = contexts.join("tls").join(&id).join("docker");
    let tls = Tls {
        dir: tls_dir,
        named_by: format!("context \"{name}\""),
        verify: !skip_verify,
    };
    let mut has_material = false;
    for file in tls.files() {
        has_material |= inputs.read_optional(&file)?.is_some();
    }
    let uses_tls = (has_material || skip_verify) && !endpoint.starts_with("unix://");
    Ok(Endpoint {
        endpoint,
        context: name,
        source,
        tls: uses_tls.then_some(tls),
    })
}

/// A host as the docker CLI reads it: empty is the default (socket, or
/// `tcp://localhost:2376` with TLS), no scheme is tcp, a tcp host without a port
/// gets the default one.
fn parse_host(host: &str, tls: bool) -> String {
    let host = host.trim();
    if host.is_empty() {
        return if tls {
            DEFAULT_TLS_HOST
        } else {
            DEFAULT_SOCKET
        }
        .to_string();
    }
    let (scheme, rest) = host.split_once("://").unwrap_or(("tcp", host));
    if scheme != "tcp" {
        return host.to_string();
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let has_port = match authority.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => authority.contains(':'),
    };
    let port = if has_port {
        ""
    } else if tls {
        ":2376"
    } else {
        ":2375"
    };
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    format!("tcp://{authority}{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves with `env` and the files of `files` (path → content).
    fn resolve_with(env: &[(&str, &str)], files: &[(&str, &str)]) -> Result<Endpoint, String> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.to_string()))
            .collect();
        let read = |p: &Path| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        resolve(&Inputs {
            env: &env,
            read: &read,
        })
    }

    fn id(name: &str) -> String {
        format!("{:x}", Sha256::digest(name.as_bytes()))
    }

    fn meta_path(config: &str, name: &str) -> String {
        format!("{config}/contexts/meta/{}/meta.json", id(name))
    }

    fn meta(name: &str, host: &str, skip: bool) -> String {
        format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
        )
    }

    #[test]
    fn the_context_directory_is_the_sha256_of_its_name() {
        // As `docker context create gx` names it (checked with the docker CLI).
        assert_eq!(
            id("gx"),
            "c1cbb8108bc8f123dd633dfa518481cb84dc00d12807b6be4915a80aab091636"
        );
    }

    #[test]
    fn nothing_set_is_the_default_socket() {
        let e = resolve_with(&[("HOME", "/home/op")], &[]).unwrap();
        assert_eq!(e.endpoint, DEFAULT_SOCKET);
        assert_eq!(e.context, "default");
        assert_eq!(e.source, Source::Default);
        assert_eq!(e.tls, None);
        assert!(e.is_local());
    }

    #[test]
    fn docker_host_wins_over_docker_context_and_the_config() {
        let files = [
            (
                "/home/op/.docker/config.json",
                r#"{"currentContext":"remote"}"#,
            ),
            (
                &*meta_path("/home/op/.docker", "remote"),
                &*meta("remote", "tcp://10.0.0.9:2375", false),
            ),
        ];
        let env = [
            ("HOME", "/home/op"),
            ("DOCKER_HOST", "unix:///run/user/1000/docker.sock"),
            ("DOCKER_CONTEXT", "remote"),
        ];
        let e = resolve_with(&env, &files).unwrap();
        assert_eq!(e.endpoint, "unix:///run/user/1000/docker.sock");
        assert_eq!(e.context, "default");
        assert_eq!(e.source, Source::DockerHost);
    }

    #[test]
    fn docker_context_wins_over_the_current_context() {
        let config = "/cfg";
        let files = [
            (
                "/cfg/config.json".to_string(),
                r#"{"currentContext":"a"}"#.to_string(),
            ),
            (meta_path(config, "a"), meta("a", "unix:///a.sock", false)),
            (meta_path(config, "b"), meta("b", "unix:///b.sock", false)),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&**p, &**c)).collect();
        let env = [("DOCKER_CONFIG", config), ("DOCKER_CONTEXT", "b")];
        let e = resolve_with(&env, &files).unwrap();
        assert_eq!(
            (e.endpoint.as_str(), e.context.as_str(), e.source),
            ("unix:///b.sock", "b", Source::DockerContext)
        );
        let e = resolve_with(&[("DOCKER_CONFIG", config)], &files).unwrap();
        assert_eq!(
            (e.endpoint.as_str(), e.context.as_str(), e.source),
            ("unix:///a.sock", "a", Source::Config)
        );
        // An empty variable is unset, as for the docker CLI.
        let e = resolve_with(&[("DOCKER_CONFIG", config), ("DOCKER_CONTEXT", "")], &files);
        assert_eq!(e.unwrap().context, "a");
    }

    #[test]
    fn the_context_named_default_is_the_default_socket_never_read_from_the_store() {
        let files = [("/h/.docker/config.json", r#"{"currentContext":"default"}"#)];
        let e = resolve_with(&[("HOME", "/h")], &files).unwrap();
        assert_eq!(e.endpoint, DEFAULT_SOCKET);
        assert_eq!((e.context.as_str(), e.source), ("default", Source::Config));
        let e = resolve_with(&[("HOME", "/h"), ("DOCKER_CONTEXT", "default")], &[]).unwrap();
        assert_eq!(e.source, Source::DockerContext);
        assert_eq!(e.endpoint, DEFAULT_SOCKET);
    }

    #[test]
    fn a_config_without_current_context_is_the_default() {
        let files = [("/h/.docker/config.json", r#"{"auths":{}}"#)];
        let e = resolve_with(&[("HOME", "/h")], &files).unwrap();
        assert_eq!(
            (e.endpoint.as_str(), e.source),
            (DEFAULT_SOCKET, Source::Default)
        );
    }

    #[test]
    fn a_missing_context_says_where_it_looked_and_what_to_do() {
        let err = resolve_with(&[("HOME", "/h"), ("DOCKER_CONTEXT", "prod")], &[]).unwrap_err();
        assert!(err.contains("docker context \"prod\""), "{err}");
        assert!(err.contains("DOCKER_CONTEXT"), "{err}");
        assert!(err.contains(&meta_path("/h/.docker", "prod")), "{err}");
        assert!(err.contains("docker context ls"), "{err}");
    }

    #[test]
    fn a_broken_config_stops_gemctl_instead_of_guessing() {
        let files = [("/h/.docker/config.json", "{not json")];
        let err = resolve_with(&[("HOME", "/h")], &files).unwrap_err();
        assert!(
            err.contains("/h/.docker/config.json is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn a_context_with_tls_material_uses_it_and_skip_verify_is_kept() {
        let tls = format!("/c/contexts/tls/{}/docker", id("secure"));
        let ca = format!("{tls}/ca.pem");
        let files = [
            (
                meta_path("/c", "secure"),
                meta("secure", "tcp://127.0.0.1:2376", false),
            ),
            (ca, "CA".to_string()),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&**p, &**c)).collect();
        let env = [("DOCKER_CONFIG", "/c"), ("DOCKER_CONTEXT", "secure")];
        let e = resolve_with(&env, &files).unwrap();
        let t = e.tls.expect("TLS");
        assert_eq!(t.dir, PathBuf::from(&tls));
        assert!(t.verify);
        // Without material and without SkipTLSVerify: plain tcp, as docker does.
        let plain = [(
            &*meta_path("/c", "secure"),
            &*meta("secure", "tcp://127.0.0.1:2375", false),
        )];
        assert_eq!(resolve_with(&env, &plain).unwrap().tls, None);
        let skip = [(
            &*meta_path("/c", "secure"),
            &*meta("secure", "tcp://127.0.0.1:2376", true),
        )];
        assert!(!resolve_with(&env, &skip).unwrap().tls.unwrap().verify);
    }

    #[test]
    fn tls_variables_apply_to_tcp_hosts_of_the_default_context() {
        let env = [
            ("HOME", "/h"),
            ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
        ];
        let e = resolve_with(&env, &[]).unwrap();
        let t = e.tls.unwrap();
        assert_eq!((t.dir, t.verify), (PathBuf::from("/certs"), true));
        assert_eq!(t.named_by, "DOCKER_CERT_PATH");
        // Without DOCKER_CERT_PATH the certificates are in the config directory.
        let e = resolve_with(&env[..3], &[]).unwrap();
        assert_eq!(e.tls.unwrap().dir, PathBuf::from("/h/.docker"));
        // TLS on and no host: docker's default TLS host.
        let e = resolve_with(&[("DOCKER_TLS_VERIFY", "1")], &[]).unwrap();
        assert_eq!(e.endpoint, "tcp://localhost:2376");
        // A socket never speaks TLS.
        let env = [("DOCKER_HOST", DEFAULT_SOCKET), ("DOCKER_TLS_VERIFY", "1")];
        assert_eq!(resolve_with(&env, &[]).unwrap().tls, None);
    }

    #[test]
    fn hosts_are_completed_as_docker_does() {
        assert_eq!(parse_host("10.0.0.1", false), "tcp://10.0.0.1:2375");
        assert_eq!(parse_host("tcp://10.0.0.1", true), "tcp://10.0.0.1:2376");
        assert_eq!(parse_host("tcp://[::1]:99", true), "tcp://[::1]:99");
        assert_eq!(parse_host("tcp://[::1]", false), "tcp://[::1]:2375");
        assert_eq!(parse_host("ssh://me@box", false), "ssh://me@box");
    }

    #[test]
    fn only_sockets_and_loopback_are_local() {
        let at = |endpoint: &str| Endpoint {
            endpoint: endpoint.into(),
            context: "default".into(),
            source: Source::DockerHost,
            tls: None,
        };
        for local in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2376",
            "tcp://localhost:2375",
            "tcp://[::1]:2376",
        ] {
            assert!(at(local).is_local(), "{local}");
        }
        for remote in [
            "tcp://10.0.0.9:2376",
            "tcp://docker.example.com:2376",
            "ssh://ops@docker.example.com",
            "npipe:////./pipe/docker_engine",
        ] {
            assert!(!at(remote).is_local(), "{remote}");
        }
        assert_eq!(at("ssh://ops@box.example:22").host_name(), "box.example");
        assert_eq!(at("tcp://10.0.0.9:2376").host_name(), "10.0.0.9");
    }
}
