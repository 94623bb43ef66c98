//! `gemctl logs`: a generation's container logs, streamed from the engine as they
//! are (the containers' own bytes, not gemctl's printing).

use std::path::PathBuf;

use std::io::Write;

use clap::Args;

use super::{Output, json_line, runtime};
use crate::desired::Role;
use crate::docker::LogsWanted;
use crate::error::{Error, exit};
use crate::spec::Spec;

/// Show a generation's container logs, through the engine.
///
/// By default the live generation's app, database and services together, each
/// line prefixed with its container's name. `--role app|db|front` shows one
/// container (its bytes as they are; `front` is one for all generations),
/// `--role SERVICE` (a name under the spec's `services:`, e.g. `worker`) that
/// service's replicas, `--generation N`
/// another generation, `--since 10m` (or an RFC 3339 time) only recent lines,
/// `--timestamps` the engine's time on each line, and `-F`/`--follow` keeps
/// streaming (`-f` names the spec, as in every gemctl command).
/// Exit codes: 0 ok, 1 error (no such container, engine unreachable).
#[derive(Debug, Args)]
pub(super) struct LogsArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Generation (default: the live one, else the spec's).
    #[arg(long, short = 'g')]
    generation: Option<u64>,
    /// `app`, `db`, `front`, or a service's name (default: the app, the database
    /// and every service, prefixed).
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// Keep streaming new lines until interrupted.
    #[arg(long, short = 'F')]
    follow: bool,
    /// How many past lines to show (of each container).
    #[arg(long, default_value_t = 200)]
    tail: usize,
    /// Only lines since then: a duration ago (`10m`, `2h`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// The engine's timestamp (RFC 3339) before each line.
    #[arg(long, short = 't')]
    timestamps: bool,
    /// Output format: JSON is one document per line, `{"container", "line"}`.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Which container of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogRole {
    /// The app.
    App,
    /// The database.
    Db,
    /// The front door (`front:` in the spec).
    Front,
}

pub(super) fn run(args: LogsArgs) -> Result<u8, Error> {
    let LogsArgs {
        file,
        generation,
        role,
        follow,
        tail,
        since,
        timestamps,
        output,
    } = args;
    let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
    let since = since.as_deref().map(since_unix).transpose()?;
    let storage = crate::state::read_storage(&spec.storage)?;
    let generation = generation.or(storage.live).unwrap_or(spec.generation.0);
    let name = |role: LogRole| match role {
        LogRole::App => crate::desired::container_name(&spec, Role::App, generation),
        LogRole::Db => crate::desired::container_name(
            &spec,
            Role::Db,
            crate::state::db_generation(&spec.storage, generation),
        ),
        LogRole::Front => crate::front::container_name(&spec),
    };
    let db = crate::state::db_generation(&spec.storage, generation);
    let services = |only: Option<&str>| -> Vec<String> {
        crate::desired::services_on(&spec, generation, db)
            .into_iter()
            .filter(|c| only.is_none_or(|o| c.service.as_ref().is_some_and(|s| s.name == o)))
            .map(|c| c.name)
            .collect()
    };
    let names: Vec<String> = match role.as_deref() {
        Some("app") => vec![name(LogRole::App)],
        Some("db") => vec![name(LogRole::Db)],
        Some("front") => vec![name(LogRole::Front)],
        Some(service) if spec.services.contains_key(service) => services(Some(service)),
        Some(other) => {
            let mut known = vec!["app", "db", "front"];
            known.extend(spec.services.keys().map(String::as_str));
            return Err(Error::Usage(format!(
                "--role {other:?}: not a role of this spec; use one of {}",
                known.join(", ")
            )));
        }
        None => [name(LogRole::App), name(LogRole::Db)]
            .into_iter()
            .chain(services(None))
            .collect(),
    };
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let wanted = LogsWanted {
        tail,
        since,
        follow,
        timestamps,
    };
    let write = |bytes: &[u8]| {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|_| out.flush())
    };
    // As JSON, each whole line a document naming its container.
    let as_json = |name: &str, bytes: &[u8]| {
        let line = String::from_utf8_lossy(bytes);
        write(
            json_line(&serde_json::json!({
                "container": name,
                "line": line.trim_end_matches(['\n', '\r']),
            }))
            .as_bytes(),
        )
    };
    runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        let streams = names.iter().map(|name| {
            let prefix = match output {
                Output::Json => Some(String::new()),
                Output::Text => (names.len() > 1).then(|| format!("{name:<width$} | ")),
            };
            let (docker, file, wanted, write, as_json) =
                (&docker, &file, &wanted, &write, &as_json);
            async move {
                let json_out = |bytes: &[u8]| as_json(name, bytes);
                let out: &(dyn Fn(&[u8]) -> std::io::Result<()> + Sync) = match output {
                    Output::Json => &json_out,
                    Output::Text => write,
                };
                docker
                    .stream_logs(name, wanted, prefix.as_deref(), out)
                    .await
                    .map_err(|e| match e {
                        crate::engine::EngineError::NotFound { .. } => Error::Usage(format!(
                            "{name} does not exist on this host; `gemctl status -f {}` lists \
                             the generations",
                            file.display()
                        )),
                        other => other.into(),
                    })
            }
        });
        futures_util::future::join_all(streams)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, Error>>()
    })?;
    Ok(exit::OK)
}

/// `--since`: a duration ago, or an RFC 3339 time, as Unix seconds.
fn since_unix(text: &str) -> Result<i64, Error> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(text) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(std::time::UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| {
            Error::Usage(format!(
                "--since {text:?}: give a duration ago (`10m`, `2h30m`) or an RFC 3339 time \
                 (`2026-12-05T10:00:00Z`)"
            ))
        })?,
    };
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64))
}
