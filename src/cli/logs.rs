//! `gemctl logs`: a generation's container logs, streamed from the engine as they
//! are (the containers' own bytes, not gemctl's printing).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::runtime;
use crate::desired::Role;
use crate::error::{Error, exit};
use crate::spec::Spec;

/// Show a generation's container logs, through the engine.
///
/// By default the live generation's app; `--role db` for its database,
/// `--role front` for the front door (one for all generations), `--generation N`
/// for another generation, `--follow` to keep streaming.
/// Exit codes: 0 ok, 1 error (no such container, engine unreachable).
#[derive(Debug, Args)]
pub(super) struct LogsArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Generation (default: the live one, else the spec's).
    #[arg(long, short = 'g')]
    generation: Option<u64>,
    /// Which container.
    #[arg(long, value_enum, default_value_t = LogRole::App)]
    role: LogRole,
    /// Keep streaming new lines until interrupted.
    #[arg(long)]
    follow: bool,
    /// How many past lines to show.
    #[arg(long, default_value_t = 200)]
    tail: usize,
}

/// Which container of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    } = args;
    let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
    let storage = crate::state::read_storage(&spec.storage)?;
    let generation = generation.or(storage.live).unwrap_or(spec.generation.0);
    let name = match role {
        LogRole::App => crate::desired::container_name(&spec, Role::App, generation),
        LogRole::Db => crate::desired::container_name(
            &spec,
            Role::Db,
            crate::state::db_generation(&spec.storage, generation),
        ),
        LogRole::Front => crate::front::container_name(&spec),
    };
    runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        docker
            .stream_logs(&name, tail, follow, &mut std::io::stdout())
            .await
            .map_err(|e| match e {
                crate::engine::EngineError::NotFound { .. } => Error::Usage(format!(
                    "{name} does not exist on this host; `gemctl status -f {}` lists the generations",
                    file.display()
                )),
                other => other.into(),
            })
    })?;
    Ok(exit::OK)
}
