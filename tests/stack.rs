//! A generation is a stack, against the real engine: the app, a worker with two
//! replicas (the fixture app as a job worker) and a cache (Debian's redis-server)
//! are bootstrapped, upgraded, fallen back and rolled back together. The worker's
//! jobs queued before an upgrade are each run exactly once across it (the old
//! generation's workers stop before its data is frozen), a never-healthy worker
//! sends the host back to the old generation with every service of it running,
//! retention prunes services with their generation, a stranger named like a
//! service is refused, `diff` shows a service's changed setting, and gemctl killed
//! as it stops or starts services converges on the next run.

mod real;

use std::collections::BTreeMap;
use std::time::Duration;

use real::{Project, Watched, create_stranger, docker_ok, wait_until};

const REDIS_IMAGE: &str = "gemctl-test/redis:7";

/// How many jobs each test queues: at two replicas taking one job every 100 ms
/// each, about 15 s of work, so an upgrade lands in the middle of it.
const JOBS: u64 = 300;

fn require_redis() {
    let o = real::docker(&["image", "inspect", REDIS_IMAGE]);
    assert!(
        o.status.success(),
        "{REDIS_IMAGE} is missing: run scripts/build-images"
    );
}

/// The services section: a cache, and a worker of `worker_tag` with two
/// replicas started after it; `work_ms` between two jobs of one replica.
fn services(p: &Project, worker_tag: &str, work_ms: u32) -> String {
    let n = &p.name;
    format!(
        r#"services:
  {n}-cache:
    image: {REDIS_IMAGE}
    health:
      - tcp: {{ port: 6379, send: "PING\r\n", expect: "+PONG" }}
        interval: 200ms
        deadline: 20s
  {n}-worker:
    image: gemctl-test/app:{worker_tag}
    env: {{ FIXTURE_ROLE: worker, PGUSER: app, PGDATABASE: app, FIXTURE_WORK_MS: "{work_ms}" }}
    env_file: secrets.env
    replicas: 2
    depends_on: [{n}-cache]
    health:
      - tcp: {{ port: 7000, send: "status\n", expect_regex: "^OK worker" }}
        interval: 200ms
        deadline: 8s
"#
    )
}

fn write(p: &Project, generation: u64, tag: &str, worker_tag: &str, retain: u32) {
    let extra = services(p, worker_tag, 100);
    p.write_spec_with(generation, tag, retain, "scope: project", &extra);
}

fn worker(p: &Project, g: u64, i: u32) -> String {
    format!("{}-worker-{g}-{i}", p.name)
}

fn cache(p: &Project, g: u64) -> String {
    format!("{}-cache-{g}", p.name)
}

/// Every container of generation `g` of the stack, app first.
fn stack(p: &Project, g: u64) -> Vec<String> {
    vec![
        p.app(g),
        p.db(g),
        cache(p, g),
        worker(p, g, 1),
        worker(p, g, 2),
    ]
}

/// Container name → state, for this project.
fn states(p: &Project) -> BTreeMap<String, String> {
    docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.gemctl.project={}", p.name),
        "--format",
        "{{.Names}} {{.State}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect()
}

fn assert_running(p: &Project, names: &[String]) {
    let s = states(p);
    for name in names {
        assert_eq!(
            s.get(name).map(String::as_str),
            Some("running"),
            "{name} should run: {s:?}"
        );
    }
}

fn assert_stopped(p: &Project, names: &[String]) {
    let s = states(p);
    for name in names {
        assert_eq!(
            s.get(name).map(String::as_str),
            Some("exited"),
            "{name} should be stopped: {s:?}"
        );
    }
}

fn assert_gone(p: &Project, names: &[String]) {
    let s = states(p);
    for name in names {
        assert!(!s.contains_key(name), "{name} should be gone: {s:?}");
    }
}

