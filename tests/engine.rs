//! The engine gemctl talks to is the one `docker ps` would use: docker contexts
//! (made by the real docker CLI in a temporary DOCKER_CONFIG), DOCKER_HOST, TLS
//! that never falls back to plain HTTP, and engines on other machines refused.
//! Needs the docker CLI and the engine on its unix socket.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

/// The variables that choose an engine, cleared so that only each test's own count.
const ENGINE_VARS: [&str; 5] = [
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS_VERIFY",
    "DOCKER_TLS",
    "DOCKER_CERT_PATH",
];

/// A temporary DOCKER_CONFIG and a spec beside it; removed when dropped.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(project: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docker-config")).unwrap();
        // `scope: project`: other containers on the engine are not this test's.
        std::fs::write(
            dir.path().join("spec.yaml"),
            format!(
                "project: {project}\ngeneration: 1\nstorage: storage\nscope: project\n\
                 app: {{ image: \"example/app:1\" }}\ndb: {{ image: \"postgres:15\" }}\n"
            ),
        )
        .unwrap();
        Setup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    fn spec(&self) -> PathBuf {
        self.dir.path().join("spec.yaml")
    }

    /// `program args` with only `env` among the engine variables, and this
    /// setup's DOCKER_CONFIG.
    fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("DOCKER_CONFIG", self.config())
            .env("NO_COLOR", "1");
        for var in ENGINE_VARS {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        command.output().expect("runs")
    }

    fn docker(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run("docker", args, env)
    }

    fn docker_ok(&self, args: &[&str]) {
        let o = self.docker(args, &[]);
        assert!(o.status.success(), "docker {args:?}: {}", stderr(&o));
    }

    fn gemctl(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let spec = self.spec();
        let mut all = args.to_vec();
        all.extend(["-f", spec.to_str().unwrap()]);
        self.run(env!("CARGO_BIN_EXE_gemctl"), &all, env)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The engine's socket, as the test runner reaches it.
fn real_socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h,
        _ => "unix:///var/run/docker.sock".to_string(),
    }
}

