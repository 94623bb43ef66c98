//! The stand-in "app" of gemctl's integration tests and demo, baked into the
//! `gemctl-test/app:*` images by `scripts/build-images`.
//!
//! It keeps rows in PostgreSQL and reports its health on two ports, so tests
//! can check that data survives a generation change and that gemctl's TCP and
//! HTTP probes see the right answer:
//!
//! * TCP `TCP_PORT` (7000): reads one optional line, answers one line
//!   `OK version=<v> gen=<g> rows=<n>` or `FAIL version=<v> gen=<g> <reason>`.
//! * HTTP `HTTP_PORT` (8080): `GET /health` (200 `OK ...` / 503 `FAIL ...`),
//!   `GET /rows` (the row count), `POST /rows?n=K` (adds K rows, answers the
//!   new count; with `&count=no`, answers `ok` without counting).
//!
//! It talks to the database through `psql` subprocesses (the image is the
//! PostgreSQL image, so psql is there): no client library, no dependencies,
//! so the crate builds in seconds.
//!
//! Jobs, for a stack's worker: `POST /jobs?n=K` queues K jobs, `GET /jobs`
//! answers `jobs=<queued> done=<done> runs=<runs> distinct=<distinct jobs run>`.
//! With `FIXTURE_ROLE=worker` the same binary is the worker: it takes one job
//! at a time (`FOR UPDATE SKIP LOCKED`, so replicas never take the same one),
//! marks it done and records the run in one transaction, every
//! `FIXTURE_WORK_MS` (default 50), logs `processed job <id> gen=<g>` per job,
//! and reports on the TCP port `OK worker gen=<g> processed=<n>` (or `FAIL`
//! when broken or its db cannot be reached); it serves no HTTP.
//!
//! Environment: `GEM_DB_HOST`, `PGUSER`/`PGPASSWORD`/`PGDATABASE` (libpq's own,
//! passed through), `GEM_GENERATION`, `FIXTURE_VERSION`, `FIXTURE_MODE`
//! (`healthy` | `slow` | `broken`; derived from the version when unset),
//! `FIXTURE_SLOW_SECS` (default 8), `FIXTURE_TCP_WAIT_SECS` (default 0.5),
//! `TCP_PORT`, `HTTP_PORT`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, thread};

/// A client that sends nothing still gets its report after this long
/// (`FIXTURE_TCP_WAIT_SECS` sets another: a connection kept open that long).
const TCP_LINE_WAIT: &str = "0.5";
/// Slow or silent HTTP clients are dropped after this long.
const HTTP_READ_WAIT: Duration = Duration::from_secs(2);
/// A psql that hangs (a db host that drops packets) must not hang the probe.
const PSQL_DEADLINE: Duration = Duration::from_secs(10);
const MAX_HTTP_HEAD: usize = 16 * 1024;
const MAX_INSERT: u64 = 1_000_000;

const SCHEMA_SQL: &str = "create table if not exists items (\
     id bigserial primary key, \
     payload text not null, \
     created_at timestamptz not null default now())";
const COUNT_SQL: &str = "select count(*) from items";
const JOBS_SQL: &str = "create table if not exists jobs (\
     id bigserial primary key, \
     queued_at timestamptz not null default now(), \
     done_at timestamptz, \
     done_by text, \
     done_gen text); \
     create table if not exists job_runs (\
     job_id bigint not null, \
     worker text not null, \
     gen text not null, \
     at timestamptz not null default now())";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Healthy,
    /// Unhealthy until `slow` has passed since start.
    Slow,
    /// Never healthy; the ports still answer (FAIL), like a real bad release.
    Broken,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Healthy => "healthy",
            Mode::Slow => "slow",
            Mode::Broken => "broken",
        }
    }
}

struct App {
    /// How long a TCP client may take to send its line.
    tcp_line_wait: Duration,
    version: String,
    generation: String,
    mode: Mode,
    slow: Duration,
    started: Instant,
    db_host: Option<String>,
    schema_ready: AtomicBool,
    /// Two concurrent `create table if not exists` can still collide in
    /// PostgreSQL's catalog; one at a time from this process.
    schema_lock: Mutex<()>,
    jobs_ready: AtomicBool,
    /// Jobs this process ran (worker).
    processed: std::sync::atomic::AtomicU64,
    /// The last error taking a job (worker), reported by its health.
    last_error: Mutex<Option<String>>,
    worker: bool,
}

