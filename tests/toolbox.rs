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
    let o = p.gemctl(&["logs", "--role", "db", "--output", "json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["container"] == db.as_str() && l["gemctl"].is_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["line"].as_str().unwrap().contains("ready to accept"))
    );
    let o = p.gemctl(&["logs", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let o = p.gemctl(&["logs", "--since", "yesterday-ish"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("RFC 3339"));
}

/// `gemctl` with exactly these arguments (no `-f` added).
fn gemctl_bare(args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    eprintln!(
        "$ gemctl {}\n{}{}-> exit {:?}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        o.status.code()
    );
    o
}

#[test]
fn a_saved_plan_is_applied_exactly_and_refused_once_stale() {
    let p = deployed("tbpln");
    let plan = p.dir.join("plan.json");
    let plan_arg = plan.to_str().unwrap();

    p.write_spec(2, "2", 2, "scope: project");
    let o = p.gemctl(&["diff", "--out", plan_arg]);
    assert_eq!(o.status.code(), Some(2), "changes pending");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let steps = saved["plan"]["steps"].as_array().unwrap().len();
    assert!(steps > 3, "{saved}");
    assert!(
        saved["gemctl"].as_str().unwrap().contains("commit"),
        "{saved}"
    );

    // No -f: the spec it was made from. Exactly the saved steps run.
    let o = gemctl_bare(&["apply", plan_arg, "--output", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ran = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .count();
    assert_eq!(ran, steps);
    let planned = events.iter().find(|e| e["event"] == "plan").unwrap();
    assert_eq!(planned["plan"], saved["plan"]);
    assert!(p.report().contains("gen=2"));

    // The host moved after the plan was made: refused, saying what changed.
    p.write_spec(3, "1", 2, "scope: project");
    assert_eq!(
        p.gemctl(&["diff", "--out", plan_arg]).status.code(),
        Some(2)
    );
    real::docker_ok(&["stop", &p.app(2)]);
    let o = gemctl_bare(&["apply", plan_arg]);
    assert_eq!(o.status.code(), Some(3));
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("plan is stale"), "{out}");
    assert!(
        out.contains(&format!("{} is now", p.app(2))) && out.contains("exited"),
        "{out}"
    );

    // The spec moved: refused too.
    assert_eq!(
        p.gemctl(&["diff", "--out", plan_arg]).status.code(),
        Some(2)
    );
    p.write_spec(4, "2", 2, "scope: project");
    let o = gemctl_bare(&["apply", plan_arg]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("the spec's generation is 4 (the plan was made for 3)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Nothing ran: generation 2 is still the live one.
    let status: serde_json::Value =
        serde_json::from_slice(&p.gemctl(&["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(status["live"], 2, "{status}");
}

#[test]
fn every_change_and_refusal_leaves_an_audit_record_and_status_names_a_lock_holder() {
    let p = deployed("tbaud");
    assert_eq!(p.apply(&[]).0, 0, "in sync: no record");
    assert_eq!(p.gemctl(&["backup"]).status.code(), Some(0));
    assert_eq!(
        p.gemctl(&["maintenance", "on"]).status.code(),
        Some(1),
        "no front"
    );
    // A container gemctl did not make, named like the project's: refused.
    let stranger = p.app(9);
    real::create_stranger(&stranger);
    let (code, out) = p.apply(&[]);
    real::docker_ok(&["rm", "-f", &stranger]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(p.gemctl(&["unpin"]).status.code(), Some(0));

    let o = p.gemctl(&["history", "--output", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let all = real::history_entries(&o);
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["unpin", "apply", "maintenance", "backup", "apply"],
        "{all:#?}"
    );
    let (unpin, refused, maintenance, backup, bootstrap) =
        (&all[0], &all[1], &all[2], &all[3], &all[4]);
    assert_eq!(unpin["outcome"], "ok");
    assert_eq!(refused["exit_code"], 3);
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(maintenance["outcome"], "failed");
    assert!(maintenance["message"].as_str().unwrap().contains("front"));
    assert_eq!(backup["outcome"], "ok");
    assert!(
        backup["gemctl"].as_str().unwrap().contains("commit"),
        "{backup}"
    );
    assert!(!backup["user"].as_str().unwrap().is_empty() && backup["uid"].is_u64());
    // The bootstrap's report, with the command that wrote it.
    assert_eq!(bootstrap["outcome"], "converged");
    assert_eq!(bootstrap["after"], 1);
    assert_eq!(bootstrap["audit"]["kind"], "apply");

    let o = p.gemctl(&["history", "--kind", "backup", "--output", "json"]);
    let backups = real::history_entries(&o);
    assert_eq!(backups.len(), 1);
    let text = String::from_utf8_lossy(&p.gemctl(&["history"]).stdout).to_string();
    assert!(
        text.contains("KIND") && text.contains("maintenance"),
        "{text}"
    );

    // Another gemctl (here: this test) holds the lock: status says who and since.
    let lock = gemctl::lock::acquire(&p.storage(), "gemctl apply -f elsewhere.yaml").unwrap();
    let o = p.gemctl(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        status["locked_by"]["command"],
        "gemctl apply -f elsewhere.yaml"
    );
    assert_eq!(status["locked_by"]["pid"], std::process::id());
    let text = String::from_utf8_lossy(&p.gemctl(&["status"]).stdout).to_string();
    assert!(
        text.contains("locked: another gemctl is working on it"),
        "{text}"
    );
    drop(lock);
    let o = p.gemctl(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(status.get("locked_by").is_none(), "{status}");
}

/// The spec at `generation` with the app's and the db's run settings (`memory`
/// sets the app's limit).
fn write_run_spec(p: &Project, generation: u64, memory: &str) {
    let volume = format!("{}-cache", p.name);
    p.write_spec_with(
        generation,
        "1",
        2,
        "scope: project",
        "  args: [\"-c\", \"shared_buffers=32MB\"]\n  run: { shm_size: 128m }",
    );
    let text = std::fs::read_to_string(&p.spec).unwrap().replacen(
        "  health:\n",
        &format!(
            "  run:\n    memory: {memory}\n    cpus: 0.5\n    volumes: [\"{volume}:/cache\", \"{}:/host:ro\"]\n    \
             labels: {{ team: shop }}\n    log: {{ driver: json-file, options: {{ max-size: 1m }} }}\n  health:\n",
            p.dir.display()
        ),
        1,
    );
    std::fs::write(&p.spec, text).unwrap();
}

#[test]
fn run_settings_reach_the_containers_and_a_change_needs_a_new_generation() {
    real::require_images();
    let p = Project::new("tbrun");
    // The named volume carries the project's prefix: `Project` removes it.
    let volume = format!("{}-cache", p.name);
    write_run_spec(&p, 1, "256m");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");

    let inspect = |name: &str, format: &str| real::docker_ok(&["inspect", "-f", format, name]);
    let app = p.app(1);
    assert_eq!(
        inspect(&app, "{{.HostConfig.Memory}}").trim(),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        inspect(&app, "{{.HostConfig.NanoCpus}}").trim(),
        "500000000"
    );
    assert_eq!(
        inspect(&app, "{{index .Config.Labels \"team\"}}").trim(),
        "shop"
    );
    assert_eq!(
        inspect(&app, "{{.HostConfig.LogConfig.Type}}").trim(),
        "json-file"
    );
    assert_eq!(
        inspect(&app, "{{index .HostConfig.LogConfig.Config \"max-size\"}}").trim(),
        "1m"
    );
    let binds = inspect(&app, "{{json .HostConfig.Binds}}");
    assert!(
        binds.contains(&format!("{volume}:/cache")) && binds.contains(":/host:ro"),
        "{binds}"
    );
    let o = p.gemctl(&["exec", "--", "sh", "-c", "touch /cache/x && ls /host"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("spec.yaml"));
    let db = p.db(1);
    assert_eq!(
        inspect(&db, "{{.HostConfig.ShmSize}}").trim(),
        (128u64 << 20).to_string()
    );
    let o = p.gemctl(&["psql", "--", "-Atc", "show shared_buffers"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "32MB");

    // A changed limit without a new generation is refused, naming the field.
    write_run_spec(&p, 1, "512m");
    let o = p.gemctl(&["diff"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("memory changed"), "{out}");
    // With one, the new generation gets it; the volume's file is still there.
    write_run_spec(&p, 2, "512m");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("they are not copied"),
        "the plan says so: {out}"
    );
    assert_eq!(
        inspect(&p.app(2), "{{.HostConfig.Memory}}").trim(),
        (512u64 << 20).to_string()
    );
    let o = p.gemctl(&["exec", "--", "ls", "/cache"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "x");
}
