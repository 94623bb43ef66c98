//! The `gemctl` binary: validation messages, the schema, and `diff` exit codes
//! against saved observations (no engine needed).

mod support;

use std::path::Path;
use std::process::{Command, Output};

use gemctl::observed::{Observation, Observed};
use gemctl::spec::Spec;

fn gemctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DOCKER_HOST")
        .output()
        .expect("gemctl runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bad_specs_are_reported_with_file_line_column_and_field() {
    let cases = [
        ("malformed", "malformed.yaml:8:8: not valid YAML"),
        (
            "unknown-field",
            "unknown-field.yaml:3:1: unknown field `retian` (did you mean `retain`?)",
        ),
        (
            "unknown-nested-field",
            "unknown-nested-field.yaml:13:9: app.health[0].tcp: unknown field `expcet`",
        ),
        (
            "bad-duration",
            "bad-duration.yaml:14:16: app.health[0].timeout: \"5 sekunden\" is not a duration (try \"5s\")",
        ),
        (
            "missing-tag",
            "missing-tag.yaml:6:10: app.image: \"gemctl-test/app\" has no tag",
        ),
        (
            "negative-generation",
            "negative-generation.yaml:2:13: generation: -3 is not a generation",
        ),
        (
            "zero-generation",
            "zero-generation.yaml:2:13: generation: 0 is not a generation",
        ),
        (
            "retain-zero",
            "retain-zero.yaml:3:9: retain: 0 generations cannot be retained",
        ),
        (
            "port-clash",
            "port-clash.yaml:9:7: app.ports[1]: host port 18080/tcp on 127.0.0.1 is already taken",
        ),
        (
            "health-port-not-exposed",
            "health-port-not-exposed.yaml:12:9: app.health[0].tcp.port: port 7001 is not among app.ports",
        ),
        (
            "zero-timeout",
            "zero-timeout.yaml:14:7: app.health[0].timeout: timeout must be longer than 0s",
        ),
        ("empty", "empty.yaml: the spec is empty"),
    ];
    for (name, expected) in cases {
        let file = format!("tests/specs/bad/{name}.yaml");
        let o = gemctl(&["validate", "-f", &file]);
        assert_eq!(code(&o), 1, "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(expected),
            "{name}: got {:?}",
            stderr(&o)
        );
    }
}

