//! The real engine, for the integration tests: one `Project` per test with its own
//! names, ports and storage, removed when the test ends, pass or fail.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod client;
pub mod outcomes;
pub mod spec;

pub use spec::{PG_IMAGE, free_port};

/// The front door's image (`scripts/build-images`).
pub const HAPROXY_IMAGE: &str = "gemctl-test/haproxy:2.6";

/// The test PostgreSQL of the next major version (`scripts/build-images`), for
/// upgrades across majors.
pub const PG17_IMAGE: &str = "gemctl-test/postgres:17";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs")
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Runs SQL through psql inside db container `db`, in `database`, as the
/// superuser `app` on the socket; its output, unaligned and without headers.
pub fn sql(db: &str, database: &str, statement: &str) -> String {
    docker_ok(&[
        "exec",
        db,
        "psql",
        "-U",
        "app",
        "-d",
        database,
        "-X",
        "-q",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        statement,
    ])
}

/// Creates (does not start) a container named `name` that gemctl did not make.
/// The test's `Project` does not know it: the caller removes it.
pub fn create_stranger(name: &str) {
    docker_ok(&[
        "create",
        "--name",
        name,
        "--entrypoint",
        "sleep",
        PG_IMAGE,
        "600",
    ]);
}

/// The images every real-engine test uses ([`Project::new`] asks for them).
pub fn require_images() {
    require(&[
        PG_IMAGE,
        "gemctl-test/app:1",
        "gemctl-test/app:2",
        "gemctl-test/app:broken",
    ]);
}

/// The front door's image, for the tests behind a front.
pub fn require_haproxy() {
    require(&[HAPROXY_IMAGE]);
}

/// The next major version's PostgreSQL, for the tests that upgrade across majors
/// only: the others keep running on a machine that lacks it.
pub fn require_pg17() {
    require(&[PG17_IMAGE]);
}

fn require(images: &[&str]) {
    for image in images {
        assert!(
            docker(&["image", "inspect", image]).status.success(),
            "image {image} is missing: run scripts/build-images (scripts/test does)"
        );
    }
}

/// The tests' health checks: one of each kind, quick to pass, quick to fail.
const HEALTH_OF_EVERY_KIND: &str = r#"    - tcp: { port: 7000, send: "status\n", expect_regex: "^OK " }
      interval: 300ms
      timeout: 2s
      deadline: 20s
    - http: { port: 8080, path: /health, status: 200 }
      interval: 300ms
      timeout: 2s
      deadline: 20s
    - exec: { command: ["sh", "-c", "test \"$GEM_GENERATION\" -ge 1"] }
      interval: 300ms
      timeout: 5s
      deadline: 20s
"#;

/// One test's project: names, ports and storage of its own, cleaned up on drop.
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    pub spec: PathBuf,
    pub http: u16,
    pub tcp: u16,
}

