//! `gemctl apply`, `rollback` and `restore`: the commands that carry out a plan,
//! and the printing of a run (a line per step, the verdict, the report) that
//! `reconcile` shares. Not for showing a plan without acting: that is `diff`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::diff;
use super::lock::{lapse_stale_pin, take_lock};
use super::{LOG_TARGET, Output, json_line, observe_engine, print, runtime};
use crate::error::{Error, exit};
use crate::execute::{self, ApplyOptions, Event, Outcome};
use crate::incident::{Alert, Event as AlertEvent, Incidents};
use crate::plan::PlanOptions;
use crate::spec::Spec;

pub(super) const EXIT_CODES_APPLY: &str = "\
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

/// Carry out the plan: bootstrap, upgrade with data copy and a health-gated
/// cut-over, rollback, repair, pruning.
///
/// Prints each step with its duration. If the new generation fails its health
/// checks, gemctl writes a report under <storage>/.gemctl/failures/, removes the
/// new generation, brings the previous one back and records the generation as
/// failed: later applies of the same spec leave it alone unless --retry is given.
/// One apply at a time per project: a second one fails at once naming the first
/// (<storage>/.gemctl/lock; a lock left by a dead process is taken over).
/// Uses the engine `docker ps` would (DOCKER_HOST, DOCKER_CONTEXT, the current
/// context), which must be on this machine.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_APPLY)]
pub(super) struct ApplyArgs {
    /// The spec file (with a saved plan: the one it was made from, by default).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "SPEC",
        required_unless_present = "plan"
    )]
    file: Option<PathBuf>,
    /// A plan saved by `gemctl diff --out PLAN`: carried out exactly as written,
    /// or refused (exit 3) when the host or the spec changed since it was made.
    #[arg(value_name = "PLAN", conflicts_with_all = ["dry_run", "retry", "from_git"])]
    plan: Option<PathBuf>,
    /// Only show the plan (the same as `gemctl diff`, with its exit codes).
    #[arg(long)]
    dry_run: bool,
    /// Test the deploy without making it: the spec's generation runs on a
    /// throwaway copy of live data (services and app, health-checked), is
    /// reported (<storage>/.gemctl/reports/checks/) and discarded; nothing live
    /// is touched. Exit 0: the release would pass; 4: it would not (the failing
    /// checks and logs are shown); 3: it would be refused.
    #[arg(long, conflicts_with_all = ["plan", "dry_run", "retry", "from_git"])]
    check: bool,
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
}

impl ApplyArgs {
    /// The spec an audit record names: `--file`, else the saved plan's; `None`
    /// for a dry run, which changes nothing.
    pub(super) fn audit_spec(&self) -> Option<PathBuf> {
        if self.dry_run || self.check {
            return None;
        }
        self.file.clone().or_else(|| {
            let plan = self.plan.as_deref()?;
            Some(crate::saved_plan::SavedPlan::read(plan).ok()?.spec_file)
        })
    }
}

/// Go back to the previous retained generation (or --to N) in one command.
///
/// For emergencies: no spec edit needed. The host is pinned to that generation
/// (<storage>/.gemctl/pin) so apply and reconcile do not move forward again
/// while the spec still names the newer generation; `gemctl unpin` or a new
/// `generation` in the spec ends the pin. The newer generation's data is kept;
/// writes made since the target generation was live are not in it. Under
/// `require_clean`, a spec with uncommitted changes is refused (exit 3).
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_APPLY)]
pub(super) struct RollbackArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// The generation to return to (default: the newest retained one below the live one).
    #[arg(long, value_name = "N")]
    to: Option<u64>,
    /// Output format: text, or JSON events one per line.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl RollbackArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &std::path::Path {
        &self.file
    }
}

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
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_APPLY)]
pub(super) struct RestoreArgs {
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
}

impl RestoreArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &std::path::Path {
        &self.file
    }
}

