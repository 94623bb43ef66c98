//! Health checks of a new app before (and after) it is exposed.
//!
//! Semantics: every check probes at once and then every `interval`, each probe
//! bounded by `timeout`. A check passes at its first passing probe; it fails when
//! `start_period + deadline` has passed since the wait began without a pass. All
//! checks run side by side, each to its own verdict, and must all pass.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::engine::Engine;
use crate::spec::{ExecProbe, HealthCheck, HttpProbe, ProbeKind, TcpProbe};

/// Where the app's checked ports answer.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The app container (for `exec` checks).
    pub container: &'a str,
    /// Host to connect to, usually 127.0.0.1.
    pub host: String,
    /// Container port → host port.
    pub ports: BTreeMap<u16, u16>,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    /// Whether it passed.
    pub passed: bool,
    /// One line: the reply, the status, or the error.
    pub output: String,
}

/// A probe as it happens, for progress output.
#[derive(Debug, Clone)]
pub struct ProbeEvent {
    /// Index of the check in the spec.
    pub check: usize,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Time since the wait began.
    pub elapsed: Duration,
    /// The result.
    pub result: ProbeResult,
}

impl ProbeEvent {
    /// One progress line: `worker-2-1: check 1 attempt 3 (0.4s): pass OK …`.
    pub fn line(&self, container: &str) -> String {
        format!(
            "{container}: check {} attempt {} ({:.1}s): {} {}",
            self.check + 1,
            self.attempt,
            self.elapsed.as_secs_f64(),
            if self.result.passed { "pass" } else { "fail" },
            self.result.output
        )
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    /// What the check does, e.g. `tcp :7000 send "status\n" expect "OK"`.
    pub description: String,
    /// Whether it passed.
    pub passed: bool,
    /// Probes made.
    pub attempts: u32,
    /// Milliseconds until it passed or gave up.
    pub elapsed_ms: u64,
    /// The last probe's output.
    pub last_output: String,
}

/// The outcome of all checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthOutcome {
    /// All passed.
    pub healthy: bool,
    /// Each check.
    pub checks: Vec<CheckOutcome>,
}

impl HealthOutcome {
    /// One line naming what failed and its last output.
    pub fn summary(&self) -> String {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| {
                format!(
                    "{} failed after {} attempts: {}",
                    c.description, c.attempts, c.last_output
                )
            })
            .collect();
        if failed.is_empty() {
            "all checks passed".into()
        } else {
            failed.join("; ")
        }
    }
}

fn one_line(s: &str) -> String {
    let line: String = s.trim().replace(['\r', '\n'], " ");
    line.chars().take(200).collect()
}

/// Describes a check for reports.
pub fn describe(check: &HealthCheck) -> String {
    match check.probe() {
        Some(ProbeKind::Tcp(t)) => {
            let mut d = format!("tcp :{}", t.port);
            if let Some(s) = &t.send {
                d.push_str(&format!(" send {s:?}"));
            }
            if let Some(e) = &t.expect {
                d.push_str(&format!(" expect {e:?}"));
            }
            if let Some(e) = &t.expect_regex {
                d.push_str(&format!(" expect_regex {e:?}"));
            }
            d
        }
        Some(ProbeKind::Http(h)) => format!("http :{}{} status {}", h.port, h.path, h.status),
        Some(ProbeKind::Exec(e)) => format!("exec {:?}", e.command),
        None => "invalid check".into(),
    }
}

