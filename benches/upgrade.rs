//! The upgrade of a database of a given size on the real engine: total apply time,
//! how long the app was unreachable (a client polling its port every 20 ms), and
//! the copy's throughput next to `cp -a` of the same data directory on the same
//! disk, as ratios.
//!
//! Then the dump copy itself, old against new on the same data in the same run:
//! from the live db into fresh dbs, once as the bench's one table and once with
//! a second table as big beside it (where `pg_dump -Fd -j` can work side by
//! side). "Old" is the pipeline gemctl ran before issue 11, re-created here as it
//! was: `pg_dumpall | psql` in a one-shot container, then per table count + md5
//! in row-text order, database by database, one db after the other.
//!
//! `cargo bench --bench upgrade` (needs `scripts/build-images`);
//! `GEMCTL_BENCH_ROWS=2000000` sets the size (default 1,000,000 rows).
//! Run without `--bench` (as `cargo test --all-targets` does) it does nothing.

mod common;
#[path = "../tests/real/spec.rs"]
mod spec;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gemctl::copy::{DbCredentials, OneShot};
use gemctl::desired::{self, Role};
use gemctl::docker::Docker;
use gemctl::engine::Engine;
use gemctl::execute::{self, ApplyOptions, Event};
use gemctl::plan::Action;
use gemctl::spec::Spec;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bench's health check: the TCP one, polled often, with room for a big copy.
const HEALTH: &str = r#"    - tcp: { port: 7000, send: "status\n", expect_regex: "^OK " }
      interval: 100ms
      deadline: 60s
"#;

fn du_bytes(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn post_rows(port: u16, n: u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    write!(
        s,
        "POST /rows?n={n} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "insert failed: {out}");
}

/// Polls the app's TCP report; returns the longest stretch without an OK answer.
fn poll_downtime(port: u16, stop: Arc<AtomicBool>) -> Duration {
    let mut longest = Duration::ZERO;
    let mut down_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let ok = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .ok()
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
            s.write_all(b"status\n").ok()?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).ok()?;
            Some(reply.starts_with("OK"))
        })
        .unwrap_or(false);
        match (ok, down_since) {
            (false, None) => down_since = Some(Instant::now()),
            (true, Some(t)) => {
                longest = longest.max(t.elapsed());
                down_since = None;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(t) = down_since {
        longest = longest.max(t.elapsed());
    }
    longest
}

fn step_time(steps: &[(Action, Duration)], f: fn(&Action) -> bool) -> Duration {
    steps.iter().filter(|(a, _)| f(a)).map(|(_, d)| *d).sum()
}

fn start_poller(tcp: u16) -> (Arc<AtomicBool>, std::thread::JoinHandle<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || poll_downtime(tcp, stop))
    };
    std::thread::sleep(Duration::from_millis(300));
    (stop, handle)
}

async fn apply(spec: &Spec) -> (Duration, Vec<(Action, Duration)>) {
    let docker = gemctl::docker::Docker::connect().await.unwrap();
    let mut steps: Vec<(Action, Duration)> = Vec::new();
    let mut current = None;
    let started = Instant::now();
    let outcome = execute::apply(&docker, spec, ApplyOptions::default(), &mut |e| match e {
        Event::StepStarted { step, .. } => current = Some(step.action),
        Event::StepFinished { duration_ms, .. } => {
            if let Some(a) = current.take() {
                steps.push((a, Duration::from_millis(duration_ms)));
            }
        }
        _ => {}
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome, execute::Outcome::Converged { .. }),
        "{outcome:?}"
    );
    (started.elapsed(), steps)
}