impl App {
    fn psql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new("psql");
        if let Some(host) = &self.db_host {
            cmd.arg("-h").arg(host);
        }
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // libpq would default the user and database to the OS user (root).
        for (var, default) in [
            ("PGUSER", "postgres"),
            ("PGDATABASE", "postgres"),
            ("PGCONNECT_TIMEOUT", "3"),
            ("PGAPPNAME", "gemctl-fixture-app"),
        ] {
            if env::var_os(var).is_none() {
                cmd.env(var, default);
            }
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot run psql: {e}"))?;
        let deadline = Instant::now() + PSQL_DEADLINE;
        // The output is a line or two, far below a pipe's capacity, so
        // polling before reading cannot deadlock.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("psql timed out after {PSQL_DEADLINE:?}"));
                }
                Err(e) => return Err(format!("waiting for psql: {e}")),
            }
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        if status.success() {
            Ok(out.trim().to_string())
        } else {
            Err(one_line(if err.trim().is_empty() { &out } else { &err }))
        }
    }

    fn ensure_schema(&self) -> Result<(), String> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.schema_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.schema_ready.load(Ordering::Acquire) {
            self.psql(SCHEMA_SQL)?;
            self.schema_ready.store(true, Ordering::Release);
            log("schema ready (table items)");
        }
        Ok(())
    }

    fn count(&self) -> Result<u64, String> {
        self.ensure_schema()?;
        parse_count(&self.psql(COUNT_SQL)?)
    }

    /// Adds `n` rows in one statement; returns the new count. The CTE's rows
    /// are invisible to the outer count, hence the sum.
    fn insert(&self, n: u64) -> Result<u64, String> {
        self.ensure_schema()?;
        let sql = format!(
            "with ins as (insert into items(payload) \
               select md5(random()::text) from generate_series(1, {n}) returning 1) \
             select (select count(*) from items) + (select count(*) from ins)"
        );
        parse_count(&self.psql(&sql)?)
    }

    /// Adds `n` rows in one statement, counting nothing.
    fn insert_uncounted(&self, n: u64) -> Result<(), String> {
        self.ensure_schema()?;
        self.psql(&format!(
            "insert into items(payload) select md5(random()::text) from generate_series(1, {n})"
        ))
        .map(drop)
    }

    fn ensure_jobs(&self) -> Result<(), String> {
        if self.jobs_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.schema_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.jobs_ready.load(Ordering::Acquire) {
            self.psql(JOBS_SQL)?;
            self.jobs_ready.store(true, Ordering::Release);
            log("schema ready (tables jobs, job_runs)");
        }
        Ok(())
    }

    fn queue_jobs(&self, n: u64) -> Result<String, String> {
        self.ensure_jobs()?;
        self.psql(&format!(
            "insert into jobs(queued_at) select now() from generate_series(1, {n}); \
             select count(*) from jobs"
        ))
    }

    fn jobs_report(&self) -> Result<String, String> {
        self.ensure_jobs()?;
        let out = self.psql(
            "select (select count(*) from jobs) || ' ' || \
                    (select count(*) from jobs where done_at is not null) || ' ' || \
                    (select count(*) from job_runs) || ' ' || \
                    (select count(distinct job_id) from job_runs)",
        )?;
        let n: Vec<&str> = out.split_whitespace().collect();
        match n.as_slice() {
            [q, d, r, x] => Ok(format!("jobs={q} done={d} runs={r} distinct={x}")),
            _ => Err(format!("unexpected psql output {out:?}")),
        }
    }

    /// Takes one queued job, marks it done and records the run, in one
    /// transaction; the id, or `None` when none is queued.
    fn work_once(&self, worker: &str) -> Result<Option<u64>, String> {
        self.ensure_jobs()?;
        let worker = worker.replace('\'', "");
        let out = self.psql(&format!(
            "with j as (select id from jobs where done_at is null order by id \
                        for update skip locked limit 1), \
                  u as (update jobs set done_at = now(), done_by = '{worker}', done_gen = '{g}' \
                        from j where jobs.id = j.id returning jobs.id) \
             insert into job_runs(job_id, worker, gen) select id, '{worker}', '{g}' from u \
             returning job_id",
            g = self.generation.replace('\'', "")
        ))?;
        let out = out.trim();
        if out.is_empty() {
            Ok(None)
        } else {
            out.parse()
                .map(Some)
                .map_err(|_| format!("unexpected psql output {out:?}"))
        }
    }

    /// `Ok(rows)` when healthy, else the reason.
    fn health(&self) -> Result<u64, String> {
        match self.mode {
            Mode::Broken => return Err("mode=broken: this build never becomes healthy".into()),
            Mode::Slow => {
                let elapsed = self.started.elapsed();
                if elapsed < self.slow {
                    let left = (self.slow - elapsed).as_secs_f64();
                    return Err(format!("mode=slow: starting, healthy in {left:.1}s"));
                }
            }
            Mode::Healthy => {}
        }
        self.count().map_err(|e| format!("db: {e}"))
    }

    /// The one-line health report shared by both ports.
    fn report(&self) -> (bool, String) {
        let (v, g) = (&self.version, &self.generation);
        if self.worker {
            let processed = self.processed.load(Ordering::Relaxed);
            if self.mode == Mode::Broken {
                return (
                    false,
                    format!("FAIL worker version={v} gen={g} mode=broken"),
                );
            }
            return match self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                Some(e) => (false, format!("FAIL worker gen={g} {e}")),
                None => (
                    true,
                    format!("OK worker version={v} gen={g} processed={processed}"),
                ),
            };
        }
        match self.health() {
            Ok(rows) => (true, format!("OK version={v} gen={g} rows={rows}")),
            Err(reason) => (false, format!("FAIL version={v} gen={g} {reason}")),
        }
    }
}

