//! Failure alerts: the spec's `notify` command and/or webhook receive a JSON
//! document when a deploy fails, is refused or rolls back. A notifier that fails
//! is reported as a warning and never changes the outcome of the deploy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::spec::NotifySpec;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `payload` to every notifier; returns one warning per notifier that failed.
pub fn send(notify: &NotifySpec, payload: &serde_json::Value) -> Vec<String> {
    let body = serde_json::to_vec_pretty(payload).expect("serialisable");
    let mut warnings = Vec::new();
    if let Some(cmd) = &notify.command
        && let Err(e) = run_command(cmd, &body)
    {
        warnings.push(format!("notify command {cmd:?} failed: {e}"));
    }
    if let Some(url) = &notify.webhook
        && let Err(e) = post(url, &body)
    {
        warnings.push(format!("notify webhook {url} failed: {e}"));
    }
    warnings
}

fn run_command(cmd: &[String], body: &[u8]) -> Result<(), String> {
    let (program, args) = cmd.split_first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A notifier that ignores its input is fine: a broken pipe is not a failure.
        let _ = stdin.write_all(body);
    }
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("{status}: {}", err.trim()));
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            return Err(format!(
                "still running after {}s, killed",
                TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// is supported")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: gemctl\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .and_then(|_| stream.write_all(body))
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status: u16 = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP reply ({:?})", reply.lines().next().unwrap_or("")))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}