/// Starts a fresh, empty db as generation `generation`'s (data under `dir`) and
/// waits until it answers over TCP, as a new generation's db is before its copy.
fn fresh_db(spec: &Spec, dir: &Path, generation: u64) {
    let name = desired::container_name(spec, Role::Db, generation);
    let data = dir.join(format!("scratch-{generation}"));
    std::fs::create_dir_all(&data).unwrap();
    let ok = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &spec.network_name(),
        ])
        .args(["--label", &format!("io.gemctl.project={}", spec.project)])
        .args(["--env-file", dir.join("secrets.env").to_str().unwrap()])
        .args(["-e", "POSTGRES_USER=app", "-e", "POSTGRES_DB=app", "-v"])
        .arg(format!("{}:/var/lib/postgresql/data", data.display()))
        .arg(spec::PG_IMAGE)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let started = Instant::now();
    while !Command::new("docker")
        .args(["exec", &name, "pg_isready", "-q", "-h", "127.0.0.1"])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The copy as gemctl ran it before issue 11 (`copy_script` then): the whole
/// cluster through one `pg_dumpall | psql`, in a one-shot container.
async fn old_copy(docker: &Docker, spec: &Spec, creds: &DbCredentials, from: u64, to: u64) {
    let script = format!(
        "set -euo pipefail; pg_dumpall -h '{from}' -U '{u}' \
         | sed -e '/^CREATE ROLE \"\\?{u}\"\\?;$/d' -e '/^CREATE DATABASE \"\\?{db}\"\\? /d' \
         | psql -h '{to}' -U '{u}' -d postgres -v ON_ERROR_STOP=1 -q -o /dev/null",
        from = desired::container_name(spec, Role::Db, from),
        to = desired::container_name(spec, Role::Db, to),
        u = creds.user,
        db = creds.database,
    );
    gemctl::copy::run_one_shot(
        docker,
        spec,
        OneShot {
            name: desired::copy_container_name(spec, to),
            generation: to,
            image: spec.db.image.to_string(),
            env: creds.pg_env(),
            binds: Vec::new(),
            script,
            what: "the old copy".into(),
        },
    )
    .await
    .unwrap();
}

/// The verification as gemctl ran it before issue 11: per database, one query
/// giving each table's count and md5 of its rows sorted by their text; every
/// database of the old db, then every one of the new, one at a time.
async fn old_verify(docker: &Docker, spec: &Spec, creds: &DbCredentials, from: u64, to: u64) {
    const TABLE_DIGEST_SQL: &str = "\
select table_schema || '.' || table_name || ' ' || \
  (xpath('/row/c/text()', query_to_xml(format('select count(*) || '':'' || \
     md5(coalesce(string_agg(t::text, chr(10) order by t::text), '''')) as c from %I.%I t', \
     table_schema, table_name), false, true, '')))[1]::text \
from information_schema.tables \
where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') \
order by 1";
    const DATABASES_SQL: &str =
        "select datname from pg_database where not datistemplate order by 1";
    let psql = |container: String, database: String, sql: &'static str| async move {
        let cmd: Vec<String> = [
            "psql",
            "-U",
            &creds.user,
            "-d",
            &database,
            "-X",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = docker.exec(&container, &cmd).await.unwrap();
        assert_eq!(out.exit_code, 0, "{}", out.stderr);
        out.stdout
    };
    let mut digests = Vec::new();
    for generation in [from, to] {
        let container = desired::container_name(spec, Role::Db, generation);
        let mut digest = String::new();
        for db in psql(container.clone(), "postgres".into(), DATABASES_SQL)
            .await
            .lines()
        {
            digest += &psql(container.clone(), db.to_string(), TABLE_DIGEST_SQL).await;
        }
        digests.push(digest);
    }
    assert_eq!(digests[0], digests[1], "the old copy differs");
}