impl Project {
    pub fn new(test: &str) -> Project {
        require_images();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!(
            "gt{}{n}{}",
            std::process::id() % 100_000,
            &test[..test.len().min(6)]
        );
        let dir = std::env::temp_dir().join(format!("gemctl-test-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        spec::write_secrets(&dir);
        let p = Project {
            spec: dir.join("spec.yaml"),
            name,
            dir,
            http: free_port(),
            tcp: free_port(),
        };
        p.write_spec(1, "1", 2, "scope: project");
        p
    }

    pub fn app(&self, g: u64) -> String {
        format!("{}-gem-{g}", self.name)
    }

    pub fn db(&self, g: u64) -> String {
        format!("{}-db-{g}", self.name)
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    pub fn write_spec(&self, generation: u64, tag: &str, retain: u32, scope: &str) {
        self.write_spec_with(generation, tag, retain, scope, "");
    }

    /// As [`Project::write_spec`] (retain 2, `scope: project`), the db on `db_image`.
    pub fn write_spec_db_image(&self, generation: u64, tag: &str, db_image: &str) {
        self.write_template(generation, tag, 2, "scope: project", "", db_image);
    }

    /// As [`Project::write_spec`], with `extra` top-level YAML appended.
    pub fn write_spec_with(
        &self,
        generation: u64,
        tag: &str,
        retain: u32,
        scope: &str,
        extra: &str,
    ) {
        self.write_template(generation, tag, retain, scope, extra, PG_IMAGE);
    }

    /// As [`Project::write_spec`] (retain 2, `scope: project`), behind a front door
    /// on the project's two ports that holds requests for `hold`.
    pub fn write_front_spec(&self, generation: u64, tag: &str, hold: &str) {
        self.write_front_spec_with(generation, tag, hold, "");
    }

    /// As [`Project::write_front_spec`], with `db_lines` added to the `db:` section.
    pub fn write_front_spec_with(&self, generation: u64, tag: &str, hold: &str, db_lines: &str) {
        let front = format!(
            "{db_lines}front:\n  image: {HAPROXY_IMAGE}\n  hold: {hold}\n  ports:\n    \
             - {{ port: \"127.0.0.1:{}:8080\", mode: http }}\n    \
             - {{ port: \"127.0.0.1:{}:7000\", mode: tcp }}\n",
            self.http, self.tcp
        );
        let text = spec::SpecTemplate {
            name: &self.name,
            generation,
            tag,
            retain: Some(2),
            scope: "scope: project",
            ports: "",
            health: HEALTH_OF_EVERY_KIND,
            extra: &front,
        }
        .text();
        std::fs::write(&self.spec, text).unwrap();
    }

    /// The front door's container.
    pub fn front(&self) -> String {
        format!("{}-front", self.name)
    }

    fn write_template(
        &self,
        generation: u64,
        tag: &str,
        retain: u32,
        scope: &str,
        extra: &str,
        db_image: &str,
    ) {
        let ports = format!(
            "\"127.0.0.1:{}:8080\", \"127.0.0.1:{}:7000\"",
            self.http, self.tcp
        );
        let text = spec::SpecTemplate {
            name: &self.name,
            generation,
            tag,
            retain: Some(retain),
            scope,
            ports: &ports,
            health: HEALTH_OF_EVERY_KIND,
            extra,
        }
        .text_with_db_image(db_image);
        std::fs::write(&self.spec, text).unwrap();
    }

    pub fn gemctl(&self, args: &[&str]) -> Output {
        let spec = self.spec.to_str().unwrap();
        // The spec goes before `--`: what follows is the command's (psql, exec).
        let mut all: Vec<&str> = args.to_vec();
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.splice(at..at, ["-f", spec]);
        let o = Command::new(env!("CARGO_BIN_EXE_gemctl"))
            .args(&all)
            .env("NO_COLOR", "1")
            .output()
            .expect("gemctl runs");
        eprintln!(
            "$ gemctl {}\n{}{}-> exit {:?}",
            all.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            o.status.code()
        );
        o
    }

    pub fn apply(&self, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["apply"];
        args.extend(extra);
        let o = self.gemctl(&args);
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// The app's TCP health report.
    pub fn report(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.tcp)).expect("app tcp port answers");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"status\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.trim().to_string()
    }

    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        http_to(self.http, method, path)
    }

    /// Generation 1 deployed with `first` rows written, then generation 2 (app
    /// tag 2, retain 2) deployed with `then` more rows written.
    pub fn two_generations(&self, first: u64, then: u64) {
        assert_eq!(self.apply(&[]).0, 0);
        if first > 0 {
            self.insert_rows(first);
        }
        self.write_spec(2, "2", 2, "scope: project");
        assert_eq!(self.apply(&[]).0, 0);
        if then > 0 {
            self.insert_rows(then);
        }
    }

    pub fn insert_rows(&self, n: u64) {
        let (status, body) = self.http("POST", &format!("/rows?n={n}"));
        assert_eq!(status, 200, "insert rows: {body}");
    }

    /// `count:md5` of the items table, queried inside a db container.
    pub fn table_digest(&self, db: &str) -> String {
        sql(
            db,
            "app",
            "select count(*) || ':' || md5(coalesce(string_agg(t::text, ',' order by id), '')) from items t",
        )
    }

    /// `name state` of every container of this project.
    pub fn containers(&self) -> Vec<String> {
        let out = docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=io.gemctl.project={}", self.name),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// Every container of this project that runs, with its published ports as
    /// `docker ps` shows them.
    fn running_with_ports(&self) -> Vec<(String, String)> {
        let out = docker_ok(&[
            "ps",
            "--filter",
            &format!("label=io.gemctl.project={}", self.name),
            "--format",
            "{{.Names}}|{{.Ports}}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(name, ports)| (name.to_string(), ports.to_string()))
            .collect()
    }

    /// Containers of this project that publish ports.
    pub fn with_public_ports(&self) -> Vec<String> {
        self.running_with_ports()
            .into_iter()
            .filter(|(_, ports)| ports.contains("->"))
            .map(|(name, _)| name)
            .collect()
    }

    /// Containers of this project that publish the project's two public ports (not
    /// a probe's health ports).
    pub fn holders_of_public_ports(&self) -> Vec<String> {
        let public = [format!(":{}->", self.http), format!(":{}->", self.tcp)];
        self.running_with_ports()
            .into_iter()
            .filter(|(_, ports)| public.iter().any(|p| ports.contains(p.as_str())))
            .map(|(name, _)| name)
            .collect()
    }

    pub fn generations_on_disk(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(self.storage())
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.gemctl.project={}", self.name),
        ]);
        let by_name = docker(&["ps", "-aq", "--filter", &format!("name=^{}-", self.name)]);
        let mut all: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&by_name.stdout).lines())
            .map(str::to_string)
            .collect();
        all.sort();
        all.dedup();
        if !all.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(all.iter().map(String::as_str));
            docker(&args);
        }
        docker(&["network", "rm", &format!("{}-net", self.name)]);
        // Named volumes a test's spec asked for carry its prefix too.
        let volumes = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{}-", self.name),
        ]);
        for volume in String::from_utf8_lossy(&volumes.stdout).lines() {
            docker(&["volume", "rm", "-f", volume]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Project {
    /// Starts `gemctl reconcile --every 1s --log-format json` on this project's
    /// spec, its log lines going to [`Project::reconcile_log`]'s file.
    pub fn spawn_reconcile(&self) -> Reconciler {
        self.spawn_reconcile_with("1s", &[])
    }

    /// As [`Project::spawn_reconcile`], a round `every` (e.g. `300ms`), with
    /// `env` added to gemctl's environment.
    pub fn spawn_reconcile_with(&self, every: &str, env: &[(&str, &str)]) -> Reconciler {
        let log = std::fs::File::create(self.dir.join("reconcile.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gemctl"))
            .args(["reconcile", "-f", self.spec.to_str().unwrap()])
            .args(["--every", every, "--log-format", "json"])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Reconciler(child)
    }

    /// What the reconcile loop logged so far.
    pub fn reconcile_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("reconcile.log")).unwrap_or_default()
    }

    /// The loop's JSON "reconcile round done" lines so far.
    pub fn reconcile_rounds(&self) -> Vec<serde_json::Value> {
        self.reconcile_log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["fields"]["message"] == "reconcile round done")
            .collect()
    }
}

