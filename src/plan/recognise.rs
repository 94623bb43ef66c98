//! Recognising the host (I1): every container in scope is sorted into this
//! project's generations, beside the generation directories on storage, or the plan
//! is refused. Not what any of it means for the plan: that is decided from [`Host`].

use std::collections::BTreeMap;

use crate::front::FrontState;
use crate::labels;
use crate::observed::{Container, ContainerState, GenerationData, Observed};
use crate::spec::{Scope, Spec};

use super::{Problem, Refusal};

/// A recognised gemctl container.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known<'a> {
    pub(super) c: &'a Container,
    /// An app the front door forwards to: public through the front.
    pub(super) fronted: bool,
}

impl Known<'_> {
    /// The service a service container runs.
    pub(super) fn service(&self) -> Option<&str> {
        self.c.labels.get(labels::SERVICE).map(String::as_str)
    }
    /// Given the public ports and started at least once: it may have served.
    pub(super) fn exposed(&self) -> bool {
        self.public() && self.c.state != ContainerState::Created
    }
    pub(super) fn up(&self) -> bool {
        self.c.state.is_up()
    }
    pub(super) fn hash(&self) -> Option<&str> {
        self.c.labels.get(labels::SPEC_HASH).map(String::as_str)
    }
    /// Given the public ports, or forwarded to by the front door.
    pub(super) fn public(&self) -> bool {
        self.fronted
            || self.c.labels.get(labels::EXPOSURE).map(String::as_str)
                == Some(labels::EXPOSURE_PUBLIC)
    }
}

/// Everything of one generation on the host.
#[derive(Debug, Default, Clone)]
pub(super) struct Gen<'a> {
    pub(super) app: Option<Known<'a>>,
    pub(super) db: Option<Known<'a>>,
    /// Its services' containers, by name.
    pub(super) services: Vec<Known<'a>>,
    pub(super) data: Option<&'a GenerationData>,
}

impl Gen<'_> {
    pub(super) fn ready(&self) -> bool {
        self.data.is_some_and(GenerationData::ready)
    }
}

/// The host seen through the spec: containers sorted into generations.
pub(super) struct Host<'a> {
    pub(super) gens: BTreeMap<u64, Gen<'a>>,
    /// Copy and backup containers, by the generation they worked for.
    pub(super) copies: Vec<(u64, &'a Container)>,
    /// The front door's container.
    pub(super) front: Option<Known<'a>>,
    /// Throwaway copies' containers (previews, deploy checks, restore drills):
    /// never live, retained or strangers.
    pub(super) throwaways: Vec<&'a Container>,
    /// The front door's record: which generation each slot names, which is live.
    pub(super) front_state: Option<&'a FrontState>,
}

impl Host<'_> {
    /// The generation the front forwards to, by its record.
    pub(super) fn front_live(&self) -> Option<u64> {
        self.front_state.and_then(FrontState::live_generation)
    }

    /// Whether the front's record names generation `n`'s app in a slot.
    pub(super) fn front_names(&self, n: u64) -> bool {
        self.front_state.is_some_and(|f| f.slot_of(n).is_some())
    }
}

impl<'a> Host<'a> {
    /// Generation `n` as found, empty when nothing of it is on the host.
    pub(super) fn generation(&self, n: u64) -> Gen<'a> {
        self.gens.get(&n).cloned().unwrap_or_default()
    }

    /// The generation whose database generation `n` runs on: the one its marker
    /// says it shares (`db.copy: none`), else its own.
    pub(super) fn db_gen(&self, n: u64) -> u64 {
        self.gens
            .get(&n)
            .and_then(|g| g.data)
            .and_then(GenerationData::shares)
            .unwrap_or(n)
    }

    /// Whether generation `n`'s data is complete.
    pub(super) fn ready(&self, n: u64) -> bool {
        self.gens.get(&n).is_some_and(Gen::ready)
    }

    /// The newest generation whose data is complete.
    pub(super) fn newest_ready(&self) -> Option<u64> {
        self.ready_generations().max()
    }

    /// The generation recorded live, if its data is complete: a record naming data
    /// that is not there (or not ready) cannot be what serves.
    pub(super) fn live(&self, recorded: Option<u64>) -> Option<u64> {
        recorded.filter(|n| self.ready(*n))
    }

    /// Every generation whose data is complete, oldest first.
    pub(super) fn ready_generations(&self) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.gens.iter().filter(|(_, g)| g.ready()).map(|(n, _)| *n)
    }
}