/// Copy + verify from generation `from` into fresh dbs, the old way into
/// `targets.0` and the new into `targets.1`: ((copy, verify) old, (copy, verify) new).
fn dump_old_and_new(
    rt: &tokio::runtime::Runtime,
    spec: &Spec,
    dir: &Path,
    from: u64,
    targets: (u64, u64),
) -> ((Duration, Duration), (Duration, Duration)) {
    fresh_db(spec, dir, targets.0);
    fresh_db(spec, dir, targets.1);
    let env = execute::db_env(spec).unwrap();
    let creds = DbCredentials::from_env(&env);
    rt.block_on(async {
        let docker = Docker::connect().await.unwrap();
        let t = Instant::now();
        old_copy(&docker, spec, &creds, from, targets.0).await;
        let old_copy_time = t.elapsed();
        let t = Instant::now();
        old_verify(&docker, spec, &creds, from, targets.0).await;
        let old_verify_time = t.elapsed();
        let t = Instant::now();
        let how = gemctl::copy::copy(&docker, spec, &env, from, targets.1)
            .await
            .unwrap();
        let new_copy_time = t.elapsed();
        println!("  (new copy: {})", how.join("; "));
        let t = Instant::now();
        gemctl::copy::verify(&docker, spec, &env, from, targets.1)
            .await
            .unwrap();
        let new_verify_time = t.elapsed();
        (
            (old_copy_time, old_verify_time),
            (new_copy_time, new_verify_time),
        )
    })
}