/// `jobs=… done=… runs=… distinct=…` from the live app, as numbers.
fn jobs(p: &Project) -> BTreeMap<String, u64> {
    let (status, body) = p.http("GET", "/jobs");
    assert_eq!(status, 200, "{body}");
    body.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// Job id → how many times any of `containers` logged running it.
fn runs_logged(containers: &[String]) -> BTreeMap<u64, u32> {
    let mut runs = BTreeMap::new();
    for c in containers {
        let o = real::docker(&["logs", c]);
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(id) = line
                .split("processed job ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|id| id.parse::<u64>().ok())
            {
                *runs.entry(id).or_insert(0) += 1;
            }
        }
    }
    runs
}

/// Waits until every queued job is done, then checks that each ran exactly once:
/// in the database (one run recorded per job) and in the logs of every worker
/// that ever ran (`workers`), so that no job ran in two generations.
fn assert_each_job_ran_once(p: &Project, workers: &[String]) -> BTreeMap<u64, u32> {
    wait_until("every job is done", Duration::from_secs(90), || {
        jobs(p)["done"] == JOBS
    });
    let j = jobs(p);
    assert_eq!(
        (j["jobs"], j["runs"], j["distinct"]),
        (JOBS, JOBS, JOBS),
        "{j:?}"
    );
    let runs = runs_logged(workers);
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "jobs run more than once: {twice:?}");
    assert_eq!(runs.len() as u64, JOBS, "every job's run is logged");
    runs
}

fn queue(p: &Project, n: u64) {
    let (status, body) = p.http("POST", &format!("/jobs?n={n}"));
    assert_eq!(status, 200, "{body}");
}

fn bootstrapped(test: &str) -> Project {
    require_redis();
    let p = Project::new(test);
    write(&p, 1, "1", "1", 2);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert_running(&p, &stack(&p, 1));
    p
}

#[test]
fn a_stack_upgrades_as_one_each_job_runs_once_and_old_services_are_pruned() {
    let p = bootstrapped("stkup");
    let status: serde_json::Value =
        serde_json::from_slice(&p.gemctl(&["status", "-o", "json"]).stdout).unwrap();
    let services: Vec<&str> = status["generations"][0]["services"]
        .as_array()
        .expect("status lists the services")
        .iter()
        .map(|s| s["container"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(services.len(), 3, "{status}");

    queue(&p, JOBS);
    // Generation 2 changes the worker's environment: diff shows that field.
    let extra = services_with_work_ms(&p, 80);
    p.write_spec_with(2, "2", 2, "scope: project", &extra);
    let diff = p.gemctl(&["diff"]);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains(&worker(&p, 2, 1)) && text.contains("FIXTURE_WORK_MS"),
        "diff names the worker's changed variable:\n{text}"
    );
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert_running(&p, &stack(&p, 2));
    assert_stopped(
        &p,
        &[p.app(1), cache(&p, 1), worker(&p, 1, 1), worker(&p, 1, 2)],
    );
    // The old workers stopped before the old app (and before the freeze).
    let order: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("stop ") && l.contains("-1"))
        .collect();
    let worker_stop = out.find(&format!("stop {}", worker(&p, 1, 1))).unwrap();
    let app_stop = out.find(&format!("stop {}", p.app(1))).unwrap();
    assert!(worker_stop < app_stop, "{order:?}");

    let all_workers: Vec<String> = (1..=2)
        .flat_map(|g| (1..=2).map(move |i| (g, i)))
        .map(|(g, i)| worker(&p, g, i))
        .collect();
    let runs = assert_each_job_ran_once(&p, &all_workers);
    let by_gen2 = runs_logged(&[worker(&p, 2, 1), worker(&p, 2, 2)]).len();
    assert!(
        by_gen2 > 0 && by_gen2 < runs.len(),
        "the upgrade landed while jobs were queued: generation 2 ran {by_gen2} of {}",
        runs.len()
    );

    let logs = p.gemctl(&["logs", "--role", &format!("{}-worker", p.name)]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        text.contains(&format!("{} |", worker(&p, 2, 1)))
            && text.contains(&format!("{} |", worker(&p, 2, 2))),
        "logs --role shows both replicas:\n{text}"
    );

    // Drift: a stopped worker of the live generation is started again; a
    // service changed without a new generation is refused, naming the field.
    docker_ok(&["stop", &worker(&p, 2, 2)]);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert_running(&p, &stack(&p, 2));
    let changed = services_with_work_ms(&p, 60);
    p.write_spec_with(2, "2", 2, "scope: project", &changed);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&worker(&p, 2, 1)) && out.contains("FIXTURE_WORK_MS"),
        "the refusal names the replica and the field: {out}"
    );

    // Retention 1: generation 3 prunes generation 1, services and all.
    write(&p, 3, "1", "1", 1);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert_running(&p, &stack(&p, 3));
    assert_gone(&p, &stack(&p, 1));
    assert_stopped(&p, &[cache(&p, 2), worker(&p, 2, 1), worker(&p, 2, 2)]);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to do"), "{out}");
}