pub(super) fn apply(args: ApplyArgs) -> Result<u8, Error> {
    let ApplyArgs {
        file,
        plan,
        dry_run,
        check,
        output,
        retry,
        report_dir,
        require_clean,
        from_git,
    } = args;
    let saved = plan
        .as_deref()
        .map(crate::saved_plan::SavedPlan::read)
        .transpose()?
        .map(std::sync::Arc::new);
    let file = match (file, &saved) {
        (Some(file), _) => file,
        (None, Some(saved)) => saved.spec_file.clone(),
        (None, None) => unreachable!("clap requires --file without a plan"),
    };
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
    if check {
        return super::preview::check(&spec, output);
    }
    if dry_run {
        let observation = observe_engine(&spec)?;
        return diff::show(
            &spec,
            &observation,
            output,
            PlanOptions {
                retry_failed: retry,
            },
        );
    }
    // An engine on another machine is refused before the lock leaves anything.
    crate::docker::Docker::local_endpoint()?;
    let _lock = take_lock(&spec)?;
    lapse_stale_pin(&spec)?;
    deploy_once(
        &spec,
        &file,
        git,
        output,
        ApplyOptions { retry, saved },
        report_dir.as_deref(),
    )
}

pub(super) fn rollback(args: RollbackArgs) -> Result<u8, Error> {
    let RollbackArgs { file, to, output } = args;
    let spec = Spec::load(&file)?;
    if unclean(&spec, &file, false)?.is_some() {
        return Ok(exit::REFUSED);
    }
    // An engine on another machine is refused before the lock leaves anything.
    crate::docker::Docker::local_endpoint()?;
    let _lock = take_lock(&spec)?;
    let storage = crate::state::read_storage(&spec.storage)?;
    let git = crate::git::info(&file);
    let rollback = |git| deploy_once(&spec, &file, git, output, ApplyOptions::default(), None);
    if !storage.damage.is_empty() || storage.generations.iter().any(|g| g.marker.unknown()) {
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
        crate::state::set_pin(
            &spec.storage,
            &crate::observed::Pin {
                generation: target,
                spec_generation: spec.generation.0,
                at: crate::state::now_rfc3339(),
                reason: format!("`gemctl rollback` ({user})"),
                restore_from: None,
            },
        )?;
    }
    rollback(git)
}

/// `gemctl restore`: verify, pin the next generation to the backup, apply.
pub(super) fn restore(args: RestoreArgs) -> Result<u8, Error> {
    let RestoreArgs {
        file,
        backup,
        latest,
        output,
    } = args;
    let file = file.as_path();
    let spec = Spec::load(file)?;
    if unclean(&spec, file, false)?.is_some() {
        return Ok(exit::REFUSED);
    }
    // An engine on another machine is refused before the lock leaves anything.
    crate::docker::Docker::local_endpoint()?;
    let _lock = take_lock(&spec)?;
    let path = match backup.as_deref() {
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
    let storage = crate::state::read_storage(&spec.storage)?;
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
        at: crate::state::now_rfc3339(),
        reason: format!("`gemctl restore` ({user})"),
        restore_from: Some(path.display().to_string()),
    };
    crate::state::set_pin(&spec.storage, &pin)?;
    let git = crate::git::info(file);
    let result = deploy_once(&spec, file, git, output, ApplyOptions::default(), None);
    let unfinished = !matches!(result, Ok(exit::OK));
    let ours = crate::state::read_storage(&spec.storage)?.pin.as_ref() == Some(&pin);
    if unfinished && ours {
        crate::state::clear_pin(&spec.storage)?;
        let _ = writeln!(
            std::io::stderr(),
            "the restore into generation {target} did not finish: its pin is removed, so the host \
             follows the spec again; whatever generation {target} left behind is cleared by the \
             next apply. The backup is untouched."
        );
    }
    result
}