fn print_dump_comparison(shape: &str, (old, new): ((Duration, Duration), (Duration, Duration))) {
    let (old_total, new_total) = (old.0 + old.1, new.0 + new.1);
    println!(
        "  {shape}: old copy {:.2} s + verify {:.2} s = {:.2} s; new copy {:.2} s + verify \
         {:.2} s = {:.2} s; new/old time ratio = {:.2} (copy {:.2}, verify {:.2})",
        old.0.as_secs_f64(),
        old.1.as_secs_f64(),
        old_total.as_secs_f64(),
        new.0.as_secs_f64(),
        new.1.as_secs_f64(),
        new_total.as_secs_f64(),
        new_total.as_secs_f64() / old_total.as_secs_f64(),
        new.0.as_secs_f64() / old.0.as_secs_f64(),
        new.1.as_secs_f64() / old.1.as_secs_f64(),
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("upgrade benchmark: run `cargo bench --bench upgrade`");
        return;
    }
    let rows: u64 = std::env::var("GEMCTL_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let name = format!("gb{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("gemctl-bench-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    spec::write_secrets(&dir);
    let (http, tcp) = (free_port(), free_port());
    let ports = format!("\"127.0.0.1:{http}:8080\", \"127.0.0.1:{tcp}:7000\"");
    let spec_path = dir.join("spec.yaml");
    let load = |generation: u64, tag: &str| {
        let text = spec::SpecTemplate {
            name: &name,
            generation,
            tag,
            retain: None,
            scope: "scope: project",
            ports: &ports,
            health: HEALTH,
            extra: "",
        }
        .text();
        std::fs::write(&spec_path, text).unwrap();
        Spec::load(&spec_path).unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(apply(&load(1, "1")));
        let mut left = rows;
        while left > 0 {
            let n = left.min(1_000_000);
            post_rows(http, n);
            left -= n;
        }
        let data = dir.join("storage/1/pgdata");
        let bytes = du_bytes(&data);

        let (stop, poller) = start_poller(tcp);
        let (total, steps) = rt.block_on(apply(&load(2, "2")));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let downtime = poller.join().unwrap();
        let copy = step_time(&steps, |a| matches!(a, Action::CopyData { .. }));
        let verify = step_time(&steps, |a| matches!(a, Action::VerifyCopy { .. }));

        // db-1 is stopped now: copy its directory the plain way, same disk.
        let target = dir.join("cp-baseline");
        let t = Instant::now();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&data)
            .arg(&target)
            .status()
            .unwrap();
        let cp = t.elapsed();
        assert!(ok.success());

        // A backup of generation 2 while a client polls the app, then its restore
        // into generation 3 through the cut-over.
        let spec2 = load(2, "2");
        let env = gemctl::execute::db_env(&spec2).unwrap();
        let (stop, poller) = start_poller(tcp);
        let t = Instant::now();
        let info = rt
            .block_on(async {
                let docker = gemctl::docker::Docker::connect().await?;
                gemctl::backup::take(&docker, &spec2, &env, 2).await
            })
            .unwrap();
        let backup = t.elapsed();
        stop.store(true, Ordering::SeqCst);
        let backup_down = poller.join().unwrap();
        gemctl::state::set_pin(
            &spec2.storage,
            &gemctl::observed::Pin {
                generation: 3,
                spec_generation: 2,
                at: gemctl::state::now_rfc3339(),
                reason: "bench".into(),
                restore_from: Some(info.path.display().to_string()),
            },
        )
        .unwrap();
        let (stop, poller) = start_poller(tcp);
        let (restore_total, restore_steps) = rt.block_on(apply(&spec2));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let restore_down = poller.join().unwrap();
        let restore = step_time(&restore_steps, |a| {
            matches!(a, Action::RestoreBackup { .. })
        });

        let mb = bytes as f64 / 1e6;
        println!("database: {rows} rows, data directory {mb:.1} MB");
        println!("apply (upgrade 1 -> 2): {:.2} s total", total.as_secs_f64());
        println!(
            "app unreachable (client polling every 20 ms): {:.2} s = {:.2} of the apply",
            downtime.as_secs_f64(),
            downtime.as_secs_f64() / total.as_secs_f64()
        );
        println!(
            "copy (dump): {:.2} s, {:.1} MB/s; verify (count + checksum per table): {:.2} s",
            copy.as_secs_f64(),
            mb / copy.as_secs_f64(),
            verify.as_secs_f64()
        );
        println!(
            "cp -a of the same directory: {:.2} s, {:.1} MB/s; copy/cp time ratio = {:.1}",
            cp.as_secs_f64(),
            mb / cp.as_secs_f64(),
            copy.as_secs_f64() / cp.as_secs_f64()
        );
        println!(
            "backup (pg_dump -Fc per database, app running): {:.2} s, file {:.1} MB = {:.2} of \
             the data directory; backup/cp time ratio = {:.1}; app unreachable during it: {:.2} s",
            backup.as_secs_f64(),
            info.size as f64 / 1e6,
            info.size as f64 / bytes as f64,
            backup.as_secs_f64() / cp.as_secs_f64(),
            backup_down.as_secs_f64()
        );
        println!(
            "restore into generation 3: {:.2} s total, pg_restore {:.2} s (restore/copy time \
             ratio = {:.1}); app unreachable: {:.2} s",
            restore_total.as_secs_f64(),
            restore.as_secs_f64(),
            restore.as_secs_f64() / copy.as_secs_f64(),
            restore_down.as_secs_f64()
        );

        // The dump copy, old and new, from the live db (generation 3) into fresh
        // dbs. Its rows are first read once, so neither side pays the hint bits.
        let db3 = desired::container_name(&spec2, Role::Db, 3);
        let sql = |statement: &str| {
            let ok = Command::new("docker")
                .args([
                    "exec", &db3, "psql", "-U", "app", "-d", "app", "-Xq", "-c", statement,
                ])
                .status()
                .unwrap();
            assert!(ok.success(), "{statement}");
        };
        sql("vacuum analyze");
        let one = dump_old_and_new(&rt, &spec2, &dir, 3, (96, 97));
        sql("create table items_b as select * from items");
        sql("vacuum analyze");
        let two = dump_old_and_new(&rt, &spec2, &dir, 3, (98, 99));
        println!(
            "dump copy + verify from the live db into a fresh one, old (pg_dumpall | psql, \
             re-created in this bench) and new (gemctl::copy), same data, same run:"
        );
        print_dump_comparison("one table", one);
        print_dump_comparison("two tables of that size", two);
    }));

    common::clean_up(&name, &dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
