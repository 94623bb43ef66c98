//! The operator's toolbox against the real engine: `psql` into the live database
//! (arguments and piped SQL), `exec` in a live container with the command's exit
//! code, and `logs` of both containers at once, since a time, with timestamps.

mod real;

use std::io::Write;
use std::process::{Command, Stdio};

use real::Project;

fn deployed(test: &str) -> Project {
    real::require_images();
    let p = Project::new(test);
    p.write_spec(1, "1", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    p
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn psql_and_exec_run_in_the_live_generation_and_return_the_command_s_code() {
    let p = deployed("tbsh");

    let o = p.gemctl(&["psql", "--", "-Atc", "select 1"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "1");

    // SQL on a pipe, results on stdout.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["psql", "-f", p.spec.to_str().unwrap(), "--", "-At"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"select 40 + 2;\nselect current_user;\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout(&o), "42\napp");

    let o = p.gemctl(&[
        "psql",
        "--",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "select nonsense",
    ]);
    assert_eq!(o.status.code(), Some(1), "psql's own exit code");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nonsense"));

    // On a terminal (`script` gives it one): interactive psql, the terminal raw.
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} psql -f {} -- -P pager=off",
                env!("CARGO_BIN_EXE_gemctl"),
                p.spec.to_str().unwrap()
            ),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"select 6 * 7 as answer;\n").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    input.write_all(b"\\q\n").unwrap();
    drop(input);
    let o = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{shown}");
    assert!(shown.contains("answer") && shown.contains("42"), "{shown}");
    assert!(
        shown.contains("app=#"),
        "psql's interactive prompt: {shown}"
    );

    let o = p.gemctl(&["exec", "--", "sh", "-c", "echo $GEM_GENERATION; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(stdout(&o), "1");
    let o = p.gemctl(&["exec", "--role", "db", "--", "sh", "-c", "echo $PGDATA"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "/var/lib/postgresql/data");

    let o = p.gemctl(&["exec", "--generation", "9", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not exist on this host"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn logs_show_both_containers_prefixed_since_a_time_with_timestamps() {
    let p = deployed("tblog");
    let o = p.gemctl(&["logs"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (app, db) = (p.app(1), p.db(1));
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{app} | "))),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{db}  | ")) && l.contains("ready to accept")),
        "{text}"
    );
    assert!(
        text.lines()
            .all(|l| l.starts_with(&format!("{app} | ")) || l.starts_with(&format!("{db}  | "))),
        "every line is prefixed: {text}"
    );

    let o = p.gemctl(&["logs", "--role", "db", "--since", "10m", "--timestamps"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!text.is_empty());
    assert!(
        text.lines()
            .all(|l| l.starts_with("20") && l.as_bytes().get(10) == Some(&b'T')),
        "{text}"
    );
    let o = p.gemctl(&["logs", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let o = p.gemctl(&["logs", "--since", "yesterday-ish"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("RFC 3339"));
}
