//! The planner: a pure, deterministic function from (spec, observed host, history)
//! to an ordered [`Plan`] or a [`Refusal`]. No I/O, no clock: everything it knows
//! arrives as arguments, so every situation can be tested as data.
//!
//! The plan is the happy path. What happens when a health check fails during a
//! cut-over (roll back to the previous generation) is the executor's business; the
//! planner only has to take the host from *any* state it may be left in to the
//! desired one, the same way every time (I4, I5).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::desired::{self, Role};
use crate::labels;
use crate::observed::{Container, ContainerState, GenerationData, History, Marker, Observed};
use crate::settings::{Settings, Unrecorded};
use crate::spec::{Scope, Spec};

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

/// One step and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// One line saying why.
    pub reason: String,
}

/// Everything the executor knows how to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the private bridge network.
    CreateNetwork {
        /// Network name.
        network: String,
    },
    /// Create and start a db container; `fresh` makes an empty data directory first.
    CreateDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
        /// Whether the data directory is new (else the existing data is used).
        fresh: bool,
    },
    /// Start an existing, stopped db container.
    StartDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Wait until the database accepts queries.
    WaitDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Stop an app container (kept for rollback).
    StopApp {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Stop a db container (its data is kept).
    StopDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Copy every database and role from one generation's db to another's.
    CopyData {
        /// Source generation (only read, I2).
        from: u64,
        /// Destination generation.
        to: u64,
    },
    /// Load a backup made by `gemctl backup` into a generation's fresh database
    /// (its checksum is verified before any step runs).
    RestoreBackup {
        /// Generation.
        generation: u64,
        /// The backup file.
        backup: String,
    },
    /// Compare the copy with its source, table by table.
    VerifyCopy {
        /// Source generation.
        from: u64,
        /// Destination generation.
        to: u64,
    },
    /// Record that a generation's data is complete.
    MarkReady {
        /// Generation.
        generation: u64,
        /// Where its data came from (`None`: a fresh database).
        copied_from: Option<u64>,
    },
    /// Create and start the app with only its health ports, on 127.0.0.1.
    CreateAppProbe {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Start an existing, stopped app container (already public).
    StartApp {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Run the spec's health checks against the app.
    CheckHealth {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Recreate the app with all its public ports.
    ExposeApp {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Record which generation is live.
    SetLive {
        /// Generation.
        generation: u64,
    },
    /// Remove a container gemctl made.
    RemoveContainer {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
        /// `app`, `db` or `copy`.
        role: String,
    },
    /// Delete a generation's directory under the storage root.
    RemoveData {
        /// Generation.
        generation: u64,
    },
}

/// How a step shows in `gemctl diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Something starts or is created (`+`).
    Add,
    /// Something stops or is removed (`-`).
    Remove,
    /// Something changes or is checked (`~`).
    Change,
}

impl Mark {
    /// The character shown.
    pub fn symbol(self) -> char {
        match self {
            Mark::Add => '+',
            Mark::Remove => '-',
            Mark::Change => '~',
        }
    }
}

impl Action {
    /// `+`, `-` or `~`.
    pub fn mark(&self) -> Mark {
        match self {
            Action::CreateNetwork { .. }
            | Action::CreateDb { .. }
            | Action::StartDb { .. }
            | Action::CreateAppProbe { .. }
            | Action::StartApp { .. } => Mark::Add,
            Action::StopApp { .. }
            | Action::StopDb { .. }
            | Action::RemoveContainer { .. }
            | Action::RemoveData { .. } => Mark::Remove,
            _ => Mark::Change,
        }
    }

    /// One line describing the action.
    pub fn describe(&self) -> String {
        match self {
            Action::CreateNetwork { network } => format!("create network {network}"),
            Action::CreateDb {
                container, fresh, ..
            } => {
                if *fresh {
                    format!("start {container} on a fresh data directory")
                } else {
                    format!("start {container} on its existing data")
                }
            }
            Action::StartDb { container, .. } => format!("start {container}"),
            Action::WaitDb { container, .. } => {
                format!("wait until {container} accepts queries")
            }
            Action::StopApp { container, .. } => format!("stop {container}"),
            Action::StopDb { container, .. } => format!("stop {container} (data kept)"),
            Action::CopyData { from, to } => {
                format!("copy data of generation {from} into generation {to}")
            }
            Action::RestoreBackup { generation, backup } => {
                format!("restore backup {backup} into generation {generation}")
            }
            Action::VerifyCopy { from, to } => {
                format!("verify generation {to}'s data against generation {from}")
            }
            Action::MarkReady {
                generation,
                copied_from,
            } => match copied_from {
                Some(from) => {
                    format!("record generation {generation}'s data as ready (copied from {from})")
                }
                None => format!("record generation {generation}'s data as ready (fresh)"),
            },
            Action::CreateAppProbe { container, .. } => {
                format!("start {container} with its health ports on 127.0.0.1 only")
            }
            Action::StartApp { container, .. } => format!("start {container}"),
            Action::CheckHealth { container, .. } => format!("check health of {container}"),
            Action::ExposeApp { container, .. } => {
                format!("expose {container} on its public ports")
            }
            Action::SetLive { generation } => format!("record generation {generation} as live"),
            Action::RemoveContainer { container, .. } => format!("remove {container}"),
            Action::RemoveData { generation } => {
                format!("delete the data of generation {generation}")
            }
        }
    }
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
                | Action::StartApp { .. } => s.start += 1,
                Action::StopApp { .. } | Action::StopDb { .. } => s.stop += 1,
                Action::RemoveContainer { .. } | Action::RemoveData { .. } => s.remove += 1,
                Action::CopyData { .. } => s.copy += 1,
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

/// Why the planner will not act: a human must look first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The project.
    pub project: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// One reason for a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The container concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What was seen.
    pub seen: String,
    /// What to do about it.
    pub fix: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        writeln!(
            f,
            "refusing to act on project {}: {} problem{} need{} a human",
            self.project,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            if self.problems.len() == 1 { "s" } else { "" },
        )?;
        for p in &self.problems {
            writeln!(f, "  - {}", p.seen)?;
            writeln!(f, "    fix: {}", p.fix)?;
        }
        Ok(())
    }
}

/// A recognised gemctl container.
#[derive(Debug, Clone, Copy)]
struct Known<'a> {
    c: &'a Container,
}

impl Known<'_> {
    /// Given the public ports and started at least once: it may have served.
    fn exposed(&self) -> bool {
        self.public() && self.c.state != ContainerState::Created
    }
    fn up(&self) -> bool {
        self.c.state.is_up()
    }
    fn hash(&self) -> Option<&str> {
        self.c.labels.get(labels::SPEC_HASH).map(String::as_str)
    }
    fn public(&self) -> bool {
        self.c.labels.get(labels::EXPOSURE).map(String::as_str) == Some(labels::EXPOSURE_PUBLIC)
    }
}