pub(super) fn send_alerts(spec: &Spec, alerts: Vec<Alert>) {
    let Some(n) = &spec.notify else { return };
    for alert in alerts {
        let mut payload = serde_json::to_value(&alert).expect("serialisable");
        payload["project"] = spec.project.clone().into();
        for warning in crate::notify::send(n, &payload) {
            tracing::warn!(target: LOG_TARGET, "{warning}");
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
pub(super) fn unclean(spec: &Spec, file: &Path, flag: bool) -> Result<Option<String>, Error> {
    if !(flag || spec.require_clean) {
        return Ok(None);
    }
    let refusal = crate::git::require_clean(file)?;
    if let Some(text) = &refusal {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
    Ok(refusal)
}

/// An apply by a command run once: what it raises is sent at once.
fn deploy_once(
    spec: &Spec,
    spec_file: &Path,
    git: Option<crate::git::GitInfo>,
    output: Output,
    options: ApplyOptions,
    report_dir: Option<&Path>,
) -> Result<u8, Error> {
    let mut raised = Vec::new();
    let result = deploy(
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
pub(super) fn deploy(
    spec: &Spec,
    spec_file: &Path,
    git: Option<crate::git::GitInfo>,
    output: Output,
    options: ApplyOptions,
    report_dir: Option<&Path>,
    raised: &mut Vec<Alert>,
) -> Result<u8, Error> {
    let mut printer = ApplyPrinter {
        output,
        spec,
        started: std::time::Instant::now(),
        current: String::new(),
        progress: None,
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
        let after = crate::state::read_storage(&spec.storage)?.live;
        let mut report = recorder.finish(
            &spec.project,
            spec_file,
            git.clone(),
            after,
            outcome,
            code,
            message,
            failure,
        );
        report.maintenance = maintenance(spec);
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
        Outcome::Refused(r) => (
            exit::REFUSED,
            "refused",
            anstream::adapter::strip_str(&diff::refusal_text(r)).to_string(),
        ),
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
    let message = match maintenance(spec) {
        Some(m) => format!(
            "{message}\nThe front answers in maintenance (since {}): clients get the \
             maintenance page until `gemctl maintenance off -f {}`.",
            m.since,
            spec_file.display()
        ),
        None => message,
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
        Output::Json => print(&json_line(&serde_json::json!({
            "event": "finished",
            "outcome": status,
            "status": status,
            "exit_code": code,
            "message": message,
            "also": also,
            "refusal": match &outcome { Outcome::Refused(r) => serde_json::to_value(r).ok(), _ => None },
        })))?,
        Output::Text => {
            // The report and the alert carry the plain message; the terminal may
            // get the refusal in colour.
            let shown = match &outcome {
                Outcome::Refused(r) => diff::refusal_text(r),
                _ => message.clone(),
            };
            print(&format!("{}\n", shown.trim_end()))?;
            for a in &also {
                let _ = writeln!(std::io::stderr(), "also: {a}");
            }
        }
    }
    Ok(code)
}

/// The front's maintenance setting, when the spec has a front and it is on.
fn maintenance(spec: &Spec) -> Option<crate::front::Maintenance> {
    spec.front.as_ref()?;
    crate::state::read_front(&spec.storage).ok()?.maintenance
}

/// Prints apply events: a line per step with its duration, and a live progress
/// line (a spinner and the time spent) while a step runs, when stderr is a terminal.
struct ApplyPrinter<'a> {
    output: Output,
    spec: &'a Spec,
    started: std::time::Instant,
    current: String,
    /// The step under way; indicatif draws it only on a terminal.
    progress: Option<ProgressBar>,
}

impl ApplyPrinter<'_> {
    /// Rewrites the progress line of the step under way.
    fn show_progress(&mut self, line: String) {
        let bar = self.progress.get_or_insert_with(|| {
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{wide_msg} {spinner} {elapsed}")
                    .expect("a valid template"),
            );
            // Ticks keep the spinner and the time moving while a long copy or
            // verify has nothing new to say.
            if !bar.is_hidden() {
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
            }
            bar
        });
        bar.set_message(line);
    }

    fn clear_progress(&mut self) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
    }

    fn event(&mut self, event: Event) {
        if self.output == Output::Json {
            let mut line = serde_json::to_value(&event).expect("serialisable");
            line["elapsed_ms"] = (self.started.elapsed().as_millis() as u64).into();
            let _ = print(&json_line(&line));
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
                if let Some(copy) = &plan.copy {
                    head.push_str(&format!("\ncopy mode: {} ({})", copy.mode, copy.reason));
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
                self.clear_progress();
                self.show_progress(format!("{} ...", self.current));
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
                self.show_progress(format!("{} ... {message}", self.current));
            }
            Event::Health { .. } => {}
            Event::Copy { facts } => {
                if let Some(ms) = facts.freeze_ms {
                    self.clear_progress();
                    let _ = print(&format!(
                        "write freeze: {:.2}s (from the old app's stop until the new one took traffic)\n",
                        ms as f64 / 1000.0
                    ));
                }
            }
            Event::Failure { message } => {
                self.clear_progress();
                let _ = print(&format!("\nFAILED: {message}\n"));
            }
        }
    }
}