#[test]
fn a_current_context_at_a_missing_socket_fails_as_docker_ps_does() {
    let s = Setup::new("engctxmiss");
    let missing = "unix:///nonexistent/gemctl-engine.sock";
    s.docker_ok(&[
        "context",
        "create",
        "gemctl-missing",
        "--docker",
        &format!("host={missing}"),
    ]);
    s.docker_ok(&["context", "use", "gemctl-missing"]);
    let docker_ps = s.docker(&["ps"], &[]);
    assert!(
        !docker_ps.status.success(),
        "docker ps: {}",
        stdout(&docker_ps)
    );
    assert!(
        stderr(&docker_ps).contains(missing),
        "{}",
        stderr(&docker_ps)
    );

    let o = s.gemctl(&["status"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot reach the Docker engine"), "{err}");
    assert!(err.contains(missing), "{err}");
    assert!(
        err.contains("context \"gemctl-missing\", the current one in the docker config"),
        "{err}"
    );
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));

    // DOCKER_HOST still wins over the current context, for both.
    let env = [("DOCKER_HOST", &*real_socket())];
    assert!(s.docker(&["ps"], &env).status.success());
    let o = s.gemctl(&["status"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stdout(&o).contains("(from DOCKER_HOST)"), "{}", stdout(&o));
}

#[test]
fn the_same_context_at_the_real_socket_works_and_status_names_it() {
    let s = Setup::new("engctxok");
    let socket = real_socket();
    s.docker_ok(&[
        "context",
        "create",
        "gemctl-real",
        "--docker",
        &format!("host={socket}"),
    ]);
    let env = [("DOCKER_CONTEXT", "gemctl-real")];
    assert!(s.docker(&["ps"], &env).status.success());

    // Nothing deployed yet: `apply` would act (exit 2), read from that engine.
    let o = s.gemctl(&["status", "-o", "json"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["engine"],
        serde_json::json!({
            "endpoint": socket,
            "context": "gemctl-real",
            "source": "DOCKER_CONTEXT",
            "tls": false
        })
    );

    s.docker_ok(&["context", "use", "gemctl-real"]);
    let o = s.gemctl(&["status"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let line =
        format!("engine: {socket} (context \"gemctl-real\", the current one in the docker config)");
    assert!(stdout(&o).contains(&line), "{}", stdout(&o));
}

#[test]
fn tls_with_missing_certificates_fails_naming_the_file_and_never_tries_plain_http() {
    let s = Setup::new("engtls");
    // Something listening where the engine would be: gemctl must not even
    // connect, let alone speak plain HTTP to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let host = format!("tcp://{}", listener.local_addr().unwrap());
    let env = [
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_CERT_PATH", "/nonexistent"),
    ];
    let o = s.gemctl(&["status"], &env);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("/nonexistent/ca.pem, which does not exist"),
        "{err}"
    );
    assert!(err.contains("DOCKER_CERT_PATH"), "{err}");
    assert!(err.contains("never falls back to plain HTTP"), "{err}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "gemctl connected to {host}"
    );

    // The same for a context with a CA but no client certificate.
    let ca = s.dir.path().join("ca.pem");
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&ca, made.cert.pem()).unwrap();
    s.docker_ok(&[
        "context",
        "create",
        "gemctl-tls",
        "--docker",
        &format!("host={host},ca={}", ca.display()),
    ]);
    let o = s.gemctl(&["status"], &[("DOCKER_CONTEXT", "gemctl-tls")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cert.pem, which does not exist"), "{err}");
    assert!(err.contains("docker context update gemctl-tls"), "{err}");
    assert!(listener.accept().is_err(), "gemctl connected to {host}");
}

#[test]
fn an_engine_on_another_machine_is_refused_before_any_connection() {
    let s = Setup::new("engremote");
    // 192.0.2.0/24 is TEST-NET-1: nothing answers there.
    for (host, ssh) in [
        ("tcp://192.0.2.7:2376", "ssh 192.0.2.7 gemctl"),
        ("ssh://ops@192.0.2.7", "ssh 192.0.2.7 gemctl"),
    ] {
        for command in ["status", "apply", "diff", "logs"] {
            let o = s.gemctl(&[command], &[("DOCKER_HOST", host)]);
            assert_eq!(o.status.code(), Some(1), "{command}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(&format!("{host} (from DOCKER_HOST)")), "{err}");
            assert!(err.contains("not on this machine"), "{err}");
            assert!(err.contains(ssh), "{err}");
        }
    }
    // The refusal comes before the lock: nothing was made on this machine.
    let storage = s.dir.path().join("storage");
    assert!(
        !storage.exists(),
        "a refused apply made {}",
        storage.display()
    );
    // A context pointing elsewhere is refused the same way.
    s.docker_ok(&[
        "context",
        "create",
        "gemctl-far",
        "--docker",
        "host=tcp://192.0.2.7:2375",
    ]);
    let o = s.gemctl(&["status"], &[("DOCKER_CONTEXT", "gemctl-far")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("context \"gemctl-far\" from DOCKER_CONTEXT"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_context_that_does_not_exist_says_how_to_list_them() {
    let s = Setup::new("engnone");
    let o = s.gemctl(&["status"], &[("DOCKER_CONTEXT", "gemctl-nowhere")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("docker context \"gemctl-nowhere\""), "{err}");
    assert!(err.contains("docker context ls"), "{err}");
    assert!(
        err.contains(
            &Path::new(&s.config())
                .join("contexts/meta")
                .display()
                .to_string()
        ),
        "{err}"
    );
}

/// A CA, and the certificates it signed for the engine (127.0.0.1) and for a
/// client, as PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gemctl test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let signed = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = signed(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = signed(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// An engine serving TLS on the loopback, as `dockerd --tlsverify` does: a TLS
/// front for the real socket that asks for a client certificate signed by the
/// CA. Its threads end with the test process.
fn tls_engine(pki: &Pki) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap(),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = real_socket().trim_start_matches("unix://").to_string();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            let socket = socket.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let _ = relay(rustls::StreamOwned::new(conn, tcp), &socket);
            });
        }
    });
    addr
}

/// Carries bytes both ways between a TLS client and the engine's socket, polling
/// each side in turn, until either closes.
fn relay(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    socket: &str,
) -> std::io::Result<()> {
    let tick = Some(Duration::from_millis(5));
    tls.sock.set_read_timeout(tick)?;
    let mut engine = UnixStream::connect(socket)?;
    engine.set_read_timeout(tick)?;
    let mut buf = vec![0u8; 64 * 1024];
    let idle = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => engine.write_all(&buf[..n])?,
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
        match engine.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
            }
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn tls_with_the_certificates_reaches_the_engine_and_verifies_it() {
    let s = Setup::new("engtlsok");
    let engine_pki = pki();
    let addr = tls_engine(&engine_pki);
    let host = format!("tcp://{addr}");
    let certs = s.dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    for (file, pem) in [
        ("ca.pem", &engine_pki.ca),
        ("cert.pem", &engine_pki.client_cert),
        ("key.pem", &engine_pki.client_key),
    ] {
        std::fs::write(certs.join(file), pem).unwrap();
    }
    let env = [
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_CERT_PATH", certs.to_str().unwrap()),
    ];
    let docker_ps = s.docker(&["ps"], &env);
    assert!(docker_ps.status.success(), "{}", stderr(&docker_ps));
    let o = s.gemctl(&["status", "-o", "json"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["engine"],
        serde_json::json!({
            "endpoint": host,
            "context": "default",
            "source": "DOCKER_HOST",
            "tls": true
        })
    );

    // A context with the same material, made by the docker CLI.
    s.docker_ok(&[
        "context",
        "create",
        "gemctl-tls-ok",
        "--docker",
        &format!(
            "host={host},ca={0}/ca.pem,cert={0}/cert.pem,key={0}/key.pem",
            certs.display()
        ),
    ]);
    let env = [("DOCKER_CONTEXT", "gemctl-tls-ok")];
    let o = s.gemctl(&["status"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let line = format!("engine: {host} (context \"gemctl-tls-ok\" from DOCKER_CONTEXT, TLS)");
    assert!(stdout(&o).contains(&line), "{}", stdout(&o));

    // An engine whose certificate another CA signed is not trusted.
    let other = pki();
    std::fs::write(certs.join("ca.pem"), &other.ca).unwrap();
    let env = [
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_CERT_PATH", certs.to_str().unwrap()),
    ];
    let o = s.gemctl(&["status"], &env);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("cannot reach the Docker engine at {host}")),
        "{err}"
    );
    assert!(
        err.contains("invalid peer certificate"),
        "the cause is shown: {err}"
    );
}
