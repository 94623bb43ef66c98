//! The planner: a pure, deterministic function from (spec, observed host, history)
//! to an ordered [`Plan`] or a [`Refusal`]. No I/O, no clock: everything it knows
//! arrives as arguments, so every situation can be tested as data.
//!
//! The plan is the happy path. What happens when a health check fails during a
//! cut-over (roll back to the previous generation) is the executor's business; the
//! planner only has to take the host from *any* state it may be left in to the
//! desired one, the same way every time (I4, I5).
//!
//! [`plan`] reads as the decision: recognise the host (`recognise.rs`), refuse on
//! state it cannot trust (`evidence.rs`), resolve pins (`pin.rs`) and holds
//! (`hold.rs`), pick the target and the course to it, then hand over to one file per
//! kind of change — `bootstrap.rs`, `upgrade.rs`, `restore.rs`, `rollback.rs`,
//! `repair.rs` — followed by the cut-over (`cutover.rs`, which brings up the
//! target's services through `services.rs` before its app) and pruning
//! (`prune.rs`). Services of other generations stop before their apps do
//! (`Builder::stop_other_apps`): before a copy's source is frozen, so no two
//! generations' workers ever run against two databases at once.
//! Every step is emitted by the `Builder` (`builder.rs`).

mod bootstrap;
mod builder;
mod cutover;
mod evidence;
#[cfg(test)]
mod fixture;
mod front;
mod hold;
mod pin;
mod prune;
mod recognise;
mod refusal;
mod repair;
mod restore;
mod rollback;
mod services;
mod share;
mod steps;
mod stream;
mod upgrade;

use serde::{Deserialize, Serialize};

use crate::observed::{GenerationData, History, Observed};
use crate::spec::{CopyMode, Spec};

use builder::Builder;
use evidence::untrusted_state;
use hold::failed_hold;
use pin::{Pinned, resolve_pin};
use recognise::{Host, recognise};

pub use evidence::Evidence;
pub use recognise::{glob_match, in_scope};
pub use refusal::{Problem, Refusal};
pub use steps::{Action, Mark, Step};
pub use stream::{CopyChoice, Mode, copy_mode};

/// Options that change what the planner may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Try a generation again even though it failed its health checks before.
    pub retry_failed: bool,
}

/// An ordered list of steps that moves the host to the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The project.
    pub project: String,
    /// The generation the spec asks for.
    pub desired: u64,
    /// The generation the plan converges to: `desired`, unless held back.
    pub target: u64,
    /// The generation live now, if any.
    pub live: Option<u64>,
    /// What kind of change this is.
    pub kind: PlanKind,
    /// Set when the desired generation cannot be deployed as is and the host stays on
    /// `target` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Set when `gemctl rollback` pinned the host to `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// Things the operator must know (writes left behind by a rollback…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How an upgrade copies the data, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyChoice>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// The shape of a plan, for headers and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PlanKind {
    /// Nothing to do.
    InSync,
    /// First generation on an empty host.
    Bootstrap,
    /// Move forward, copying data from `from`.
    Upgrade {
        /// The generation whose data is copied.
        from: u64,
    },
    /// Go back to a retained generation.
    Rollback {
        /// The generation live before.
        from: u64,
    },
    /// The right generation, but containers drifted.
    Repair,
    /// A new generation made from a backup (`gemctl restore`).
    Restore,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Containers created or started.
    pub start: usize,
    /// Containers stopped.
    pub stop: usize,
    /// Containers or data directories removed.
    pub remove: usize,
    /// Data copies.
    pub copy: usize,
}

impl Plan {
    /// Counts by kind of step.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for step in &self.steps {
            match &step.action {
                Action::CreateDb { .. }
                | Action::StartDb { .. }
                | Action::CreateAppProbe { .. }
                | Action::CreateService { .. }
                | Action::StartService { .. }
                | Action::StartApp { .. } => s.start += 1,
                Action::StopApp { .. }
                | Action::StopDb { .. }
                | Action::StopService { .. }
                | Action::StopPrimary { .. } => s.stop += 1,
                Action::RemoveContainer { .. } | Action::RemoveData { .. } => s.remove += 1,
                Action::CopyData { .. } | Action::BaseBackup { .. } => s.copy += 1,
                _ => {}
            }
        }
        s
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Plan: {} to start, {} to stop, {} to remove, {} data cop{}",
            self.start,
            self.stop,
            self.remove,
            self.copy,
            if self.copy == 1 { "y" } else { "ies" }
        )
    }
}