/// Everything of one generation on the host.
#[derive(Debug, Default, Clone)]
struct Gen<'a> {
    app: Option<Known<'a>>,
    db: Option<Known<'a>>,
    data: Option<&'a GenerationData>,
}

impl Gen<'_> {
    fn ready(&self) -> bool {
        self.data.is_some_and(GenerationData::ready)
    }
}

/// What the host's records and labels say about which generations served.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// `<storage>/.gemctl/live`.
    pub live: Option<u64>,
    /// `<storage>/.gemctl/served.json`, `None` when missing.
    pub served: Option<&'a BTreeSet<u64>>,
    /// The generation a rollback pin holds the host on.
    pub rollback_pin: Option<u64>,
    /// The generation any pin names: its data is never deleted, except that a
    /// restore pin's half-made generation is redone from its backup.
    pub pinned: Option<u64>,
}

impl<'a> Evidence<'a> {
    /// The evidence in an observation.
    pub fn of(observed: &'a Observed) -> Evidence<'a> {
        Evidence {
            live: observed.storage.live,
            served: observed.storage.served.as_ref(),
            rollback_pin: observed
                .storage
                .pin
                .as_ref()
                .filter(|p| p.restore_from.is_none())
                .map(|p| p.generation),
            pinned: observed.storage.pin.as_ref().map(|p| p.generation),
        }
    }

    /// Why generation `n`'s data may have served an app, or `None` when the host
    /// proves it never did: its marker says so positively, no record names it, and
    /// no app of it was ever started with the public ports. Deleting data needs this
    /// proof (I3); a missing or unreadable marker or record is never it.
    pub fn may_have_served(
        &self,
        n: u64,
        marker: Option<&Marker>,
        public_app: bool,
    ) -> Option<String> {
        let served = match self.served {
            None => {
                return Some(
                    "there is no record of which generations served (.gemctl/served.json)".into(),
                );
            }
            Some(s) => s,
        };
        match marker {
            Some(m) if m.says_never_served() => {}
            Some(Marker::Ready { .. }) => {
                return Some("its marker says its data is ready, so it may have served".into());
            }
            Some(_) => return Some("its marker is missing or unreadable".into()),
            None => return Some("it has no data directory to judge by".into()),
        }
        if self.live == Some(n) {
            Some("it is recorded live".into())
        } else if served.contains(&n) {
            Some("it is in the record of generations that served".into())
        } else if self.rollback_pin == Some(n) || self.pinned == Some(n) {
            Some("the host is pinned to it".into())
        } else if public_app {
            Some("its app container was started with the public ports".into())
        } else {
            None
        }
    }
}

/// The host seen through the spec: containers sorted into generations.
struct Host<'a> {
    gens: BTreeMap<u64, Gen<'a>>,
    copies: Vec<(u64, &'a Container)>,
}

/// Computes the plan that moves `observed` to `spec`, or refuses.
pub fn plan(
    spec: &Spec,
    observed: &Observed,
    history: &History,
    options: PlanOptions,
) -> Result<Plan, Refusal> {
    let host = recognise(spec, observed)?;
    let desired = spec.generation.0;
    let refuse = |problems: Vec<Problem>| Refusal {
        project: spec.project.clone(),
        problems,
    };
    let evidence = Evidence::of(observed);
    let untrusted = untrusted_state(spec, observed, &host, &evidence);
    if !untrusted.is_empty() {
        return Err(refuse(untrusted));
    }

    let newest_ready = host
        .gens
        .iter()
        .filter(|(_, g)| g.ready())
        .map(|(n, _)| *n)
        .max();
    let live = observed
        .storage
        .live
        .filter(|n| host.gens.get(n).is_some_and(Gen::ready));

    // I6: a generation that failed is not retried unchanged. The host stays on (or
    // returns to) the generation that was live, and what the failed attempt left is
    // cleared away: it never served.
    let mut hold = None;
    let mut target = desired;
    let mut failed_leftovers = None;
    let mut pinned = None;
    let mut restore_from = None;
    if let Some(pin) = observed.storage.pin.as_ref().filter(|p| p.applies(desired)) {
        let has_data = host.gens.get(&pin.generation).is_some_and(Gen::ready);
        if !has_data && pin.restore_from.is_some() {
            restore_from = pin.restore_from.clone();
        } else if !has_data {
            return Err(refuse(vec![Problem {
                container: None,
                seen: format!(
                    "the host is pinned to generation {} ({}), but that generation's data is gone",
                    pin.generation, pin.reason
                ),
                fix: "run `gemctl unpin` to follow the spec again, or roll back to a retained generation".into(),
            }]));
        }
        target = pin.generation;
        pinned = Some(match &pin.restore_from {
            Some(backup) => format!(
                "pinned to generation {}, restored from {backup} by {} at {}; apply and reconcile \
                 stay on it until the spec's generation moves past {} or `gemctl unpin` is run",
                pin.generation, pin.reason, pin.at, pin.generation
            ),
            None => format!(
                "pinned to generation {} by {} at {}; apply and reconcile stay on it until the \
                 spec's generation changes from {desired} or `gemctl unpin` is run",
                pin.generation, pin.reason, pin.at
            ),
        });
    }
    if let Some(failed) = history.failure(desired).filter(|_| pinned.is_none())
        && !options.retry_failed
        && failed.spec_hash == desired::generation_hash(spec, desired)
        && live != Some(desired)
        && newest_ready.is_none_or(|n| desired >= n)
    {
        let fallback = live.or_else(|| {
            host.gens
                .iter()
                .filter(|(n, g)| **n < desired && g.ready())
                .map(|(n, _)| *n)
                .max()
        });
        // A failure of another step is recorded as "step i/n (…) failed: …".
        let what = if failed.reason.starts_with("step ") {
            "failed"
        } else {
            "failed its health checks"
        };
        hold = Some(format!(
            "generation {desired} {what} at {} ({}); the host stays on {}. \
             Fix the release and bump `generation`, or run `gemctl apply --retry` to try it again",
            failed.at,
            failed.reason,
            fallback.map_or("no generation".to_string(), |n| format!("generation {n}"))
        ));
        failed_leftovers = host.gens.get(&desired).cloned();
        match fallback {
            Some(n) => target = n,
            None => {
                let mut b = Builder::new(spec, evidence);
                if let Some(g) = &failed_leftovers {
                    b.remove_failed(desired, g);
                }
                if !b.problems.is_empty() {
                    return Err(refuse(b.problems));
                }
                return Ok(Plan {
                    project: spec.project.clone(),
                    desired,
                    target: desired,
                    live,
                    kind: if b.steps.is_empty() {
                        PlanKind::InSync
                    } else {
                        PlanKind::Repair
                    },
                    hold,
                    pinned: None,
                    notes: Vec::new(),
                    steps: b.steps,
                });
            }
        }
    }

    let tgen = host.gens.get(&target).cloned().unwrap_or_default();
    let forward = newest_ready.is_none_or(|n| target >= n);

    if !tgen.ready()
        && let Some(newest) = newest_ready
        && newest > target
    {
        return Err(refuse(vec![Problem {
            container: None,
            seen: format!(
                "generation {target} has no data on this host, but newer generation {newest} does: \
                 generation numbers only move forward"
            ),
            fix: format!(
                "to deploy, set `generation` above {newest}; to roll back, pick a retained generation ({})",
                retained_list(&host, target)
            ),
        }]));
    }

    // A spec changed without a new generation number: the running containers no
    // longer say what the spec says. Rolling back to an older generation is the
    // exception: it runs as it was made.
    if tgen.ready() && forward && hold.is_none() {
        let mut problems = Vec::new();
        for (known, want) in [
            (tgen.app, desired::app(spec, target)),
            (tgen.db, desired::db(spec, target)),
        ] {
            if let Some(k) = known
                && !desired::made_as(spec, &want, k.hash())
            {
                problems.push(Problem {
                    container: Some(k.c.name.clone()),
                    seen: format!(
                        "{} was made from a different spec for generation {target}: {}",
                        k.c.name,
                        what_changed(k.c, &want)
                    ),
                    fix: format!(
                        "bump `generation` to {} to deploy the change as a new generation, \
                         or revert the spec to what generation {target} was made from",
                        newest_ready.unwrap_or(target).max(target) + 1
                    ),
                });
            }
        }
        if !problems.is_empty() {
            return Err(refuse(problems));
        }
    }

    let mut b = Builder::new(spec, evidence);

    if !observed.networks.contains(&spec.network_name()) {
        b.push(
            Action::CreateNetwork {
                network: spec.network_name(),
            },
            "the private network for app and db does not exist",
        );
    }

    for (n, c) in &host.copies {
        b.push(
            Action::RemoveContainer {
                generation: *n,
                container: c.name.clone(),
                role: labels::ROLE_COPY.into(),
            },
            "left over from an interrupted data copy, restore or backup",
        );
    }

    // Generations whose data never became ready are debris of an interrupted or
    // failed apply: they never served, so they are redone or removed.
    if let Some(g) = &failed_leftovers {
        b.remove_failed(desired, g);
    }
    for (n, g) in &host.gens {
        if failed_leftovers.is_some() && *n == desired {
            continue;
        }
        if *n != target && !g.ready() && g.data.is_some() {
            b.remove_never_served(*n, g, "never became ready (interrupted or failed apply)");
        } else if *n != target && !g.ready() && g.data.is_none() {
            b.remove_containers(*n, g, "its data directory is gone");
        }
    }

    let mut source = None;
    if !tgen.ready() {
        if tgen.data.is_some() {
            if restore_from.is_some() {
                // The restore pin's own generation, rebuilt from its backup below.
                b.evidence.pinned = None;
            }
            b.remove_never_served(
                target,
                &tgen,
                "half-made by an interrupted apply; it is redone from scratch",
            );
            b.evidence.pinned = evidence.pinned;
        } else if tgen.app.is_some() || tgen.db.is_some() {
            b.remove_containers(
                target,
                &tgen,
                "half-made by an interrupted apply; it is redone from scratch",
            );
        }
        b.create_db(target, true, "the new generation's database starts empty");
        source = match &restore_from {
            Some(_) => None,
            None => pick_source(&host, observed, target),
        };
        let from_backup =
            restore_from
                .clone()
                .map(|b| (b, "the restored generation starts from the backup"))
                .or_else(|| {
                    spec.bootstrap.as_ref().filter(|_| source.is_none()).map(|b| {
                    (
                        b.from_backup.display().to_string(),
                        "bootstrap.from_backup: the first generation starts from the backup",
                    )
                })
                });
        if let Some((backup, why)) = from_backup {
            b.push(
                Action::RestoreBackup {
                    generation: target,
                    backup,
                },
                why,
            );
        }
        match source {
            _ if restore_from.is_some() => b.push(
                Action::MarkReady {
                    generation: target,
                    copied_from: None,
                },
                "the backup is restored",
            ),
            Some(s) => {
                let sgen = &host.gens[&s];
                b.ensure_db_up(s, sgen, "the copy reads from it");
                b.stop_other_apps(&host, target, "its writes must stop before the copy");
                b.push(
                    Action::CopyData {
                        from: s,
                        to: target,
                    },
                    format!("generation {target} starts from generation {s}'s data"),
                );
                b.push(
                    Action::VerifyCopy {
                        from: s,
                        to: target,
                    },
                    "every table must have the same rows as the source",
                );
                b.push(
                    Action::MarkReady {
                        generation: target,
                        copied_from: Some(s),
                    },
                    "the copy is complete and verified",
                );
            }
            None => b.push(
                Action::MarkReady {
                    generation: target,
                    copied_from: None,
                },
                "bootstrap: the database is initialised",
            ),
        }
    } else {
        b.ensure_db_up(target, &tgen, "the target generation's database must run");
    }

    b.stop_other_apps(&host, target, "only one generation's app may be live");

    let app_name = desired::container_name(spec, Role::App, target);
    let probe_and_expose = |b: &mut Builder| {
        b.push(
            Action::CreateAppProbe {
                generation: target,
                container: app_name.clone(),
            },
            "health-check the new app before it takes traffic",
        );
        b.check(
            target,
            "the app must pass every health check before it is exposed",
        );
        b.push(
            Action::ExposeApp {
                generation: target,
                container: app_name.clone(),
            },
            "healthy: give it the public ports",
        );
        b.check(target, "check again on the public ports");
    };
    match tgen.app.filter(|_| tgen.ready()) {
        None => probe_and_expose(&mut b),
        Some(app) if !app.public() => {
            if app.up() {
                b.check(target, "resume: the app was being health-checked");
                b.push(
                    Action::ExposeApp {
                        generation: target,
                        container: app_name.clone(),
                    },
                    "healthy: give it the public ports",
                );
                b.check(target, "check again on the public ports");
            } else {
                b.push(
                    Action::RemoveContainer {
                        generation: target,
                        container: app_name.clone(),
                        role: labels::ROLE_APP.into(),
                    },
                    "a stopped health-check container from an interrupted apply",
                );
                probe_and_expose(&mut b);
            }
        }
        Some(app) if !app.up() => {
            b.push(
                Action::StartApp {
                    generation: target,
                    container: app_name.clone(),
                },
                format!("the app is {}", app.c.state),
            );
            b.check(target, "the restarted app must pass its health checks");
        }
        Some(_) => {}
    }

    if live != Some(target) {
        b.push(
            Action::SetLive { generation: target },
            match live {
                Some(l) => format!("generation {target} replaces generation {l}"),
                None => format!("generation {target} is the first live generation"),
            },
        );
    }

    let running_dbs: BTreeSet<(u64, String)> = host
        .gens
        .iter()
        .filter_map(|(n, g)| g.db.filter(Known::up).map(|db| (*n, db.c.name.clone())))
        .chain(b.started_dbs.iter().cloned())
        .collect();
    for (n, name) in running_dbs {
        if n != target && !b.removed.contains(&name) {
            b.push(
                Action::StopDb {
                    generation: n,
                    container: name,
                },
                "only the live generation's database runs",
            );
        }
    }

    // Retention: the M newest ready generations below the target, plus the one its
    // data came from, are kept for rollback. Newer generations (after a rollback) are
    // kept too. Everything else below is deleted, each deletion a visible step.
    let copied_from = source.or_else(|| tgen.data.and_then(GenerationData::copied_from));
    let mut keep = retained(&host, target, spec.retain.0 as usize, copied_from);
    keep.extend(observed.storage.pin.as_ref().map(|p| p.generation));
    for (n, g) in &host.gens {
        if *n < target && g.ready() && !keep.contains(n) {
            b.remove_generation(
                *n,
                g,
                &format!(
                    "older than the {} retained generation{}",
                    spec.retain.0,
                    if spec.retain.0 == 1 { "" } else { "s" }
                ),
            );
        }
    }

    if !b.problems.is_empty() {
        return Err(refuse(b.problems));
    }
    let steps = b.steps;
    let mut notes = b.notes;
    let kind = if steps.is_empty() {
        PlanKind::InSync
    } else if restore_from.is_some() {
        PlanKind::Restore
    } else if let Some(s) = source {
        PlanKind::Upgrade { from: s }
    } else if !tgen.ready() {
        PlanKind::Bootstrap
    } else {
        match live {
            Some(l) if l > target => PlanKind::Rollback { from: l },
            Some(l) if l < target => PlanKind::Upgrade { from: l },
            _ => PlanKind::Repair,
        }
    };
    if !forward && hold.is_none() && !steps.is_empty() {
        let newer: Vec<String> = host
            .gens
            .iter()
            .filter(|(n, g)| **n > target && g.ready())
            .map(|(n, _)| n.to_string())
            .collect();
        notes.push(format!(
            "generation {target} runs on its own data: writes made in generation{} {} are NOT in it. \
             That data is kept under {} and is not deleted",
            if newer.len() == 1 { "" } else { "s" },
            newer.join(", "),
            spec.storage.display()
        ));
        if let Some(app) = tgen.app
            && !desired::made_as(spec, &desired::app(spec, target), app.hash())
        {
            notes.push(format!(
                "{} runs as it was made ({}), not as the spec now describes it; \
                 to run today's spec on this data, bump `generation`",
                app.c.name, app.c.image
            ));
        }
    }

    Ok(Plan {
        project: spec.project.clone(),
        desired,
        target,
        live,
        kind,
        hold,
        pinned,
        notes,
        steps,
    })
}

/// Problems with state gemctl cannot act on: damaged state files, and generations
/// whose marker is missing or unreadable (gemctl cannot tell whether their data is
/// complete, or whether it ever served).
fn untrusted_state(
    spec: &Spec,
    observed: &Observed,
    host: &Host,
    evidence: &Evidence,
) -> Vec<Problem> {
    let mut problems: Vec<Problem> = observed
        .storage
        .damage
        .iter()
        .map(|d| Problem {
            container: None,
            seen: format!("{} {}", d.file, d.problem),
            fix: d.fix.clone(),
        })
        .collect();
    for (n, g) in &host.gens {
        let Some(data) = g.data.filter(|d| d.marker.unknown()) else {
            continue;
        };
        let file = desired::generation_dir(spec, *n).join(crate::observed::READY_MARKER);
        let what = match &data.marker {
            Marker::Unreadable { problem } => problem.clone(),
            _ => "is missing".into(),
        };
        let served = evidence.live == Some(*n)
            || evidence.served.is_some_and(|s| s.contains(n))
            || evidence.rollback_pin == Some(*n)
            || g.app.is_some_and(|a| a.exposed());
        problems.push(Problem {
            container: None,
            seen: format!(
                "{} {what}: gemctl cannot tell whether generation {n}'s data is complete or \
                 ever served, and does not act on a guess",
                file.display()
            ),
            fix: if served {
                format!(
                    "generation {n} served (its records or labels say so): run `gemctl \
                     repair-state -f SPEC` to rebuild its marker as ready"
                )
            } else {
                format!(
                    "nothing says generation {n} served. If its data is debris of an interrupted \
                     apply, `gemctl repair-state -f SPEC --discard {n}` marks it for deletion; if \
                     it is complete, `gemctl repair-state -f SPEC --ready {n}` marks it ready"
                )
            },
        });
    }
    problems
}

/// The fields a container's recorded settings differ in from what the spec asks,
/// for a refusal; what can be said when it recorded none.
fn what_changed(c: &Container, want: &desired::ContainerConfig) -> String {
    let unrecorded = match Settings::recorded(c) {
        Ok(made) => {
            let changes: Vec<String> = made
                .changes(&Settings::of(want))
                .iter()
                .map(ToString::to_string)
                .collect();
            return if changes.is_empty() {
                "its recorded settings equal the spec's; only the fingerprint differs".into()
            } else {
                changes.join("; ")
            };
        }
        Err(why) => why,
    };
    if c.image == want.image {
        // The likeliest cause on an unchanged spec: ports used to be fingerprinted in
        // the order the spec lists them.
        let hint = match unrecorded {
            Unrecorded::Missing => " (earlier gemctl also counted the order of `ports`)",
            Unrecorded::Unreadable(_) => "",
        };
        format!("{unrecorded}; only the fingerprint differs{hint}")
    } else {
        format!(
            "image changed: {} → {} ({unrecorded}, so other changes cannot be named)",
            c.image, want.image
        )
    }
}

/// The generation whose data a new `target` starts from: the one serving now, else
/// the one recorded live, else the newest ready one below the target.
fn pick_source(host: &Host, observed: &Observed, target: u64) -> Option<u64> {
    let serving = host
        .gens
        .iter()
        .filter(|(n, g)| **n != target && g.ready() && g.app.is_some_and(|a| a.up() && a.public()))
        .map(|(n, _)| *n)
        .max();
    serving
        .or(observed
            .storage
            .live
            .filter(|l| *l != target && host.gens.get(l).is_some_and(Gen::ready)))
        .or_else(|| {
            host.gens
                .iter()
                .filter(|(n, g)| **n < target && g.ready())
                .map(|(n, _)| *n)
                .max()
        })
}

fn retained(host: &Host, target: u64, m: usize, copied_from: Option<u64>) -> BTreeSet<u64> {
    let mut keep: BTreeSet<u64> = host
        .gens
        .iter()
        .rev()
        .filter(|(n, g)| **n < target && g.ready())
        .take(m)
        .map(|(n, _)| *n)
        .collect();
    keep.extend(copied_from);
    keep
}

fn retained_list(host: &Host, target: u64) -> String {
    let list: Vec<String> = host
        .gens
        .iter()
        .filter(|(n, g)| **n != target && g.ready())
        .map(|(n, _)| n.to_string())
        .collect();
    if list.is_empty() {
        "none on this host".into()
    } else {
        list.join(", ")
    }
}

/// Accumulates steps; remembers what it already stopped or removed so that no
/// container is handled twice.
struct Builder<'s> {
    spec: &'s Spec,
    evidence: Evidence<'s>,
    steps: Vec<Step>,
    /// Deletions the host's records do not allow: the plan is refused.
    problems: Vec<Problem>,
    notes: Vec<String>,
    stopped: BTreeSet<String>,
    removed: BTreeSet<String>,
    started_dbs: BTreeSet<(u64, String)>,
}

