//! Properties of the planner over random hosts, checked with a fake engine that
//! simulates Docker: plans apply without conflicts and converge, refusals come
//! alone, nothing unrecognised or retained is ever removed, planning is repeatable,
//! and — over random damage to the state files and markers — no data that is
//! recorded live, retained, pinned or of unknown history is ever deleted.

mod support;

use std::collections::BTreeSet;

use gemctl::desired::{self, Role};
use gemctl::labels;
use gemctl::observed::{
    Container, ContainerState, Damage, FailedGeneration, GenerationData, History, Marker, Observed,
    Pin,
};
use gemctl::plan::{self, Action, Plan, PlanOptions};
use gemctl::spec::{CopyMode, Spec};
use proptest::prelude::*;

const STATES: [ContainerState; 4] = [
    ContainerState::Running,
    ContainerState::Exited,
    ContainerState::Created,
    ContainerState::Dead,
];

#[derive(Debug, Clone)]
struct GenSetup {
    /// Index into [`markers`].
    data: Option<usize>,
    /// In the record of generations that served.
    served: bool,
    app: Option<(usize, bool, bool)>,
    db: Option<(usize, bool)>,
    /// The PostgreSQL major version of its data, when it can be read.
    pg_major: Option<u32>,
    /// Its services' containers: (state, whether the first replica's state differs,
    /// whether made from today's spec).
    services: Option<(usize, bool, bool)>,
}

/// Majors of data and image: mostly the same (so upgrades stream), sometimes
/// another or unknown (so they dump, or a `stream` spec is refused).
fn major() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![6 => Just(Some(15)), 1 => Just(Some(17)), 1 => Just(None)]
}

/// Ready, being prepared, discarded, the two kinds of damage (rarer), and running
/// on an older generation's database (`db.copy: none`; on generation 1, on a
/// database that cannot be).
fn markers(i: usize, n: u64) -> Marker {
    match i {
        9..=10 => Marker::Shares {
            db: n.saturating_sub(i as u64 - 8).max(1),
        },
        0..=3 => Marker::Ready { copied_from: None },
        4..=5 => Marker::Preparing,
        6 => Marker::Discarded {
            reason: "test".into(),
        },
        7 => Marker::Missing,
        _ => Marker::Unreadable {
            problem: "is empty".into(),
        },
    }
}

fn gen_setup() -> impl Strategy<Value = GenSetup> {
    (
        prop::option::weighted(0.7, 0usize..11),
        any::<bool>(),
        prop::option::weighted(
            0.6,
            (0..STATES.len(), any::<bool>(), prop::bool::weighted(0.9)),
        ),
        prop::option::weighted(0.6, (0..STATES.len(), prop::bool::weighted(0.9))),
        major(),
        prop::option::weighted(
            0.5,
            (
                0..STATES.len(),
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.9),
            ),
        ),
    )
        .prop_map(|(data, served, app, db, pg_major, services)| GenSetup {
            data,
            served,
            app,
            db,
            pg_major,
            services,
        })
}

#[derive(Debug, Clone)]
struct Case {
    desired: u64,
    retain: u32,
    scope_project: bool,
    gens: Vec<GenSetup>,
    live: Option<u64>,
    network: bool,
    copy_leftover: Option<u64>,
    stranger: Option<usize>,
    failed: bool,
    /// The record of served generations exists.
    served_record: bool,
    /// A pin: (generation, restore pin).
    pin: Option<(u64, bool)>,
    /// A damaged state file.
    damaged_file: Option<usize>,
    /// The db image's major version.
    image_major: Option<u32>,
    /// `db.copy`: auto, stream, dump, none.
    copy: usize,
    /// A front door: its container's state (if there is one), the generation its
    /// record forwards to, whether it holds requests.
    front: Option<(Option<usize>, Option<u64>, bool)>,
    /// How many services the spec has (0–2) and the worker's replicas (1–3).
    services: (usize, u32),
    /// A throwaway copy on the host: (kind, with a container, with a directory,
    /// in use by a running gemctl).
    throwaway: Option<(usize, bool, bool, bool)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1u64..=7,
        1u32..=3,
        any::<bool>(),
        prop::collection::vec(gen_setup(), 6),
        prop::option::of(1u64..=6),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.2, 1u64..=6),
        prop::option::weighted(0.2, 0usize..4),
        prop::bool::weighted(0.2),
        (
            prop::bool::weighted(0.85),
            prop::option::weighted(0.15, (1u64..=6, any::<bool>())),
            prop::option::weighted(0.1, 0usize..4),
            major(),
            0usize..4,
            prop::option::weighted(
                0.3,
                (
                    prop::option::weighted(0.8, 0..STATES.len()),
                    prop::option::weighted(0.8, 1u64..=6),
                    prop::bool::weighted(0.2),
                ),
            ),
        ),
        (
            (0usize..=2, 1u32..=3),
            prop::option::weighted(
                0.3,
                (
                    0usize..3,
                    any::<bool>(),
                    any::<bool>(),
                    prop::bool::weighted(0.3),
                ),
            ),
        ),
    )
        .prop_map(
            |(
                desired,
                retain,
                scope_project,
                gens,
                live,
                network,
                copy_leftover,
                stranger,
                failed,
                (served_record, pin, damaged_file, image_major, copy, front),
                (services, throwaway),
            )| Case {
                desired,
                retain,
                scope_project,
                gens,
                live,
                network,
                copy_leftover,
                stranger,
                failed,
                served_record,
                pin,
                damaged_file,
                image_major,
                copy,
                front,
                services,
                throwaway,
            },
        )
}

