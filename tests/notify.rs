//! The webhook over https, end to end: gemctl's binary POSTs its alert to a local
//! TLS listener whose certificate is made here. An apply against an unreachable
//! engine is the alert (no engine needed); the listener is on the loopback only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A self-signed certificate for 127.0.0.1: (certificate PEM, rustls server config).
fn certificate() -> (String, Arc<rustls::ServerConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)
    .unwrap();
    (made.cert.pem(), Arc::new(config))
}

/// Serves one connection over TLS on 127.0.0.1: its port, and what it received
/// (the request's head and body), or `None` when no request came through TLS
/// within 30 s.
fn tls_receiver(config: Arc<rustls::ServerConfig>) -> (u16, JoinHandle<Option<(String, String)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let tcp = loop {
            match listener.accept() {
                Ok((tcp, _)) => break tcp,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return None,
            }
        };
        tcp.set_nonblocking(false).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            // A handshake the client refused ends here, with nothing received.
            let n = tls.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                    let _ = tls.flush();
                    return Some((head.to_string(), body.to_string()));
                }
            }
        }
    });
    (port, handle)
}

/// A spec in `dir` whose engine cannot be reached, so `apply` fails and alerts
/// through `notify` (YAML lines under `notify:`).
fn write_spec(dir: &Path, notify: &str) -> std::path::PathBuf {
    let spec = dir.join("spec.yaml");
    let mut text = "project: hooky\ngeneration: 1\nstorage: storage\n\
                    app: { image: \"example/app:1\" }\ndb: { image: \"postgres:15\" }\n"
        .to_string();
    if !notify.is_empty() {
        text.push_str(&format!("notify:\n{notify}"));
    }
    std::fs::write(&spec, text).unwrap();
    spec
}

fn apply(spec: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["apply", "-f", spec.to_str().unwrap()])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn an_https_webhook_is_posted_over_tls_to_a_server_whose_ca_the_spec_names() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, config) = certificate();
    std::fs::write(dir.path().join("hook-ca.pem"), pem).unwrap();
    let (port, receiver) = tls_receiver(config);
    // A relative CA path is read from beside the spec, wherever gemctl runs.
    let spec = write_spec(
        dir.path(),
        &format!("  webhook: \"https://127.0.0.1:{port}/alerts\"\n  webhook_ca: hook-ca.pem\n"),
    );
    let o = apply(&spec);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning: notify"), "{}", stderr(&o));
    let (head, body) = receiver.join().unwrap().expect("a request over TLS");
    assert!(head.starts_with("POST /alerts HTTP/1.1"), "{head}");
    let alert: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["event"], "failed");
    assert_eq!(alert["project"], "hooky");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the Docker engine"),
        "{alert}"
    );
}

#[test]
fn an_untrusted_webhook_certificate_is_a_clear_warning_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let without = apply(&write_spec(dir.path(), ""));
    assert_eq!(without.status.code(), Some(1), "{}", stderr(&without));

    // Mozilla's roots (no CA named), then a CA that did not sign the server's certificate.
    let (other_ca, _) = certificate();
    std::fs::write(dir.path().join("other-ca.pem"), other_ca).unwrap();
    for ca in ["", "  webhook_ca: other-ca.pem\n"] {
        let (_, config) = certificate();
        let (port, receiver) = tls_receiver(config);
        let heard = dir.path().join("heard.json");
        let _ = std::fs::remove_file(&heard);
        let spec = write_spec(
            dir.path(),
            &format!(
                "  command: [\"sh\", \"-c\", \"cat > {}\"]\n  webhook: \"https://127.0.0.1:{port}/alerts\"\n{ca}",
                heard.display()
            ),
        );
        let o = apply(&spec);
        let err = stderr(&o);
        assert_eq!(o.status.code(), without.status.code(), "{err}");
        assert_eq!(o.stdout, without.stdout);
        assert!(
            err.contains(&format!(
                "warning: notify webhook https://127.0.0.1:{port}/alerts failed: TLS: invalid peer certificate"
            )) && err.contains("notify.webhook_ca")
                && err.contains("(the outcome it reports stands)"),
            "{err}"
        );
        assert!(
            receiver.join().unwrap().is_none(),
            "no request without trust"
        );
        // The other notifier is not held back by the failing one.
        let alert: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&heard).unwrap()).unwrap();
        assert_eq!(alert["event"], "failed");
    }
}

#[test]
fn a_webhook_that_is_not_http_or_https_and_a_ca_without_an_https_webhook_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "  webhook: \"ftp://127.0.0.1/alerts\"\n");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("  webhook_ca: ca.pem\n");
    std::fs::write(&spec, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["validate", "-f", spec.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "notify.webhook: \"ftp://127.0.0.1/alerts\": a webhook is an http:// or https:// URL"
        ),
        "{err}"
    );
    assert!(
        err.contains("notify.webhook_ca: a CA file is for an https:// webhook"),
        "{err}"
    );
}
