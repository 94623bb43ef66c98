//! Reconcile rounds on a converged host: the time per round (from the loop's own
//! JSON log lines) next to `docker ps -a` on the same engine, as a ratio, and the
//! loop's peak memory (VmHWM) after many rounds, sampled early and late to show
//! whether it stays flat.
//!
//! `cargo bench --bench reconcile` (needs `scripts/build-images`);
//! `GEMCTL_BENCH_SECONDS=60` sets how long the loop runs (default 30).
//! Run without `--bench` (as `cargo test --all-targets` does) it does nothing.

mod common;
#[path = "../tests/real/spec.rs"]
mod spec;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("reconcile benchmark: run `cargo bench --bench reconcile`");
        return;
    }
    let seconds: u64 = std::env::var("GEMCTL_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let gemctl = env!("CARGO_BIN_EXE_gemctl");
    let name = format!("gr{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("gemctl-bench-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    spec::write_secrets(&dir);
    let spec = dir.join("spec.yaml");
    let text = spec::SpecTemplate {
        name: &name,
        generation: 1,
        tag: "1",
        retain: None,
        scope: "scope: project",
        ports: "\"127.0.0.1::7000\"",
        health: "    - tcp: { port: 7000, expect: \"OK\" }\n",
        extra: "",
    }
    .text();
    std::fs::write(&spec, text).unwrap();
    let spec = spec.to_str().unwrap().to_string();

    let result = std::panic::catch_unwind(|| {
        let o = Command::new(gemctl)
            .args(["apply", "-f", &spec])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

        let mut ps_times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let o = Command::new("docker").args(["ps", "-a"]).output().unwrap();
            assert!(o.status.success());
            ps_times.push(t.elapsed());
        }
        ps_times.sort();
        let ps = ps_times[ps_times.len() / 2];

        let log_path = dir.join("reconcile.log");
        let mut child = Command::new(gemctl)
            .args([
                "reconcile",
                "-f",
                &spec,
                "--every",
                "1ms",
                "--log-format",
                "json",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(seconds / 5));
        let early = vm_hwm_kb(child.id());
        std::thread::sleep(Duration::from_secs(seconds - seconds / 5));
        let late = vm_hwm_kb(child.id());
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(child.wait().unwrap().success());

        let log = std::fs::read_to_string(&log_path).unwrap();
        let mut rounds: Vec<u64> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "reconcile round done")
            .filter_map(|v| v["fields"]["duration_ms"].as_u64())
            .collect();
        assert!(!rounds.is_empty(), "no rounds logged: {log}");
        let n = rounds.len();
        rounds.sort();
        let median = Duration::from_millis(rounds[n / 2]);
        println!("reconcile rounds on a converged host: {n} in {seconds} s");
        println!(
            "round (median): {:.1} ms; `docker ps -a` (median of 20): {:.1} ms; round/ps = {:.2}",
            median.as_secs_f64() * 1e3,
            ps.as_secs_f64() * 1e3,
            median.as_secs_f64() / ps.as_secs_f64()
        );
        println!(
            "peak memory (VmHWM): {early} kB after {}s, {late} kB after {seconds}s ({:+} kB)",
            seconds / 5,
            late as i64 - early as i64
        );
    });

    common::clean_up(&name, &dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
