//! Failure alerts: the spec's `notify` command and/or webhook receive a JSON
//! document when a deploy fails, is refused or rolls back. A notifier that fails
//! is reported as a warning and never changes the outcome of the deploy.
//!
//! The webhook is POSTed with `ureq` over http or https (rustls, Mozilla's roots
//! or the spec's `webhook_ca`); the command runs under tokio with a timeout. Not
//! for deciding what to send: the caller builds the payload.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::spec::NotifySpec;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `payload` to every notifier; returns one warning per notifier that failed.
pub fn send(notify: &NotifySpec, payload: &serde_json::Value) -> Vec<String> {
    let body = serde_json::to_vec_pretty(payload).expect("serialisable");
    let mut warnings = Vec::new();
    if let Some(cmd) = &notify.command
        && let Err(e) = run_command(cmd, &body, TIMEOUT)
    {
        warnings.push(format!("notify command {cmd:?} failed: {e}"));
    }
    if let Some(url) = &notify.webhook
        && let Err(e) = post(url, notify.webhook_ca.as_deref(), &body)
    {
        warnings.push(format!("notify webhook {url} failed: {e}"));
    }
    warnings
}

/// Runs the command with `body` on its standard input; it must exit 0 within
/// `timeout`, or it is killed. Writing the input and reading its error output
/// happen under the timeout too, so a notifier that reads nothing or writes much
/// cannot hang the deploy.
fn run_command(cmd: &[String], body: &[u8], timeout: Duration) -> Result<(), String> {
    let (program, args) = cmd.split_first().ok_or("empty command")?;
    // Called from synchronous code (between rounds, after an apply): a runtime of
    // its own, on this thread, for the length of the command.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut stdin = child.stdin.take().expect("piped");
        let finished = tokio::time::timeout(timeout, async {
            // A notifier that ignores its input is fine: a broken pipe is not a failure.
            let _ = stdin.write_all(body).await;
            drop(stdin);
            child.wait_with_output().await
        })
        .await;
        match finished {
            Err(_) => Err(format!(
                "still running after {}, killed",
                humantime::format_duration(timeout)
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    })
}

/// POSTs `body` to `url`; any reply but 2xx is a failure (redirects are not
/// followed, proxies from the environment are not used: the webhook is reached
/// as the spec names it).
fn post(url: &str, ca: Option<&Path>, body: &[u8]) -> Result<(), String> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(ca) = ca {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(read_ca(ca)?)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .user_agent("gemctl")
        .tls_config(tls.build())
        .build()
        .into();
    let reply = agent
        .post(url)
        .content_type("application/json")
        .send(body)
        .map_err(|e| match tls_error(&e) {
            Some(tls) => format!(
                "TLS: {tls}; if the server's certificate is signed by a private CA, name the \
                 CA's PEM file in notify.webhook_ca"
            ),
            None => e.to_string(),
        })?;
    let status = reply.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

/// The TLS failure behind a request's error, if that is what it is.
fn tls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref()?.downcast_ref(),
        _ => None,
    }
}

/// The certificates of a PEM file, which must hold at least one.
fn read_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read notify.webhook_ca {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("notify.webhook_ca {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "notify.webhook_ca {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn a_notifier_command_hears_the_body_and_its_failure_names_status_and_error_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let cmd = sh(&format!("cat > {}", out.display()));
        run_command(&cmd, b"{\"event\": \"failed\"}", TIMEOUT).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"event\": \"failed\"}"
        );
        let err = run_command(&sh("echo no route >&2; exit 3"), b"{}", TIMEOUT).unwrap_err();
        assert!(
            err.contains("exit status: 3") && err.contains("no route"),
            "{err}"
        );
        let err = run_command(&["/nonexistent/notifier".into()], b"{}", TIMEOUT).unwrap_err();
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn a_hung_notifier_that_reads_no_input_is_killed_at_the_timeout() {
        // More than a pipe holds: writing it used to block before the timeout began.
        let body = vec![b'x'; 1 << 20];
        let started = Instant::now();
        let err = run_command(&sh("sleep 30"), &body, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("still running after 300ms, killed"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_notifier_with_much_error_output_is_not_taken_for_a_hung_one() {
        // More than a pipe holds: unread, it used to stall the command until killed.
        let started = Instant::now();
        let err = run_command(
            &sh("head -c 200000 /dev/zero | tr '\\0' e >&2; exit 5"),
            b"{}",
            Duration::from_secs(20),
        )
        .unwrap_err();
        assert!(err.starts_with("exit status: 5: eeee"), "{}", &err[..40]);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