/// Computes the plan that moves `observed` to `spec`, or refuses.
pub fn plan(
    spec: &Spec,
    observed: &Observed,
    history: &History,
    options: PlanOptions,
) -> Result<Plan, Refusal> {
    let host = recognise(spec, observed)?;
    let evidence = Evidence::of(observed);
    let untrusted = untrusted_state(spec, observed, &host, &evidence);
    if !untrusted.is_empty() {
        return Err(refusal(spec, untrusted));
    }

    let desired = spec.generation.0;
    let live = host.live(observed.storage.live);
    let pin = resolve_pin(observed.storage.pin.as_ref(), desired, &host)
        .map_err(|p| refusal(spec, vec![p]))?;
    let hold = match pin {
        Some(_) => None,
        None => failed_hold(spec, history, &host, live, options),
    };
    let target = match (&pin, &hold) {
        (Some(pin), _) => pin.generation,
        (None, Some(hold)) => match hold.fallback {
            Some(n) => n,
            None => return repair::clear_failed(spec, evidence, &host, live, hold.clone()),
        },
        (None, None) => desired,
    };
    let course = Course::pick(&host, live, target, pin.as_ref(), spec.db.copy)
        .map_err(|p| refusal(spec, vec![p]))?;
    let tgen = host.generation(target);
    // The spec must still describe the target's containers, unless the host is held
    // back or rolled back: then the generation runs as it was made.
    if course == Course::Repair && hold.is_none() {
        let drift = repair::spec_drift(spec, &host, target, &tgen);
        if !drift.is_empty() {
            return Err(refusal(spec, drift));
        }
    }

    let mut b = Builder::new(spec, evidence);
    b.fronted = host.front_live();
    b.as_made = hold.is_some() || course == Course::Rollback;
    b.ensure_network(&observed.networks);
    front::at_start(&mut b, &host);
    if !matches!(course, Course::Repair | Course::Rollback) {
        discard_throwaways(&mut b, &host, observed, target).map_err(|p| refusal(spec, vec![p]))?;
    }
    prune::clear_debris(&mut b, &host, target, hold.as_ref());
    let mut copy = None;
    match &course {
        Course::Bootstrap => {
            if spec.db.copy == CopyMode::None {
                b.note(format!(
                    "db.copy: none, but no earlier generation has a database to run on: \
                     generation {target} starts its own"
                ));
            }
            bootstrap::bootstrap(&mut b, target, &tgen)
        }
        Course::Share { from, db } => {
            share::share(&mut b, &host, target, &tgen, *db);
            copy = Some(CopyChoice {
                mode: Mode::None,
                reason: share::reason(spec, target, *from, *db),
            });
        }
        Course::Upgrade { from } => {
            let choice = copy_mode(spec, observed, *from).map_err(|p| refusal(spec, vec![p]))?;
            match choice.mode {
                Mode::Stream => stream::upgrade(&mut b, &host, target, &tgen, *from, live),
                // `none` shares instead (`Course::Share`): never an upgrade's choice.
                Mode::Dump | Mode::None => upgrade::upgrade(&mut b, &host, target, &tgen, *from),
            }
            copy = Some(choice);
        }
        Course::Restore { backup } => restore::restore(&mut b, target, &tgen, backup),
        Course::Repair => repair::repair(&mut b, &host, target),
        Course::Rollback => rollback::rollback(&mut b, &host, target),
    }
    let target_db = match course {
        Course::Share { db, .. } => db,
        _ => host.db_gen(target),
    };
    cutover::cut_over(&mut b, &host, &tgen, target, target_db, live);
    let copied_from = course
        .source()
        .or_else(|| tgen.data.and_then(GenerationData::copied_from));
    prune::past_retention(&mut b, &host, target, target_db, copied_from);

    let (steps, mut notes) = b.finish().map_err(|problems| refusal(spec, problems))?;
    if course == Course::Rollback && hold.is_none() && !steps.is_empty() {
        notes.extend(rollback::left_behind(spec, &host, target, &tgen));
    }
    if let Some(l) = live.filter(|l| *l != target && !steps.is_empty())
        && host.db_gen(l) == target_db
    {
        notes.push(cutover::beside_note(spec, target, l, target_db));
    }
    if matches!(course, Course::Upgrade { .. } | Course::Share { .. })
        && !steps.is_empty()
        && !(spec.app.run.volumes.is_empty() && spec.db.run.volumes.is_empty())
    {
        notes.push(format!(
            "generation {target} mounts the spec's `run.volumes` as they are: they are not \
             copied from generation {} (only the database's data is)",
            live.unwrap_or(target)
        ));
    }
    Ok(Plan {
        project: spec.project.clone(),
        desired,
        target,
        live,
        kind: course.kind(steps.is_empty(), live, target),
        hold: hold.map(|h| h.message),
        pinned: pin.map(|p| p.message),
        notes,
        copy,
        steps,
    })
}