fn services_with_work_ms(p: &Project, work_ms: u32) -> String {
    services(p, "2", work_ms)
}

#[test]
fn a_never_healthy_worker_falls_back_with_every_service_and_rollback_restarts_them() {
    let p = bootstrapped("stkfb");
    queue(&p, JOBS);
    write(&p, 2, "2", "broken", 2);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains(&format!("{}-worker", p.name)), "{out}");
    assert_running(&p, &stack(&p, 1));
    assert_gone(&p, &stack(&p, 2));
    // The failure report has the failing service's logs.
    let failures = p.storage().join(".gemctl/failures");
    let report = std::fs::read_dir(&failures)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|r| r.contains("service_logs"))
        .expect("a failure report with the services' logs");
    assert!(
        report.contains("mode=broken") || report.contains(&worker(&p, 2, 1)),
        "{report}"
    );
    assert_each_job_ran_once(&p, &(1..=2).map(|i| worker(&p, 1, i)).collect::<Vec<_>>());

    // A good generation 2, then back to 1: every service of 1 runs again on its
    // own data, and 2's are stopped.
    write(&p, 2, "2", "1", 2);
    let (code, out) = p.apply(&["--retry"]);
    assert_eq!(code, 0, "{out}");
    assert_running(&p, &stack(&p, 2));
    let o = p.gemctl(&["rollback", "--to", "1"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_running(&p, &stack(&p, 1));
    assert_stopped(
        &p,
        &[p.app(2), cache(&p, 2), worker(&p, 2, 1), worker(&p, 2, 2)],
    );
}

#[test]
fn a_stranger_named_like_a_service_is_refused_and_left_alone() {
    require_redis();
    let p = Project::new("stkstr");
    write(&p, 1, "1", "1", 2);
    let stranger = worker(&p, 1, 1);
    create_stranger(&stranger);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&stranger), "{out}");
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Status}}", &stranger]).trim(),
        "created",
        "the stranger is left as it was"
    );
}

/// gemctl killed as it stops the old generation's services, and as it starts the
/// new one's: the next apply converges to generation 2, and no job runs twice.
#[test]
fn killed_while_services_stop_or_start_the_next_apply_converges() {
    for (at, nth) in [
        ("stop_service", 2),
        ("create_service", 2),
        ("check_service", 1),
    ] {
        let p = bootstrapped(&format!("stk{}", &at[..4]));
        queue(&p, JOBS);
        write(&p, 2, "2", "1", 2);
        Watched::kill_at(&p, at, nth);
        let (code, out) = p.apply(&[]);
        assert_eq!(code, 0, "after a kill at {at}: {out}");
        assert_running(&p, &stack(&p, 2));
        assert_stopped(
            &p,
            &[p.app(1), cache(&p, 1), worker(&p, 1, 1), worker(&p, 1, 2)],
        );
        let all_workers: Vec<String> = (1..=2)
            .flat_map(|g| (1..=2).map(move |i| (g, i)))
            .map(|(g, i)| worker(&p, g, i))
            .collect();
        assert_each_job_ran_once(&p, &all_workers);
    }
}
