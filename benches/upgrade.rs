//! Upgrades on the real engine, both ways a database moves (`db.copy: stream` and
//! `db.copy: dump`), on the same data at two sizes, a small one and one `SCALE`
//! times larger. For each mode and size: the total apply time; the write-freeze
//! (a writer POSTs one row through the app every 20 ms; the longest stretch
//! between two acknowledged writes, which is the last on generation n to the
//! first on N); how long the app was unreachable (a client polling its TCP port
//! every 20 ms); the copy's throughput (the base backup for stream, the dump for
//! dump) next to `cp -a` of the same data directory on the same disk (the faster
//! of two runs: the first may read the source from disk). Then the
//! freeze's growth with the size per mode, and the issue's targets beside the
//! numbers, marked PASS or MISS: informational, the bench does not fail on them.
//!
//! At the small size, the same two upgrades behind a front door
//! (`GEMCTL_BENCH_FRONT=0` skips them): writes that failed and the longest write,
//! without and with the front (target with it: none failed).
//!
//! At the small size only (`GEMCTL_BENCH_EXTRAS=0` skips it): a backup while the
//! app serves and its restore into a new generation, then the dump copy itself,
//! old against new on the same data in the same run: from the live db into fresh
//! dbs, once as the bench's one table and once with a second table as big beside
//! it (where `pg_dump -Fd -j` can work side by side). "Old" is the pipeline
//! gemctl ran before issue 11, re-created here as it was: `pg_dumpall | psql` in
//! a one-shot container, then per table count + md5 in row-text order, database
//! by database, one db after the other.
//!
//! At both sizes, after the two upgrades: the time to a ready preview (`gemctl
//! preview` beside the live generation) next to `cp -a` of the live data
//! directory, and issue 15's target (ready ≤ 1.5 × `cp -a` plus its start).
//!
//! At both sizes, before the upgrades: five rounds of the base backup and `cp -a`
//! of the same live data directory, interleaved; the base backup's throughput
//! target is judged on their medians (one run's single copy swung fivefold on
//! this machine's disk).
//!
//! Before each measured step and each `cp -a` the bench waits for a quiet disk
//! (`sync`, a second), and it checkpoints the rows it loaded, as a db that has
//! served a while has been (see `settle` and `checkpoint`).
//!
//! `cargo bench --bench upgrade` (needs `scripts/build-images`);
//! `GEMCTL_BENCH_ROWS` sets the small size (default 400,000 rows, about 100 MB of
//! data directory), `GEMCTL_BENCH_SCALE` the large one's factor (default 10).
//! Run without `--bench` (as `cargo test --all-targets` does) it does nothing.

#[path = "../tests/real/client.rs"]
mod client;
mod common;
#[path = "../tests/real/spec.rs"]
mod spec;

use client::try_post;
use spec::free_port;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
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
use gemctl::spec::{CopyMode, Spec};

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