/// How the plan reaches its target: by making the target's data (bootstrap, upgrade,
/// restore) when it is not ready, else by going back to it (rollback, when newer data
/// exists) or keeping it (repair). The [`PlanKind`] shown is named from this and from
/// what the steps do ([`Course::kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Course {
    /// New data from nothing, or from the spec's bootstrap backup.
    Bootstrap,
    /// New data copied from generation `from`.
    Upgrade { from: u64 },
    /// No data of its own (`db.copy: none`): runs on generation `db`'s database,
    /// which generation `from` (the one serving) runs on too.
    Share { from: u64, db: u64 },
    /// New data from a restore pin's backup.
    Restore { backup: String },
    /// Ready data, at or above every other ready generation.
    Repair,
    /// Ready data below a newer ready generation.
    Rollback,
}

impl Course {
    /// The course to `target`, or the problem when its data can neither be found nor
    /// made.
    fn pick(
        host: &Host,
        live: Option<u64>,
        target: u64,
        pin: Option<&Pinned>,
        copy: CopyMode,
    ) -> Result<Course, Problem> {
        if host.ready(target) {
            return Ok(if host.newest_ready().is_none_or(|n| target >= n) {
                Course::Repair
            } else {
                Course::Rollback
            });
        }
        if let Some(problem) = rollback::behind_newer_data(host, target) {
            return Err(problem);
        }
        Ok(match pin.and_then(|p| p.rebuild_from.clone()) {
            Some(backup) => Course::Restore { backup },
            None => match upgrade::pick_source(host, live, target) {
                Some(from) if copy == CopyMode::None => Course::Share {
                    from,
                    db: host.db_gen(from),
                },
                Some(from) => Course::Upgrade {
                    from: host.db_gen(from),
                },
                None => Course::Bootstrap,
            },
        })
    }

    /// The generation whose data the target is copied from in this plan.
    fn source(&self) -> Option<u64> {
        match self {
            Course::Upgrade { from } => Some(*from),
            _ => None,
        }
    }

    /// The kind of change shown for a plan on this course: nothing to do is in sync;
    /// on ready data, which way the live generation moves.
    fn kind(&self, no_steps: bool, live: Option<u64>, target: u64) -> PlanKind {
        if no_steps {
            return PlanKind::InSync;
        }
        match self {
            Course::Bootstrap => PlanKind::Bootstrap,
            Course::Upgrade { from } | Course::Share { from, .. } => {
                PlanKind::Upgrade { from: *from }
            }
            Course::Restore { .. } => PlanKind::Restore,
            Course::Repair | Course::Rollback => match live {
                Some(l) if l > target => PlanKind::Rollback { from: l },
                Some(l) if l < target => PlanKind::Upgrade { from: l },
                _ => PlanKind::Repair,
            },
        }
    }
}

