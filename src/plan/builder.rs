//! The `Builder`: the one place that emits a plan's steps. It remembers what it
//! already stopped, started or removed, so that no container is handled twice, and
//! it holds the rule for deleting data outside retention (only with proof that it
//! never served), collecting refusals and notes on the way.

use std::collections::BTreeSet;

use crate::desired::{self, Role};
use crate::labels;
use crate::spec::Spec;

use super::evidence::Evidence;
use super::recognise::{Gen, Host, Known};
use super::{Action, Problem, Step};

/// Accumulates steps; remembers what it already stopped or removed so that no
/// container is handled twice.
pub(super) struct Builder<'s> {
    pub(super) spec: &'s Spec,
    /// What may be deleted; a restore lifts its own pin while redoing its generation.
    pub(super) evidence: Evidence<'s>,
    steps: Vec<Step>,
    /// Deletions the host's records do not allow: the plan is refused.
    problems: Vec<Problem>,
    notes: Vec<String>,
    stopped: BTreeSet<String>,
    removed: BTreeSet<String>,
    started_dbs: BTreeSet<(u64, String)>,
    started_apps: BTreeSet<(u64, String)>,
    /// (generation, service, container) of the service replicas this plan starts.
    started_services: BTreeSet<(u64, String, String)>,
    /// The generation the front forwards to as the steps so far leave it.
    pub(super) fronted: Option<u64>,
    /// The target runs as it was made (held back, or rolled back to): its services
    /// are the ones it has, not the spec's.
    pub(super) as_made: bool,
}

impl<'s> Builder<'s> {
    pub(super) fn new(spec: &'s Spec, evidence: Evidence<'s>) -> Self {
        Builder {
            spec,
            evidence,
            steps: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            stopped: BTreeSet::new(),
            removed: BTreeSet::new(),
            started_dbs: BTreeSet::new(),
            started_apps: BTreeSet::new(),
            started_services: BTreeSet::new(),
            fronted: None,
            as_made: false,
        }
    }

    pub(super) fn push(&mut self, action: Action, reason: impl Into<String>) {
        self.steps.push(Step {
            action,
            reason: reason.into(),
        });
    }

