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
fn example_specs_start_with_the_schema_line_and_validate() {
    for file in [
        "specs/prod.yaml",
        "specs/demo.yaml",
        "tests/specs/shop-gen1.yaml",
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .starts_with("# yaml-language-server: $schema="),
            "{file}"
        );
        let o = gemctl(&["validate", "-f", file]);
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        assert!(stdout(&o).contains("valid"));
    }
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
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "project: locky\ngeneration: 1\nstorage: storage\n\
         app: { image: \"example/app:1\" }\ndb: { image: \"postgres:15\" }\n",
    )
    .unwrap();
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
    ] {
        let o = gemctl(&[command, "--help"]);
        assert_eq!(code(&o), 0);
        assert!(
            stdout(&o).to_lowercase().contains("exit codes"),
            "{command} --help says nothing of exit codes"
        );
    }
}