/// A new generation is built from live data as it is now: a preview's copy (and
/// what a killed deploy check left) goes first — testers' writes are not
/// production's. A preview that a gemctl is making right now refuses the plan
/// (that gemctl would find its containers gone as it starts them; the apply goes
/// through once the preview is up); a check that runs is left to it (it touches
/// nothing of the generations, and its copy no longer needs the live database once
/// the project's lock is free).
fn discard_throwaways(
    b: &mut Builder,
    host: &Host,
    observed: &Observed,
    target: u64,
) -> Result<(), Problem> {
    for kind in [
        crate::throwaway::Kind::Preview,
        crate::throwaway::Kind::Check,
    ] {
        let running = observed
            .storage
            .throwaways_in_use
            .iter()
            .any(|k| k == kind.name());
        let containers = host.throwaways.iter().any(|c| {
            c.labels.get(crate::labels::THROWAWAY).map(String::as_str) == Some(kind.name())
        });
        let on_disk = observed.storage.throwaways.iter().any(|k| k == kind.name());
        if running && kind == crate::throwaway::Kind::Preview {
            return Err(Problem {
                container: None,
                seen: "a gemctl is making (or discarding) the preview right now".into(),
                fix: format!(
                    "wait for `gemctl preview` to finish, then apply again: it discards the \
                     preview and builds generation {target} from live data"
                ),
            });
        }
        if running {
            b.note("a deploy check is running: its throwaway copy is left to it".to_string());
            continue;
        }
        if containers || on_disk {
            b.push(
                Action::DiscardThrowaway {
                    kind: kind.name().into(),
                },
                match kind {
                    crate::throwaway::Kind::Preview => format!(
                        "the preview's data holds testers' writes: generation {target} is built \
                         from live data now"
                    ),
                    _ => "left by an interrupted deploy check".to_string(),
                },
            );
            if kind == crate::throwaway::Kind::Preview {
                b.note(format!(
                    "the preview is discarded (testers' writes are not production's); \
                     generation {target} is built from live data as it is now"
                ));
            }
        }
    }
    Ok(())
}

/// The refusal of this spec's project for `problems`.
fn refusal(spec: &Spec, problems: Vec<Problem>) -> Refusal {
    Refusal {
        project: spec.project.clone(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{data, observed, ready, spec};
    use super::pin::Pinned;
    use super::recognise::recognise;
    use super::{Course, PlanKind, glob_match};
    use crate::observed::Marker;
    use crate::spec::CopyMode;

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob_match("monitoring-*", "monitoring-agent"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("backup-?", "backup-1"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("backup-?", "backup-12"));
        assert!(!glob_match("monitoring-*", "redis"));
        assert!(!glob_match("", "redis"));
    }

    #[test]
    fn the_course_follows_the_target_data() {
        let obs = observed(vec![], vec![ready(1), ready(3), data(4, Marker::Preparing)]);
        let host = recognise(&spec(4), &obs).unwrap();
        assert_eq!(
            Course::pick(&host, Some(1), 3, None, CopyMode::Auto),
            Ok(Course::Repair)
        );
        assert_eq!(
            Course::pick(&host, Some(3), 1, None, CopyMode::Auto),
            Ok(Course::Rollback)
        );
        assert_eq!(
            Course::pick(&host, Some(1), 4, None, CopyMode::Auto),
            Ok(Course::Upgrade { from: 1 })
        );
        assert!(
            Course::pick(&host, Some(3), 2, None, CopyMode::Auto).is_err(),
            "behind newer data"
        );

        let pin = Pinned {
            generation: 4,
            rebuild_from: Some("/backups/b.tar".into()),
            message: String::new(),
        };
        assert_eq!(
            Course::pick(&host, Some(3), 4, Some(&pin), CopyMode::Auto),
            Ok(Course::Restore {
                backup: "/backups/b.tar".into()
            })
        );

        let empty = observed(vec![], vec![]);
        let host = recognise(&spec(1), &empty).unwrap();
        assert_eq!(
            Course::pick(&host, None, 1, None, CopyMode::Auto),
            Ok(Course::Bootstrap)
        );
    }

    #[test]
    fn the_kind_shown_is_in_sync_without_steps_else_the_way_the_live_generation_moves() {
        assert_eq!(
            Course::Upgrade { from: 1 }.kind(true, Some(1), 2),
            PlanKind::InSync
        );
        assert_eq!(
            Course::Upgrade { from: 1 }.kind(false, Some(1), 2),
            PlanKind::Upgrade { from: 1 }
        );
        assert_eq!(Course::Bootstrap.kind(false, None, 1), PlanKind::Bootstrap);
        let restore = Course::Restore {
            backup: String::new(),
        };
        assert_eq!(restore.kind(false, Some(5), 6), PlanKind::Restore);
        for course in [Course::Repair, Course::Rollback] {
            assert_eq!(
                course.kind(false, Some(3), 2),
                PlanKind::Rollback { from: 3 }
            );
            assert_eq!(
                course.kind(false, Some(1), 2),
                PlanKind::Upgrade { from: 1 }
            );
            assert_eq!(course.kind(false, Some(2), 2), PlanKind::Repair);
            assert_eq!(course.kind(false, None, 2), PlanKind::Repair);
        }
    }
}
