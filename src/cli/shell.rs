//! `gemctl psql` and `gemctl exec`: into the running stack. A command runs in a
//! container of the live (or a named) generation with this terminal attached,
//! as `docker exec -it` would run it, and its exit code is gemctl's.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::runtime;
use crate::copy::DbCredentials;
use crate::desired::{self, Role};
use crate::engine::Engine;
use crate::error::Error;
use crate::spec::Spec;

/// Open psql in the live generation's database, as the spec's superuser.
///
/// Interactive on a terminal; on a pipe it reads SQL from stdin and writes the
/// results to stdout (`echo 'select 1' | gemctl psql -f prod.yaml -- -At`).
/// Arguments after `--` go to psql (`-- -c 'select count(*) from items'`).
/// `--generation N` opens a retained generation's database instead (it must be
/// running). Exit codes: psql's own; 1 when gemctl could not start it.
#[derive(Debug, Args)]
pub(super) struct PsqlArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Generation (default: the live one).
    #[arg(long, short = 'g')]
    generation: Option<u64>,
    /// Arguments passed to psql.
    #[arg(last = true, value_name = "PSQL_ARGS")]
    args: Vec<String>,
}

/// Run a command in a container of the live generation.
///
/// `gemctl exec -f prod.yaml -- sh -c 'env | sort'` runs in the app;
/// `--role db` in its database, `--generation N` in another generation's. The
/// terminal is attached as with `docker exec -it` (stdin is passed on when it is
/// a pipe). Exit codes: the command's own; 1 when gemctl could not start it.
#[derive(Debug, Args)]
pub(super) struct ExecArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Which container.
    #[arg(long, value_enum, default_value_t = ShellRole::App)]
    role: ShellRole,
    /// Generation (default: the live one).
    #[arg(long, short = 'g')]
    generation: Option<u64>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Which container of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShellRole {
    /// The app.
    App,
    /// The database.
    Db,
}

pub(super) fn psql(args: PsqlArgs) -> Result<u8, Error> {
    let spec = Spec::load(&args.file)?;
    let creds = DbCredentials::from_env(&crate::execute::db_env(&spec)?);
    let mut cmd: Vec<String> = ["psql", "-U", &creds.user, "-d", &creds.database]
        .map(String::from)
        .to_vec();
    cmd.extend(args.args);
    run_in(&spec, &args.file, Role::Db, args.generation, &cmd)
}

pub(super) fn exec(args: ExecArgs) -> Result<u8, Error> {
    let spec = Spec::load_with(&args.file, crate::spec::EnvFiles::Skip)?;
    let role = match args.role {
        ShellRole::App => Role::App,
        ShellRole::Db => Role::Db,
    };
    run_in(&spec, &args.file, role, args.generation, &args.command)
}

/// Runs `cmd` attached in `role`'s container of `generation` (default: live).
fn run_in(
    spec: &Spec,
    file: &std::path::Path,
    role: Role,
    generation: Option<u64>,
    cmd: &[String],
) -> Result<u8, Error> {
    let storage = crate::state::read_storage(&spec.storage)?;
    let Some(generation) = generation.or(storage.live) else {
        return Err(Error::Usage(format!(
            "no generation of project {} is live on this host: run `gemctl apply -f {}` \
             first, or name one with --generation",
            spec.project,
            file.display()
        )));
    };
    let of = match role {
        Role::App | Role::Service => generation,
        Role::Db => crate::state::db_generation(&spec.storage, generation),
    };
    let name = desired::container_name(spec, role, of);
    runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        let containers = docker.list_containers().await?;
        match containers.iter().find(|c| c.name == name) {
            Some(c) if c.state.is_up() => {}
            Some(c) => {
                return Err(Error::Usage(format!(
                    "{name} is {} (generation {generation} is not running): `gemctl status -f \
                     {}` shows what runs",
                    c.state,
                    file.display()
                )));
            }
            None => {
                return Err(Error::Usage(format!(
                    "{name} does not exist on this host; `gemctl status -f {}` lists the \
                     generations",
                    file.display()
                )));
            }
        }
        let code = docker.exec_attached(&name, cmd).await?;
        Ok(u8::try_from(code).unwrap_or(1))
    })
}