/// Sorts containers into this project's generations, or refuses when any container
/// in scope is not recognised (I1).
pub(super) fn recognise<'a>(spec: &Spec, observed: &'a Observed) -> Result<Host<'a>, Refusal> {
    let mut gens: BTreeMap<u64, Gen<'a>> = BTreeMap::new();
    let mut copies = Vec::new();
    let mut front = None;
    let mut throwaways = Vec::new();
    let mut problems = Vec::new();
    let front_state = observed.storage.front.as_ref();
    let front_live = front_state.and_then(FrontState::live_generation);
    for c in &observed.containers {
        let known = |n| Known {
            c,
            fronted: front_live == Some(n),
        };
        match sort(spec, c) {
            Ok(Some((labels::ROLE_APP, n))) => gens.entry(n).or_default().app = Some(known(n)),
            Ok(Some((labels::ROLE_DB, n))) => {
                gens.entry(n).or_default().db = Some(Known { c, fronted: false })
            }
            Ok(Some((labels::ROLE_FRONT, _))) => front = Some(Known { c, fronted: false }),
            Ok(Some((labels::ROLE_THROWAWAY, _))) => throwaways.push(c),
            Ok(Some((labels::ROLE_SERVICE, n))) => {
                let services = &mut gens.entry(n).or_default().services;
                services.push(Known { c, fronted: false });
                services.sort_by(|a, b| a.c.name.cmp(&b.c.name));
            }
            Ok(Some((_, n))) => copies.push((n, c)),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    for d in &observed.storage.generations {
        gens.entry(d.generation).or_default().data = Some(d);
    }
    if problems.is_empty() {
        Ok(Host {
            gens,
            copies,
            front,
            throwaways,
            front_state,
        })
    } else {
        Err(Refusal {
            project: spec.project.clone(),
            problems,
        })
    }
}

/// Whether the planner looks at container `c` for `spec`: one of the project's,
/// or one it would refuse as a stranger. Ignored and out-of-scope ones are not.
pub fn in_scope(spec: &Spec, c: &Container) -> bool {
    !matches!(sort(spec, c), Ok(None))
}

/// Where one container belongs: this project's `(role, generation)`, `None` for a
/// container out of scope or ignored, or the problem that stops the plan.
fn sort(spec: &Spec, c: &Container) -> Result<Option<(&'static str, u64)>, Problem> {
    let project = c.labels.get(labels::PROJECT);
    let by_name = role_by_name(spec, &c.name);
    if project == Some(&spec.project) {
        return ours(spec, c, by_name).map(Some);
    }
    if by_name.is_some() {
        let owner = match project {
            Some(p) => format!("belongs to gemctl project {p}"),
            None => "was not made by gemctl (it has no io.gemctl labels)".into(),
        };
        return Err(Problem {
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
    }
    if spec.scope == Scope::Project || spec.ignore.iter().any(|p| glob_match(p, &c.name)) {
        return Ok(None);
    }
    let owner = match project {
        Some(p) => format!(" (gemctl project {p})"),
        None => String::new(),
    };
    Err(Problem {
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
    })
}

/// A container labelled as this project's: its labels and its name must agree.
fn ours(
    spec: &Spec,
    c: &Container,
    by_name: Option<(&'static str, u64)>,
) -> Result<(&'static str, u64), Problem> {
    let role = c.labels.get(labels::ROLE).map(String::as_str);
    let generation = c
        .labels
        .get(labels::GENERATION)
        .and_then(|g| g.parse::<u64>().ok());
    match (role, generation, by_name) {
        // A service's container is checked against its own labels: its service may
        // be gone from today's spec (an older generation's).
        (Some(labels::ROLE_SERVICE), Some(n), _) if service_named(c, n) => {
            Ok((labels::ROLE_SERVICE, n))
        }
        (Some(r), Some(n), Some((nr, nn))) if r == nr && n == nn && r != labels::ROLE_SERVICE => {
            Ok((nr, nn))
        }
        (Some(labels::ROLE_FRONT), None, Some((labels::ROLE_FRONT, _))) => {
            Ok((labels::ROLE_FRONT, 0))
        }
        (Some(labels::ROLE_THROWAWAY), _, Some((labels::ROLE_THROWAWAY, _))) => {
            Ok((labels::ROLE_THROWAWAY, 0))
        }
        _ => Err(Problem {
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
                "find out who made {} and remove it; gemctl names its containers {}-<n>, {}-<n> \
                 and <service>-<n>[-<replica>]",
                c.name, spec.app.name, spec.db.name
            ),
        }),
    }
}

/// Whether a container labelled as generation `n` of a service is named as one:
/// `<service>-<n>` (replica 1) or `<service>-<n>-<replica>`.
fn service_named(c: &Container, n: u64) -> bool {
    let (Some(service), Some(replica)) = (
        c.labels.get(labels::SERVICE),
        c.labels
            .get(labels::REPLICA)
            .and_then(|r| r.parse::<u32>().ok()),
    ) else {
        return false;
    };
    (replica == 1 && c.name == format!("{service}-{n}"))
        || c.name == format!("{service}-{n}-{replica}")
}

/// The role and generation a container's name claims in this project: app, db, a
/// service's, a copy or backup container (both `copy`), or the front door (no
/// generation: 0).
fn role_by_name(spec: &Spec, name: &str) -> Option<(&'static str, u64)> {
    if name == crate::front::container_name(spec) {
        return Some((labels::ROLE_FRONT, 0));
    }
    if crate::throwaway::kind_by_name(spec, name).is_some() {
        return Some((labels::ROLE_THROWAWAY, 0));
    }
    let numbered = |prefix: &str| -> Option<u64> {
        name.strip_prefix(prefix)?
            .strip_prefix('-')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let service = || {
        spec.services.keys().find_map(|s| {
            let rest = name.strip_prefix(s.as_str())?.strip_prefix('-')?;
            let (n, replica) = rest.split_once('-').unwrap_or((rest, "1"));
            let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
            if !(digits(n) && digits(replica)) {
                return None;
            }
            Some((labels::ROLE_SERVICE, n.parse().ok()?))
        })
    };
    numbered(&spec.app.name)
        .map(|n| (labels::ROLE_APP, n))
        .or_else(|| numbered(&spec.db.name).map(|n| (labels::ROLE_DB, n)))
        .or_else(|| numbered(&format!("{}-copy", spec.project)).map(|n| (labels::ROLE_COPY, n)))
        .or_else(|| numbered(&format!("{}-backup", spec.project)).map(|n| (labels::ROLE_COPY, n)))
        .or_else(service)
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
