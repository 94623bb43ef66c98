//! TEMPORARY (issue 10 refactor): the planner before and after the split must give
//! the same answer on random hosts. Removed with `plan_old` before the last commit.

use std::path::Path;

use proptest::prelude::*;

use crate::desired::{self, Role};
use crate::labels;
use crate::observed::{
    Container, ContainerState, Damage, FailedGeneration, GenerationData, History, Marker, Observed,
    Pin,
};
use crate::plan::PlanOptions;
use crate::spec::Spec;

const STATES: [ContainerState; 5] = [
    ContainerState::Running,
    ContainerState::Exited,
    ContainerState::Created,
    ContainerState::Dead,
    ContainerState::Paused,
];

fn markers(i: usize) -> Marker {
    match i {
        0..=29 => Marker::Ready { copied_from: None },
        30..=34 => Marker::Ready {
            copied_from: Some(2),
        },
        35..=49 => Marker::Preparing,
        50..=57 => Marker::Discarded {
            reason: "test".into(),
        },
        58 => Marker::Missing,
        _ => Marker::Unreadable {
            problem: "is empty".into(),
        },
    }
}

#[derive(Debug, Clone)]
struct GenSetup {
    data: Option<usize>,
    served: bool,
    /// state, public, fresh hash, other image
    app: Option<(usize, bool, bool, bool)>,
    db: Option<(usize, bool)>,
}

fn gen_setup() -> impl Strategy<Value = GenSetup> {
    (
        prop::option::weighted(0.7, 0usize..60),
        any::<bool>(),
        prop::option::weighted(
            0.6,
            (
                0..STATES.len(),
                any::<bool>(),
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.2),
            ),
        ),
        prop::option::weighted(0.6, (0..STATES.len(), prop::bool::weighted(0.8))),
    )
        .prop_map(|(data, served, app, db)| GenSetup {
            data,
            served,
            app,
            db,
        })
}

#[derive(Debug, Clone)]
struct Case {
    desired: u64,
    retain: u32,
    scope_project: bool,
    bootstrap_backup: bool,
    gens: Vec<GenSetup>,
    live: Option<u64>,
    network: bool,
    copy_leftover: Option<(u64, bool)>,
    stranger: Option<usize>,
    failed: Option<bool>,
    retry: bool,
    served_record: bool,
    /// generation, restore pin, spec generation offset
    pin: Option<(u64, bool, u64)>,
    damaged_file: Option<usize>,
    mislabelled: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1u64..=8, 1u32..=3, any::<bool>(), prop::bool::weighted(0.2)),
        prop::collection::vec(gen_setup(), 0..=7),
        prop::option::of(1u64..=7),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.2, (1u64..=7, any::<bool>())),
        prop::option::weighted(0.1, 0usize..3),
        (
            prop::option::weighted(0.3, prop::bool::weighted(0.8)),
            prop::bool::weighted(0.2),
        ),
        (
            prop::bool::weighted(0.85),
            prop::option::weighted(0.25, (1u64..=7, any::<bool>(), 0u64..2)),
            prop::option::weighted(0.03, 0usize..4),
            prop::option::weighted(0.02, 0usize..3),
        ),
    )
        .prop_map(
            |(
                (desired, retain, scope_project, bootstrap_backup),
                gens,
                live,
                network,
                copy_leftover,
                stranger,
                (failed, retry),
                (served_record, pin, damaged_file, mislabelled),
            )| Case {
                desired,
                retain,
                scope_project,
                bootstrap_backup,
                gens,
                live,
                network,
                copy_leftover,
                stranger,
                failed,
                retry,
                served_record,
                pin,
                damaged_file,
                mislabelled,
            },
        )
}

fn spec_of(c: &Case) -> Spec {
    let scope = if c.scope_project { "project" } else { "host" };
    let boot = if c.bootstrap_backup {
        "bootstrap: { from_backup: /backups/boot.tar }\n"
    } else {
        ""
    };
    let text = format!(
        r#"
project: shop
generation: {}
retain: {}
storage: /srv/shop
scope: {scope}
ignore: ["monitoring-*"]
{boot}app:
  image: "example/shop:v-now"
  ports: ["80:8080", "127.0.0.1:7000:7000"]
  health:
    - tcp: {{ port: 7000, send: "status\n", expect: "OK" }}
db:
  image: "postgres:15"
  env: {{ POSTGRES_USER: shop }}
"#,
        c.desired, c.retain
    );
    Spec::parse(Path::new("shop.yaml"), &text).expect("test spec is valid")
}