/// Runs one probe, bounded by the check's timeout.
pub async fn probe_once<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    check: &HealthCheck,
) -> ProbeResult {
    let timeout = check.timeout.get();
    let run = async {
        match check.probe() {
            Some(ProbeKind::Tcp(t)) => tcp(target, t).await,
            Some(ProbeKind::Http(h)) => http(target, h).await,
            Some(ProbeKind::Exec(e)) => exec(engine, target, e).await,
            None => Err("invalid check".into()),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => ProbeResult {
            passed: false,
            output: one_line(&e),
        },
        Err(_) => ProbeResult {
            passed: false,
            output: format!("no answer within {}", humantime::format_duration(timeout)),
        },
    }
}

fn addr(target: &Target<'_>, port: u16) -> Result<(String, u16), String> {
    let host_port = target
        .ports
        .get(&port)
        .ok_or_else(|| format!("container port {port} is not published"))?;
    Ok((target.host.clone(), *host_port))
}

async fn tcp(target: &Target<'_>, probe: &TcpProbe) -> Result<ProbeResult, String> {
    let mut stream = TcpStream::connect(addr(target, probe.port)?)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(send) = &probe.send {
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    // A report is one line: stop at a newline, at EOF, or at 64 KiB.
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.contains(&b'\n') || reply.len() > 65536 {
                    break;
                }
            }
            Err(e) if reply.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    let reply = String::from_utf8_lossy(&reply).to_string();
    let mut passed = true;
    if let Some(e) = &probe.expect {
        passed &= reply.contains(e.as_str());
    }
    if let Some(re) = &probe.expect_regex {
        let re = regex::Regex::new(re).map_err(|e| e.to_string())?;
        passed &= re.is_match(reply.trim_end());
    }
    Ok(ProbeResult {
        passed,
        output: if reply.is_empty() {
            "connected, empty reply".into()
        } else {
            one_line(&reply)
        },
    })
}

async fn http(target: &Target<'_>, probe: &HttpProbe) -> Result<ProbeResult, String> {
    let (host, port) = addr(target, probe.port)?;
    let mut stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: gemctl\r\nConnection: close\r\n\r\n",
        probe.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP reply: {}", one_line(head)))?;
    let mut passed = status == probe.status;
    if let Some(re) = &probe.body {
        let re = regex::Regex::new(re).map_err(|e| e.to_string())?;
        passed &= re.is_match(body);
    }
    Ok(ProbeResult {
        passed,
        output: one_line(&format!("HTTP {status}: {body}")),
    })
}

async fn exec<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    probe: &ExecProbe,
) -> Result<ProbeResult, String> {
    let out = engine
        .exec(target.container, &probe.command)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ProbeResult {
        passed: out.exit_code == 0,
        output: one_line(&format!(
            "exit {}: {}{}",
            out.exit_code, out.stdout, out.stderr
        )),
    })
}

async fn run_check<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    index: usize,
    check: &HealthCheck,
    started: Instant,
    events: &tokio::sync::mpsc::UnboundedSender<ProbeEvent>,
) -> CheckOutcome {
    let give_up = check.start_period.get() + check.deadline.get();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = probe_once(engine, target, check).await;
        let elapsed = started.elapsed();
        let _ = events.send(ProbeEvent {
            check: index,
            attempt,
            elapsed,
            result: result.clone(),
        });
        if result.passed || elapsed + check.interval.get() > give_up {
            return CheckOutcome {
                description: describe(check),
                passed: result.passed,
                attempts: attempt,
                elapsed_ms: elapsed.as_millis() as u64,
                last_output: result.output,
            };
        }
        tokio::time::sleep(check.interval.get()).await;
    }
}

/// Runs every check until all pass or one gives up.
pub async fn wait_healthy<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    checks: &[HealthCheck],
    on_probe: &mut dyn FnMut(&ProbeEvent),
) -> HealthOutcome {
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runs = checks
        .iter()
        .enumerate()
        .map(|(i, c)| run_check(engine, target, i, c, started, &tx));
    let all = futures_util::future::join_all(runs);
    tokio::pin!(all);
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut all => break outcomes,
            Some(event) = rx.recv() => on_probe(&event),
        }
    };
    while let Ok(event) = rx.try_recv() {
        on_probe(&event);
    }
    HealthOutcome {
        healthy: outcomes.iter().all(|o| o.passed),
        checks: outcomes,
    }
}