#[test]
fn a_stack_s_mistakes_are_each_named_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("stack.yaml");
    std::fs::write(
        &spec,
        r#"project: shop
generation: 1
storage: /srv/shop
app:
  image: "example/shop:1"
services:
  worker:
    image: "example/shop:1"
    replicas: 0
    depends_on: [queue]
  Cache:
    image: "redis:7"
  beat:
    image: "example/shop:1"
    depends_on: [clock]
  clock:
    image: "example/shop:1"
    depends_on: [beat]
    settle: 0s
db:
  image: "postgres:15"
"#,
    )
    .unwrap();
    let o = gemctl(&["validate", "-f", spec.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    for (line, what) in [
        (9, "services.worker.replicas: 0: between 1 and 16 replicas"),
        (
            10,
            "services.worker.depends_on[0]: \"queue\" is not a service",
        ),
        (11, "services.Cache: \"Cache\" is not a valid service name"),
        (
            15,
            "services.beat.depends_on: the services depend on each other in a circle",
        ),
        (19, "services.clock.settle: a service without health checks"),
    ] {
        let at = format!("stack.yaml:{line}:");
        assert!(
            err.lines().any(|l| l.contains(&at) && l.contains(what)),
            "{at} {what}\n{err}"
        );
    }
}

#[test]
fn example_specs_start_with_the_schema_line_and_validate() {
    // prod.yaml names env files under /etc/gemctl that only its host has.
    for (file, flags) in [
        ("specs/prod.yaml", &["--no-env-files"][..]),
        ("specs/demo.yaml", &[][..]),
        ("specs/demo-front.yaml", &[][..]),
        ("specs/demo-stack.yaml", &[][..]),
        ("tests/specs/shop-gen1.yaml", &[][..]),
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .starts_with("# yaml-language-server: $schema="),
            "{file}"
        );
        let mut args = vec!["validate", "-f", file];
        args.extend(flags);
        let o = gemctl(&args);
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        assert!(stdout(&o).contains("valid"));
    }
    let o = gemctl(&["validate", "-f", "specs/prod.yaml"]);
    assert_eq!(code(&o), 1, "the env files are read without the flag");
    assert!(
        stderr(&o)
            .contains("specs/prod.yaml:50:13: app.env_file: /etc/gemctl/gem.env: no such file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn committed_schema_matches_the_spec_types() {
    let committed = std::fs::read_to_string("schema/gemctl.schema.json").unwrap();
    assert!(
        committed == gemctl::cli::schema_json(),
        "schema/gemctl.schema.json is stale: run `cargo run -- schema > schema/gemctl.schema.json`"
    );
    let o = gemctl(&["schema"]);
    assert_eq!(stdout(&o), committed);
}

/// The saved observations are what the fake engine makes of the specs; regenerate
/// them with `GEMCTL_UPDATE_FIXTURES=1 cargo test --test cli`.
fn fixtures() -> Vec<(&'static str, Observed)> {
    let gen1 = Spec::load(Path::new("tests/specs/shop-gen1.yaml")).unwrap();
    let converged = support::deployed_with(&[gen1]);
    let mut stranger = converged.clone();
    stranger.containers.push(gemctl::observed::Container {
        name: "redis".into(),
        id: "id-redis".into(),
        image: "redis:7".into(),
        labels: Default::default(),
        state: gemctl::observed::ContainerState::Running,
        health: None,
        ports: vec!["0.0.0.0:6379->6379/tcp".into()],
        created: None,
    });
    vec![
        ("shop-gen1.json", converged),
        ("shop-stranger.json", stranger),
    ]
}

#[test]
fn saved_observations_are_current() {
    for (file, observed) in fixtures() {
        let path = Path::new("tests/observed").join(file);
        let text = serde_json::to_string_pretty(&Observation {
            observed,
            history: Default::default(),
        })
        .unwrap()
            + "\n";
        if std::env::var_os("GEMCTL_UPDATE_FIXTURES").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "{file} is stale"
        );
    }
}

#[test]
fn diff_exit_codes_follow_the_contract() {
    let in_sync = gemctl(&[
        "diff",
        "-f",
        "tests/specs/shop-gen1.yaml",
        "--observed",
        "tests/observed/shop-gen1.json",
    ]);
    assert_eq!(code(&in_sync), 0, "{}", stderr(&in_sync));
    assert!(stdout(&in_sync).contains("Nothing to do."));

    let pending = gemctl(&[
        "diff",
        "-f",
        "tests/specs/shop-gen2.yaml",
        "--observed",
        "tests/observed/shop-gen1.json",
    ]);
    assert_eq!(code(&pending), 2, "{}", stderr(&pending));
    let text = stdout(&pending);
    assert!(
        text.contains("project shop: live generation 1, spec wants generation 2"),
        "{text}"
    );
    assert!(text.contains("upgrade 1 → 2"));
    assert!(
        text.contains(" 4. ~ copy data of generation 1 into generation 2"),
        "{text}"
    );
    assert!(
        text.contains("--- gem-1 (observed)") && text.contains("+++ gem-2 (desired)"),
        "{text}"
    );
    assert!(text.contains("-image: example/shop:v1") && text.contains("+image: example/shop:v2"));
    assert!(text.contains("Plan: 2 to start, 2 to stop, 0 to remove, 1 data copy"));
    assert!(
        !text.contains('\x1b'),
        "no colours when NO_COLOR is set / not a terminal"
    );

    let refused = gemctl(&[
        "diff",
        "-f",
        "tests/specs/shop-gen1.yaml",
        "--observed",
        "tests/observed/shop-stranger.json",
    ]);
    assert_eq!(code(&refused), 3, "{}", stderr(&refused));
    assert!(
        stdout(&refused)
            .contains("redis (redis:7, running) is on this host but not part of project shop")
    );
    assert!(stdout(&refused).contains("Nothing was touched."));
}

#[test]
fn diff_json_is_the_same_plan_for_scripts() {
    let o = gemctl(&[
        "diff",
        "-f",
        "tests/specs/shop-gen2.yaml",
        "--observed",
        "tests/observed/shop-gen1.json",
        "--output",
        "json",
    ]);
    assert_eq!(code(&o), 2);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "changes");
    assert_eq!(v["plan"]["kind"]["kind"], "upgrade");
    assert_eq!(v["plan"]["kind"]["from"], 1);
    assert_eq!(v["plan"]["steps"][3]["action"], "copy_data");
    assert_eq!(v["summary"]["copy"], 1);

    let o = gemctl(&[
        "diff",
        "-f",
        "tests/specs/shop-gen1.yaml",
        "--observed",
        "tests/observed/shop-stranger.json",
        "-o",
        "json",
    ]);
    assert_eq!(code(&o), 3);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "refused");
    assert_eq!(v["refusal"]["problems"][0]["container"], "redis");
}