impl<'s> Builder<'s> {
    fn new(spec: &'s Spec, evidence: Evidence<'s>) -> Self {
        Builder {
            spec,
            evidence,
            steps: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            stopped: BTreeSet::new(),
            removed: BTreeSet::new(),
            started_dbs: BTreeSet::new(),
        }
    }

    fn push(&mut self, action: Action, reason: impl Into<String>) {
        self.steps.push(Step {
            action,
            reason: reason.into(),
        });
    }

    fn check(&mut self, generation: u64, reason: &str) {
        let container = desired::container_name(self.spec, Role::App, generation);
        self.push(
            Action::CheckHealth {
                generation,
                container,
            },
            reason,
        );
    }

    fn create_db(&mut self, generation: u64, fresh: bool, reason: &str) {
        let container = desired::container_name(self.spec, Role::Db, generation);
        self.started_dbs.insert((generation, container.clone()));
        self.push(
            Action::CreateDb {
                generation,
                container: container.clone(),
                fresh,
            },
            reason,
        );
        self.push(
            Action::WaitDb {
                generation,
                container,
            },
            "PostgreSQL must accept queries before anything uses it",
        );
    }

    fn ensure_db_up(&mut self, generation: u64, g: &Gen, reason: &str) {
        match g.db {
            None => self.create_db(generation, false, reason),
            Some(db) if !db.up() => {
                self.started_dbs.insert((generation, db.c.name.clone()));
                self.push(
                    Action::StartDb {
                        generation,
                        container: db.c.name.clone(),
                    },
                    format!("{reason}; it is {}", db.c.state),
                );
                self.push(
                    Action::WaitDb {
                        generation,
                        container: db.c.name.clone(),
                    },
                    "PostgreSQL must accept queries before anything uses it",
                );
            }
            Some(_) => {}
        }
    }

