//! Command-line parsing and dispatch: turns arguments into calls of the library and
//! outcomes into exit codes, in [`main`] alone. Each command (or family of commands)
//! has its room beside this file: its arguments, what it does, and its printing.
//! Nothing outside `cli` prints.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{Error, exit};
use crate::observed::Observation;
use crate::spec::Spec;

mod audited;
mod backups;
mod completions;
mod deploy;
pub mod diff;
mod history;
mod init;
mod lock;
mod logs;
mod maintenance;
mod man;
mod observe;
mod preview;
mod reconcile;
mod repair;
mod shell;
mod spec;
mod status;
mod table;

pub use spec::schema_json;

const EXIT_CODES: &str = "\
Exit codes (each command's --help says which it uses):
  0  success: in sync, converged, done (also --help and --version)
  1  any error: a bad spec or env file, bad arguments, the engine
     unreachable or on another machine, a step failed
  2  changes pending: `gemctl apply` would act (diff, status)
  3  refused: an unsafe or unrecognised state, nothing touched (diff and
     status: gemctl would refuse); backups --verify: a backup is damaged
  4  the new generation failed (its health checks or any step before it
     was live); the previous one serves again (apply, rollback, restore,
     reconcile --once); apply --check and preview: the release fails its
     checks on a copy; backups --drill: the backup does not restore
psql and exec exit with the command's own code (1 when gemctl could not
start it).";

/// gemctl deploys one app container and one PostgreSQL container onto a Docker host
/// in numbered generations, from a YAML spec kept in git.
///
/// `gemctl diff -f prod.yaml` shows what would change; `gemctl validate` checks a
/// spec alone; `gemctl schema` prints the JSON Schema editors use to check specs.
#[derive(Debug, Parser)]
#[command(
    name = "gemctl",
    version = crate::version::LONG,
    propagate_version = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands, in the order `--help` lists them; each one's help text is on its
/// arguments, in its own file.
#[derive(Debug, Subcommand)]
enum Command {
    Validate(spec::ValidateArgs),
    Schema(spec::SchemaArgs),
    Observe(observe::ObserveArgs),
    Apply(deploy::ApplyArgs),
    Preview(preview::PreviewArgs),
    History(history::HistoryArgs),
    Rollback(deploy::RollbackArgs),
    Backup(backups::BackupArgs),
    Backups(backups::BackupsArgs),
    Restore(deploy::RestoreArgs),
    Unpin(lock::UnpinArgs),
    Reconcile(reconcile::ReconcileArgs),
    Unlock(lock::UnlockArgs),
    RepairState(repair::RepairStateArgs),
    Status(status::StatusArgs),
    Logs(logs::LogsArgs),
    Psql(shell::PsqlArgs),
    Exec(shell::ExecArgs),
    Maintenance(maintenance::MaintenanceArgs),
    Diff(diff::DiffArgs),
    Init(init::InitArgs),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
}

/// The target of gemctl's own log lines, as it was before the CLI became a folder:
/// log shippers and `GEMCTL_LOG` filters key on it.
const LOG_TARGET: &str = "gemctl::cli";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For humans.
    Text,
    /// For scripts: one JSON document.
    Json,
}

/// Parses the process arguments, runs the command, returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap would exit 2, which `diff` and `status` use for "changes
            // pending": a script must not read a typo as a verdict.
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::ERROR,
            });
        }
    };
    match &cli.command {
        Command::Reconcile(args) => init_tracing("info", args.log_format),
        _ => init_tracing("warn", LogFormat::Text),
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            // A script reading JSON gets the error as JSON too, on stdout.
            if json_requested() {
                let _ = print(&json(&serde_json::json!({
                    "error": e.to_string(),
                    "exit_code": e.code(),
                })));
            }
            ExitCode::from(e.code())
        }
    }
}

/// Log lines go to stderr, coloured only where anstream would colour: a terminal,
/// without `NO_COLOR`; a file or the journal gets plain text.
fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GEMCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs one command; `Ok` carries the exit code of a command that ran to its verdict.
/// A command that changes something, or is refused, leaves a line in the audit
/// trail.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let audit = audited::audited(&cli.command);
    let started = crate::state::now_rfc3339();
    let result = dispatch(cli);
    if let Some((kind, file)) = audit {
        audited::record(kind, &file, &started, &result);
    }
    result
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Validate(args) => spec::validate(args),
        Command::Schema(_) => spec::schema(),
        Command::Observe(args) => observe::run(args),
        Command::Apply(args) => deploy::apply(args),
        Command::Preview(args) => preview::run(args),
        Command::History(args) => history::run(args),
        Command::Rollback(args) => deploy::rollback(args),
        Command::Backup(args) => backups::backup(args),
        Command::Backups(args) => backups::list(args),
        Command::Restore(args) => deploy::restore(args),
        Command::Unpin(args) => lock::unpin(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Unlock(args) => lock::unlock(args),
        Command::RepairState(args) => repair::run(args),
        Command::Status(args) => status::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Psql(args) => shell::psql(args),
        Command::Exec(args) => shell::exec(args),
        Command::Maintenance(args) => maintenance::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Init(args) => init::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => man::man(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io(Path::new("tokio runtime"), "start", e))
}

/// Writes to stdout through anstream, which drops colours unless stdout is a
/// terminal and `NO_COLOR` is unset.
fn print(text: &str) -> Result<(), Error> {
    let mut out = anstream::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (`gemctl diff | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io(Path::new("stdout"), "write", e))
        }
        _ => Ok(()),
    }
}

/// One JSON document as every command prints it: its fields, and `gemctl` (the
/// version and commit that printed it).
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(&document(value)).expect("serialisable") + "\n"
}

/// One line of a stream of JSON documents (`apply --output json`), with `gemctl`.
fn json_line(value: &impl serde::Serialize) -> String {
    document(value).to_string() + "\n"
}

fn document(value: &impl serde::Serialize) -> serde_json::Value {
    let mut v = serde_json::to_value(value).expect("serialisable");
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("gemctl".into(), crate::version::LONG.into());
    }
    v
}

/// Whether the command line asks for JSON (`--output json`, `-o json`).
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .any(|w| (w[0] == "--output" || w[0] == "-o") && w[1] == "json")
        || args.iter().any(|a| a == "--output=json" || a == "-ojson")
}

fn observe_engine(spec: &Spec) -> Result<Observation, Error> {
    runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        crate::observe::observe(&docker, spec).await
    })
}