/// `du -sb` without `pg_wal`'s contents: about what a base backup copies.
fn du_bytes_without_wal(path: &Path) -> u64 {
    du_bytes(path).saturating_sub(du_bytes(&path.join("pg_wal")))
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

/// What one apply took: in all, per step, and the base backup's parts (from its
/// progress line, "… (backup start in generation 1 0.12s, file copy 0.45s of …,
/// backup stop and standby settings 0.09s)").
struct Applied {
    total: Duration,
    steps: Vec<(Action, Duration)>,
    /// The backup's start in the old db (its checkpoint), the file copy, and the
    /// backup's stop with the standby's settings.
    base_backup: Option<(Duration, Duration, Duration)>,
    /// `pg_backup_start` alone, inside the backup's start.
    pg_backup_start: Option<Duration>,
}

async fn apply(spec: &Spec) -> Applied {
    let docker = gemctl::docker::Docker::connect().await.unwrap();
    let mut steps: Vec<(Action, Duration)> = Vec::new();
    let mut current = None;
    let mut base_backup = None;
    let mut pg_backup_start = None;
    let started = Instant::now();
    let outcome = execute::apply(&docker, spec, ApplyOptions::default(), &mut |e| match e {
        Event::StepStarted { step, .. } => current = Some(step.action),
        Event::StepFinished { duration_ms, .. } => {
            if let Some(a) = current.take() {
                steps.push((a, Duration::from_millis(duration_ms)));
            }
        }
        Event::Progress { message } => {
            // "… (backup start in generation 1 0.12s, file copy 0.45s of 458 MB, backup
            // stop and standby settings 0.09s; held in …)"
            let secs = |after: &str, end: &str| {
                let (_, rest) = message.split_once(after)?;
                let (n, _) = rest.split_once(end)?;
                n.rsplit(' ').next()?.parse::<f64>().ok()
            };
            if let (Some(a), Some(b), Some(c)) = (
                secs("(backup start in generation ", "s, "),
                secs("file copy ", "s of "),
                secs("standby settings ", "s;"),
            ) {
                base_backup = Some((
                    Duration::from_secs_f64(a),
                    Duration::from_secs_f64(b),
                    Duration::from_secs_f64(c),
                ));
                pg_backup_start =
                    secs("of which pg_backup_start ", "s, ").map(Duration::from_secs_f64);
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
    Applied {
        total: started.elapsed(),
        steps,
        base_backup,
        pg_backup_start,
    }
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
    println!("    new faster than old: {}", mark(new_total < old_total));
}

/// One project of the bench: its name, directory and the app's published ports.
struct Bench {
    name: String,
    dir: PathBuf,
    http: u16,
    tcp: u16,
    /// Behind a front door (`gemctl-test/haproxy:2.6`) holding requests for 60 s.
    front: bool,
    /// Where a preview publishes the app's HTTP port.
    preview: u16,
}

impl Bench {
    fn new(name: String) -> Bench {
        let dir = std::env::temp_dir().join(format!("gemctl-bench-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        spec::write_secrets(&dir);
        Bench {
            name,
            dir,
            http: free_port(),
            tcp: free_port(),
            front: false,
            preview: free_port(),
        }
    }

    fn behind_front(name: String) -> Bench {
        Bench {
            front: true,
            ..Bench::new(name)
        }
    }

    /// The spec of `generation` (the app's tag alternates, as upgrades do), copying
    /// its data the `copy` way.
    fn load(&self, generation: u64, copy: CopyMode) -> Spec {
        let (ports, front) = if self.front {
            (
                String::new(),
                format!(
                    "front:\n  image: gemctl-test/haproxy:2.6\n  hold: 60s\n  ports:\n    \
                     - {{ port: \"127.0.0.1:{}:8080\", mode: http }}\n    \
                     - {{ port: \"127.0.0.1:{}:7000\", mode: tcp }}\n",
                    self.http, self.tcp
                ),
            )
        } else {
            (
                format!(
                    "\"127.0.0.1:{}:8080\", \"127.0.0.1:{}:7000\"",
                    self.http, self.tcp
                ),
                format!("preview:\n  ports: [\"127.0.0.1:{}:8080\"]\n", self.preview),
            )
        };
        let text = spec::SpecTemplate {
            name: &self.name,
            generation,
            tag: if generation.is_multiple_of(2) {
                "2"
            } else {
                "1"
            },
            // Every generation kept: a removal slows the next copies (see `settle`).
            retain: Some(10),
            scope: "scope: project",
            ports: &ports,
            health: HEALTH,
            extra: &front,
        }
        .text();
        let path = self.dir.join("spec.yaml");
        std::fs::write(&path, text).unwrap();
        let mut spec = Spec::load(&path).unwrap();
        spec.db.copy = copy;
        spec
    }

    fn data(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("storage/{generation}/pgdata"))
    }
}

/// One write through the app: when it was answered, whether it was acknowledged,
/// how long it took.
struct Attempt {
    at: Instant,
    acked: bool,
    took: Duration,
}

/// A writer through the app every 20 ms; it returns every write it tried.
fn start_writer(http: u16) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<Attempt>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut writes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let acked = try_post(http);
                writes.push(Attempt {
                    at: Instant::now(),
                    acked,
                    took: started.elapsed(),
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            writes
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    (stop, handle)
}

/// What one upgrade measured.
struct Upgrade {
    /// The source's data directory, bytes.
    bytes: u64,
    /// The same without `pg_wal` (which a base backup does not copy).
    bytes_without_wal: u64,
    total: Duration,
    /// The longest stretch between two acknowledged writes.
    freeze: Duration,
    acked: usize,
    /// Writes that were not acknowledged (refused, or answered with an error).
    failed: usize,
    /// The longest write, from sending to its answer (held at a front).
    longest: Duration,
    unreachable: Duration,
    /// The base backup (stream) or the dump's copy (dump).
    copy: Duration,
    verify: Duration,
    /// `cp -a` of the source's data directory once the upgrade stopped its db: the
    /// faster of two runs.
    cp: Duration,
    /// The same `cp -a`, then an fsync of every file it wrote (`sync FILE...`), as
    /// `pg_basebackup` without `--no-sync` would.
    cp_sync: Duration,
    /// The base backup's parts (stream) as gemctl measured them: the backup's start
    /// in the old db (slot, fast checkpoint), the file copy on the host, and the
    /// backup's stop with the standby's settings.
    base_backup: Option<(Duration, Duration, Duration)>,
    /// The steps from stopping the old app to exposing the new one, by name.
    cut_over: Vec<(String, Duration)>,
    /// The steps before it, while the old app serves, by name.
    before_freeze: Vec<(String, Duration)>,
    /// Around the write-freeze: the median time a write took before it, how long
    /// the first write acknowledged after it took (a write of the fixture app also
    /// counts the whole table), and the writes that failed inside it.
    writes_before: Duration,
    first_after: Duration,
    failed_inside: usize,
}

impl Upgrade {
    fn copy_mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.copy.as_secs_f64()
    }

    fn cp_mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.cp.as_secs_f64()
    }

    fn cp_sync_mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.cp_sync.as_secs_f64()
    }
}

/// The longest stretch between two acknowledged writes, with the median time of
/// the acknowledged writes before it, the time of the first one after it, and the
/// attempts that failed inside it.
fn freeze_of(writes: &[Attempt]) -> (Duration, Duration, Duration, usize) {
    let acked: Vec<usize> = (0..writes.len()).filter(|&i| writes[i].acked).collect();
    let Some((a, b)) = acked
        .windows(2)
        .map(|w| (w[0], w[1]))
        .max_by_key(|&(a, b)| writes[b].at - writes[a].at)
    else {
        return Default::default();
    };
    let mut before: Vec<Duration> = acked
        .iter()
        .filter(|&&i| i <= a)
        .map(|&i| writes[i].took)
        .collect();
    before.sort();
    let median = before.get(before.len() / 2).copied().unwrap_or_default();
    (
        writes[b].at - writes[a].at,
        median,
        writes[b].took,
        b - a - 1,
    )
}

/// Upgrades `from` to `from + 1` the `copy` way while a writer and a poller use the
/// app, then copies `from`'s (now stopped) data directory with `cp -a`.
fn upgrade(rt: &tokio::runtime::Runtime, bench: &Bench, from: u64, copy: CopyMode) -> Upgrade {
    let data = bench.data(from);
    let bytes = du_bytes(&data);
    let bytes_without_wal = du_bytes_without_wal(&data);
    let spec = bench.load(from + 1, copy);
    settle();
    let (stop_writer, writer) = start_writer(bench.http);
    let (stop_poller, poller) = start_poller(bench.tcp);
    let Applied {
        total,
        steps,
        base_backup,
        pg_backup_start,
    } = rt.block_on(apply(&spec));
    if let Some(d) = pg_backup_start {
        println!(
            "  base backup of generation {from}: pg_backup_start (its fast checkpoint) {:.2} s",
            d.as_secs_f64()
        );
    }
    // Writes land on the new generation too before the writer stops.
    std::thread::sleep(Duration::from_millis(500));
    stop_writer.store(true, Ordering::SeqCst);
    stop_poller.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    let unreachable = poller.join().unwrap();
    let acked = writes.iter().filter(|w| w.acked).count();
    let (freeze, writes_before, first_after, failed_inside) = freeze_of(&writes);
    settle();

    let target = bench.dir.join(format!("cp-baseline-{from}"));
    let cp_first = cp_a(&data, &target.join("first"));
    // Again, then fsync what it wrote, file by file (not a whole-system `sync`,
    // which would also flush whatever else the machine writes).
    settle();
    let t = Instant::now();
    let target = target.join("second");
    let cp_second = cp_a(&data, &target);
    // The baseline is the faster `cp -a`: the first may read the source from disk
    // (its db just stopped) where the base backup read a running db's cached files.
    let cp = cp_first.min(cp_second);
    println!(
        "  cp -a of generation {from}'s data directory: {:.2} s, then {:.2} s (baseline: {:.2} s)",
        cp_first.as_secs_f64(),
        cp_second.as_secs_f64(),
        cp.as_secs_f64()
    );
    let ok = Command::new("sh")
        .arg("-c")
        .arg("find \"$1\" -type f -exec sync -- {} + && sync -- \"$1\"")
        .arg("sh")
        .arg(&target)
        .status()
        .unwrap();
    assert!(ok.success());
    let cp_sync = t.elapsed();

    Upgrade {
        bytes,
        bytes_without_wal,
        total,
        freeze,
        acked,
        failed: writes.iter().filter(|w| !w.acked).count(),
        longest: writes.iter().map(|w| w.took).max().unwrap_or_default(),
        unreachable,
        copy: step_time(&steps, |a| {
            matches!(a, Action::CopyData { .. } | Action::BaseBackup { .. })
        }),
        verify: step_time(&steps, |a| matches!(a, Action::VerifyCopy { .. })),
        cp,
        cp_sync,
        base_backup,
        cut_over: cut_over(&steps),
        before_freeze: before_freeze(&steps),
        writes_before,
        first_after,
        failed_inside,
    }
}

/// Rounds of the base backup and `cp -a`, interleaved.
const ROUNDS: usize = 5;

/// The base backup next to `cp -a`, each [`ROUNDS`] times, interleaved (which
/// goes first alternates), on generation `generation`'s db while it serves: one
/// upgrade gives one base backup, and on this machine's disk one copy of the
/// same files took from 0.1 to 0.6 s from one run to the next (see `settle`), so
/// the throughput target is judged on the medians of these rounds. The base
/// backup is gemctl's own (`stream::base_backup_into`, into a scratch directory,
/// its slot dropped after); every copy is kept until the size is done.
struct Rounds {
    /// The data directory's bytes, as `du` counts them.
    bytes: u64,
    /// Each base backup, whole (its session, the file copy, its stop).
    backup: Vec<Duration>,
    /// Its file copy alone.
    files: Vec<Duration>,
    /// The bytes it copied (the data directory without `pg_wal` and the rest a
    /// base backup leaves out).
    copied: u64,
    /// Each `cp -a`.
    cp: Vec<Duration>,
}

fn median(of: &[Duration]) -> Duration {
    let mut sorted = of.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn copy_rounds(rt: &tokio::runtime::Runtime, bench: &Bench, generation: u64) -> Rounds {
    let spec = bench.load(generation, CopyMode::Auto);
    let creds = DbCredentials::from_env(&execute::db_env(&spec).unwrap());
    let docker = rt.block_on(Docker::connect()).unwrap();
    let data = bench.data(generation);
    let mut rounds = Rounds {
        bytes: du_bytes(&data),
        backup: Vec::new(),
        files: Vec::new(),
        copied: 0,
        cp: Vec::new(),
    };
    for i in 0..ROUNDS {
        let slot_of = 90 + i as u64;
        let mut backup = || {
            let target = bench.dir.join(format!("rounds/backup-{i}"));
            std::fs::create_dir_all(&target).unwrap();
            settle();
            let t = Instant::now();
            let timing = rt
                .block_on(gemctl::stream::base_backup_into(
                    &docker, &spec, &creds, generation, slot_of, &target,
                ))
                .unwrap();
            rounds.backup.push(t.elapsed());
            rounds.files.push(timing.copy);
            rounds.copied = timing.bytes;
            rt.block_on(gemctl::stream::drop_slot(
                &docker, &spec, &creds, generation, slot_of,
            ))
            .unwrap();
        };
        let cp = || {
            settle();
            cp_a(&data, &bench.dir.join(format!("rounds/cp-{i}")))
        };
        if i % 2 == 0 {
            backup();
            let took = cp();
            rounds.cp.push(took);
        } else {
            let took = cp();
            rounds.cp.push(took);
            backup();
        }
    }
    let secs = |d: &[Duration]| {
        d.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  {ROUNDS} rounds on generation {generation}'s db, {:.0} MB: base backup {} s (file \
         copy {} s); cp -a {} s",
        rounds.bytes as f64 / 1e6,
        secs(&rounds.backup),
        secs(&rounds.files),
        secs(&rounds.cp)
    );
    rounds
}

/// `cp -a FROM TO`'s time (`TO`'s parent made first).
fn cp_a(from: &Path, to: &Path) -> Duration {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let t = Instant::now();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
    t.elapsed()
}

/// When the bench (or gemctl for it) last removed many files.
static REMOVED_AT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// Notes that many files were just removed (see [`settle`]).
fn removed() {
    *REMOVED_AT.lock().unwrap() = Some(Instant::now());
}

/// How long ext4 without a journal passes over the inodes of removed files when it
/// makes new ones (`recently_deleted` in `fs/ext4/ialloc.c`: 60 s, longer while
/// their inode table is dirty), plus a margin.
const RECENTLY_REMOVED: Duration = Duration::from_secs(65);

/// Waits for the disk to be quiet: `sync`, at least a second, and 65 s since the
/// last removal of many files. This machine's disk is ext4 without a journal,
/// where every new file's inode is looked for past the inodes of files removed in
/// the last minute: after a data directory was removed, making the ~1,000 files of
/// another took up to 1 s of kernel time (`perf`: `find_inode_bit` →
/// `recently_deleted`), for `cp -a` and the base backup alike, whichever came
/// first. Each measured step and each `cp -a` baseline starts past that; the bench
/// keeps its `cp -a` copies until a size is done and retains every generation, so
/// that it removes little in between.
fn settle() {
    let _ = Command::new("sync").status();
    let since = REMOVED_AT.lock().unwrap().map(|at| at.elapsed());
    if let Some(since) = since.filter(|since| *since < RECENTLY_REMOVED) {
        println!(
            "  (waiting {:.0} s: files were removed {:.0} s ago)",
            (RECENTLY_REMOVED - since).as_secs_f64(),
            since.as_secs_f64()
        );
        std::thread::sleep(RECENTLY_REMOVED - since);
    }
    std::thread::sleep(Duration::from_secs(1));
}

/// A `CHECKPOINT` in generation `generation`'s db: a db that has served a while
/// has had its checkpoints (`checkpoint_timeout`, `max_wal_size`), so the rows the
/// bench just loaded are checkpointed before it measures, and the base backup's
/// own fast checkpoint (`pg_backup_start`, printed apart) is what it is on such a
/// db rather than the flush of the whole load.
fn checkpoint(spec: &Spec, generation: u64) {
    let db = desired::container_name(spec, Role::Db, generation);
    let ok = Command::new("docker")
        .args([
            "exec",
            &db,
            "psql",
            "-U",
            "app",
            "-d",
            "app",
            "-Xqc",
            "checkpoint",
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "checkpoint in {db}");
}

/// A preview's time to ready next to `cp -a` of the same data directory.
struct Preview {
    /// The live db's data directory.
    bytes: u64,
    /// `cp -a` of it while the db runs (the faster of two runs).
    cp: Duration,
    /// The preview's copy (its base backup).
    copy: Duration,
    /// From the command's start to the preview's app checked and published.
    ready: Duration,
}

/// `gemctl preview` of generation `live + 1` beside the live one (a base backup of
/// the live db, started and promoted, the spec's app on it, checked and
/// published), then `gemctl preview --discard`.
fn preview(bench: &Bench, live: u64) -> Preview {
    checkpoint(&bench.load(live, CopyMode::Auto), live);
    let data = bench.data(live);
    let bytes = du_bytes(&data);
    let target = bench.dir.join("cp-preview");
    settle();
    let first = cp_a(&data, &target.join("first"));
    settle();
    let second = cp_a(&data, &target.join("second"));
    bench.load(live + 1, CopyMode::Auto);
    let spec_file = bench.dir.join("spec.yaml");
    let gemctl = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_gemctl"))
            .args(args)
            .arg("-f")
            .arg(&spec_file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "gemctl {args:?}: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout
    };
    settle();
    let started = Instant::now();
    let out = gemctl(&["preview", "-o", "json"]);
    let wall = started.elapsed();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let record = &doc["preview"];
    let copy = Duration::from_millis(record["copy_ms"].as_u64().unwrap());
    let ready = record["ready_ms"]
        .as_u64()
        .map(Duration::from_millis)
        .unwrap_or(wall);
    gemctl(&["preview", "--discard"]);
    removed();
    println!(
        "  preview of generation {} beside generation {live}: copy {:.2} s, ready {:.2} s \
         (cp -a of the live data directory {:.2} s, then {:.2} s)",
        live + 1,
        copy.as_secs_f64(),
        ready.as_secs_f64(),
        first.as_secs_f64(),
        second.as_secs_f64()
    );
    Preview {
        bytes,
        cp: first.min(second),
        copy,
        ready,
    }
}

/// The steps from the first `stop_app` to the last `expose_app` (or switch of the
/// front), named by their action's tag in plans, to show where the write-freeze
/// goes.
fn cut_over(steps: &[(Action, Duration)]) -> Vec<(String, Duration)> {
    let first = steps
        .iter()
        .position(|(a, _)| matches!(a, Action::StopApp { .. }));
    let last = steps
        .iter()
        .rposition(|(a, _)| matches!(a, Action::ExposeApp { .. } | Action::SwitchFront { .. }));
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    tagged(&steps[first..=last])
}

/// The steps before the first `stop_app` (the old app still serves), from the
/// base backup (stream) or the new db's creation (dump) on.
fn before_freeze(steps: &[(Action, Duration)]) -> Vec<(String, Duration)> {
    let first = steps.iter().position(|(a, _)| {
        matches!(
            a,
            Action::BaseBackup { .. } | Action::CreateDb { .. } | Action::AllowReplication { .. }
        )
    });
    let last = steps
        .iter()
        .position(|(a, _)| matches!(a, Action::StopApp { .. }));
    match (first, last) {
        (Some(first), Some(last)) if first < last => tagged(&steps[first..last]),
        _ => Vec::new(),
    }
}

fn tagged(steps: &[(Action, Duration)]) -> Vec<(String, Duration)> {
    steps
        .iter()
        .map(|(a, d)| {
            let tag = serde_json::to_value(a).unwrap()["action"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            (tag, *d)
        })
        .collect()
}

/// A backup of the live generation `live` while a client polls the app, its
/// restore into `live + 1` through the cut-over, then the dump copy old and new
/// from there into fresh dbs. `dump_copy` is the upgrade's dump, for scale.
fn extras(rt: &tokio::runtime::Runtime, bench: &Bench, live: u64, dump_copy: Duration) {
    let spec = bench.load(live, CopyMode::Auto);
    let bytes = du_bytes(&bench.data(live));
    let env = gemctl::execute::db_env(&spec).unwrap();
    let (stop, poller) = start_poller(bench.tcp);
    let t = Instant::now();
    let info = rt
        .block_on(async {
            let docker = gemctl::docker::Docker::connect().await?;
            gemctl::backup::take(&docker, &spec, &env, live).await
        })
        .unwrap();
    let backup = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    let backup_down = poller.join().unwrap();
    gemctl::state::set_pin(
        &spec.storage,
        &gemctl::observed::Pin {
            generation: live + 1,
            spec_generation: live,
            at: gemctl::state::now_rfc3339(),
            reason: "bench".into(),
            restore_from: Some(info.path.display().to_string()),
        },
    )
    .unwrap();
    let (stop, poller) = start_poller(bench.tcp);
    let Applied {
        total: restore_total,
        steps: restore_steps,
        ..
    } = rt.block_on(apply(&spec));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let restore_down = poller.join().unwrap();
    let restore = step_time(&restore_steps, |a| {
        matches!(a, Action::RestoreBackup { .. })
    });
    println!(
        "backup (pg_dump -Fc per database, app running): {:.2} s, file {:.1} MB = {:.2} of \
         the data directory; app unreachable during it: {:.2} s",
        backup.as_secs_f64(),
        info.size as f64 / 1e6,
        info.size as f64 / bytes as f64,
        backup_down.as_secs_f64()
    );
    println!(
        "restore into generation {}: {:.2} s total, pg_restore {:.2} s (restore/dump copy \
         time ratio = {:.1}); app unreachable: {:.2} s",
        live + 1,
        restore_total.as_secs_f64(),
        restore.as_secs_f64(),
        restore.as_secs_f64() / dump_copy.as_secs_f64(),
        restore_down.as_secs_f64()
    );

    // The dump copy, old and new, from the live db into fresh dbs. Its rows are
    // first read once, so neither side pays the hint bits.
    let from = live + 1;
    let db = desired::container_name(&spec, Role::Db, from);
    let sql = |statement: &str| {
        let ok = Command::new("docker")
            .args([
                "exec", &db, "psql", "-U", "app", "-d", "app", "-Xq", "-c", statement,
            ])
            .status()
            .unwrap();
        assert!(ok.success(), "{statement}");
    };
    sql("vacuum analyze");
    let one = dump_old_and_new(rt, &spec, &bench.dir, from, (96, 97));
    sql("create table items_b as select * from items");
    sql("vacuum analyze");
    let two = dump_old_and_new(rt, &spec, &bench.dir, from, (98, 99));
    println!(
        "dump copy + verify from the live db into a fresh one, old (pg_dumpall | psql, \
         re-created in this bench) and new (gemctl::copy), same data, same run \
         (target: new faster than old):"
    );
    print_dump_comparison("one table", one);
    print_dump_comparison("two tables of that size", two);
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mark(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("upgrade benchmark: run `cargo bench --bench upgrade`");
        return;
    }
    let small = env_u64("GEMCTL_BENCH_ROWS", 400_000);
    let sizes = [small, small * env_u64("GEMCTL_BENCH_SCALE", 10)];
    let extras_wanted = std::env::var("GEMCTL_BENCH_EXTRAS").as_deref() != Ok("0");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // (rows, stream, dump) per size.
    let mut results: Vec<(u64, Upgrade, Upgrade)> = Vec::new();
    let mut previews: Vec<(u64, Preview)> = Vec::new();
    let mut all_rounds: Vec<(u64, Rounds)> = Vec::new();
    for (i, rows) in sizes.into_iter().enumerate() {
        let bench = Bench::new(format!("gb{}s{i}", std::process::id()));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(apply(&bench.load(1, CopyMode::Auto)));
            // In requests the fixture app's psql finishes well inside its 10 s
            // deadline, even on a busy machine.
            let mut left = rows;
            while left > 0 {
                let n = left.min(200_000);
                post_rows(bench.http, n);
                left -= n;
            }
            checkpoint(&bench.load(1, CopyMode::Auto), 1);
            println!(
                "{rows} rows: base backup and cp -a rounds, stream upgrade 1 -> 2, dump 2 -> 3, \
                 then a preview of 4 beside 3"
            );
            let rounds = copy_rounds(&rt, &bench, 1);
            let stream = upgrade(&rt, &bench, 1, CopyMode::Stream);
            let dump = upgrade(&rt, &bench, 2, CopyMode::Dump);
            let preview = preview(&bench, 3);
            if i == 0 && extras_wanted {
                extras(&rt, &bench, 3, dump.copy);
            }
            (stream, dump, preview, rounds)
        }));
        common::clean_up(&bench.name, &bench.dir);
        removed();
        match result {
            Ok((stream, dump, preview, rounds)) => {
                results.push((rows, stream, dump));
                previews.push((rows, preview));
                all_rounds.push((rows, rounds));
            }
            Err(e) => std::panic::resume_unwind(e),
        }
    }

    // The small size again, behind a front door: the same two upgrades.
    let fronted = std::env::var("GEMCTL_BENCH_FRONT").as_deref() != Ok("0");
    let front = fronted.then(|| {
        let bench = Bench::behind_front(format!("gb{}fr", std::process::id()));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(apply(&bench.load(1, CopyMode::Auto)));
            let mut left = small;
            while left > 0 {
                let n = left.min(200_000);
                post_rows(bench.http, n);
                left -= n;
            }
            println!("{small} rows behind a front: stream upgrade 1 -> 2, then dump 2 -> 3");
            let stream = upgrade(&rt, &bench, 1, CopyMode::Stream);
            let dump = upgrade(&rt, &bench, 2, CopyMode::Dump);
            (stream, dump)
        }));
        common::clean_up(&bench.name, &bench.dir);
        result.unwrap_or_else(|e| std::panic::resume_unwind(e))
    });

    println!();
    println!(
        "{:<6} {:>9} {:>8} {:>8} {:>14} {:>7} {:>12} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "mode",
        "rows",
        "data MB",
        "apply s",
        "write-freeze s",
        "writes",
        "unreachable s",
        "copy s",
        "copy MB/s",
        "cp MB/s",
        "copy/cp",
        "verify s"
    );
    for (rows, stream, dump) in &results {
        for (mode, u) in [("stream", stream), ("dump", dump)] {
            println!(
                "{mode:<6} {rows:>9} {:>8.1} {:>8.2} {:>14.2} {:>7} {:>12.2} {:>8.2} {:>9.1} \
                 {:>8.1} {:>8.2} {:>8.2}",
                u.bytes as f64 / 1e6,
                u.total.as_secs_f64(),
                u.freeze.as_secs_f64(),
                u.acked,
                u.unreachable.as_secs_f64(),
                u.copy.as_secs_f64(),
                u.copy_mbps(),
                u.cp_mbps(),
                u.copy_mbps() / u.cp_mbps(),
                u.verify.as_secs_f64(),
            );
        }
    }
    println!(
        "(copy: the base backup for stream, the dump's copy for dump; copy/cp: throughput ratio)"
    );
    println!();
    println!(
        "the copy next to baselines on the same data directory (cp -a: the faster of two runs; \
         cp -a + sync: the second cp -a, then an fsync of every file it wrote):"
    );
    println!(
        "{:<6} {:>9} {:>8} {:>8} {:>14} {:>8} {:>13} {:>13} {:>12} {:>12} {:>12}",
        "mode",
        "rows",
        "copy s",
        "cp -a s",
        "cp -a + sync s",
        "copy/cp",
        "copy/cp+sync",
        "bk start s",
        "file copy s",
        "bk stop s",
        "file copy/cp"
    );
    for (rows, stream, dump) in &results {
        for (mode, u) in [("stream", stream), ("dump", dump)] {
            let (start, files, stop, files_ratio) = match u.base_backup {
                Some((a, b, c)) => (
                    format!("{:.2}", a.as_secs_f64()),
                    format!("{:.2}", b.as_secs_f64()),
                    format!("{:.2}", c.as_secs_f64()),
                    format!("{:.2}", u.cp.as_secs_f64() / b.as_secs_f64()),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            println!(
                "{mode:<6} {rows:>9} {:>8.2} {:>8.2} {:>14.2} {:>8.2} {:>13.2} {start:>13} \
                 {files:>12} {stop:>12} {files_ratio:>12}",
                u.copy.as_secs_f64(),
                u.cp.as_secs_f64(),
                u.cp_sync.as_secs_f64(),
                u.copy_mbps() / u.cp_mbps(),
                u.copy_mbps() / u.cp_sync_mbps(),
            );
        }
    }
    println!(
        "(copy: the whole step: for stream the backup's start in the old db (slot, fast \
         checkpoint), the file copy on the host (pg_wal and the rest a base backup leaves out \
         are not copied; the standby streams its WAL), the backup's stop, the standby's \
         settings; the throughput counts the whole source directory, as cp -a copies it)"
    );
    println!();
    println!("steps while the old app serves, before the freeze (gemctl's own timing):");
    for (rows, stream, dump) in &results {
        for (mode, u) in [("stream", stream), ("dump", dump)] {
            let steps: Vec<String> = u
                .before_freeze
                .iter()
                .map(|(tag, d)| format!("{tag} {:.2}", d.as_secs_f64()))
                .collect();
            let sum: Duration = u.before_freeze.iter().map(|(_, d)| *d).sum();
            println!(
                "  {mode} {rows}: {:.2} s = {}",
                sum.as_secs_f64(),
                steps.join(" + ")
            );
        }
    }
    println!();
    println!("steps from stopping the old app to exposing the new (gemctl's own timing):");
    for (rows, stream, dump) in &results {
        for (mode, u) in [("stream", stream), ("dump", dump)] {
            let steps: Vec<String> = u
                .cut_over
                .iter()
                .map(|(tag, d)| format!("{tag} {:.2}", d.as_secs_f64()))
                .collect();
            let sum: Duration = u.cut_over.iter().map(|(_, d)| *d).sum();
            println!(
                "  {mode} {rows}: {:.2} s = {}",
                sum.as_secs_f64(),
                steps.join(" + ")
            );
            println!(
                "    write-freeze {:.2} s; writes before it took {:.2} s (median), the first \
                 acknowledged after it {:.2} s; {} failed inside it",
                u.freeze.as_secs_f64(),
                u.writes_before.as_secs_f64(),
                u.first_after.as_secs_f64(),
                u.failed_inside
            );
        }
    }

    if let Some((front_stream, front_dump)) = &front {
        let (_, stream, dump) = &results[0];
        println!();
        println!(
            "writes through the app every 20 ms at {small} rows, without and with a front door \
             (target with a front: 0 failed):"
        );
        println!(
            "{:<6} {:<6} {:>7} {:>7} {:>14} {:>14}",
            "mode", "front", "writes", "failed", "write-freeze s", "longest write s"
        );
        for (mode, front, u) in [
            ("stream", "no", stream),
            ("stream", "yes", front_stream),
            ("dump", "no", dump),
            ("dump", "yes", front_dump),
        ] {
            println!(
                "{mode:<6} {front:<6} {:>7} {:>7} {:>14.2} {:>14.2}",
                u.acked + u.failed,
                u.failed,
                u.freeze.as_secs_f64(),
                u.longest.as_secs_f64()
            );
        }
        for (mode, u) in [("stream", front_stream), ("dump", front_dump)] {
            println!(
                "  {mode} behind a front: {} failed writes: {}",
                u.failed,
                mark(u.failed == 0)
            );
        }
    }

    let [
        (_, small_stream, small_dump),
        (large_rows, large_stream, large_dump),
    ] = &results[..]
    else {
        unreachable!("two sizes");
    };
    let ratio =
        |small: &Upgrade, large: &Upgrade| large.freeze.as_secs_f64() / small.freeze.as_secs_f64();
    println!();
    println!("targets (issue 11; informational):");
    let freeze = large_stream.freeze.as_secs_f64();
    println!(
        "  stream write-freeze at {large_rows} rows ({:.0} MB; target stated at ~1 GB): \
         {freeze:.2} s <= 2 s  {}",
        large_stream.bytes as f64 / 1e6,
        mark(freeze <= 2.0)
    );
    let stream_ratio = ratio(small_stream, large_stream);
    println!(
        "  stream write-freeze large/small: {stream_ratio:.2} <= 1.2  {}",
        mark(stream_ratio <= 1.2)
    );
    println!(
        "  dump write-freeze large/small: {:.2} (no target: the copy is inside the freeze)",
        ratio(small_dump, large_dump)
    );
    for (rows, r) in &all_rounds {
        let (backup, cp) = (median(&r.backup), median(&r.cp));
        let ratio = cp.as_secs_f64() / backup.as_secs_f64();
        println!(
            "  base-backup throughput / cp -a at {rows} rows ({:.0} MB), medians of {ROUNDS} \
             interleaved rounds (base backup {:.2} s, file copy {:.2} s, cp -a {:.2} s): \
             {ratio:.2} >= 0.7  {}",
            r.bytes as f64 / 1e6,
            backup.as_secs_f64(),
            median(&r.files).as_secs_f64(),
            cp.as_secs_f64(),
            mark(ratio >= 0.7)
        );
    }
    for (rows, r) in &all_rounds {
        let (backup, cp) = (median(&r.backup), median(&r.cp));
        println!(
            "  (no target) the same medians, per byte each copied (the base backup {:.0} MB, \
             cp -a {:.0} MB) at {rows} rows: {:.2}",
            r.copied as f64 / 1e6,
            r.bytes as f64 / 1e6,
            (r.copied as f64 / backup.as_secs_f64()) / (r.bytes as f64 / cp.as_secs_f64())
        );
    }
    for (rows, stream, _) in &results {
        println!(
            "  (no target) the upgrade's one base backup / cp -a at {rows} rows: {:.2}",
            stream.copy_mbps() / stream.cp_mbps()
        );
    }
    for (rows, stream, _) in &results {
        println!(
            "  (no target) base-backup throughput / (cp -a + sync) at {rows} rows: {:.2}",
            stream.copy_mbps() / stream.cp_sync_mbps()
        );
    }
    for (rows, stream, _) in &results {
        println!(
            "  (no target) counting only the bytes outside pg_wal for the base backup \
             ({:.0} of {:.0} MB), its throughput / cp -a at {rows} rows: {:.2}",
            stream.bytes_without_wal as f64 / 1e6,
            stream.bytes as f64 / 1e6,
            (stream.bytes_without_wal as f64 / stream.copy.as_secs_f64())
                / (stream.bytes as f64 / stream.cp.as_secs_f64())
        );
    }

    println!();
    println!(
        "time to a ready preview (`gemctl preview` beside the live generation after the two \
         upgrades; copy: its base backup; start: the rest, the copy's db started, promoted, \
         the app started and checked):"
    );
    println!(
        "{:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "rows", "data MB", "cp -a s", "copy s", "start s", "ready s", "copy/cp"
    );
    for (rows, p) in &previews {
        println!(
            "{rows:>10} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            p.bytes as f64 / 1e6,
            p.cp.as_secs_f64(),
            p.copy.as_secs_f64(),
            p.ready.saturating_sub(p.copy).as_secs_f64(),
            p.ready.as_secs_f64(),
            p.copy.as_secs_f64() / p.cp.as_secs_f64().max(0.001),
        );
    }
    println!("targets (issue 15; informational):");
    for (rows, p) in &previews {
        let start = p.ready.saturating_sub(p.copy);
        let limit = p.cp.mul_f64(1.5) + start;
        println!(
            "  ready preview at {rows} rows: {:.2} s <= 1.5 x cp -a + its start = {:.2} s  {}",
            p.ready.as_secs_f64(),
            limit.as_secs_f64(),
            mark(p.ready <= limit)
        );
    }
}