fn spec_of(c: &Case) -> Spec {
    let scope = if c.scope_project { "project" } else { "host" };
    let mut spec = support::spec_with(c.desired, c.retain, "v-now", scope);
    spec.db.copy = [
        CopyMode::Auto,
        CopyMode::Stream,
        CopyMode::Dump,
        CopyMode::None,
    ][c.copy];
    let (count, replicas) = c.services;
    let services = [
        "cache:\n  image: \"example/cache:7\"\n".to_string(),
        format!(
            "worker:\n  image: \"example/shop:v-now\"\n  replicas: {replicas}\n  depends_on: [cache]\n"
        ),
    ];
    let text: String = services[..count].concat();
    if !text.is_empty() {
        spec.services = serde_yaml::from_str(&text).unwrap();
        if count == 1 {
            spec.services.get_mut("cache").unwrap().depends_on.clear();
        }
    }
    if c.front.is_some() {
        spec.app.ports.clear();
        spec.front = Some(
            serde_yaml::from_str(
                "image: haproxy:2.6\nports:\n  - { port: \"80:8080\", mode: http }\n  \
                 - { port: \"127.0.0.1:7000:7000\", mode: tcp }\n",
            )
            .unwrap(),
        );
    }
    spec
}

fn container(
    spec: &Spec,
    role: Role,
    g: u64,
    state: usize,
    public: bool,
    fresh_hash: bool,
) -> Container {
    let want = match role {
        Role::App => desired::app(spec, g),
        Role::Db => desired::db(spec, g),
        Role::Service => unreachable!("services are made by service_containers"),
    };
    let mut labels = want.labels(&spec.project);
    if !fresh_hash {
        labels.insert(labels::SPEC_HASH.into(), "0000000000000000".into());
    }
    if role == Role::App {
        let e = if public {
            labels::EXPOSURE_PUBLIC
        } else {
            labels::EXPOSURE_PROBE
        };
        labels.insert(labels::EXPOSURE.into(), e.into());
    }
    Container {
        name: want.name,
        id: String::new(),
        image: want.image,
        labels,
        state: STATES[state],
        health: None,
        ports: Vec::new(),
        created: None,
    }
}

/// Generation `g`'s service containers as the spec makes them.
fn service_containers(spec: &Spec, g: u64, setup: (usize, bool, bool)) -> Vec<Container> {
    let (state, first_differs, fresh_hash) = setup;
    desired::services_on(spec, g, g)
        .into_iter()
        .enumerate()
        .map(|(i, want)| {
            let mut labels = want.labels(&spec.project);
            if !fresh_hash {
                labels.insert(labels::SPEC_HASH.into(), "0000000000000000".into());
            }
            let state = if i == 0 && first_differs {
                (state + 1) % STATES.len()
            } else {
                state
            };
            Container {
                name: want.name,
                id: String::new(),
                image: want.image,
                labels,
                state: STATES[state],
                health: None,
                ports: Vec::new(),
                created: None,
            }
        })
        .collect()
}

