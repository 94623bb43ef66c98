//! Command-line parsing and dispatch: turns arguments into calls of the library and
//! outcomes into exit codes. The only place that prints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{Error, exit};
use crate::execute::{self, ApplyOptions, Event, Outcome};
use crate::incident::{Alert, Event as AlertEvent, Incidents};
use crate::observed::Observation;
use crate::plan::{self, PlanOptions};
use crate::render::{self, Style};
use crate::spec::{EnvFiles, Spec};

const EXIT_CODES_APPLY: &str = "\
Exit codes:
  0  converged: the host matches the spec (it may have already)
  3  refused: unrecognised containers or an unsafe state, nothing touched;
     or the desired generation failed before and is held back (use --retry);
     or --require-clean and the spec has uncommitted changes
  4  the new generation failed (its db would not start, the copy, its health
     checks, exposing it: any step until it is live): it was removed and the
     previous generation serves (again); see the failure report. If even that
     fall back fails, the exit code is 1 and the message names the cause
  1  any other error (bad spec or arguments, engine unreachable, a step
     failed, another gemctl holds the project's lock)";

const EXIT_CODES_STATUS: &str = "\
Exit codes:
  0  in sync with the spec
  2  not in sync: `gemctl apply` would act (or the desired generation is
     held back after a failure)
  3  unrecognised containers or an unsafe state: gemctl would refuse to act
  1  any other error (bad spec or arguments, engine unreachable)";

const EXIT_CODES_DIFF: &str = "\
Exit codes:
  0  in sync: the host already matches the spec
  2  changes pending: `gemctl apply` would act
  3  refused: unrecognised containers or an unsafe state (or the desired
     generation failed before and is held back); a human must look
  1  any other error (bad spec or arguments, engine unreachable)";

const EXIT_CODES: &str = "\
Exit codes (each command's --help says which it uses):
  0  success: in sync, converged, done (also --help and --version)
  1  any error: a bad spec or env file, bad arguments, the engine
     unreachable, a step failed
  2  changes pending: `gemctl apply` would act (diff, status)
  3  refused: an unsafe or unrecognised state, nothing touched (diff and
     status: gemctl would refuse); backups --verify: a backup is damaged
  4  the new generation failed its health checks; the previous one is
     live again (apply, rollback, restore, reconcile --once)";

/// gemctl deploys one app container and one PostgreSQL container onto a Docker host
/// in numbered generations, from a YAML spec kept in git.
///
/// `gemctl diff -f prod.yaml` shows what would change; `gemctl validate` checks a
/// spec alone; `gemctl schema` prints the JSON Schema editors use to check specs.
#[derive(Debug, Parser)]
#[command(name = "gemctl", version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a spec file: syntax, field names, values, cross-field rules (a safe
    /// storage root, each host port once) and the env files it names (readable
    /// UTF-8 KEY=value lines; values are never shown). The engine is not asked.
    ///
    /// Prints every problem as FILE:LINE:COLUMN: FIELD: MESSAGE. Every command
    /// that reads the spec makes the same checks.
    /// Exit codes: 0 valid, 1 invalid (or bad arguments).
    Validate {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Do not read the env files (on a machine without the secrets, e.g. CI).
        #[arg(long)]
        no_env_files: bool,
    },
    /// Print the JSON Schema of the spec (committed as schema/gemctl.schema.json).
    ///
    /// Editors use it to check specs as you type. Exit codes: 0 ok, 1 error.
    Schema,
    /// Print what gemctl sees on the host as JSON: containers, networks, the
    /// generations on storage and the failure history.
    ///
    /// The output can be saved and planned against later with
    /// `gemctl diff --observed FILE`, with no engine at all.
    /// Uses DOCKER_HOST when set. Exit codes: 0 ok, 1 error.
    Observe {
        /// The spec file (names the storage root to read).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
    },
    /// Carry out the plan: bootstrap, upgrade with data copy and a health-gated
    /// cut-over, rollback, repair, pruning.
    ///
    /// Prints each step with its duration. If the new generation fails its health
    /// checks, gemctl writes a report under <storage>/.gemctl/failures/, removes the
    /// new generation, brings the previous one back and records the generation as
    /// failed: later applies of the same spec leave it alone unless --retry is given.
    /// One apply at a time per project: a second one fails at once naming the first
    /// (<storage>/.gemctl/lock; a lock left by a dead process is taken over).
    /// Uses DOCKER_HOST when set.
    #[command(after_help = EXIT_CODES_APPLY)]
    Apply {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Only show the plan (the same as `gemctl diff`, with its exit codes).
        #[arg(long)]
        dry_run: bool,
        /// Output format: text, or JSON events one per line.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Try again a generation that failed its health checks before.
        #[arg(long)]
        retry: bool,
        /// Refuse (exit 3) while the spec file has uncommitted changes; the spec's
        /// `require_clean: true` makes this the default.
        #[arg(long)]
        require_clean: bool,
        /// Deploy the spec as committed at REV (a commit, tag or branch) instead of
        /// the file on disk.
        #[arg(long, value_name = "REV")]
        from_git: Option<String>,
        /// Also write the deployment report into DIR (e.g. next to the spec, to
        /// commit it with the spec change).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// List the deployment reports of this host, newest first, or show one.
    ///
    /// Every apply that changes anything writes a report under
    /// <storage>/.gemctl/reports/: when, who, the spec and its git commit, the
    /// generation before and after, each step with its duration and outcome, the
    /// health results. Exit codes: 0 ok, 1 error (no such report).
    History {
        /// The spec file (names the storage root).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Print one report whole (an ID as the list shows it).
        #[arg(long, value_name = "ID")]
        show: Option<String>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Go back to the previous retained generation (or --to N) in one command.
    ///
    /// For emergencies: no spec edit needed. The host is pinned to that generation
    /// (<storage>/.gemctl/pin) so apply and reconcile do not move forward again
    /// while the spec still names the newer generation; `gemctl unpin` or a new
    /// `generation` in the spec ends the pin. The newer generation's data is kept;
    /// writes made since the target generation was live are not in it. Under
    /// `require_clean`, a spec with uncommitted changes is refused (exit 3).
    #[command(after_help = EXIT_CODES_APPLY)]
    Rollback {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// The generation to return to (default: the newest retained one below the live one).
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Output format: text, or JSON events one per line.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Back up the live generation's databases, roles included, while the app
    /// keeps running.
    ///
    /// Writes one tar file, <project>-gen<n>-<UTC time>.tar, into the spec's
    /// `backup.dir` (default <storage>/backups): a pg_dump custom-format archive
    /// per database (each one consistent: every row committed before its dump
    /// began is in it) and pg_dumpall's roles, taken by a one-shot container of
    /// the db's image. Next to it, <name>.sha256 (`sha256sum -c` reads it). The
    /// file is written under a temporary name and renamed only when complete.
    /// Then the spec's retention (`backup.keep`, `backup.max_age`) is applied.
    /// Holds the project's lock while it runs.
    ///
    /// Exit codes: 0 written, 1 error (nothing half-written is left behind).
    Backup {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the project's backups: generation, when taken, age, size, checksum.
    ///
    /// Without --verify the CHECKSUM column says whether the checksum file is
    /// there (`present` / `MISSING`); --verify reads every backup and compares
    /// (`ok` / `MISMATCH`).
    ///
    /// Exit codes: 0 listed (with --verify: every backup intact), 3 with
    /// --verify: some backup is damaged or has no checksum file, 1 any other error.
    Backups {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Hash every backup and compare it with its checksum file.
        #[arg(long)]
        verify: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Restore a backup into a NEW generation, through the same health-gated
    /// cut-over as an upgrade.
    ///
    /// BACKUP is a path, or a name as `gemctl backups` lists it; --latest takes
    /// the newest. Its checksum is verified first: a damaged file is refused and
    /// nothing is changed. The backup is loaded into the next generation number on
    /// a fresh data directory while the current app keeps serving; the new app is
    /// health-checked before it is exposed, and if it fails the current generation
    /// is live again. The current generation's data is kept, so `gemctl rollback`
    /// can return to it. The host is pinned to the restored generation until the
    /// spec's `generation` moves past it (or `gemctl unpin`), so reconcile does
    /// not undo the restore; `status` and `diff` say so. Under `require_clean`, a
    /// spec with uncommitted changes is refused (exit 3).
    #[command(after_help = EXIT_CODES_APPLY)]
    Restore {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// The backup: a path or a name in the backup directory.
        #[arg(value_name = "BACKUP", required_unless_present = "latest")]
        backup: Option<String>,
        /// Restore the newest backup of this project.
        #[arg(long, conflicts_with = "backup")]
        latest: bool,
        /// Output format: text, or JSON events one per line.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Remove the pin `gemctl rollback` or `gemctl restore` set, so the host
    /// follows the spec again.
    ///
    /// Exit codes: 0 removed or no pin, 1 error.
    Unpin {
        /// The spec file (names the storage root).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
    },
    /// Keep the host converged: every round re-reads the spec, plans, and applies
    /// when the host drifted or the spec changed.
    ///
    /// Honours refusals (never acts past one), failed generations (not retried),
    /// pins and `require_clean` (a spec with uncommitted changes refuses the round;
    /// the loop goes on and deploys it once committed). Alerts are sent once per
    /// incident (a failure, a refusal, an unreachable engine), not every round, and
    /// `recovered` when a round runs clean after one. One log line per round
    /// (`--log-format json` for log shippers). SIGTERM / SIGINT end the loop after
    /// the current round, releasing the lock. `--once` runs a single round, for cron
    /// or a systemd timer; its exit code is that round's, as for `gemctl apply`.
    /// With `backup.every` in the spec, a round also backs up the live generation
    /// when the newest backup is that old (or there is none) and applies the
    /// backup retention; a failed backup fails the round and is notified (once
    /// while it keeps failing).
    #[command(after_help = EXIT_CODES_APPLY)]
    Reconcile {
        /// The spec file (re-read every round, so a `git pull` is picked up).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Time between rounds, e.g. `5m`, `30s`.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, required_unless_present = "once")]
        every: Option<std::time::Duration>,
        /// Run one round and exit.
        #[arg(long, conflicts_with = "every")]
        once: bool,
        /// Format of the per-round log lines (on stderr).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Remove the project's lock by force, after a human has made sure the gemctl
    /// holding it is gone.
    ///
    /// A lock left by a process that died on this host is taken over by the next
    /// apply on its own; this is for the other cases (a holder on another host
    /// sharing the storage, an unreadable lock). Asks to type the project name,
    /// unless --yes. Exit codes: 0 removed or no lock, 1 not confirmed or error.
    Unlock {
        /// The spec file (names the storage root).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Rebuild gemctl's records under the storage root from evidence, after an
    /// accident left one missing or corrupt.
    ///
    /// gemctl refuses to act (exit 3) when a record it needs cannot be trusted: a
    /// generation's marker (`<storage>/<n>/gemctl-ready.json`), `.gemctl/live`,
    /// `.gemctl/served.json`, `.gemctl/history.json` or `.gemctl/pin`. This command
    /// rebuilds what the engine's labels and the other records prove: the marker of
    /// a generation that served (ready), the record of served generations, the live
    /// pointer from the app serving now. A corrupt record is moved aside
    /// (`<file>.bad-<time>`), never deleted. What it cannot prove it leaves, and says
    /// how to decide: `--discard N` declares a generation's data debris that never
    /// served (the next apply deletes it; refused if anything says it served),
    /// `--ready N` declares it complete, `--reset-history` starts an empty failure
    /// history. A corrupt pin is removed with `gemctl unpin`. `--dry-run` shows the
    /// repairs without making them.
    ///
    /// Exit codes: 0 the records can be trusted now, 3 problems are left (listed,
    /// with what to do), 1 any other error.
    RepairState {
        /// The spec file (names the storage root).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Declare generation N's data debris that never served (repeatable).
        #[arg(long, value_name = "N")]
        discard: Vec<u64>,
        /// Declare generation N's data complete (repeatable).
        #[arg(long, value_name = "N")]
        ready: Vec<u64>,
        /// Move a corrupt `.gemctl/history.json` aside and start an empty one.
        #[arg(long)]
        reset_history: bool,
        /// Show the repairs, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show the generations on the host and whether it is in sync with the spec.
    ///
    /// One row per generation: its status (live; last good when no app of it
    /// runs; retained, rolled back from, failed, incomplete, pending), app and db
    /// state and health, image, creation time, data directory and size; and a
    /// line when no app is running. Uses DOCKER_HOST when set.
    #[command(after_help = EXIT_CODES_STATUS)]
    Status {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show a generation's container logs, through the engine.
    ///
    /// By default the live generation's app; `--role db` for its database,
    /// `--generation N` for another generation, `--follow` to keep streaming.
    /// Exit codes: 0 ok, 1 error (no such container, engine unreachable).
    Logs {
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
    },
    /// Show the ordered plan that would move the host to the spec.
    #[command(after_help = EXIT_CODES_DIFF)]
    Diff {
        /// The spec file.
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Plan against a saved observation (from `gemctl observe`) instead of the
        /// engine; the spec's env files need not be on this machine.
        #[arg(long, value_name = "FILE")]
        observed: Option<PathBuf>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Plan as if a generation that failed its health checks may be tried again.
        #[arg(long)]
        retry: bool,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which container of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogRole {
    /// The app.
    App,
    /// The database.
    Db,
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
        Command::Reconcile { log_format, .. } => init_tracing("info", *log_format),
        _ => init_tracing("warn", LogFormat::Text),
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(e.code())
        }
    }
}

fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GEMCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io(Path::new("tokio runtime"), "start", e))
}

fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (`gemctl diff | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io(Path::new("stdout"), "write", e))
        }
        _ => Ok(()),
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("serialisable") + "\n"
}

/// Runs one command; `Ok` carries the exit code of a command that ran to its verdict.
pub fn run(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Validate { file, no_env_files } => {
            let env_files = if no_env_files {
                EnvFiles::Skip
            } else {
                EnvFiles::Check
            };
            let spec = Spec::load_with(&file, env_files)?;
            print(&format!(
                "{}: valid (project {}, generation {}, retain {}){}\n",
                file.display(),
                spec.project,
                spec.generation,
                spec.retain.0,
                if no_env_files {
                    "; env files not checked"
                } else {
                    ""
                }
            ))?;
            Ok(exit::OK)
        }
        Command::Schema => {
            print(&schema_json())?;
            Ok(exit::OK)
        }
        Command::Observe { file } => {
            let spec = Spec::load(&file)?;
            let observation = observe_engine(&spec)?;
            print(&json(&observation))?;
            Ok(exit::OK)
        }
        Command::Apply {
            file,
            dry_run,
            output,
            retry,
            report_dir,
            require_clean,
            from_git,
        } => {
            let (spec, git) = match &from_git {
                Some(rev) => {
                    let (text, commit) = crate::git::show(&file, rev)?;
                    let spec = Spec::parse(&file, &text)?;
                    (
                        spec,
                        Some(crate::git::GitInfo {
                            commit,
                            dirty: false,
                        }),
                    )
                }
                None => (Spec::load(&file)?, crate::git::info(&file)),
            };
            if from_git.is_none() && unclean(&spec, &file, require_clean)?.is_some() {
                return Ok(exit::REFUSED);
            }
            if dry_run {
                let observation = observe_engine(&spec)?;
                return diff(
                    &spec,
                    &observation,
                    output,
                    PlanOptions {
                        retry_failed: retry,
                    },
                );
            }
            let _lock = take_lock(&spec)?;
            lapse_stale_pin(&spec)?;
            apply_once(
                &spec,
                &file,
                git,
                output,
                ApplyOptions { retry },
                report_dir.as_deref(),
            )
        }
        Command::Rollback { file, to, output } => {
            let spec = Spec::load(&file)?;
            if unclean(&spec, &file, false)?.is_some() {
                return Ok(exit::REFUSED);
            }
            let _lock = take_lock(&spec)?;
            let storage = crate::observe::read_storage(&spec.storage)?;
            let git = crate::git::info(&file);
            let rollback =
                |git| apply_once(&spec, &file, git, output, ApplyOptions::default(), None);
            if !storage.damage.is_empty() || storage.generations.iter().any(|g| g.marker.unknown())
            {
                // Nothing is pinned on records that cannot be trusted: the plan
                // refuses and lists them.
                return rollback(git);
            }
            let ready: Vec<u64> = storage
                .generations
                .iter()
                .filter(|d| d.ready())
                .map(|d| d.generation)
                .collect();
            let live = storage.live;
            // A rollback that was interrupted left its pin: running it again
            // finishes that one instead of going back one more generation.
            let resumed = storage
                .pin
                .as_ref()
                .filter(|p| p.restore_from.is_none() && p.applies(spec.generation.0))
                .map(|p| p.generation);
            let target = match to.or(resumed) {
                Some(n) => n,
                None => live
                    .and_then(|l| ready.iter().rev().find(|g| **g < l).copied())
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "no retained generation below the live one ({}) to roll back to; \
                             `gemctl rollback --to N` picks one, `gemctl status` lists them",
                            live.map_or("none".to_string(), |l| l.to_string())
                        ))
                    })?,
            };
            if !ready.contains(&target) {
                return Err(Error::Usage(format!(
                    "generation {target} has no data on this host; retained generations: {}",
                    ready
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if resumed == Some(target) {
                let _ = writeln!(
                    std::io::stderr(),
                    "note: finishing the rollback to generation {target} that was started \
                     before (the host is pinned to it)"
                );
            } else {
                let user = crate::lock::Holder::me("").user;
                crate::records::set_pin(
                    &spec.storage,
                    &crate::observed::Pin {
                        generation: target,
                        spec_generation: spec.generation.0,
                        at: crate::records::now_rfc3339(),
                        reason: format!("`gemctl rollback` ({user})"),
                        restore_from: None,
                    },
                )?;
            }
            rollback(git)
        }
        Command::Backup { file, output } => {
            let spec = Spec::load(&file)?;
            let _lock = take_lock(&spec)?;
            let (info, pruned) = backup_now(&spec, output == Output::Text)?;
            match output {
                Output::Json => print(&format!(
                    "{}\n",
                    serde_json::json!({ "backup": info, "pruned": pruned })
                ))?,
                Output::Text => {
                    let mut text = format!(
                        "project {}: backed up generation {} to {} ({})\nsha256 {} (in {}{})\n",
                        spec.project,
                        info.generation,
                        info.path.display(),
                        crate::status::human_bytes(info.size),
                        match &info.checksum {
                            crate::backup::Checksum::Ok { sha256 } => sha256.as_str(),
                            _ => "-",
                        },
                        info.name,
                        crate::backup::SUM_EXT
                    );
                    for name in &pruned {
                        text.push_str(&format!("pruned {name} (backup retention)\n"));
                    }
                    print(&text)?;
                }
            }
            Ok(exit::OK)
        }
        Command::Backups {
            file,
            verify,
            output,
        } => {
            let spec = Spec::load(&file)?;
            let dir = spec.backup_dir();
            let list = crate::backup::list(&dir, &spec.project, verify)?;
            let bad = list
                .iter()
                .any(|b| !matches!(b.checksum, crate::backup::Checksum::Ok { .. }));
            match output {
                Output::Json => print(&format!(
                    "{}\n",
                    serde_json::json!({ "dir": dir, "backups": list })
                ))?,
                Output::Text => print(&backups_text(&spec, &dir, &list))?,
            }
            Ok(if verify && bad {
                exit::REFUSED
            } else {
                exit::OK
            })
        }
        Command::Restore {
            file,
            backup,
            latest,
            output,
        } => restore(&file, backup.as_deref(), latest, output),
        Command::Unpin { file } => {
            let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
            let _lock = take_lock(&spec)?;
            if crate::records::clear_pin(&spec.storage)? {
                print(&format!(
                    "project {}: pin removed; the host follows the spec (generation {}) again: \
                     `gemctl diff` shows what apply would do\n",
                    spec.project, spec.generation
                ))?;
            } else {
                print(&format!("project {}: not pinned\n", spec.project))?;
            }
            Ok(exit::OK)
        }
        Command::Reconcile {
            file,
            every,
            once,
            log_format: _,
        } => reconcile(&file, if once { None } else { every }),
        Command::Unlock { file, yes } => {
            let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
            let path = crate::lock::path(&spec.storage);
            let who = match crate::lock::holder(&spec.storage) {
                None => {
                    print(&format!("project {}: not locked\n", spec.project))?;
                    return Ok(exit::OK);
                }
                Some(Ok(h)) => h.to_string(),
                Some(Err(text)) => format!("an unreadable lock ({})", text.trim()),
            };
            print(&format!("project {} is locked by {who}\n", spec.project))?;
            if !yes {
                print(&format!(
                    "If that gemctl is still running, removing its lock lets two writers collide.\n\
                     Type the project name ({}) to remove the lock: ",
                    spec.project
                ))?;
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                if answer.trim() != spec.project {
                    return Err(Error::Usage("not confirmed: the lock is kept".into()));
                }
            }
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, "remove", e))?;
            print("lock removed\n")?;
            Ok(exit::OK)
        }
        Command::RepairState {
            file,
            discard,
            ready,
            reset_history,
            dry_run,
            output,
        } => {
            let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
            let _lock = take_lock(&spec)?;
            let observation = observe_engine(&spec)?;
            let options = crate::repair::RepairOptions {
                discard,
                ready,
                reset_history,
            };
            let decided = crate::repair::decide(&spec, &observation, &options);
            let moved = if dry_run {
                Vec::new()
            } else {
                crate::repair::carry_out(&spec, &decided)?
            };
            let code = if decided.left.is_empty() {
                exit::OK
            } else {
                exit::REFUSED
            };
            match output {
                Output::Json => print(&json(&serde_json::json!({
                    "dry_run": dry_run,
                    "repairs": decided.repairs,
                    "moved_aside": moved,
                    "left": decided.left,
                })))?,
                Output::Text => {
                    let mut text = String::new();
                    let verb = if dry_run { "would" } else { "did" };
                    if decided.repairs.is_empty() {
                        text.push_str(&format!("project {}: nothing to rebuild\n", spec.project));
                    }
                    for r in &decided.repairs {
                        text.push_str(&format!("{verb}: {r}\n"));
                    }
                    for m in &moved {
                        text.push_str(&format!("moved aside: {}\n", m.display()));
                    }
                    for l in &decided.left {
                        text.push_str(&format!("left: {l}\n"));
                    }
                    if code == exit::OK && !dry_run {
                        text.push_str(
                            "the records can be trusted: `gemctl diff` shows what apply would do\n",
                        );
                    }
                    print(&text)?;
                }
            }
            Ok(code)
        }
        Command::History { file, show, output } => {
            let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
            let reports = crate::report::list(&spec.storage)?;
            if let Some(id) = show {
                let report = reports.iter().find(|r| r.id == id).ok_or_else(|| {
                    Error::Usage(format!(
                        "no report {id} under {}; `gemctl history -f {}` lists them",
                        crate::report::reports_dir(&spec.storage).display(),
                        file.display()
                    ))
                })?;
                print(&json(report))?;
                return Ok(exit::OK);
            }
            match output {
                Output::Json => print(&json(&reports))?,
                Output::Text => print(&history_text(&reports))?,
            }
            Ok(exit::OK)
        }
        Command::Logs {
            file,
            generation,
            role,
            follow,
            tail,
        } => {
            let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
            let storage = crate::observe::read_storage(&spec.storage)?;
            let generation = generation.or(storage.live).unwrap_or(spec.generation.0);
            let role = match role {
                LogRole::App => crate::desired::Role::App,
                LogRole::Db => crate::desired::Role::Db,
            };
            let name = crate::desired::container_name(&spec, role, generation);
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
        Command::Status { file, output } => {
            let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
            let observation = observe_engine(&spec)?;
            let planned = plan::plan(
                &spec,
                &observation.observed,
                &observation.history,
                PlanOptions::default(),
            );
            let status = crate::status::status(&spec, &observation, &planned);
            match output {
                Output::Json => print(&json(&status))?,
                Output::Text => print(&crate::status::render(&status))?,
            }
            Ok(match status.sync {
                "in_sync" => exit::OK,
                "refused" => exit::REFUSED,
                _ => exit::CHANGES,
            })
        }
        Command::Diff {
            file,
            observed,
            output,
            retry,
        } => {
            let env_files = if observed.is_some() {
                EnvFiles::Skip
            } else {
                EnvFiles::Check
            };
            let spec = Spec::load_with(&file, env_files)?;
            let observation = match observed {
                Some(path) => crate::observe::read_saved(&path)?,
                None => observe_engine(&spec)?,
            };
            diff(
                &spec,
                &observation,
                output,
                PlanOptions {
                    retry_failed: retry,
                },
            )
        }
    }
}

/// The JSON Schema of the spec, pretty-printed.
pub fn schema_json() -> String {
    json(&schemars::schema_for!(Spec))
}

fn observe_engine(spec: &Spec) -> Result<Observation, Error> {
    runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        crate::observe::observe(&docker, spec).await
    })
}

fn diff(
    spec: &Spec,
    observation: &Observation,
    output: Output,
    options: PlanOptions,
) -> Result<u8, Error> {
    let result = plan::plan(spec, &observation.observed, &observation.history, options);
    let code = match &result {
        Err(_) => exit::REFUSED,
        Ok(p) if p.steps.is_empty() && p.hold.is_some() => exit::REFUSED,
        Ok(p) if p.steps.is_empty() => exit::OK,
        Ok(_) => exit::CHANGES,
    };
    match output {
        Output::Json => {
            let doc = match &result {
                Ok(p) => {
                    let diffs = render::container_diffs(p, spec, &observation.observed);
                    let changes: Vec<serde_json::Value> = diffs
                        .iter()
                        .flat_map(|d| {
                            d.changes.iter().map(|c| {
                                serde_json::json!({
                                    "container": d.container,
                                    "field": c.field,
                                    "from": c.from,
                                    "to": c.to,
                                })
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "status": if p.steps.is_empty() { "in_sync" } else { "changes" },
                        "exit_code": code,
                        "plan": p,
                        "summary": p.summary(),
                        "changes": changes,
                        "container_diffs": diffs,
                    })
                }
                Err(r) => serde_json::json!({
                    "status": "refused",
                    "exit_code": code,
                    "refusal": r,
                }),
            };
            print(&json(&doc))?;
        }
        Output::Text => {
            let style = Style::detect(std::io::stdout().is_terminal());
            match &result {
                Ok(p) => print(&render::plan_text(p, spec, &observation.observed, style))?,
                Err(r) => print(&render::refusal_text(r, style))?,
            }
        }
    }
    Ok(code)
}

/// The reconcile loop. Each round is an apply under the lock; between rounds it
/// waits for the interval or a signal. Signals are caught for the whole process
/// once the loop starts, so a SIGTERM during a round lets that round finish.
fn reconcile(file: &Path, every: Option<std::time::Duration>) -> Result<u8, Error> {
    let waiter = runtime()?;
    let mut stop = waiter
        .block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate());
            let int = signal(SignalKind::interrupt());
            term.and_then(|t| int.map(|i| (t, i)))
        })
        .map_err(|e| Error::io(Path::new("signal handlers"), "install", e))?;
    let mut incidents = Incidents::default();
    // A spec that stops loading is told through the notifiers of the last one that loaded.
    let mut notifier: Option<Spec> = None;
    let mut round: u64 = 0;
    loop {
        round += 1;
        let started = std::time::Instant::now();
        let mut raised = Vec::new();
        let result = Spec::load(file).map_err(Error::from).and_then(|spec| {
            let code = reconcile_round(&spec, file, &mut raised);
            notifier = Some(spec);
            code
        });
        let code = match result {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(round, error = %e, "round failed");
                if !raised.iter().any(Alert::is_incident) {
                    raised.push(Alert::error(AlertEvent::Failed, e.to_string()));
                }
                e.code()
            }
        };
        if let Some(spec) = &notifier {
            send_alerts(spec, incidents.observe(raised));
        }
        tracing::info!(
            round,
            exit_code = code,
            duration_ms = started.elapsed().as_millis() as u64,
            "reconcile round done"
        );
        let Some(every) = every else {
            return Ok(code);
        };
        let stopped = waiter.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = stop.0.recv() => true,
                _ = stop.1.recv() => true,
            }
        });
        if stopped {
            tracing::info!(rounds = round, "signal received: stopping");
            return Ok(exit::OK);
        }
    }
}

/// One round; what it has to tell goes into `raised`. A spec with uncommitted
/// changes under `require_clean` refuses the whole round, backup included.
fn reconcile_round(spec: &Spec, file: &Path, raised: &mut Vec<Alert>) -> Result<u8, Error> {
    if let Some(refusal) = unclean(spec, file, false)? {
        raised.push(Alert::incident(
            AlertEvent::Refused,
            &refusal,
            refusal.as_str(),
        ));
        return Ok(exit::REFUSED);
    }
    let _lock = take_lock(spec)?;
    lapse_stale_pin(spec)?;
    let git = crate::git::info(file);
    let code = apply(
        spec,
        file,
        git,
        Output::Text,
        ApplyOptions::default(),
        None,
        raised,
    )?;
    // The live generation is backed up on schedule whatever the round decided
    // (a held or refused deploy leaves a live generation worth backing up).
    scheduled_backup(spec, raised)?;
    Ok(code)
}

/// With `backup.every` set, takes a backup when the newest is that old (or there
/// is none), then applies the retention. A failure is raised as `backup_failed`.
fn scheduled_backup(spec: &Spec, raised: &mut Vec<Alert>) -> Result<(), Error> {
    let Some(every) = spec.backup.as_ref().and_then(|b| b.every) else {
        return Ok(());
    };
    let attempt = || -> Result<(), Error> {
        let newest = crate::backup::list(&spec.backup_dir(), &spec.project, false)?
            .last()
            .map(|b| b.taken_at());
        let due = newest.is_none_or(|t| {
            std::time::SystemTime::now()
                .duration_since(t)
                .unwrap_or_default()
                >= every.get()
        });
        if due {
            let (info, pruned) = backup_now(spec, false)?;
            tracing::info!(
                backup = %info.path.display(),
                generation = info.generation,
                bytes = info.size,
                pruned = pruned.len(),
                "scheduled backup taken"
            );
        }
        Ok(())
    };
    attempt().inspect_err(|e| {
        let message = format!("the scheduled backup failed: {e}");
        raised.push(Alert::error(AlertEvent::BackupFailed, message));
    })
}

/// Sends alerts to the spec's notifiers, if any. A failing notifier is a
/// warning: the outcome it reports stands.
fn send_alerts(spec: &Spec, alerts: Vec<Alert>) {
    let Some(n) = &spec.notify else { return };
    for alert in alerts {
        let mut payload = serde_json::to_value(&alert).expect("serialisable");
        payload["project"] = spec.project.clone().into();
        for warning in crate::notify::send(n, &payload) {
            tracing::warn!("{warning}");
            let _ = writeln!(
                std::io::stderr(),
                "warning: {warning} (the outcome it reports stands)"
            );
        }
    }
}

/// `require_clean` (the spec's, or `--require-clean` when `flag`): the refusal,
/// printed, while the spec has uncommitted changes. The caller exits 3 having
/// touched nothing.
fn unclean(spec: &Spec, file: &Path, flag: bool) -> Result<Option<String>, Error> {
    if !(flag || spec.require_clean) {
        return Ok(None);
    }
    let refusal = crate::git::require_clean(file)?;
    if let Some(text) = &refusal {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
    Ok(refusal)
}

/// A pin made while the spec named another generation no longer applies: remove it.
fn lapse_stale_pin(spec: &Spec) -> Result<(), Error> {
    if let Some(pin) = crate::observe::read_storage(&spec.storage)?.pin
        && !pin.applies(spec.generation.0)
        && crate::records::clear_pin(&spec.storage)?
    {
        let _ = writeln!(
            std::io::stderr(),
            "note: the pin to generation {} lapsed: the spec's generation moved from {} to {}",
            pin.generation,
            pin.spec_generation,
            spec.generation
        );
    }
    Ok(())
}

/// Takes a backup of the live generation and applies the retention; the caller
/// holds the lock.
fn backup_now(
    spec: &Spec,
    progress: bool,
) -> Result<(crate::backup::BackupInfo, Vec<String>), Error> {
    let live = crate::observe::read_storage(&spec.storage)?
        .live
        .ok_or_else(|| {
            Error::Usage(format!(
                "project {} has no live generation on this host: nothing to back up",
                spec.project
            ))
        })?;
    if progress {
        let _ = writeln!(
            std::io::stderr(),
            "backing up generation {live} of project {} into {} …",
            spec.project,
            spec.backup_dir().display()
        );
    }
    let env = execute::db_env(spec)?;
    let info = runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        crate::backup::take(&docker, spec, &env, live).await
    })?;
    let pruned = crate::backup::prune(spec)?;
    Ok((info, pruned))
}

fn backups_text(spec: &Spec, dir: &Path, list: &[crate::backup::BackupInfo]) -> String {
    if list.is_empty() {
        return format!(
            "project {}: no backups in {} (take one with `gemctl backup -f SPEC`)\n",
            spec.project,
            dir.display()
        );
    }
    let mut out = format!(
        "{:<52}  {:>4}  {:<24}  {:>10}  {:>10}  CHECKSUM\n",
        "NAME", "GEN", "TAKEN", "AGE", "SIZE"
    );
    for b in list {
        let age = humantime::format_duration(std::time::Duration::from_secs(
            b.age_seconds - b.age_seconds % 60,
        ))
        .to_string();
        out.push_str(&format!(
            "{:<52}  {:>4}  {:<24}  {:>10}  {:>10}  {}\n",
            b.name,
            b.generation,
            b.taken,
            if b.age_seconds < 60 {
                "<1m".into()
            } else {
                age
            },
            crate::status::human_bytes(b.size),
            b.checksum
        ));
    }
    out.push_str(&format!("in {}\n", dir.display()));
    out
}

/// `gemctl restore`: verify, pin the next generation to the backup, apply.
fn restore(file: &Path, backup: Option<&str>, latest: bool, output: Output) -> Result<u8, Error> {
    let spec = Spec::load(file)?;
    if unclean(&spec, file, false)?.is_some() {
        return Ok(exit::REFUSED);
    }
    let _lock = take_lock(&spec)?;
    let path = match backup {
        Some(arg) => crate::backup::resolve(&spec, arg),
        None => {
            debug_assert!(latest);
            crate::backup::list(&spec.backup_dir(), &spec.project, false)?
                .pop()
                .map(|b| b.path)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--latest: project {} has no backups in {}",
                        spec.project,
                        spec.backup_dir().display()
                    ))
                })?
        }
    };
    crate::backup::verify(&path)?;
    let path = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, "find", e))?;
    let storage = crate::observe::read_storage(&spec.storage)?;
    let newest = storage
        .generations
        .iter()
        .map(|g| g.generation)
        .chain(storage.live)
        .max()
        .unwrap_or(0);
    let target = (newest + 1).max(spec.generation.0);
    let user = crate::lock::Holder::me("").user;
    let pin = crate::observed::Pin {
        generation: target,
        spec_generation: spec.generation.0,
        at: crate::records::now_rfc3339(),
        reason: format!("`gemctl restore` ({user})"),
        restore_from: Some(path.display().to_string()),
    };
    crate::records::set_pin(&spec.storage, &pin)?;
    let git = crate::git::info(file);
    let result = apply_once(&spec, file, git, output, ApplyOptions::default(), None);
    let unfinished = !matches!(result, Ok(exit::OK));
    let ours = crate::observe::read_storage(&spec.storage)?.pin.as_ref() == Some(&pin);
    if unfinished && ours {
        crate::records::clear_pin(&spec.storage)?;
        let _ = writeln!(
            std::io::stderr(),
            "the restore into generation {target} did not finish: its pin is removed, so the host \
             follows the spec again; whatever generation {target} left behind is cleared by the \
             next apply. The backup is untouched."
        );
    }
    result
}

fn take_lock(spec: &Spec) -> Result<crate::lock::Lock, Error> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let lock = crate::lock::acquire(&spec.storage, &command)?;
    if let Some(stale) = &lock.took_over {
        let _ = writeln!(
            std::io::stderr(),
            "note: took over a stale lock left by {stale} (that process is gone)"
        );
    }
    Ok(lock)
}

fn history_text(reports: &[crate::report::Report]) -> String {
    if reports.is_empty() {
        return "no deployments recorded on this host yet\n".into();
    }
    let mut out = format!(
        "{:<32}  {:<20}  {:<9}  {:<12}  {:<10}  BY\n",
        "ID", "FINISHED", "GEN", "OUTCOME", "COMMIT"
    );
    for r in reports {
        let generation = |g: Option<u64>| g.map_or("-".to_string(), |g| g.to_string());
        let commit = r.git.as_ref().map_or("-".to_string(), |g| {
            format!(
                "{}{}",
                &g.commit[..g.commit.len().min(8)],
                if g.dirty { "+" } else { "" }
            )
        });
        out.push_str(&format!(
            "{:<32}  {:<20}  {:<9}  {:<12}  {:<10}  {}@{}\n",
            r.id,
            r.finished,
            format!("{}→{}", generation(r.before), generation(r.after)),
            r.outcome,
            commit,
            r.user,
            r.host
        ));
    }
    out
}

/// An apply by a command run once: what it raises is sent at once.
fn apply_once(
    spec: &Spec,
    spec_file: &Path,
    git: Option<crate::git::GitInfo>,
    output: Output,
    options: ApplyOptions,
    report_dir: Option<&Path>,
) -> Result<u8, Error> {
    let mut raised = Vec::new();
    let result = apply(
        spec,
        spec_file,
        git,
        output,
        options,
        report_dir,
        &mut raised,
    );
    send_alerts(spec, Incidents::default().observe(raised));
    result
}

/// Runs an apply with its printing and report; what the notifiers should hear
/// of goes into `raised`.
fn apply(
    spec: &Spec,
    spec_file: &Path,
    git: Option<crate::git::GitInfo>,
    output: Output,
    options: ApplyOptions,
    report_dir: Option<&Path>,
    raised: &mut Vec<Alert>,
) -> Result<u8, Error> {
    let tty = std::io::stderr().is_terminal();
    let style = Style::detect(std::io::stdout().is_terminal());
    let mut printer = ApplyPrinter {
        output,
        tty,
        spec,
        started: std::time::Instant::now(),
        progress_shown: false,
        current: String::new(),
    };
    let mut recorder = crate::report::Recorder::new();
    let result = runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        execute::apply(&docker, spec, options, &mut |e| {
            recorder.event(&e);
            printer.event(e)
        })
        .await
    });
    printer.clear_progress();
    let write_report = |recorder: crate::report::Recorder,
                        outcome: &str,
                        code: u8,
                        message: &str,
                        failure: Option<PathBuf>|
     -> Result<Option<crate::report::Report>, Error> {
        if !recorder.changed() {
            return Ok(None);
        }
        let after = crate::observe::read_storage(&spec.storage)?.live;
        let report = recorder.finish(
            &spec.project,
            spec_file,
            git.clone(),
            after,
            outcome,
            code,
            message,
            failure,
        );
        crate::report::write(&crate::report::reports_dir(&spec.storage), &report)?;
        if let Some(dir) = report_dir {
            crate::report::write(dir, &report)?;
        }
        Ok(Some(report))
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            return Err(
                match write_report(recorder, "failed", e.code(), &e.to_string(), None) {
                    Ok(report) => {
                        raised.push(
                            Alert::error(AlertEvent::Failed, e.to_string()).with_report(report),
                        );
                        e
                    }
                    Err(w) => {
                        raised.push(Alert::error(AlertEvent::Failed, e.to_string()));
                        Error::Also {
                            source: Box::new(e),
                            also: vec![format!("the deployment report could not be written: {w}")],
                        }
                    }
                },
            );
        }
    };
    let (code, status, message) = match &outcome {
        Outcome::Converged { plan } if plan.steps.is_empty() => (
            exit::OK,
            "in_sync",
            format!(
                "project {}: generation {} already live, nothing to do",
                spec.project, plan.target
            ),
        ),
        Outcome::Converged { plan } => (
            exit::OK,
            "converged",
            format!(
                "project {}: generation {} is live ({} steps)",
                spec.project,
                plan.target,
                plan.steps.len()
            ),
        ),
        Outcome::Held { plan } => (exit::REFUSED, "held", plan.hold.clone().unwrap_or_default()),
        Outcome::Refused(r) => (exit::REFUSED, "refused", render::refusal_text(r, style)),
        Outcome::RolledBack {
            restore,
            failed,
            restored,
            step,
            kept_serving,
            report,
            reason,
            ..
        } => (
            exit::ROLLED_BACK,
            "rolled_back",
            format!(
                "generation {failed} failed at {step}: {reason}. It was removed; {}. \
                 Failure report: {}. {}",
                match restored {
                    None => "no generation is live (this was the first)".to_string(),
                    Some(g) if *kept_serving => {
                        format!("generation {g} kept serving (it was never stopped)")
                    }
                    Some(g) => format!("generation {g} is live again"),
                },
                report
                    .as_ref()
                    .map_or("none (see below)".into(), |r| r.display().to_string()),
                if *restore {
                    "The restore's pin is removed; the backup itself is untouched.".to_string()
                } else {
                    format!(
                        "A later apply of this spec leaves generation {failed} alone unless \
                         --retry is given."
                    )
                }
            ),
        ),
    };
    let (failure, mut also) = match &outcome {
        Outcome::RolledBack { report, also, .. } => (report.clone(), also.clone()),
        _ => (None, Vec::new()),
    };
    let report = write_report(recorder, status, code, &message, failure).unwrap_or_else(|w| {
        also.push(format!("the deployment report could not be written: {w}"));
        None
    });
    raised.extend(match &outcome {
        Outcome::RolledBack { failed, .. } => {
            Some(Alert::generation_failed(*failed, &message).with_report(report))
        }
        Outcome::Held { plan } => Some(Alert::held(plan.desired, &message)),
        Outcome::Refused(r) => Some(Alert::refused(r, &message)),
        Outcome::Converged { plan }
            if matches!(plan.kind, crate::plan::PlanKind::Rollback { .. }) =>
        {
            Some(Alert::news(AlertEvent::Rollback, &message).with_report(report))
        }
        Outcome::Converged { plan } if plan.kind == crate::plan::PlanKind::Restore => {
            Some(Alert::news(AlertEvent::Restore, &message).with_report(report))
        }
        _ => None,
    });
    match output {
        Output::Json => print(&(serde_json::json!({
            "event": "finished",
            "status": status,
            "exit_code": code,
            "message": message,
            "also": also,
            "refusal": match &outcome { Outcome::Refused(r) => serde_json::to_value(r).ok(), _ => None },
        }).to_string() + "\n"))?,
        Output::Text => {
            print(&format!("{}\n", message.trim_end()))?;
            for a in &also {
                let _ = writeln!(std::io::stderr(), "also: {a}");
            }
        }
    }
    Ok(code)
}

/// Prints apply events: a line per step with its duration, and a live progress
/// line on long steps when stderr is a terminal.
struct ApplyPrinter<'a> {
    output: Output,
    tty: bool,
    spec: &'a Spec,
    started: std::time::Instant,
    progress_shown: bool,
    current: String,
}

impl ApplyPrinter<'_> {
    /// A transient line on stderr, rewritten in place; only on a terminal.
    fn show_progress(&mut self, line: &str) {
        if self.tty {
            let width = 120;
            let shown: String = line.chars().take(width).collect();
            let _ = write!(std::io::stderr(), "\r\x1b[2K{shown}");
            self.progress_shown = true;
        }
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.progress_shown = false;
        }
    }

    fn event(&mut self, event: Event) {
        if self.output == Output::Json {
            let mut line = serde_json::to_value(&event).expect("serialisable");
            line["elapsed_ms"] = (self.started.elapsed().as_millis() as u64).into();
            let _ = print(&(line.to_string() + "\n"));
            return;
        }
        match event {
            Event::Plan { plan } if !plan.steps.is_empty() => {
                let mut head = format!(
                    "project {}: {} step(s) to reach generation {}",
                    self.spec.project,
                    plan.steps.len(),
                    plan.target
                );
                if let Some(h) = &plan.hold {
                    head.push_str(&format!("\nheld: {h}"));
                }
                for n in &plan.notes {
                    head.push_str(&format!("\nnote: {n}"));
                }
                let _ = print(&(head + "\n"));
            }
            Event::Plan { .. } => {}
            Event::StepStarted { index, total, step } => {
                self.current = format!(
                    "[{index:>2}/{total}] {} {}",
                    step.action.mark().symbol(),
                    step.action.describe()
                );
                let current = format!("{} ...", self.current);
                self.show_progress(&current);
            }
            Event::StepFinished { duration_ms, .. } => {
                self.clear_progress();
                let _ = print(&format!(
                    "{} ({:.1}s)\n",
                    self.current,
                    duration_ms as f64 / 1000.0
                ));
            }
            Event::Progress { message } => {
                let line = format!("{} ... {message}", self.current);
                self.show_progress(&line);
            }
            Event::Health { .. } => {}
            Event::Failure { message } => {
                self.clear_progress();
                let _ = print(&format!("\nFAILED: {message}\n"));
            }
        }
    }
}