fn container(
    spec: &Spec,
    role: Role,
    g: u64,
    state: usize,
    public: bool,
    fresh: bool,
    other: bool,
) -> Container {
    let want = match role {
        Role::App => desired::app(spec, g),
        Role::Db => desired::db(spec, g),
    };
    let mut labels = want.labels(&spec.project);
    if !fresh {
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
        image: if other {
            "example/shop:old".into()
        } else {
            want.image
        },
        labels,
        state: STATES[state],
        health: None,
        ports: Vec::new(),
        created: None,
    }
}

fn host_of(c: &Case, spec: &Spec) -> (Observed, History) {
    let mut obs = Observed::default();
    for (i, g) in c.gens.iter().enumerate() {
        let n = i as u64 + 1;
        if let Some(m) = g.data {
            obs.storage.generations.push(GenerationData {
                generation: n,
                marker: markers(m),
            });
        }
        if let Some((state, public, fresh, other)) = g.app {
            obs.containers
                .push(container(spec, Role::App, n, state, public, fresh, other));
        }
        if let Some((state, fresh)) = g.db {
            obs.containers
                .push(container(spec, Role::Db, n, state, false, fresh, false));
        }
    }
    if let Some(k) = c.mislabelled
        && let Some(first) = obs.containers.first_mut()
    {
        match k {
            0 => {
                first.labels.insert(labels::GENERATION.into(), "99".into());
            }
            1 => {
                first.labels.remove(labels::ROLE);
            }
            _ => {
                first.labels.insert(labels::PROJECT.into(), "other".into());
            }
        }
    }
    obs.storage.live = c.live;
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
    obs.storage.pin = c.pin.map(|(generation, restore, off)| Pin {
        generation,
        spec_generation: c.desired + off,
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
    if let Some((g, backup)) = c.copy_leftover {
        obs.containers.push(Container {
            name: if backup {
                desired::backup_container_name(spec, g)
            } else {
                desired::copy_container_name(spec, g)
            },
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
        let name = ["redis", "monitoring-agent", "gem-99"][k];
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
    if let Some(same_spec) = c.failed {
        history.failed.push(FailedGeneration {
            generation: c.desired,
            spec_hash: if same_spec {
                desired::generation_hash(spec, c.desired)
            } else {
                "other".into()
            },
            at: "2026-11-23T00:00:00Z".into(),
            reason: "test".into(),
            report: None,
        });
    }
    (obs, history)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20000))]

    #[test]
    fn new_planner_plans_as_the_old_one(c in case()) {
        let spec = spec_of(&c);
        let (obs, history) = host_of(&c, &spec);
        let options = PlanOptions { retry_failed: c.retry };
        let old = crate::plan_old::plan(&spec, &obs, &history, crate::plan_old::PlanOptions { retry_failed: c.retry });
        let new = crate::plan::plan(&spec, &obs, &history, options);
        prop_assert_eq!(format!("{old:#?}"), format!("{new:#?}"));
    }
}

/// How often each outcome comes up, so the comparison is known to reach every kind.
#[test]
fn equivalence_cases_reach_every_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20000 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let spec = spec_of(&c);
        let (obs, history) = host_of(&c, &spec);
        let key = match crate::plan::plan(
            &spec,
            &obs,
            &history,
            PlanOptions {
                retry_failed: c.retry,
            },
        ) {
            Ok(p) => format!(
                "{:?}{}{}{}",
                std::mem::discriminant(&p.kind),
                if p.hold.is_some() { " hold" } else { "" },
                if p.pinned.is_some() { " pinned" } else { "" },
                if p.notes.is_empty() { "" } else { " notes" }
            ),
            Err(_) => "refused".into(),
        };
        *counts.entry(key).or_default() += 1;
    }
    eprintln!("{counts:#?}");
}