fn host_of(c: &Case, spec: &Spec) -> (Observed, History) {
    let mut obs = Observed::default();
    for (i, g) in c.gens.iter().enumerate() {
        let n = i as u64 + 1;
        if let Some(m) = g.data {
            obs.storage.generations.push(GenerationData {
                generation: n,
                marker: markers(m, n),
                pg_major: g.pg_major,
            });
        }
        if let Some((state, public, fresh)) = g.app {
            // Two public apps cannot both be running on the same ports.
            let state = if public
                && STATES[state].is_up()
                && obs.containers.iter().any(|c| {
                    c.state.is_up()
                        && c.labels.get(labels::EXPOSURE).map(String::as_str)
                            == Some(labels::EXPOSURE_PUBLIC)
                }) {
                1
            } else {
                state
            };
            obs.containers
                .push(container(spec, Role::App, n, state, public, fresh));
        }
        if let Some((state, fresh)) = g.db {
            obs.containers
                .push(container(spec, Role::Db, n, state, false, fresh));
        }
        if let Some(setup) = g.services {
            obs.containers.extend(service_containers(spec, n, setup));
        }
    }
    if let (Some((state, live, holding)), Some(front)) = (c.front, &spec.front) {
        if let Some(state) = state {
            obs.containers.push(Container {
                name: gemctl::front::container_name(spec),
                id: String::new(),
                image: front.image.to_string(),
                labels: gemctl::front::labels(spec, front),
                state: STATES[state],
                health: None,
                ports: Vec::new(),
                created: None,
            });
        }
        let mut record = gemctl::front::FrontState::default();
        if let Some(g) = live {
            record = record.switched(g);
        }
        if holding {
            record = record.held();
        }
        obs.storage.front = Some(record);
    }
    if let Some((k, container, dir, in_use)) = c.throwaway {
        let kind = ["preview", "check", "drill"][k];
        if in_use {
            obs.storage.throwaways_in_use.push(kind.to_string());
        }
        if container {
            obs.containers.push(Container {
                name: format!("{}-{kind}-app", spec.project),
                id: String::new(),
                image: spec.app.image.to_string(),
                labels: [
                    (labels::PROJECT.to_string(), spec.project.clone()),
                    (labels::ROLE.to_string(), labels::ROLE_THROWAWAY.to_string()),
                    (labels::THROWAWAY.to_string(), kind.to_string()),
                ]
                .into(),
                state: ContainerState::Running,
                health: None,
                ports: Vec::new(),
                created: None,
            });
        }
        if dir {
            obs.storage.throwaways.push(kind.to_string());
        }
    }
    obs.storage.live = c.live;
    obs.db_image_major = c.image_major;
    if c.served_record {
        obs.storage.served = Some(
            c.gens
                .iter()
                .enumerate()
                .filter(|(_, g)| g.served)
                .map(|(i, _)| i as u64 + 1)
                .collect(),
        );
    }
    obs.storage.pin = c.pin.map(|(generation, restore)| Pin {
        generation,
        spec_generation: c.desired,
        at: "2026-11-23T00:00:00Z".into(),
        reason: "test".into(),
        restore_from: restore.then(|| "/backups/x.tar".into()),
    });
    if let Some(k) = c.damaged_file {
        obs.storage.damage.push(Damage {
            file: ["live", "pin", "served.json", "history.json"][k].into(),
            problem: "is empty".into(),
            fix: "test".into(),
        });
    }
    if c.network {
        obs.networks.push(spec.network_name());
    }
    if let Some(g) = c.copy_leftover {
        obs.containers.push(Container {
            name: desired::copy_container_name(spec, g),
            id: String::new(),
            image: spec.db.image.to_string(),
            labels: [
                (labels::PROJECT.to_string(), spec.project.clone()),
                (labels::ROLE.to_string(), labels::ROLE_COPY.to_string()),
                (labels::GENERATION.to_string(), g.to_string()),
            ]
            .into(),
            state: ContainerState::Running,
            health: None,
            ports: Vec::new(),
            created: None,
        });
    }
    if let Some(k) = c.stranger {
        let name = ["redis", "monitoring-agent", "gem-99", "worker-99"][k];
        obs.containers.push(Container {
            name: name.into(),
            id: String::new(),
            image: "other:1".into(),
            labels: Default::default(),
            state: ContainerState::Running,
            health: None,
            ports: Vec::new(),
            created: None,
        });
    }
    let mut history = History::default();
    if c.failed {
        history.failed.push(FailedGeneration {
            generation: c.desired,
            spec_hash: desired::generation_hash(spec, c.desired),
            at: "2026-11-23T00:00:00Z".into(),
            reason: "test".into(),
            report: None,
        });
    }
    (obs, history)
}