    fn stop_other_apps(&mut self, host: &Host, target: u64, reason: &str) {
        for (n, g) in &host.gens {
            if *n != target
                && let Some(app) = g.app.filter(Known::up)
                && !self.stopped.contains(&app.c.name)
                && !self.removed.contains(&app.c.name)
            {
                self.stopped.insert(app.c.name.clone());
                self.push(
                    Action::StopApp {
                        generation: *n,
                        container: app.c.name.clone(),
                    },
                    reason,
                );
            }
        }
    }

    fn remove_containers(&mut self, generation: u64, g: &Gen, why: &str) {
        for k in [g.app, g.db].into_iter().flatten() {
            self.removed.insert(k.c.name.clone());
            self.push(
                Action::RemoveContainer {
                    generation,
                    container: k.c.name.clone(),
                    role: k.c.labels[labels::ROLE].clone(),
                },
                format!("generation {generation} {why}"),
            );
        }
    }

    /// Removes a generation whose data must never have served, or refuses: the
    /// only deletion of data outside retention.
    fn remove_never_served(&mut self, generation: u64, g: &Gen, why: &str) {
        let public_app = g.app.is_some_and(|a| a.exposed());
        match self
            .evidence
            .may_have_served(generation, g.data.map(|d| &d.marker), public_app)
        {
            None => self.remove_generation(generation, g, why),
            Some(because) => self.problems.push(Problem {
                container: None,
                seen: format!(
                    "generation {generation}'s data would be deleted ({why}), but {because}: \
                     gemctl deletes data only with proof that it never served"
                ),
                fix: format!(
                    "look at {} and the records under {}/.gemctl. If that data is debris, \
                     `gemctl repair-state -f SPEC --discard {generation}` marks it for deletion; \
                     if it must be kept, move it out of the storage root",
                    desired::generation_dir(self.spec, generation).display(),
                    self.spec.storage.display()
                ),
            }),
        }
    }

