//! Clients that keep using the app through a cut-over and record every outcome
//! (refused, failed, answered), for the real-engine tests of the front door and
//! of app-only releases.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Project, wait_until};

/// What one attempt through the front came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as the app answers (an acknowledged write, an `OK` report).
    Ok,
    /// The connection was refused: nothing listened on the public port.
    Refused,
    /// Anything else, with what was seen.
    Failed(String),
}

/// Every outcome of a client that keeps going until told to stop.
pub struct Client {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Outcome, Duration)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    pub fn start(every: Duration, attempt: impl Fn() -> Outcome + Send + 'static) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let outcome = attempt();
                    seen.lock().unwrap().push((outcome, started.elapsed()));
                    std::thread::sleep(every);
                }
            })
        };
        Client {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops the client; every outcome, in order.
    pub fn finish(mut self) -> Vec<(Outcome, Duration)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub fn connect(port: u16) -> Result<TcpStream, Outcome> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        if e.kind() == ErrorKind::ConnectionRefused {
            Outcome::Refused
        } else {
            Outcome::Failed(format!("connect: {e}"))
        }
    })
}

/// One `POST /rows?n=1` through the front's HTTP port; held requests may wait.
pub fn post(port: u16) -> Outcome {
    let mut s = match connect(port) {
        Ok(s) => s,
        Err(o) => return o,
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let request =
        b"POST /rows?n=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if let Err(e) = s.write_all(request) {
        return Outcome::Failed(format!("write: {e}"));
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    if out.starts_with("HTTP/1.1 200") {
        Outcome::Ok
    } else {
        Outcome::Failed(out.chars().take(400).collect())
    }
}

/// One report over the front's TCP port: a fresh connection, `status`, one line.
pub fn report(port: u16) -> Outcome {
    let mut s = match connect(port) {
        Ok(s) => s,
        Err(o) => return o,
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    if let Err(e) = s.write_all(b"status\n") {
        return Outcome::Failed(format!("write: {e}"));
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    if out.starts_with("OK ") {
        Outcome::Ok
    } else {
        Outcome::Failed(format!("answered {:?}", out.trim()))
    }
}

/// The outcomes that were not `Ok`, and the longest attempt.
pub fn summary(name: &str, seen: &[(Outcome, Duration)]) -> (Vec<Outcome>, Duration) {
    let bad: Vec<Outcome> = seen
        .iter()
        .filter(|(o, _)| *o != Outcome::Ok)
        .map(|(o, _)| o.clone())
        .collect();
    let longest = seen.iter().map(|(_, d)| *d).max().unwrap_or_default();
    eprintln!(
        "{name}: {} attempts, {} not ok, longest {:.2}s",
        seen.len(),
        bad.len(),
        longest.as_secs_f64()
    );
    (bad, longest)
}

/// The generation whose app answers through the front. A front just (re)started
/// may take a moment to listen behind Docker's proxy, which accepts and closes
/// meanwhile: an empty answer is asked again.
pub fn serving_generation(p: &Project) -> String {
    let mut r = String::new();
    wait_until(
        "an answer through the front",
        Duration::from_secs(20),
        || {
            r = tcp_line(p.tcp);
            !r.is_empty()
        },
    );
    r.split_whitespace()
        .find_map(|w| w.strip_prefix("gen="))
        .unwrap_or_else(|| panic!("no gen= in {r:?}"))
        .to_string()
}

/// The one line the front's TCP port answers to `status`.
pub fn tcp_line(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(b"status\n").is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.trim().to_string()
}

/// Asserts that no write and no report through the front failed or was refused
/// (showing the front's last log lines when one did); the longest write.
pub fn assert_none_failed(
    p: &Project,
    writes: &[(Outcome, Duration)],
    reports: &[(Outcome, Duration)],
) -> Duration {
    let (bad_writes, longest) = summary("HTTP writes", writes);
    let (bad_reports, _) = summary("TCP reports", reports);
    if !bad_writes.is_empty() || !bad_reports.is_empty() {
        eprintln!(
            "{}",
            super::docker_ok(&["logs", "--tail", "300", &p.front()])
        );
    }
    assert!(bad_writes.is_empty(), "failed writes: {bad_writes:?}");
    assert!(bad_reports.is_empty(), "failed reports: {bad_reports:?}");
    longest
}
