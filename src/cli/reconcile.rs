//! `gemctl reconcile`: rounds of apply (and scheduled backups) under the lock,
//! each one logged and its alerts sent once per incident, until a signal stops it.

use std::path::{Path, PathBuf};

use clap::Args;

use super::backups::backup_now;
use super::deploy::{EXIT_CODES_APPLY, deploy, send_alerts, unclean};
use super::lock::{lapse_stale_pin, take_lock};
use super::{LOG_TARGET, LogFormat, Output, runtime};
use crate::error::{Error, exit};
use crate::execute::ApplyOptions;
use crate::incident::{Alert, Event as AlertEvent, Incidents};
use crate::spec::Spec;

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
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_APPLY)]
pub(super) struct ReconcileArgs {
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
    pub(super) log_format: LogFormat,
}

pub(super) fn run(args: ReconcileArgs) -> Result<u8, Error> {
    let every = if args.once { None } else { args.every };
    reconcile(&args.file, every)
}

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
                tracing::error!(target: LOG_TARGET, round, error = %e, "round failed");
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
            target: LOG_TARGET,
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
            tracing::info!(target: LOG_TARGET, rounds = round, "signal received: stopping");
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
    let code = deploy(
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
    scheduled_drill(spec, raised);
    Ok(code)
}

/// With `backup.drill.every` set: when that long has passed since the last drill
/// (or there was none), the newest backup not drilled yet is restored into a
/// throwaway database and checked (no lock: the live generation is not
/// touched). While the newest drilled backup failed its drill, the round raises
/// `drill_failed` (told once).
fn scheduled_drill(spec: &Spec, raised: &mut Vec<Alert>) {
    let Some(every) = spec
        .backup
        .as_ref()
        .and_then(|b| b.drill.as_ref())
        .and_then(|d| d.every)
    else {
        return;
    };
    let attempt = || -> Result<(), Error> {
        let backups = crate::backup::list(&spec.backup_dir(), &spec.project, false)?;
        let last = backups
            .iter()
            .filter_map(|b| b.drill.as_ref())
            .filter_map(|d| humantime::parse_rfc3339(&d.at).ok())
            .max();
        let due = last.is_none_or(|t| {
            std::time::SystemTime::now()
                .duration_since(t)
                .unwrap_or_default()
                >= every.get()
        });
        if crate::throwaway::in_use(&spec.storage, crate::throwaway::Kind::Drill) {
            tracing::info!(
                target: LOG_TARGET,
                "a restore drill is running (another gemctl's): the scheduled one waits"
            );
            return Ok(());
        }
        if let Some(b) = backups.iter().rev().find(|b| b.drill.is_none())
            && due
        {
            let d = super::backups::drill_one(spec, &b.path, false)?;
            tracing::info!(
                target: LOG_TARGET,
                backup = %b.name,
                passed = d.passed,
                ms = d.duration_ms,
                "scheduled restore drill"
            );
        }
        Ok(())
    };
    if let Err(e) = attempt() {
        raised.push(Alert::error(
            AlertEvent::DrillFailed,
            format!("the scheduled restore drill could not run: {e}"),
        ));
        return;
    }
    let newest_drilled = crate::backup::list(&spec.backup_dir(), &spec.project, false)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find_map(|b| b.drill.map(|d| (b.name, d)));
    if let Some((name, d)) = newest_drilled
        && !d.passed
    {
        raised.push(Alert::error(
            AlertEvent::DrillFailed,
            format!(
                "backup {name} does not restore (drill of {}): {}",
                d.at,
                d.error.as_deref().unwrap_or("?")
            ),
        ));
    }
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
                target: LOG_TARGET,
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