    /// What a failed generation left: cleared away when it never served; when its
    /// app was already given the public ports, its containers go and its data stays.
    fn remove_failed(&mut self, generation: u64, g: &Gen) {
        let public_app = g.app.is_some_and(|a| a.exposed());
        let marker = g.data.map(|d| &d.marker);
        if g.data.is_none()
            || self
                .evidence
                .may_have_served(generation, marker, public_app)
                .is_none()
        {
            self.remove_generation(generation, g, "failed its health checks and never served");
        } else if g.ready() {
            self.remove_containers(generation, g, "failed its health checks");
            self.notes.push(format!(
                "generation {generation} failed after it may have served: its data is kept under {}",
                desired::generation_dir(self.spec, generation).display()
            ));
        } else {
            self.remove_never_served(generation, g, "failed its health checks");
        }
    }

    fn remove_generation(&mut self, generation: u64, g: &Gen, why: &str) {
        self.remove_containers(generation, g, why);
        if g.data.is_some() {
            self.push(
                Action::RemoveData { generation },
                format!("generation {generation} {why}"),
            );
        }
    }
}

/// Sorts containers into this project's generations, or refuses when any container
/// in scope is not recognised (I1).
fn recognise<'a>(spec: &Spec, observed: &'a Observed) -> Result<Host<'a>, Refusal> {
    let mut gens: BTreeMap<u64, Gen<'a>> = BTreeMap::new();
    let mut copies = Vec::new();
    let mut problems = Vec::new();

    let numbered = |name: &str, prefix: &str| -> Option<u64> {
        name.strip_prefix(prefix)?
            .strip_prefix('-')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let copy_prefix = format!("{}-copy", spec.project);
    let backup_prefix = format!("{}-backup", spec.project);

    for c in &observed.containers {
        let project = c.labels.get(labels::PROJECT);
        let by_name = numbered(&c.name, &spec.app.name)
            .map(|n| (labels::ROLE_APP, n))
            .or_else(|| numbered(&c.name, &spec.db.name).map(|n| (labels::ROLE_DB, n)))
            .or_else(|| numbered(&c.name, &copy_prefix).map(|n| (labels::ROLE_COPY, n)))
            .or_else(|| numbered(&c.name, &backup_prefix).map(|n| (labels::ROLE_COPY, n)));

        if project == Some(&spec.project) {
            let role = c.labels.get(labels::ROLE).map(String::as_str);
            let generation = c
                .labels
                .get(labels::GENERATION)
                .and_then(|g| g.parse::<u64>().ok());
            match (role, generation, by_name) {
                (Some(r), Some(n), Some((nr, nn))) if r == nr && n == nn => {
                    let known = Known { c };
                    match r {
                        labels::ROLE_APP => gens.entry(n).or_default().app = Some(known),
                        labels::ROLE_DB => gens.entry(n).or_default().db = Some(known),
                        _ => copies.push((n, c)),
                    }
                }
                _ => problems.push(Problem {
                    container: Some(c.name.clone()),
                    seen: format!(
                        "{} carries project {}'s labels (role {}, generation {}) but its name does not match them",
                        c.name,
                        spec.project,
                        role.unwrap_or("missing"),
                        c.labels
                            .get(labels::GENERATION)
                            .map_or("missing", String::as_str)
                    ),
                    fix: format!(
                        "find out who made {} and remove it; gemctl names its containers {}-<n> and {}-<n>",
                        c.name, spec.app.name, spec.db.name
                    ),
                }),
            }
            continue;
        }

        if by_name.is_some() {
            let owner = match project {
                Some(p) => format!("belongs to gemctl project {p}"),
                None => "was not made by gemctl (it has no io.gemctl labels)".into(),
            };
            problems.push(Problem {
                container: Some(c.name.clone()),
                seen: format!(
                    "{} ({}, {}) has a name of project {} but {owner}",
                    c.name, c.image, c.state, spec.project
                ),
                fix: format!(
                    "gemctl will not touch it: remove or rename {} (docker rm -f {}), \
                     or give this project other names with app.name / db.name",
                    c.name, c.name
                ),
            });
            continue;
        }

        if spec.scope == Scope::Project || spec.ignore.iter().any(|p| glob_match(p, &c.name)) {
            continue;
        }
        let owner = match project {
            Some(p) => format!(" (gemctl project {p})"),
            None => String::new(),
        };
        problems.push(Problem {
            container: Some(c.name.clone()),
            seen: format!(
                "{}{owner} ({}, {}) is on this host but not part of project {}",
                c.name, c.image, c.state, spec.project
            ),
            fix: format!(
                "remove it if it should not be here, or add `ignore: [\"{}\"]` to the spec \
                 (or `scope: project` to only look at this project's containers)",
                c.name
            ),
        });
    }

    for d in &observed.storage.generations {
        gens.entry(d.generation).or_default().data = Some(d);
    }

    if problems.is_empty() {
        Ok(Host { gens, copies })
    } else {
        Err(Refusal {
            project: spec.project.clone(),
            problems,
        })
    }
}

/// Shell-style `*` and `?` matching, enough for container-name patterns (Docker
/// names are ASCII, so bytes will do; no allocation: it runs for every container).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

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
}
