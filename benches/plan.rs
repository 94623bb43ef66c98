//! Times `plan` on a large host — 50 retained generations (100 containers) among
//! 500 containers in all — next to one engine round trip (`GET /containers/json`,
//! what `docker ps -a` costs) measured in the same run.
//!
//! `cargo bench --bench plan`. Run without `--bench` (as `cargo test --all-targets`
//! does) it only checks that it works, with a few iterations.

use std::path::Path;
use std::time::{Duration, Instant};

use gemctl::desired::{self, Role};
use gemctl::engine::Engine;
use gemctl::labels;
use gemctl::observed::{Container, ContainerState, GenerationData, History, Marker, Observed};
use gemctl::plan::{self, PlanOptions};
use gemctl::spec::Spec;

const GENERATIONS: u64 = 50;
const CONTAINERS: usize = 500;

fn spec(generation: u64) -> Spec {
    let text = format!(
        r#"
project: big
generation: {generation}
retain: {GENERATIONS}
storage: /srv/big
ignore: ["sidecar-*"]
app:
  image: "example/big:v1"
  ports: ["80:8080", "127.0.0.1:7000:7000"]
  health:
    - tcp: {{ port: 7000, expect: "OK" }}
db:
  image: "postgres:15"
"#
    );
    Spec::parse(Path::new("big.yaml"), &text).expect("valid")
}

fn host(spec: &Spec) -> Observed {
    let mut obs = Observed::default();
    obs.networks.push(spec.network_name());
    for g in 1..=GENERATIONS {
        let live = g == GENERATIONS;
        for role in [Role::App, Role::Db] {
            let want = match role {
                Role::App => desired::app(spec, g),
                Role::Db => desired::db(spec, g),
                Role::Service => unreachable!("the bench's spec has no services"),
            };
            let mut labels = want.labels(&spec.project);
            if role == Role::App {
                labels.insert(labels::EXPOSURE.into(), labels::EXPOSURE_PUBLIC.into());
            }
            obs.containers.push(Container {
                name: want.name,
                id: format!("{g:064x}"),
                image: want.image,
                labels,
                state: if live {
                    ContainerState::Running
                } else {
                    ContainerState::Exited
                },
                health: None,
                ports: Vec::new(),
                created: None,
            });
        }
        obs.storage.generations.push(GenerationData {
            generation: g,
            marker: Marker::Ready {
                copied_from: g.checked_sub(1).filter(|p| *p > 0),
            },
            pg_major: None,
        });
    }
    let mut i = 0;
    while obs.containers.len() < CONTAINERS {
        obs.containers.push(Container {
            name: format!("sidecar-{i}"),
            id: format!("{i:064x}"),
            image: "other/sidecar:3".into(),
            labels: [("team".to_string(), "ops".to_string())].into(),
            state: ContainerState::Running,
            health: None,
            ports: Vec::new(),
            created: None,
        });
        i += 1;
    }
    obs.storage.live = Some(GENERATIONS);
    obs
}

fn per_call(iterations: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let iterations = if full { 2000 } else { 5 };
    let history = History::default();

    let in_sync = spec(GENERATIONS);
    let upgrade = spec(GENERATIONS + 1);
    let obs = host(&in_sync);
    assert!(
        plan::plan(&in_sync, &obs, &history, PlanOptions::default())
            .unwrap()
            .is_empty()
    );
    let up = plan::plan(&upgrade, &obs, &history, PlanOptions::default()).unwrap();
    assert!(!up.is_empty());

    let converged = per_call(iterations, || {
        std::hint::black_box(plan::plan(&in_sync, &obs, &history, PlanOptions::default()).unwrap());
    });
    let upgrading = per_call(iterations, || {
        std::hint::black_box(plan::plan(&upgrade, &obs, &history, PlanOptions::default()).unwrap());
    });
    println!(
        "plan, {} containers, {GENERATIONS} retained generations: {:>9.1} µs converged, {:>9.1} µs upgrade ({} steps)",
        obs.containers.len(),
        converged.as_secs_f64() * 1e6,
        upgrading.as_secs_f64() * 1e6,
        up.steps.len()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let round_trip = rt.block_on(async {
        let docker = gemctl::docker::Docker::connect().await.ok()?;
        let mut best = Duration::MAX;
        for _ in 0..if full { 20 } else { 2 } {
            let t = Instant::now();
            docker.list_containers().await.ok()?;
            best = best.min(t.elapsed());
        }
        Some(best)
    });
    match round_trip {
        Some(rt) => println!(
            "engine round trip (list containers, best of runs): {:>9.1} µs; plan/round-trip = {:.3} (converged), {:.3} (upgrade)",
            rt.as_secs_f64() * 1e6,
            converged.as_secs_f64() / rt.as_secs_f64(),
            upgrading.as_secs_f64() / rt.as_secs_f64()
        ),
        None => println!("engine not reachable: no round-trip baseline this run"),
    }
    println!(
        "target: under 1 ms per plan -> {}",
        if upgrading < Duration::from_millis(1) && converged < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}