impl Project {
    /// A `notify` section whose command appends every alert to [`Project::alerts`]'s file.
    pub fn notify_section(&self) -> String {
        let file = self.dir.join("alerts.jsonl");
        format!(
            "notify:\n  command: [\"sh\", \"-c\", \"cat >> {f}; echo >> {f}\"]\n",
            f = file.display()
        )
    }

    /// The alerts sent so far through [`Project::notify_section`], oldest first.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join("alerts.jsonl")).unwrap_or_default();
        serde_json::Deserializer::from_str(&text)
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }
}

/// A running `gemctl reconcile`, killed when a test ends without [`terminate`]
/// (a failed assertion), so no loop outlives its test.
pub struct Reconciler(std::process::Child);

impl std::ops::Deref for Reconciler {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reconciler {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends SIGTERM to a child and waits for it; its exit code.
pub fn terminate(child: &mut std::process::Child) -> Option<i32> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait().unwrap().code()
}

/// An HTTP request to `port` on 127.0.0.1: (status, body).
pub fn http_to(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("app http port answers");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    (status, body)
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `apply --output json` started in the background, its events read line by line.
/// The entries of `gemctl history --output json`, newest first (the document
/// also names the gemctl that printed it).
pub fn history_entries(o: &Output) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("history prints JSON");
    assert!(doc["gemctl"].is_string(), "{doc}");
    doc["entries"].as_array().expect("entries").clone()
}

pub struct Watched {
    pub child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Watched {
    pub fn start(p: &Project) -> Watched {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gemctl"))
            .args(["apply", "--output", "json", "-f", p.spec.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Watched { child, lines }
    }

    /// Reads events until one matches; false when apply ended first.
    pub fn until(&mut self, mut f: impl FnMut(&serde_json::Value) -> bool) -> bool {
        for line in self.lines.by_ref() {
            let Ok(line) = line else { return false };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && f(&v)
            {
                return true;
            }
        }
        false
    }

    pub fn step_started(v: &serde_json::Value, action: &str) -> bool {
        v["event"] == "step_started" && v["step"]["action"] == action
    }

    /// Starts `apply` and kills it (SIGKILL) when step `action` starts for the
    /// `nth` time; panics if apply ended first.
    pub fn kill_at(p: &Project, action: &str, nth: usize) {
        let mut w = Watched::start(p);
        let mut seen = 0;
        let found = w.until(|v| {
            if Watched::step_started(v, action) {
                seen += 1;
            }
            seen == nth
        });
        assert!(found, "{action}: the step never started");
        w.child.kill().unwrap();
        w.child.wait().unwrap();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