/// The generations whose data no plan may delete: the target, every ready
/// generation newer than it, the `retain` newest ready ones below it, and the one
/// it was copied from.
fn protected(plan: &Plan, obs: &Observed, retain: u32) -> BTreeSet<u64> {
    let ready: Vec<u64> = obs
        .storage
        .generations
        .iter()
        .filter(|d| d.ready())
        .map(|d| d.generation)
        .collect();
    let mut keep: BTreeSet<u64> = ready
        .iter()
        .copied()
        .filter(|g| *g >= plan.target && (plan.hold.is_none() || *g != plan.desired))
        .collect();
    keep.extend(
        ready
            .iter()
            .rev()
            .filter(|g| **g < plan.target)
            .take(retain as usize),
    );
    if let Some(from) = plan.steps.iter().find_map(|s| match s.action {
        Action::CopyData { from, .. } | Action::BaseBackup { from, .. } => Some(from),
        _ => None,
    }) {
        keep.insert(from);
    }
    // A kept generation's database is kept with it, whoever's it is.
    let shared: Vec<u64> = keep
        .iter()
        .map(|g| support::db_gen(obs, *g))
        .chain(plan.steps.iter().find_map(|s| match s.action {
            Action::ShareDb { db, .. } => Some(db),
            _ => None,
        }))
        .collect();
    keep.extend(shared);
    keep
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn plans_converge_and_respect_the_invariants(c in case()) {
        let spec = spec_of(&c);
        let (obs, history) = host_of(&c, &spec);
        let first = plan::plan(&spec, &obs, &history, PlanOptions::default());
        let again = plan::plan(&spec, &obs, &history, PlanOptions::default());
        prop_assert_eq!(&first, &again, "planning twice gives the same answer");

        let unknown_history = !obs.storage.damage.is_empty()
            || obs.storage.generations.iter().any(|d| d.marker.unknown());
        let p = match first {
            Ok(p) if unknown_history => {
                return Err(TestCaseError::fail(format!(
                    "planned on damaged state: {:?}", support::described(&p))));
            }
            Err(refusal) => {
                // A refusal carries problems and no steps (it has no field for any).
                prop_assert!(!refusal.problems.is_empty());
                return Ok(());
            }
            Ok(p) => p,
        };

        let known: BTreeSet<&str> = obs
            .containers
            .iter()
            .filter(|c| c.labels.get(labels::PROJECT) == Some(&spec.project))
            .map(|c| c.name.as_str())
            .collect();
        let keep = protected(&p, &obs, c.retain);
        // The generation recorded live when each step runs.
        let mut live = obs.storage.live;
        for step in &p.steps {
            match &step.action {
                Action::SetLive { generation } => live = Some(*generation),
                Action::RemoveContainer { container, .. } => {
                    prop_assert!(known.contains(container.as_str()), "removes unrecognised {}", container);
                }
                Action::RemoveData { generation } => {
                    let data = obs.storage.generations.iter().find(|d| d.generation == *generation);
                    let ready = data.is_some_and(|d| d.ready());
                    prop_assert!(!ready || !keep.contains(generation),
                        "deletes retained data of {}: {:#?}", generation, p);
                    prop_assert!(live != Some(*generation), "deletes the live data of {}", generation);
                    let rebuilt = p.steps.iter().any(|s| matches!(&s.action,
                        Action::RestoreBackup { generation: g, .. } if g == generation));
                    prop_assert!(rebuilt || obs.storage.pin.as_ref().is_none_or(|p| p.generation != *generation),
                        "deletes pinned data of {}", generation);
                    if !ready {
                        // Not retention: the data must positively never have served.
                        prop_assert!(data.is_some_and(|d| d.marker.says_never_served()),
                            "deletes data of unknown history {}", generation);
                        let served = obs.storage.served.as_ref();
                        prop_assert!(served.is_some_and(|s| !s.contains(generation)),
                            "deletes data of {} that served (or with no record): {:?}", generation, served);
                        let exposed = obs.containers.iter().any(|c| {
                            c.labels.get(labels::GENERATION) == Some(&generation.to_string())
                                && c.labels.get(labels::EXPOSURE).map(String::as_str) == Some(labels::EXPOSURE_PUBLIC)
                                && c.state != ContainerState::Created
                        });
                        prop_assert!(!exposed, "deletes data of {} whose app was public", generation);
                        let fronted = obs.storage.front.as_ref().and_then(|f| f.live.and_then(|s| f.named(s)));
                        prop_assert!(fronted != Some(*generation),
                            "deletes data of {} whose app the front forwards to", generation);
                    }
                }
                _ => {}
            }
        }

        // No data is deleted while a generation that stays runs on it.
        let deleted: BTreeSet<u64> = p.steps.iter().filter_map(|s| match s.action {
            Action::RemoveData { generation } => Some(generation),
            _ => None,
        }).collect();
        for d in &obs.storage.generations {
            if let Some(db) = d.shares() && !deleted.contains(&d.generation) {
                prop_assert!(!deleted.contains(&db),
                    "deletes generation {}'s data, which generation {} runs on", db, d.generation);
            }
        }

        let mut after = obs.clone();
        if let Err(e) = support::apply(&spec, &mut after, &p) {
            return Err(TestCaseError::fail(format!("{e}\nplan: {:#?}\nhost: {:#?}", support::described(&p), obs)));
        }
        let second = plan::plan(&spec, &after, &history, PlanOptions::default());
        match second {
            Ok(p2) => prop_assert!(p2.is_empty(), "second plan not empty: {:?}\nfirst: {:?}", support::described(&p2), support::described(&p)),
            Err(r) => return Err(TestCaseError::fail(format!("refused after applying: {r}"))),
        }

        let public_up = after.containers.iter().filter(|c| {
            c.state.is_up()
                && c.labels.get(labels::EXPOSURE).map(String::as_str) == Some(labels::EXPOSURE_PUBLIC)
        }).count();
        prop_assert!(public_up <= 1, "two public apps");
        if spec.front.is_some() && p.hold.is_none() {
            let front = after.storage.front.as_ref().and_then(|f| f.live_generation());
            prop_assert_eq!(front, Some(p.target), "the front forwards to the target");
            let apps_up = after.containers.iter().filter(|c| {
                c.state.is_up() && c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_APP)
            }).count();
            prop_assert_eq!(apps_up, 1, "one app runs behind the front");
        }
        if p.hold.is_none() {
            // Every service of the target runs: the spec's, or — gone back to below
            // newer data, where it runs as it was made — the ones it has; no other
            // generation's service runs.
            let rolled_back = obs.storage.generations.iter().any(|d| d.ready() && d.generation > p.target);
            let wanted: Vec<String> = if rolled_back {
                obs.containers.iter().filter(|c| {
                    c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_SERVICE)
                        && c.labels.get(labels::GENERATION) == Some(&p.target.to_string())
                }).map(|c| c.name.clone()).collect()
            } else {
                desired::services_on(&spec, p.target, support::db_gen(&after, p.target))
                    .into_iter().map(|w| w.name).collect()
            };
            for name in wanted {
                prop_assert!(after.containers.iter().any(|c| c.name == name && c.state.is_up()),
                    "service replica {} of the target does not run", name);
            }
            let others: Vec<&str> = after.containers.iter().filter(|c| {
                c.state.is_up()
                    && c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_SERVICE)
                    && c.labels.get(labels::GENERATION) != Some(&p.target.to_string())
            }).map(|c| c.name.as_str()).collect();
            prop_assert!(others.is_empty(), "services of other generations run: {:?}", others);
        }
        // A new generation is built from live data as it is: no preview (nor a
        // killed check's leftovers) survives it; a drill is never touched.
        let built = p.steps.iter().any(|s| matches!(s.action,
            Action::MarkReady { .. } | Action::ShareDb { .. }));
        // A throwaway copy that a running gemctl uses is never discarded.
        let in_use = c.throwaway.filter(|t| t.3).map(|t| ["preview", "check", "drill"][t.0]);
        if let Some(kind) = in_use {
            prop_assert!(!p.steps.iter().any(|s| matches!(&s.action,
                Action::DiscardThrowaway { kind: k } if k == kind)),
                "discards the {} a gemctl is using", kind);
        }
        if built {
            let left: Vec<&str> = after.containers.iter()
                .filter(|c| matches!(c.labels.get(labels::THROWAWAY).map(String::as_str), Some("preview" | "check")))
                .filter(|c| c.labels.get(labels::THROWAWAY).map(String::as_str) != in_use)
                .map(|c| c.name.as_str()).collect();
            prop_assert!(left.is_empty(), "a throwaway copy survives a new generation: {:?}", left);
        }
        if let Some((k, container, dir, used)) = c.throwaway
            && (k == 2 || used)
        {
            let kind = ["preview", "check", "drill"][k];
            prop_assert_eq!(after.containers.iter().any(|c| c.labels.get(labels::THROWAWAY).map(String::as_str) == Some(kind)), container);
            prop_assert_eq!(after.storage.throwaways.iter().any(|k| k == kind), dir);
        }
        let app = desired::container_name(&spec, Role::App, p.target);
        if p.hold.is_none() || !after.storage.generations.is_empty() {
            prop_assert!(after.containers.iter().any(|c| c.name == app && c.state.is_up()) || p.hold.is_some());
        }
    }
}