fn parse_count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("unexpected psql output {:?}", s))
}

/// Reports must stay one line whatever psql printed.
fn one_line(s: &str) -> String {
    let s = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let s = s.strip_prefix("psql: ").unwrap_or(&s).to_string();
    if s.chars().count() > 300 {
        s.chars().take(300).collect::<String>() + "..."
    } else {
        s
    }
}

// ---------------------------------------------------------------- TCP report

fn serve_tcp(app: &App, stream: TcpStream) {
    let peer = peer_of(&stream);
    let _ = stream.set_read_timeout(Some(app.tcp_line_wait));
    let mut line = String::new();
    // Whatever the client sent (or nothing, on timeout), it gets its report.
    let _ = BufReader::new(&stream).take(1024).read_line(&mut line);
    let (_, report) = app.report();
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = (&stream).write_all(format!("{report}\n").as_bytes());
    close_gently(&stream);
    log(&format!("tcp {peer} {:?} -> {report}", line.trim_end()));
}

// ---------------------------------------------------------------------- HTTP

fn serve_http(app: &App, mut stream: TcpStream) {
    let peer = peer_of(&stream);
    let _ = stream.set_read_timeout(Some(HTTP_READ_WAIT));
    let (status, body, request) = match read_request(&mut stream) {
        Ok((method, target)) => {
            let (status, body) = route(app, &method, &target);
            (status, body, format!("{method} {target}"))
        }
        Err(e) => (400, format!("bad request: {e}"), "-".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    );
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.write_all(response.as_bytes());
    close_gently(&stream);
    log(&format!("http {peer} {request} -> {status} {body}"));
}

/// Reads the head and discards any body; returns (method, target).
fn read_request(stream: &mut TcpStream) -> Result<(String, String), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HTTP_HEAD {
            return Err("header too large".into());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed before the end of the header".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err("malformed request line".into());
    };
    let content_length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    // Unread request bytes would turn our close into a reset that can eat
    // the response on the client's side.
    let mut left = content_length.saturating_sub(buf.len() - head_end);
    while left > 0 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    Ok((method.to_string(), target.to_string()))
}

