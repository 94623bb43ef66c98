//! The time to a ready preview (`gemctl preview`: the live database copied while
//! it serves, then the spec's app started and health-checked on the copy), next
//! to `cp -a` of the same data directory on the same disk, at two sizes (a small
//! one and one `SCALE` times larger). Printed per size: the data directory's
//! size, `cp -a`'s time, the preview's copy and its whole time to ready, the
//! copy's ratio to `cp -a`, and the issue's target beside the numbers (copy ≤
//! 1.5 × `cp -a`, the app's start on top), marked PASS or MISS: informational,
//! the bench does not fail on it.
//!
//! `cargo bench --bench preview` (needs `scripts/build-images`);
//! `GEMCTL_BENCH_ROWS` sets the small size (default 400,000 rows, about 100 MB
//! of data directory), `GEMCTL_BENCH_SCALE` the large one's factor (default 10).
//! Run without `--bench` (as `cargo test --all-targets` does) it does nothing.

mod common;
#[path = "../tests/real/spec.rs"]
mod spec;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HEALTH: &str = r#"    - tcp: { port: 7000, send: "status\n", expect_regex: "^OK " }
      interval: 100ms
      deadline: 60s
"#;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Exit code, stdout, and both outputs for a message.
fn gemctl(spec: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(args)
        .arg("-f")
        .arg(spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let all = stdout.clone() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code().unwrap_or(-1), stdout, all)
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

fn du_bytes(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

struct Measured {
    rows: u64,
    bytes: u64,
    cp: Duration,
    copy: Duration,
    ready: Duration,
}

fn write_spec(dir: &Path, name: &str, generation: u64, http: u16, tcp: u16, preview: u16) {
    let text = spec::SpecTemplate {
        name,
        generation,
        tag: if generation == 1 { "1" } else { "2" },
        retain: Some(2),
        scope: "scope: project",
        ports: &format!("\"127.0.0.1:{http}:8080\", \"127.0.0.1:{tcp}:7000\""),
        health: HEALTH,
        extra: &format!("preview:\n  ports: [\"127.0.0.1:{preview}:8080\"]\n"),
    }
    .text();
    std::fs::write(dir.join("spec.yaml"), text).unwrap();
}

fn measure(name: &str, dir: &Path, rows: u64) -> Measured {
    let (http, tcp, preview) = (spec::free_port(), spec::free_port(), spec::free_port());
    std::fs::create_dir_all(dir).unwrap();
    spec::write_secrets(dir);
    let spec_file = dir.join("spec.yaml");
    write_spec(dir, name, 1, http, tcp, preview);
    let (code, _, out) = gemctl(&spec_file, &["apply"]);
    assert_eq!(code, 0, "{out}");
    let mut left = rows;
    while left > 0 {
        let n = left.min(200_000);
        post_rows(http, n);
        left -= n;
    }
    let data = dir.join("storage/1/pgdata");
    let _ = Command::new("docker")
        .args([
            "exec",
            &format!("{name}-db-1"),
            "psql",
            "-U",
            "app",
            "-d",
            "app",
            "-c",
            "checkpoint",
        ])
        .output();
    let bytes = du_bytes(&data);
    let target: PathBuf = dir.join("cp-a");
    let started = Instant::now();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&target)
        .status()
        .unwrap();
    let cp = started.elapsed();
    assert!(ok.success());
    let _ = std::fs::remove_dir_all(&target);

    write_spec(dir, name, 2, http, tcp, preview);
    let started = Instant::now();
    let (code, stdout, out) = gemctl(&spec_file, &["preview", "-o", "json"]);
    let wall = started.elapsed();
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let record = &doc["preview"];
    let copy = Duration::from_millis(record["copy_ms"].as_u64().unwrap_or_default());
    let ready = record["ready_ms"]
        .as_u64()
        .map(Duration::from_millis)
        .unwrap_or(wall);
    Measured {
        rows,
        bytes,
        cp,
        copy,
        ready,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("preview benchmark: run `cargo bench --bench preview`");
        return;
    }
    let small = env_u64("GEMCTL_BENCH_ROWS", 400_000);
    let sizes = [small, small * env_u64("GEMCTL_BENCH_SCALE", 10)];
    let mut results = Vec::new();
    for (i, rows) in sizes.into_iter().enumerate() {
        let name = format!("gp{}s{i}", std::process::id());
        let dir = std::env::temp_dir().join(format!("gemctl-bench-{name}"));
        let result = std::panic::catch_unwind(|| measure(&name, &dir, rows));
        common::clean_up(&name, &dir);
        match result {
            Ok(m) => results.push(m),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
    println!(
        "\n{:>10} {:>9} {:>8} {:>8} {:>8} {:>10} {:>8}  target (copy <= 1.5 x cp -a)",
        "rows", "data MB", "cp -a s", "copy s", "ready s", "copy/cp", "app s"
    );
    for m in &results {
        let ratio = m.copy.as_secs_f64() / m.cp.as_secs_f64().max(0.001);
        println!(
            "{:>10} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>10.2} {:>8.2}  {}",
            m.rows,
            m.bytes as f64 / 1e6,
            m.cp.as_secs_f64(),
            m.copy.as_secs_f64(),
            m.ready.as_secs_f64(),
            ratio,
            m.ready.saturating_sub(m.copy).as_secs_f64(),
            if ratio <= 1.5 { "PASS" } else { "MISS" }
        );
    }
}