#[test]
fn unreachable_engine_is_an_error_with_exit_1() {
    let o = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["diff", "-f", "tests/specs/shop-gen1.yaml"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("cannot reach the Docker engine"),
        "{}",
        stderr(&o)
    );
}

/// The smallest valid spec for `project`, written into `dir`.
fn minimal_spec(dir: &Path, project: &str) -> std::path::PathBuf {
    let spec = dir.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "project: {project}\ngeneration: 1\nstorage: storage\n\
             app: {{ image: \"example/app:1\" }}\ndb: {{ image: \"postgres:15\" }}\n"
        ),
    )
    .unwrap();
    spec
}

#[test]
fn help_documents_the_exit_codes() {
    let o = gemctl(&["diff", "--help"]);
    let text = stdout(&o);
    for line in [
        "0  in sync",
        "2  changes pending",
        "3  refused",
        "1  any other error",
    ] {
        assert!(text.contains(line), "{text}");
    }
}

#[test]
fn unlock_asks_for_the_project_name_before_removing_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let spec = minimal_spec(dir.path(), "locky");
    let lock = dir.path().join("storage/.gemctl/lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(
        &lock,
        r#"{"pid":4242,"user":"ops","host":"elsewhere","command":"gemctl apply","since":"2026-11-23T00:00:00Z"}"#,
    )
    .unwrap();
    let unlock = |answer: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_gemctl"))
            .args(["unlock", "-f", spec.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = unlock("yes\n");
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("pid 4242 (ops@elsewhere)"),
        "{}",
        stdout(&o)
    );
    assert!(lock.exists(), "kept without the project name");
    let o = unlock("locky\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!lock.exists());
    let o = unlock("");
    assert!(stdout(&o).contains("not locked"));
}

#[test]
fn every_command_explains_its_exit_codes_in_help() {
    for command in [
        "validate",
        "schema",
        "observe",
        "diff",
        "apply",
        "status",
        "logs",
        "history",
        "rollback",
        "unpin",
        "unlock",
        "reconcile",
        "init",
        "completions",
        "man",
    ] {
        let o = gemctl(&[command, "--help"]);
        assert_eq!(code(&o), 0);
        assert!(
            stdout(&o).to_lowercase().contains("exit codes"),
            "{command} --help says nothing of exit codes"
        );
    }
}

/// A spec in its own directory, written from `body` (the fields after `project`).
fn spec_file(dir: &Path, body: &str) -> String {
    let path = dir.join("spec.yaml");
    std::fs::write(&path, format!("project: v\ngeneration: 1\n{body}")).unwrap();
    path.to_str().unwrap().to_string()
}

const APP_DB: &str = "app:\n  image: example/app:1\ndb:\n  image: postgres:15\n";

#[test]
fn validate_refuses_storage_root_slash() {
    let dir = tempfile::tempdir().unwrap();
    let depth = dir.path().components().count();
    let up = vec![".."; depth].join("/");
    for (storage, shown) in [
        ("/", "/"),
        ("/var", "/var"),
        ("/tmp/", "/tmp"),
        ("/usr/../etc", "/etc"),
        (up.as_str(), "/"),
    ] {
        let spec = spec_file(dir.path(), &format!("storage: {storage}\n{APP_DB}"));
        let o = gemctl(&["validate", "-f", &spec]);
        assert_eq!(code(&o), 1, "{storage}: {}", stderr(&o));
        let expected = format!("spec.yaml:3:10: storage: the storage root is {shown}:");
        assert!(stderr(&o).contains(&expected), "{storage}: {}", stderr(&o));
    }
    for storage in ["/var/lib/gemctl/v", "data", "/tmp/gemctl-v"] {
        let spec = spec_file(dir.path(), &format!("storage: {storage}\n{APP_DB}"));
        let o = gemctl(&["validate", "-f", &spec]);
        assert_eq!(code(&o), 0, "{storage}: {}", stderr(&o));
    }
}

#[test]
fn validate_refuses_the_same_host_port_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"["127.0.0.1:18080:8080", "0.0.0.0:18080:7000"]"#, true),
        (r#"["18080:8080", "127.0.0.1:18080:7000"]"#, true),
        (r#"["127.0.0.1:18080:8080", "18080:7000"]"#, true),
        (r#"["18080:8080", "18080:8080"]"#, true),
        (r#"["127.0.0.1:18080:8080", "127.0.0.2:18080:7000"]"#, false),
        (r#"["53:53/udp", "53:53"]"#, false),
        (r#"["8080", "8080"]"#, false),
    ];
    for (ports, clash) in cases {
        let spec = spec_file(
            dir.path(),
            &format!(
                "storage: s\napp:\n  image: example/app:1\n  ports: {ports}\ndb:\n  image: postgres:15\n"
            ),
        );
        let o = gemctl(&["validate", "-f", &spec]);
        if clash {
            assert_eq!(code(&o), 1, "{ports}");
            let column = ports.find(", ").unwrap() + 12;
            let expected = format!("spec.yaml:6:{column}: app.ports[1]: host port 18080/tcp on ");
            assert!(stderr(&o).contains(&expected), "{ports}: {}", stderr(&o));
            assert!(stderr(&o).contains("is already taken by app.ports[0]"));
        } else {
            assert_eq!(code(&o), 0, "{ports}: {}", stderr(&o));
        }
    }
}

#[test]
fn validate_refuses_an_integer_port() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(
        dir.path(),
        "storage: s\napp:\n  image: example/app:1\n  ports:\n    - \"7000:7000\"\n    - 8080\ndb:\n  image: postgres:15\n",
    );
    let o = gemctl(&["validate", "-f", &spec]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(
            "spec.yaml:8:7: app.ports[1]: 8080 is a number, not a port mapping: quote it, e.g. \"8080:8080\""
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn validate_refuses_env_file_missing_directory_or_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dir.env")).unwrap();
    std::fs::write(dir.path().join("latin1.env"), b"OK=1\nNAME=Jos\xe9\n").unwrap();
    std::fs::write(
        dir.path().join("lines.env"),
        "# comment\n\nexport A=1\nno equals sign\nBAD KEY=1\n=1\n",
    )
    .unwrap();
    let cases = [
        (
            "missing.env",
            "spec.yaml:6:13: app.env_file: ",
            "missing.env: no such file",
        ),
        (
            "dir.env",
            "spec.yaml:6:13: app.env_file: ",
            "dir.env: is a directory",
        ),
        (
            "latin1.env",
            "latin1.env:2:9: app.env_file: this line is not UTF-8 text",
            "",
        ),
        (
            "lines.env",
            "lines.env:4:1: app.env_file: this line has no '='",
            "lines.env:5:4: app.env_file: the name before '=' contains a space",
        ),
    ];
    for (file, first, second) in cases {
        let spec = spec_file(
            dir.path(),
            &format!(
                "storage: s\napp:\n  image: example/app:1\n  env_file: {file}\ndb:\n  image: postgres:15\n"
            ),
        );
        let o = gemctl(&["validate", "-f", &spec]);
        assert_eq!(code(&o), 1, "{file}");
        assert!(stderr(&o).contains(first), "{file}: {}", stderr(&o));
        assert!(stderr(&o).contains(second), "{file}: {}", stderr(&o));
        // The same checks stop every command that reads the spec, before the engine.
        let o = gemctl(&["diff", "-f", &spec]);
        assert_eq!(code(&o), 1, "{file}");
        assert!(stderr(&o).contains(first), "diff {file}: {}", stderr(&o));
        // Offline planning and --no-env-files do not read them.
        let o = gemctl(&["validate", "--no-env-files", "-f", &spec]);
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        assert!(stdout(&o).contains("env files not checked"));
        let o = gemctl(&[
            "diff",
            "-f",
            &spec,
            "--observed",
            "tests/observed/shop-gen1.json",
        ]);
        assert!(
            !stderr(&o).contains(file),
            "diff --observed {file}: {}",
            stderr(&o)
        );
    }
    let o = gemctl(&[
        "validate",
        "-f",
        &spec_file(
            dir.path(),
            "storage: s\napp:\n  image: example/app:1\n  env_file: lines.env\ndb:\n  image: postgres:15\n  env_file: lines.env\n",
        ),
    ]);
    assert_eq!(
        stderr(&o)
            .matches("lines.env:4:1: app.env_file, db.env_file: this line has no '='")
            .count(),
        1,
        "a file named twice is reported once: {}",
        stderr(&o)
    );
}

#[test]
fn validate_rejects_control_characters_without_echoing_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secrets.env"),
        b"POSTGRES_PASSWORD=hunter2\0tail\nPGPASSWORD=hunter2\rtail\r\nOTHER=hunter2\x1b[0m\nline-hunter2\nCRLF=fine\r\n",
    )
    .unwrap();
    let spec = spec_file(
        dir.path(),
        "storage: s\napp:\n  image: example/app:1\n  env:\n    TOKEN: \"hunter2\\0x\"\n    CERT: \"a\\nb\\tc\"\n  env_file: secrets.env\ndb:\n  image: postgres:15\n",
    );
    for args in [&["validate", "-f", &spec][..], &["apply", "-f", &spec][..]] {
        let o = gemctl(args);
        assert_eq!(code(&o), 1, "{args:?}");
        let err = stderr(&o);
        for expected in [
            "spec.yaml:7:5: app.env.TOKEN: the value contains a NUL byte at character 8",
            "secrets.env:1:26: app.env_file: the value of POSTGRES_PASSWORD contains a NUL byte",
            "secrets.env:2:19: app.env_file: the value of PGPASSWORD contains a carriage return",
            "secrets.env:3:14: app.env_file: the value of OTHER contains the control character U+001B",
            "secrets.env:4:1: app.env_file: this line has no '='",
        ] {
            assert!(
                err.contains(expected),
                "{args:?}: missing {expected:?} in {err}"
            );
        }
        assert!(
            !err.contains("CERT"),
            "a line break and a tab are allowed in env: {err}"
        );
        assert!(!err.contains("CRLF"), "a CRLF line end is allowed: {err}");
        assert!(
            !format!("{}{err}", stdout(&o)).contains("hunter2"),
            "{args:?} echoed the secret: {err}"
        );
    }
}

#[test]
fn validate_reports_every_problem_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.env"), "A=1\nB\n").unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(
        &path,
        "project: v
generation: 0
retian: 2
storage: /
app:
  image: example/app
  env_file: a.env
  ports:
    - 8080
    - \"127.0.0.1:18080:8080\"
    - \"18080:7000\"
  health:
    - tcp: { port: 7000 }
      timeout: 5 sekunden
db:
  image: postgres:15
  env_file: missing.env
  copy: teleport
",
    )
    .unwrap();
    let o = gemctl(&["validate", "-f", path.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    let expected = [
        "spec.yaml:2:13: generation: 0 is not a generation",
        "spec.yaml:3:1: retian: unknown field `retian` (did you mean `retain`?)",
        "spec.yaml:4:10: storage: the storage root is /",
        "spec.yaml:6:10: app.image: \"example/app\" has no tag",
        "spec.yaml:9:7: app.ports[0]: 8080 is a number",
        "spec.yaml:11:7: app.ports[2]: host port 18080/tcp on every address is already taken by app.ports[1]",
        "spec.yaml:14:16: app.health[0].timeout: \"5 sekunden\" is not a duration",
        "spec.yaml:17:13: db.env_file: ",
        "spec.yaml:18:9: db.copy: unknown variant `teleport`",
        "a.env:2:1: app.env_file: this line has no '='",
    ];
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.contains(want),
            "expected {want:?}, got {line:?}\n{err}"
        );
    }
    assert!(
        !err.contains("7000 is not among app.ports"),
        "the health port is not checked against a port list missing a bad item: {err}"
    );
}

#[test]
fn usage_errors_exit_1_not_2() {
    for args in [
        &[
            "diff",
            "--outptu",
            "json",
            "-f",
            "tests/specs/shop-gen1.yaml",
        ][..],
        &["diff", "-o", "yaml", "-f", "tests/specs/shop-gen1.yaml"][..],
        &["diff"][..],
        &["deploy"][..],
        &[][..],
    ] {
        let o = gemctl(args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} says what is wrong");
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    assert!(stderr(&gemctl(&["diff", "--outptu", "json"])).contains("--outptu"));
    for args in [
        &["--help"][..],
        &["--version"][..],
        &["diff", "--help"][..],
        &["help"][..],
    ] {
        let o = gemctl(args);
        assert_eq!(code(&o), 0, "{args:?}");
        assert!(!stdout(&o).is_empty(), "{args:?}");
    }
    let help = stdout(&gemctl(&["--help"]));
    for line in [
        "0  success",
        "1  any error: a bad spec or env file, bad arguments",
        "2  changes pending",
        "3  refused",
        "4  the new generation failed (its health checks or any step",
    ] {
        assert!(help.contains(line), "{help}");
    }
}

#[test]
fn reconcile_logs_written_to_a_file_carry_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = minimal_spec(dir.path(), "quiet");
    let log = dir.path().join("reconcile.log");
    // No NO_COLOR: the file alone must be enough to turn colours off.
    let o = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["reconcile", "--once", "-f", spec.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("round failed") && text.contains("reconcile round done"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// The commands `gemctl --help` lists, `help` aside.
fn help_commands() -> std::collections::BTreeSet<String> {
    let help = stdout(&gemctl(&["--help"]));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn readme_s_exit_code_table_has_the_codes_of_help() {
    let help = stdout(&gemctl(&["--help"]));
    let in_help: std::collections::BTreeSet<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Exit codes"))
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.chars().all(|ch| ch.is_ascii_digit()))
        .map(String::from)
        .collect();
    let readme = std::fs::read_to_string("README.md").unwrap();
    let table = readme
        .split("### Exit codes")
        .nth(1)
        .expect("README has an exit-code table");
    let in_readme: std::collections::BTreeSet<String> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()))
        .map(String::from)
        .collect();
    assert!(!in_help.is_empty());
    assert_eq!(
        in_readme, in_help,
        "README's exit codes and `gemctl --help` differ"
    );
}

#[test]
fn readme_lists_every_command_of_help() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let using = readme
        .split("## Using it")
        .nth(1)
        .expect("README has a \"Using it\" section");
    let listed: std::collections::BTreeSet<String> = using
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| l.trim().strip_prefix("gemctl "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(String::from)
        .collect();
    assert_eq!(
        listed,
        help_commands(),
        "README's command list (## Using it) and `gemctl --help` differ"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let o = gemctl(&["--version"]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        out.starts_with(&format!("gemctl {version} (commit ")),
        "{out}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output();
    match head {
        // Built from a git checkout (CI clones one): the commit is HEAD's.
        Ok(h) if h.status.success() => {
            let head = String::from_utf8_lossy(&h.stdout).trim().to_string();
            assert_eq!(out.trim(), format!("gemctl {version} (commit {head})"));
        }
        _ => assert!(out.contains("(commit unknown)"), "{out}"),
    }
    // Each command's --version says the same.
    let apply = stdout(&gemctl(&["apply", "--version"]));
    assert!(
        apply.contains(out.trim().trim_start_matches("gemctl ")),
        "{apply}"
    );
}

#[test]
fn bash_sources_the_bash_completions() {
    let o = gemctl(&["completions", "bash"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("gemctl.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    // Sourced without error, and completing `gemctl ap` offers apply.
    let check = format!(
        "set -e; source {}; complete -p gemctl; \
         COMP_WORDS=(gemctl ap); COMP_CWORD=1; COMP_LINE='gemctl ap'; COMP_POINT=9; \
         _gemctl gemctl ap gemctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let b = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &check])
        .output()
        .expect("bash runs");
    let out = String::from_utf8_lossy(&b.stdout);
    assert!(
        b.status.success() && b.stderr.is_empty(),
        "{out}{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(out.contains("-F _gemctl gemctl"), "{out}");
    assert!(out.lines().any(|l| l == "apply"), "{out}");
    for shell in ["zsh", "fish"] {
        let o = gemctl(&["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}");
        assert!(stdout(&o).contains("gemctl"), "{shell}");
    }
    assert_eq!(code(&gemctl(&["completions", "tcsh"])), 1);
}

/// Renders roff as a reader would see it: `man -l -`, or groff where man is
/// missing (scripts/test installs man-db when it can).
fn render_man(roff: &[u8]) -> String {
    use std::io::Write as _;
    let have_man = Command::new("man").arg("--version").output().is_ok();
    let mut cmd = if have_man {
        let mut c = Command::new("man");
        c.args(["--warnings", "-l", "-"])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100");
        c
    } else {
        let mut c = Command::new("groff");
        c.args(["-man", "-Tutf8", "-ww"]);
        c
    };
    let mut child = cmd
        .env("LC_ALL", "C.UTF-8")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("man (or groff) runs: apt-get install man-db");
    child.stdin.take().unwrap().write_all(roff).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
    // Bold and underline are overstrikes when not on a terminal.
    let text = String::from_utf8_lossy(&o.stdout);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn the_man_page_renders_with_every_command() {
    let o = gemctl(&["man"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("\n.TH gemctl 1 "), "{}", stdout(&o));
    let page = render_man(&o.stdout);
    for heading in ["NAME", "SYNOPSIS", "EXIT STATUS", "ENVIRONMENT", "VERSION"] {
        assert!(page.contains(heading), "{heading}:\n{page}");
    }
    for command in help_commands() {
        assert!(
            page.contains(&format!("gemctl {command}")),
            "{command}:\n{page}"
        );
    }
    assert!(page.contains("changes pending"), "{page}");
    let apply = render_man(&gemctl(&["man", "apply"]).stdout);
    assert!(apply.contains("--dry-run"), "{apply}");
    assert_eq!(code(&gemctl(&["man", "nope"])), 1);
    let dir = tempfile::tempdir().unwrap();
    let o = gemctl(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for command in help_commands() {
        assert!(
            dir.path().join(format!("gemctl-{command}.1")).is_file(),
            "{command}"
        );
    }
    assert!(dir.path().join("gemctl.1").is_file());
}

#[test]
fn init_writes_a_spec_that_validates_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("shop");
    let o = gemctl(&[
        "init",
        "--dir",
        target.to_str().unwrap(),
        "--project",
        "shop",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let spec = target.join("gemctl.yaml");
    let secrets = target.join("secrets.env");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secrets), 0o600);
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.starts_with("# yaml-language-server: $schema=gemctl.schema.json"));
    assert!(
        text.contains("\n# front:\n"),
        "the front door, commented out"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("gemctl.schema.json")).unwrap(),
        gemctl::cli::schema_json()
    );
    // Filled in, as the operator would.
    let filled = std::fs::read_to_string(&secrets)
        .unwrap()
        .replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=s3cret\n")
        .replace("PGPASSWORD=\n", "PGPASSWORD=s3cret\n");
    std::fs::write(&secrets, &filled).unwrap();
    let o = gemctl(&["validate", "-f", spec.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("valid (project shop, generation 1"));

    // A second init refuses, names what is there, and changes nothing.
    let o = gemctl(&["init", "--dir", target.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("already there"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), filled);
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), text);
    // One file there is enough to write none.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("secrets.env"), "KEEP=1\n").unwrap();
    let o = gemctl(&["init", "--dir", other.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("secrets.env already there"),
        "{}",
        stderr(&o)
    );
    assert!(!other.join("gemctl.yaml").exists());
    // The project defaults to the directory's name, when it is one.
    std::fs::remove_file(other.join("secrets.env")).unwrap();
    let o = gemctl(&["init", "--dir", other.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(other.join("gemctl.yaml"))
            .unwrap()
            .contains("\nproject: other\n")
    );
    let o = gemctl(&[
        "init",
        "--dir",
        dir.path().join("x").to_str().unwrap(),
        "--project",
        "Shop",
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("is not a project name"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("x").join("gemctl.yaml").exists());
}

/// The committed schema's `pattern` for one `$defs` entry, compiled with the
/// `regex` crate (the patterns are written for it and ECMA-262 alike).
fn schema_pattern(schema: &serde_json::Value, def: &str) -> regex::Regex {
    let pattern = schema["$defs"][def]["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("$defs.{def} has a pattern"));
    regex::Regex::new(pattern).unwrap()
}

/// Every string in `value` that the schema gives a pattern, with its path:
/// follows `$ref`, `properties`, `items` and the branches of `anyOf`/`oneOf`.
fn patterned_strings(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
    out: &mut Vec<(String, String, String)>,
) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/$defs/").expect("a local $ref");
        patterned_strings(root, &root["$defs"][name], value, path, out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for branch in schema[key].as_array().into_iter().flatten() {
            patterned_strings(root, branch, value, path, out);
        }
    }
    if let (Some(p), Some(s)) = (schema["pattern"].as_str(), value.as_str()) {
        out.push((path.to_string(), p.to_string(), s.to_string()));
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        for (k, v) in obj {
            if let Some(s) = props.get(k) {
                patterned_strings(root, s, v, &format!("{path}.{k}"), out);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            patterned_strings(root, items, v, &format!("{path}[{i}]"), out);
        }
    }
}

#[test]
fn schema_patterns_and_validate_agree() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("schema/gemctl.schema.json").unwrap())
            .unwrap();
    for def in ["ImageRef", "PortMapping", "HumanDuration"] {
        assert!(
            schema["$defs"][def]["examples"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "$defs.{def} has examples"
        );
    }

    // Value by value: the pattern matches exactly what validate takes.
    let image = schema_pattern(&schema, "ImageRef");
    let port = schema_pattern(&schema, "PortMapping");
    let duration = schema_pattern(&schema, "HumanDuration");
    let takes_image =
        |s: &str| serde_yaml::from_str::<gemctl::spec::ImageRef>(&format!("{s:?}")).is_ok();
    let takes_duration =
        |s: &str| serde_yaml::from_str::<gemctl::spec::HumanDuration>(&format!("{s:?}")).is_ok();
    let takes_port = |s: &str| gemctl::spec::PortMapping::parse(s).is_ok();
    for s in [
        "postgres:15",
        "postgres:15.8",
        "gemctl-test/app:1",
        "registry.example.com/gem:2.14.1",
        "registry.example.com:5000/gem:1",
        "gem@sha256:abc",
        "a:latest2",
        "a:b:c",
        ":1",
        "postgres",
        "postgres:latest",
        "postgres:",
        "registry:5000/gem",
        "a b:1",
        "",
        "r/latest:x/y",
        "a:lates",
        "a:Latest",
        "a:latesT",
    ] {
        assert_eq!(image.is_match(s), takes_image(s), "image {s:?}");
    }
    for s in [
        "80:8080",
        "127.0.0.1:7000:7000",
        "127.0.0.1::8080",
        "53:53/udp",
        "8080",
        "0.0.0.0:80:80",
        "65535:1/tcp",
        "0080:80",
        "8080/sctp",
        "0:80",
        "65536:80",
        "+80:80",
        "localhost:80:80",
        "::80",
        "1:2:3:4",
        "127.0.0.01:80:80",
        "256.0.0.1:80:80",
        "80:",
        "80:80/",
        " 80",
        "",
    ] {
        assert_eq!(port.is_match(s), takes_port(s), "port {s:?}");
    }
    for s in [
        "5s",
        "500ms",
        "2m",
        "1h 30m",
        "1h30m",
        "30d",
        "1.5h",
        "  2 min ",
        "1 0s",
        "3 weeks",
        "5µs",
        "1y 2M",
        "0s",
        "5 sekunden",
        "5",
        "s",
        "",
        "1.s",
        "5 m s",
        "-5s",
        "5S",
        "2 days",
    ] {
        assert_eq!(duration.is_match(s), takes_duration(s), "duration {s:?}");
    }

    // Spec by spec: every patterned value of a valid spec matches; every bad
    // spec that a pattern catches is also refused by validate.
    let mut files: Vec<std::path::PathBuf> = ["specs", "tests/specs", "tests/specs/bad"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut caught = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue; // malformed YAML: no editor checks it either
        };
        let value = serde_json::to_value(yaml).unwrap();
        let mut strings = Vec::new();
        patterned_strings(&schema, &schema, &value, "", &mut strings);
        let rejected: Vec<_> = strings
            .iter()
            .filter(|(_, p, s)| !regex::Regex::new(p).unwrap().is_match(s))
            .collect();
        let valid = Spec::load_with(file, gemctl::spec::EnvFiles::Skip).is_ok();
        if valid {
            assert!(
                rejected.is_empty(),
                "{}: valid, but the schema rejects {rejected:?}",
                file.display()
            );
            assert!(!strings.is_empty(), "{}", file.display());
        } else if !rejected.is_empty() {
            caught.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    // The bad specs whose problem is a patterned value: the editor sees them too.
    for name in ["bad-duration.yaml", "missing-tag.yaml"] {
        assert!(
            caught.iter().any(|c| c == name),
            "{name} not caught by the schema: {caught:?}"
        );
    }
}

#[test]
fn every_json_document_names_the_gemctl_that_printed_it_and_errors_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let spec = spec_file(
        dir.path(),
        &format!("storage: {}\n{APP_DB}", storage.display()),
    );
    let doc = |args: &[&str]| {
        let o = gemctl(args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&o)));
        assert!(
            v["gemctl"].as_str().is_some_and(|g| g.contains("commit")),
            "{args:?}: {v}"
        );
        (code(&o), v, stderr(&o))
    };

    let (c, v, _) = doc(&["validate", "-f", &spec, "--output", "json"]);
    assert_eq!((c, v["valid"].clone()), (0, true.into()), "{v}");
    let (c, v, _) = doc(&["history", "-f", &spec, "-o", "json"]);
    assert_eq!((c, v["entries"].clone()), (0, serde_json::json!([])), "{v}");
    let (c, v, _) = doc(&["unpin", "-f", &spec, "-o", "json"]);
    assert_eq!((c, v["unpinned"].clone()), (0, false.into()), "{v}");
    let (c, v, _) = doc(&["unlock", "-f", &spec, "-o", "json"]);
    assert_eq!((c, v["removed"].clone()), (0, false.into()), "{v}");
    let (c, v, _) = doc(&[
        "diff",
        "-f",
        "tests/specs/shop-gen2.yaml",
        "--observed",
        "tests/observed/shop-gen1.json",
        "-o",
        "json",
    ]);
    assert_eq!((c, v["sync"].clone()), (2, "changes_pending".into()), "{v}");

    // Errors: JSON with the exit code on stdout, the text on stderr.
    let (c, v, err) = doc(&["maintenance", "on", "-f", &spec, "-o", "json"]);
    assert_eq!(c, 1);
    assert_eq!(v["exit_code"], 1);
    assert!(v["error"].as_str().unwrap().contains("no `front:`"), "{v}");
    assert!(err.contains("error:"), "{err}");
    let bad = spec_file(
        dir.path(),
        "app:\n  image: example/app\ndb:\n  image: postgres:15\n",
    );
    let (c, v, err) = doc(&["validate", "-f", &bad, "-o", "json"]);
    assert_eq!(c, 1);
    assert_eq!(v["valid"], false);
    let first = &v["errors"][0];
    assert!(first["line"].is_u64() && first["field"].is_string(), "{v}");
    assert!(err.contains("app.image"), "{err}");
}