fn route(app: &App, method: &str, target: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        // "/" too, because an http probe's path defaults to "/".
        ("GET", "/health" | "/") => match app.report() {
            (true, report) => (200, report),
            (false, report) => (503, report),
        },
        ("POST", "/jobs") => {
            let n = match query_param(query, "n").unwrap_or("1").parse::<u64>() {
                Ok(n) if (1..=MAX_INSERT).contains(&n) => n,
                _ => return (400, format!("n must be an integer in 1..={MAX_INSERT}")),
            };
            match app.queue_jobs(n) {
                Ok(total) => (200, total),
                Err(e) => (500, format!("db: {e}")),
            }
        }
        ("GET", "/jobs") => match app.jobs_report() {
            Ok(r) => (200, r),
            Err(e) => (500, format!("db: {e}")),
        },
        ("GET", "/rows") => match app.count() {
            Ok(n) => (200, n.to_string()),
            Err(e) => (500, format!("db: {e}")),
        },
        ("POST", "/rows") => {
            let n = match query_param(query, "n") {
                None => 1,
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (1..=MAX_INSERT).contains(&n) => n,
                    _ => return (400, format!("n must be an integer in 1..={MAX_INSERT}")),
                },
            };
            // `count=no`: the write alone, answered `ok` (a count of the whole
            // table takes longer the bigger it is; a writer timing the freeze
            // must not measure that).
            if query_param(query, "count") == Some("no") {
                return match app.insert_uncounted(n) {
                    Ok(()) => (200, "ok".into()),
                    Err(e) => (500, format!("db: {e}")),
                };
            }
            match app.insert(n) {
                Ok(count) => (200, count.to_string()),
                Err(e) => (500, format!("db: {e}")),
            }
        }
        _ => (404, "not found".into()),
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

// ------------------------------------------------------------------- helpers

fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Half-closes, then waits briefly for the client to hang up: closing a
/// socket with unread input resets it, and a reset can discard the reply
/// before the client has read it.
fn close_gently(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 1024];
    for _ in 0..16 {
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn log(msg: &str) {
    println!("{} {msg}", utc_now());
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` without a date crate (days-to-civil algorithm
/// from Howard Hinnant's date library).
fn utc_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

// ------------------------------------------------------------------- signals

// As PID 1 in a container, SIGTERM's default action does not apply, so
// without a handler `docker stop` would wait its full timeout and SIGKILL us.
// std has no signal API; these two libc functions are linked in anyway.
unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn _exit(status: i32) -> !;
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Only async-signal-safe calls here. The app keeps no state worth saving,
/// so exiting at once is a clean stop.
extern "C" fn on_stop_signal(_: i32) {
    const MSG: &[u8] = b"gemctl-fixture-app: stop signal received, exiting\n";
    unsafe {
        write(1, MSG.as_ptr(), MSG.len());
        _exit(0);
    }
}

/// Set by SIGTERM/SIGINT in worker mode: the job in hand is finished (and
/// logged), then the worker exits.
static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_worker_stop_signal(_: i32) {
    STOPPING.store(true, Ordering::SeqCst);
}

// ---------------------------------------------------------------------- main

fn env_or(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn port_from_env(name: &str, default: u16) -> u16 {
    let raw = env_or(name, &default.to_string());
    raw.parse().unwrap_or_else(|_| {
        eprintln!("gemctl-fixture-app: {name}={raw:?} is not a port number");
        std::process::exit(2)
    })
}

fn listen(port: u16, what: &str) -> TcpListener {
    TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("gemctl-fixture-app: cannot listen on {what} port {port}: {e}");
        std::process::exit(1)
    })
}

fn main() {
    if let Some(arg) = env::args().nth(1) {
        match arg.as_str() {
            "--version" | "-V" => {
                println!("gemctl-fixture-app {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            _ => {
                eprintln!(
                    "usage: gemctl-fixture-app [--version]  (configured by the environment; \
                     see fixture-app/src/main.rs)"
                );
                std::process::exit(2);
            }
        }
    }
    unsafe {
        signal(SIGTERM, on_stop_signal);
        signal(SIGINT, on_stop_signal);
    }

    let version = env_or("FIXTURE_VERSION", "dev");
    let mode = match env_or("FIXTURE_MODE", "").as_str() {
        "" => match version.as_str() {
            "slow" => Mode::Slow,
            "broken" => Mode::Broken,
            _ => Mode::Healthy,
        },
        "healthy" => Mode::Healthy,
        "slow" => Mode::Slow,
        "broken" => Mode::Broken,
        other => {
            eprintln!(
                "gemctl-fixture-app: FIXTURE_MODE={other:?}: expected healthy, slow or broken"
            );
            std::process::exit(2)
        }
    };
    let slow_secs: f64 = env_or("FIXTURE_SLOW_SECS", "8")
        .parse()
        .unwrap_or_else(|_| {
            eprintln!("gemctl-fixture-app: FIXTURE_SLOW_SECS must be a number of seconds");
            std::process::exit(2)
        });
    let tcp_wait: f64 = env_or("FIXTURE_TCP_WAIT_SECS", TCP_LINE_WAIT)
        .parse()
        .unwrap_or_else(|_| {
            eprintln!("gemctl-fixture-app: FIXTURE_TCP_WAIT_SECS must be a number of seconds");
            std::process::exit(2)
        });
    let app = Arc::new(App {
        tcp_line_wait: Duration::from_secs_f64(tcp_wait.max(0.01)),
        version,
        generation: env_or("GEM_GENERATION", "?"),
        mode,
        slow: Duration::from_secs_f64(slow_secs.max(0.0)),
        started: Instant::now(),
        db_host: env::var("GEM_DB_HOST").ok().filter(|h| !h.is_empty()),
        schema_ready: AtomicBool::new(false),
        schema_lock: Mutex::new(()),
        jobs_ready: AtomicBool::new(false),
        processed: std::sync::atomic::AtomicU64::new(0),
        last_error: Mutex::new(None),
        worker: env_or("FIXTURE_ROLE", "app") == "worker",
    });
    let tcp_port = port_from_env("TCP_PORT", 7000);
    let http_port = port_from_env("HTTP_PORT", 8080);
    let tcp = listen(tcp_port, "TCP");
    let http = listen(http_port, "HTTP");

    log(&format!(
        "gemctl-fixture-app {} starting: version={} mode={} gen={} db_host={} tcp=:{tcp_port} http=:{http_port}{}",
        env!("CARGO_PKG_VERSION"),
        app.version,
        mode.name(),
        app.generation,
        app.db_host.as_deref().unwrap_or("(PGHOST / local socket)"),
        if mode == Mode::Slow {
            format!(" slow_secs={slow_secs}")
        } else {
            String::new()
        },
    ));

    if app.worker {
        let work: u64 = env_or("FIXTURE_WORK_MS", "50").parse().unwrap_or(50);
        let name = env_or("HOSTNAME", "worker");
        log(&format!(
            "worker {name} starting: gen={} one job every {work} ms; health on tcp=:{tcp_port}",
            app.generation
        ));
        {
            let app = Arc::clone(&app);
            thread::spawn(move || accept_loop(tcp, app, serve_tcp));
        }
        drop(http);
        unsafe {
            signal(SIGTERM, on_worker_stop_signal);
            signal(SIGINT, on_worker_stop_signal);
        }
        loop {
            if STOPPING.load(Ordering::SeqCst) {
                log("worker: stop signal received, exiting between jobs");
                std::process::exit(0);
            }
            if app.mode != Mode::Broken {
                match app.work_once(&name) {
                    Ok(Some(id)) => {
                        app.processed.fetch_add(1, Ordering::Relaxed);
                        *app.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        log(&format!("processed job {id} gen={}", app.generation));
                    }
                    Ok(None) => {
                        *app.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    Err(e) => {
                        log(&format!("cannot take a job: {e}"));
                        *app.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(format!("db: {e}"));
                    }
                }
            }
            thread::sleep(Duration::from_millis(work));
        }
    }

    // Listeners first, schema in the background: the db may still be starting.
    {
        let app = Arc::clone(&app);
        thread::spawn(move || {
            if let Err(e) = app.ensure_schema() {
                log(&format!(
                    "schema not ready yet (retried on each request): {e}"
                ));
            }
        });
    }
    {
        let app = Arc::clone(&app);
        thread::spawn(move || accept_loop(tcp, app, serve_tcp));
    }
    accept_loop(http, app, serve_http);
}

fn accept_loop(listener: TcpListener, app: Arc<App>, serve: fn(&App, TcpStream)) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let app = Arc::clone(&app);
                thread::spawn(move || serve(&app, stream));
            }
            Err(e) => {
                log(&format!("accept failed: {e}"));
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