    /// Something the operator must know about the plan.
    pub(super) fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// A step the plan cannot take: the plan is refused.
    pub(super) fn refuse(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    pub(super) fn check(&mut self, generation: u64, reason: &str) {
        let container = desired::container_name(self.spec, Role::App, generation);
        self.push(
            Action::CheckHealth {
                generation,
                container,
            },
            reason,
        );
    }

    pub(super) fn create_db(&mut self, generation: u64, fresh: bool, reason: &str) {
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

    pub(super) fn ensure_db_up(&mut self, generation: u64, g: &Gen, reason: &str) {
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

    /// Whether this plan already removes the container `name`.
    pub(super) fn removes(&self, name: &str) -> bool {
        self.removed.contains(name)
    }

    /// Stops the services of every generation but the target's for which
    /// `which(generation)` holds, including those this plan started.
    pub(super) fn stop_other_services(
        &mut self,
        host: &Host,
        target: u64,
        which: impl Fn(u64) -> bool,
    ) {
        let running_services: BTreeSet<(u64, String, String)> = host
            .gens
            .iter()
            .flat_map(|(n, g)| {
                g.services.iter().filter(|k| k.up()).map(|k| {
                    let service = k.service().unwrap_or_default().to_string();
                    (*n, service, k.c.name.clone())
                })
            })
            .chain(self.started_services.iter().cloned())
            .collect();
        for (n, service, name) in running_services {
            if n != target
                && which(n)
                && !self.stopped.contains(&name)
                && !self.removed.contains(&name)
            {
                self.stopped.insert(name.clone());
                self.push(
                    Action::StopService {
                        generation: n,
                        service,
                        container: name,
                    },
                    format!(
                        "generation {n}'s services stop before its app: only one generation's \
                         services run, and none writes once the app's writes stop"
                    ),
                );
            }
        }
    }

    /// Stops every app but the target's, including those this plan started; each
    /// generation's services first (two generations' workers never run at once,
    /// and none still writes when the app's writes stop).
    pub(super) fn stop_other_apps(&mut self, host: &Host, target: u64, reason: &str) {
        self.stop_other_services(host, target, |_| true);
        let running_apps: BTreeSet<(u64, String)> = host
            .gens
            .iter()
            .filter_map(|(n, g)| g.app.filter(Known::up).map(|a| (*n, a.c.name.clone())))
            .chain(self.started_apps.iter().cloned())
            .collect();
        for (n, name) in running_apps {
            if n != target && !self.stopped.contains(&name) && !self.removed.contains(&name) {
                self.stopped.insert(name.clone());
                if self.fronted == Some(n) {
                    self.push(
                        Action::HoldFront { generation: n },
                        "requests wait at the front, not at a stopped app",
                    );
                    self.fronted = None;
                }
                self.push(
                    Action::StopApp {
                        generation: n,
                        container: name,
                    },
                    reason,
                );
            }
        }
    }

    /// Creates a service's replica from the spec.
    pub(super) fn create_service(&mut self, generation: u64, service: &str, name: &str, why: &str) {
        self.started_services
            .insert((generation, service.to_string(), name.to_string()));
        self.push(
            Action::CreateService {
                generation,
                service: service.to_string(),
                container: name.to_string(),
            },
            why,
        );
    }

    /// Starts a stopped replica of a service.
    pub(super) fn start_service(
        &mut self,
        generation: u64,
        service: &str,
        name: &str,
        why: String,
    ) {
        self.started_services
            .insert((generation, service.to_string(), name.to_string()));
        self.push(
            Action::StartService {
                generation,
                service: service.to_string(),
                container: name.to_string(),
            },
            why,
        );
    }

    /// Starts a stopped public app again, and checks it.
    pub(super) fn restart_app(&mut self, generation: u64, name: &str, reason: &str) {
        self.started_apps.insert((generation, name.to_string()));
        self.push(
            Action::StartApp {
                generation,
                container: name.to_string(),
            },
            reason,
        );
        self.check(generation, "the restarted app must pass its health checks");
    }

    /// The streamed upgrade's clean shutdown of the source db, which no later step
    /// stops again.
    pub(super) fn stop_primary(&mut self, generation: u64, name: &str, reason: &str) {
        self.stopped.insert(name.to_string());
        self.push(
            Action::StopPrimary {
                generation,
                container: name.to_string(),
            },
            reason,
        );
    }

    pub(super) fn remove_containers(&mut self, generation: u64, g: &Gen, why: &str) {
        let services = g.services.iter().copied();
        for k in services.chain([g.app, g.db].into_iter().flatten()) {
            if self.removed.contains(&k.c.name) {
                continue;
            }
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
    pub(super) fn remove_never_served(&mut self, generation: u64, g: &Gen, why: &str) {
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
    pub(super) fn remove_failed(&mut self, generation: u64, g: &Gen) {
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

    pub(super) fn remove_generation(&mut self, generation: u64, g: &Gen, why: &str) {
        self.remove_containers(generation, g, why);
        if g.data.is_some() {
            self.push(
                Action::RemoveData { generation },
                format!("generation {generation} {why}"),
            );
        }
    }

    /// Creates the private network unless the engine has it.
    pub(super) fn ensure_network(&mut self, networks: &[String]) {
        if !networks.contains(&self.spec.network_name()) {
            self.push(
                Action::CreateNetwork {
                    network: self.spec.network_name(),
                },
                "the private network for app and db does not exist",
            );
        }
    }

    /// Clears what an interrupted apply left of a generation whose data never became
    /// ready, and starts its database on a fresh data directory.
    pub(super) fn start_afresh(&mut self, target: u64, tgen: &Gen) {
        self.clear_half_made(target, tgen);
        self.create_db(target, true, "the new generation's database starts empty");
    }

    /// Clears what an interrupted apply left of a generation whose data never became
    /// ready: it is redone from scratch (only with proof that it never served).
    pub(super) fn clear_half_made(&mut self, target: u64, tgen: &Gen) {
        let why = "half-made by an interrupted apply; it is redone from scratch";
        if tgen.data.is_some() {
            self.remove_never_served(target, tgen, why);
        } else if tgen.app.is_some() || tgen.db.is_some() || !tgen.services.is_empty() {
            self.remove_containers(target, tgen, why);
        }
    }

    /// Stops every database but the one the target runs on (`target_db`: its own,
    /// or the one it shares), including those this plan started (a copy's source)
    /// and not those it removes.
    pub(super) fn stop_other_dbs(&mut self, host: &Host, target_db: u64) {
        let running_dbs: BTreeSet<(u64, String)> = host
            .gens
            .iter()
            .filter_map(|(n, g)| g.db.filter(Known::up).map(|db| (*n, db.c.name.clone())))
            .chain(self.started_dbs.iter().cloned())
            .collect();
        for (n, name) in running_dbs {
            if n != target_db && !self.removed.contains(&name) && !self.stopped.contains(&name) {
                self.push(
                    Action::StopDb {
                        generation: n,
                        container: name,
                    },
                    "only the live generation's database runs",
                );
            }
        }
    }

    /// The steps and notes, or the refusal's problems when a deletion was not allowed.
    pub(super) fn finish(self) -> Result<(Vec<Step>, Vec<String>), Vec<Problem>> {
        if self.problems.is_empty() {
            Ok((self.steps, self.notes))
        } else {
            Err(self.problems)
        }
    }
}
