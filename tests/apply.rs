//! `gemctl apply` on the real Docker engine with real PostgreSQL: bootstrap,
//! upgrades that keep every row, a broken release that never stays live,
//! retention, rollback, refusal, and a resume after a kill during the copy.
//!
//! Needs the images from `scripts/build-images`. Every test has its own project,
//! container names, network, ports and storage directory, removed when the test
//! ends, pass or fail.

mod real;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use real::*;

#[test]
fn bootstrap_serves_and_a_second_apply_does_nothing() {
    let p = Project::new("boot");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(p.report().starts_with("OK "), "tcp report: {}", p.report());
    assert!(p.report().contains("gen=1"));
    let (status, body) = p.http("GET", "/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(p.with_public_ports(), [p.app(1)]);

    let diff = p.gemctl(&["diff"]);
    assert_eq!(diff.status.code(), Some(0));
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");

    // Logs through gemctl, no raw docker commands.
    let logs = p.gemctl(&["logs"]);
    assert_eq!(logs.status.code(), Some(0));
    assert!(!logs.stdout.is_empty(), "the app logged something");
    let logs = p.gemctl(&["logs", "--role", "db"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("ready to accept connections"),
        "db logs"
    );
    let missing = p.gemctl(&["logs", "--generation", "9"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist on this host"));

    // What `observe` saw can be planned against later, with no engine.
    let observed = p.gemctl(&["observe"]);
    assert_eq!(observed.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&observed.stdout).unwrap();
    let app = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == p.app(1))
        .expect("observe lists the app");
    assert_eq!(app["state"], "running");
    assert_eq!(app["labels"]["io.gemctl.exposure"], "public");
    assert_eq!(v["storage"]["live"], 1);
    let saved = p.dir.join("observed.json");
    std::fs::write(&saved, &observed.stdout).unwrap();
    let offline = p.gemctl(&["diff", "--observed", saved.to_str().unwrap()]);
    assert_eq!(offline.status.code(), Some(0));

    // Scripts read one JSON event per line.
    let o = p.gemctl(&["apply", "--output", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["status"], "in_sync");
    // Secrets never reach the output.
    assert!(!out.contains("s3cret"));
}

#[test]
fn upgrade_carries_every_row_and_keeps_the_old_generation() {
    let p = Project::new("upgr");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(2500);
    let before = p.table_digest(&p.db(1));
    assert!(before.starts_with("2500:"), "{before}");

    // The dump (tests/stream.rs has the stream).
    p.write_spec_with(2, "2", 2, "scope: project", "  copy: dump");
    let o = p.gemctl(&["apply", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .collect();
    assert_eq!(finished.len(), 12, "one event per step");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step_started" && e["step"]["action"] == "copy_data")
    );

    assert_eq!(
        p.table_digest(&p.db(2)),
        before,
        "db-2 holds every row of db-1"
    );
    assert!(
        p.report().contains("gen=2") && p.report().contains("rows=2500"),
        "{}",
        p.report()
    );
    assert_eq!(
        p.with_public_ports(),
        [p.app(2)],
        "only the new app is public"
    );
    assert_eq!(
        p.containers(),
        [
            format!("{} exited", p.db(1)),
            format!("{} running", p.db(2)),
            format!("{} exited", p.app(1)),
            format!("{} running", p.app(2)),
        ]
    );
    assert_eq!(p.generations_on_disk(), [1, 2]);

    // Generation 1's data was only read: start its db and look.
    docker_ok(&["start", &p.db(1)]);
    wait_until("db-1 to answer", Duration::from_secs(60), || {
        docker(&["exec", &p.db(1), "pg_isready", "-q", "-h", "127.0.0.1"])
            .status
            .success()
    });
    assert_eq!(p.table_digest(&p.db(1)), before);
}

#[test]
fn broken_release_is_rolled_back_and_not_retried() {
    let p = Project::new("brok");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(300);
    let before = p.table_digest(&p.db(1));

    p.write_spec(2, "broken", 2, "scope: project");
    let started = Instant::now();
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 4, "{out}");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(out.contains("generation 1 is live again"), "{out}");

    assert!(p.report().contains("gen=1") && p.report().contains("rows=300"));
    assert_eq!(p.table_digest(&p.db(1)), before);
    assert_eq!(p.with_public_ports(), [p.app(1)]);
    assert_eq!(
        p.generations_on_disk(),
        [1],
        "the failed generation's data is removed"
    );
    assert_eq!(
        p.containers(),
        [
            format!("{} running", p.db(1)),
            format!("{} running", p.app(1))
        ]
    );

    let failures = p.storage().join(".gemctl/failures");
    let report: Vec<_> = std::fs::read_dir(&failures).unwrap().collect();
    assert_eq!(report.len(), 1);
    let text = std::fs::read_to_string(report[0].as_ref().unwrap().path()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["generation"], 2);
    assert_eq!(v["health"]["healthy"], false);
    assert!(text.contains("FAIL"), "health output kept: {text}");
    assert!(!v["app_logs"].as_str().unwrap().is_empty(), "app logs kept");
    assert!(!text.contains("s3cret"));

    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("generation 2 failed its health checks"),
        "{out}"
    );
    assert!(out.contains("--retry"));
    assert_eq!(p.generations_on_disk(), [1]);
}

#[test]
fn retention_prunes_the_oldest_generation() {
    let p = Project::new("retn");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(50);
    for g in 2..=4 {
        p.write_spec(g, if g % 2 == 0 { "2" } else { "1" }, 2, "scope: project");
        let (code, out) = p.apply(&[]);
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(p.generations_on_disk(), [2, 3, 4]);
    let names: Vec<String> = p
        .containers()
        .iter()
        .map(|c| c.split(' ').next().unwrap().to_string())
        .collect();
    assert!(
        !names.contains(&p.app(1)) && !names.contains(&p.db(1)),
        "{names:?}"
    );
    assert!(names.contains(&p.app(2)) && names.contains(&p.db(3)));
    assert!(p.report().contains("rows=50"));
}

#[test]
fn rollback_serves_the_retained_generation_on_its_own_data() {
    let p = Project::new("roll");
    p.two_generations(100, 20);
    assert!(p.report().contains("rows=120"));

    p.write_spec(1, "1", 2, "scope: project");
    let plan = p.gemctl(&["diff"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&plan.stdout).contains("are NOT in it"));
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    let report = p.report();
    assert!(
        report.contains("gen=1") && report.contains("rows=100"),
        "{report}"
    );
    assert_eq!(p.with_public_ports(), [p.app(1)]);
    assert_eq!(p.generations_on_disk(), [1, 2], "the newer data is kept");
}

#[test]
fn unrecognised_containers_stop_apply_before_it_touches_anything() {
    let p = Project::new("refu");
    assert_eq!(p.apply(&[]).0, 0);
    // A container named like generation 9's app that gemctl did not make.
    let squatter = p.app(9);
    create_stranger(&squatter);
    let before = p.containers();
    p.write_spec(2, "2", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&squatter) && out.contains("not made by gemctl"),
        "{out}"
    );
    assert_eq!(p.containers(), before);
    assert_eq!(p.generations_on_disk(), [1]);

    // Under `scope: host`, any stranger stops it too.
    docker_ok(&["rm", "-f", &squatter]);
    let stranger = format!("{}-stranger", p.name);
    create_stranger(&stranger);
    p.write_spec(2, "2", 2, "scope: host");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&stranger), "{out}");
    assert_eq!(p.containers(), before);
}

#[test]
fn apply_killed_during_the_copy_converges_on_the_next_run() {
    let p = Project::new("kill");
    assert_eq!(p.apply(&[]).0, 0);
    for _ in 0..4 {
        p.insert_rows(50_000);
    }
    let before = p.table_digest(&p.db(1));

    // The dump's copy (tests/stream.rs kills a stream at every step).
    p.write_spec_with(2, "2", 2, "scope: project", "  copy: dump");
    let spec = p.spec.to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["apply", "-f", &spec])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let copy = format!("{}-copy-2", p.name);
    wait_until("the copy container", Duration::from_secs(90), || {
        !docker_ok(&["ps", "-q", "--filter", &format!("name=^{copy}$")]).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("remove") || out.contains("copy"), "{out}");
    assert_eq!(p.table_digest(&p.db(2)), before);
    assert!(p.report().contains("rows=200000"), "{}", p.report());
    assert_eq!(p.with_public_ports(), [p.app(2)]);
}

#[test]
fn a_second_apply_fails_fast_while_the_first_holds_the_lock() {
    let p = Project::new("lock");
    let spec = p.spec.to_str().unwrap().to_string();
    let mut first = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["apply", "-f", &spec])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = p.storage().join(".gemctl/lock");
    wait_until("the first apply's lock", Duration::from_secs(30), || {
        lock.exists()
    });
    let started = Instant::now();
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    assert!(
        out.contains(&format!("pid {}", first.id())) && out.contains("`"),
        "names the holder: {out}"
    );
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert!(!lock.exists(), "released");

    // A lock left by a killed gemctl is taken over.
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let dead_pid = victim.id();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        &lock,
        format!(
            r#"{{"pid":{dead_pid},"user":"root","host":"{}","command":"gemctl apply","since":"2026-11-23T00:00:00Z"}}"#,
            host.trim()
        ),
    )
    .unwrap();
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("took over a stale lock"), "{out}");
}

fn status_json(p: &Project) -> (i32, serde_json::Value) {
    let o = p.gemctl(&["status", "--output", "json"]);
    (
        o.status.code().unwrap_or(-1),
        serde_json::from_slice(&o.stdout).expect("status prints JSON"),
    )
}

#[test]
fn status_tells_fresh_converged_drifted_and_refusing_hosts_apart() {
    let p = Project::new("stat");
    let (code, v) = status_json(&p);
    assert_eq!(code, 2, "fresh host: not in sync");
    assert_eq!(v["sync"], "changes_pending");
    assert_eq!(v["generations"].as_array().unwrap().len(), 0);

    p.two_generations(0, 0);
    let (code, v) = status_json(&p);
    assert_eq!(code, 0);
    assert_eq!(v["sync"], "in_sync");
    assert_eq!(v["live"], 2);
    let gens = v["generations"].as_array().unwrap();
    assert_eq!(gens[0]["generation"], 2);
    assert_eq!(gens[0]["status"], "live");
    assert_eq!(gens[0]["app"]["state"], "running");
    assert_eq!(gens[0]["app"]["exposure"], "public");
    assert_eq!(gens[0]["app"]["image"], "gemctl-test/app:2");
    assert!(
        gens[0]["app"]["created"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    assert!(
        gens[0]["data_bytes"].as_u64().unwrap() > 1_000_000,
        "{}",
        gens[0]
    );
    assert_eq!(gens[1]["status"], "retained");
    assert_eq!(gens[1]["db"]["state"], "exited");
    let text = p.gemctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("in sync: generation 2 live"), "{text}");
    assert!(text.contains("retained"), "{text}");

    docker_ok(&["stop", &p.app(2)]);
    let (code, v) = status_json(&p);
    assert_eq!(code, 2, "drifted");
    assert_eq!(v["pending_steps"], 2);

    let squatter = p.app(7);
    create_stranger(&squatter);
    let (code, v) = status_json(&p);
    assert_eq!(code, 3, "refusing");
    assert_eq!(v["refusal"]["problems"][0]["container"], squatter.as_str());
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn every_changing_apply_leaves_a_report_tied_to_the_specs_commit() {
    let p = Project::new("hist");
    git(&p.dir, &["init", "-q"]);
    std::fs::write(p.dir.join(".gitignore"), "storage/\nreports/\n").unwrap();
    git(&p.dir, &["add", "."]);
    git(&p.dir, &["commit", "-qm", "generation 1"]);
    let head = git(&p.dir, &["rev-parse", "HEAD"]);

    assert_eq!(p.apply(&[]).0, 0);
    assert_eq!(p.apply(&[]).0, 0, "a no-op apply writes no report");
    p.write_spec(2, "broken", 2, "scope: project");
    let reports = p.dir.join("reports");
    let (code, _) = p.apply(&["--report-dir", reports.to_str().unwrap()]);
    assert_eq!(code, 4);

    let o = p.gemctl(&["history", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let list = real::history_entries(&o);
    assert_eq!(list.len(), 2, "bootstrap and the failed upgrade");
    let (failed, boot) = (&list[0], &list[1]);
    assert_eq!(boot["outcome"], "converged");
    assert_eq!(boot["git"]["commit"], head.as_str());
    assert_eq!(boot["git"]["dirty"], false);
    assert_eq!(boot["before"], serde_json::Value::Null);
    assert_eq!(boot["after"], 1);
    assert!(
        boot["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "ok")
    );
    assert!(boot["steps"][0]["duration_ms"].is_u64());
    assert_eq!(boot["health"][0]["outcome"]["healthy"], true);
    assert!(
        !boot["user"].as_str().unwrap().is_empty() && !boot["host"].as_str().unwrap().is_empty()
    );

    assert_eq!(failed["outcome"], "rolled_back");
    assert_eq!(failed["exit_code"], 4);
    assert_eq!(
        failed["git"]["dirty"], true,
        "the spec change was not committed"
    );
    assert_eq!(failed["before"], 1);
    assert_eq!(failed["after"], 1);
    assert!(
        failed["failure_report"]
            .as_str()
            .unwrap()
            .contains("failures")
    );
    assert!(
        !failed["failure"]["app_logs"].as_str().unwrap().is_empty(),
        "the captured logs are in the report"
    );
    assert!(
        failed["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["outcome"] == "unhealthy"),
        "{failed}"
    );
    assert!(
        failed["health"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["outcome"]["healthy"] == false)
    );

    let id = failed["id"].as_str().unwrap();
    let shown = p.gemctl(&["history", "--show", id]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["id"], id);
    assert!(
        reports.join(format!("{id}.json")).exists(),
        "--report-dir copy"
    );
    let text = p.gemctl(&["history"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("rolled_back") && text.contains(&head[..8]),
        "{text}"
    );

    // The spec on disk is dirty: --require-clean refuses and names it.
    let (code, out) = p.apply(&["--require-clean"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("uncommitted") && out.contains("spec.yaml"),
        "{out}"
    );

    // Deploy a committed spec while the file on disk says something else.
    let broken_on_disk = std::fs::read_to_string(&p.spec).unwrap();
    p.write_spec(2, "2", 2, "scope: project");
    git(&p.dir, &["commit", "-qam", "generation 2"]);
    let good = git(&p.dir, &["rev-parse", "HEAD"]);
    std::fs::write(&p.spec, broken_on_disk).unwrap();
    let (code, out) = p.apply(&["--from-git", "HEAD"]);
    assert_eq!(code, 0, "{out}");
    assert!(p.report().contains("version=2 gen=2"), "{}", p.report());
    let o = p.gemctl(&["history", "-o", "json"]);
    let list = real::history_entries(&o);
    assert_eq!(list[0]["git"]["commit"], good.as_str());
    assert_eq!(list[0]["git"]["dirty"], false);
    assert_eq!(list[0]["after"], 2);
}

#[test]
fn rollback_command_pins_the_host_until_unpinned() {
    let p = Project::new("pin");
    p.two_generations(10, 5);

    let o = p.gemctl(&["rollback"]);
    assert_eq!(o.status.code(), Some(0));
    let report = p.report();
    assert!(
        report.contains("gen=1") && report.contains("rows=10"),
        "{report}"
    );
    assert_eq!(p.with_public_ports(), [p.app(1)]);

    // The spec still names 2, but apply, diff and status hold on 1.
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
    let diff = p.gemctl(&["diff"]);
    assert_eq!(diff.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&diff.stdout).contains("pinned: pinned to generation 1"));
    let (code, v) = status_json(&p);
    assert_eq!(code, 0);
    assert!(v["pinned"].as_str().unwrap().contains("generation 1"));

    let o = p.gemctl(&["history", "-o", "json"]);
    let list = real::history_entries(&o);
    assert_eq!(list[0]["before"], 2);
    assert_eq!(list[0]["after"], 1);
    assert!(
        list[0]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("NOT in it")),
        "the rollback report says which writes are not carried: {}",
        list[0]
    );

    let o = p.gemctl(&["unpin"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(2));
    assert_eq!(p.apply(&[]).0, 0);
    assert!(
        p.report().contains("gen=2") && p.report().contains("rows=15"),
        "{}",
        p.report()
    );
}

#[test]
fn notifiers_hear_of_a_failure_and_a_failing_notifier_changes_nothing() {
    let p = Project::new("ntfy");
    assert_eq!(p.apply(&[]).0, 0);

    // A webhook receiver that keeps the first request's body.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        // Header names are case-insensitive (RFC 9110 5.1).
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length").then_some(value)
                    })
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&raw)
            .split_once("\r\n\r\n")
            .unwrap()
            .1
            .to_string()
    });

    let out_file = p.dir.join("notified.json");
    p.write_spec(2, "broken", 2, "scope: project");
    let notify = format!(
        "notify:\n  command: [\"sh\", \"-c\", \"cat > {}\"]\n  webhook: \"http://127.0.0.1:{hook_port}/alerts\"\n",
        out_file.display()
    );
    let mut text = std::fs::read_to_string(&p.spec).unwrap();
    text.push_str(&notify);
    std::fs::write(&p.spec, text).unwrap();
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 4, "{out}");

    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(got["event"], "failed");
    assert_eq!(got["project"], p.name.as_str());
    assert_eq!(got["report"]["outcome"], "rolled_back");
    assert!(got["report"]["failure_report"].is_string());
    let hooked: serde_json::Value = serde_json::from_str(&receiver.join().unwrap()).unwrap();
    assert_eq!(hooked["event"], "failed");

    // A notifier that fails is a warning; the refusal's exit code stands.
    let squatter = p.app(8);
    create_stranger(&squatter);
    let mut text = std::fs::read_to_string(&p.spec).unwrap();
    text = text.split("notify:").next().unwrap().to_string();
    text.push_str("notify:\n  command: [\"false\"]\n");
    std::fs::write(&p.spec, text).unwrap();
    let (code, out) = p.apply(&["--retry"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("warning: notify command"), "{out}");
}

/// What a command that touched nothing leaves as it was: the project's
/// containers, which of them publish ports, and every file under
/// `<storage>/.gemctl` with its content.
#[derive(Debug, PartialEq)]
struct HostState {
    containers: Vec<String>,
    public: Vec<String>,
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
}

fn host_state(p: &Project) -> HostState {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // The audit trail records refusals too: it is checked on its own.
            if path.file_name() == Some(std::ffi::OsStr::new("audit.jsonl")) {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&p.storage().join(".gemctl"), &mut files);
    files.sort();
    HostState {
        containers: p.containers(),
        public: p.with_public_ports(),
        files,
    }
}

#[test]
fn reconcile_rollback_and_restore_refuse_a_dirty_spec_under_require_clean() {
    let p = Project::new("dirty");
    let clean = |generation: u64| {
        let extra = format!("require_clean: true\n{}", p.notify_section());
        p.write_spec_with(generation, "1", 2, "scope: project", &extra);
    };
    git(&p.dir, &["init", "-q"]);
    std::fs::write(p.dir.join(".gitignore"), "storage/\n*.log\n*.jsonl\n").unwrap();
    clean(1);
    git(&p.dir, &["add", "."]);
    git(&p.dir, &["commit", "-qm", "generation 1"]);
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(7);
    clean(2);
    git(&p.dir, &["commit", "-qam", "generation 2"]);
    assert_eq!(p.apply(&[]).0, 0);
    assert_eq!(p.gemctl(&["backup"]).status.code(), Some(0));
    let before = host_state(&p);
    assert_eq!(before.public, [p.app(2)]);

    // Generation 3 on disk, not committed: every command that would change the
    // live generation refuses with the same message and touches nothing.
    clean(3);
    for args in [
        &["rollback"][..],
        &["restore", "--latest"],
        &["reconcile", "--once"],
        &["apply"],
    ] {
        let o = p.gemctl(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("uncommitted changes")
                && err.contains("spec.yaml")
                && err.contains("Nothing was touched"),
            "{args:?}: {err}"
        );
        assert_eq!(host_state(&p), before, "{args:?} touched the host");
        let audit = std::fs::read_to_string(p.storage().join(".gemctl/audit.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
        if args[0] != "reconcile" {
            assert_eq!(last["kind"], args[0], "{args:?}: {last}");
            assert_eq!(last["outcome"], "refused", "{args:?}: {last}");
        }
    }
    assert!(!p.storage().join(".gemctl/pin").exists());
    let sent = p.alerts();
    assert_eq!(sent.len(), 1, "reconcile's refusal is told: {sent:?}");
    assert_eq!(sent[0]["event"], "refused");
    std::fs::remove_file(p.dir.join("alerts.jsonl")).unwrap();

    // The loop refuses round after round, tells it once, and deploys the spec
    // once it is committed.
    let mut child = p.spawn_reconcile_with("300ms", &[]);
    let refused = || {
        p.reconcile_rounds()
            .iter()
            .filter(|r| r["fields"]["exit_code"] == 3)
            .count()
    };
    wait_until("four refused rounds", Duration::from_secs(60), || {
        refused() >= 4
    });
    assert_eq!(host_state(&p), before, "the loop touched the host");
    git(&p.dir, &["commit", "-qam", "generation 3"]);
    let refused_rounds = refused();
    gen3_deployed_then_alerted(
        &p,
        &mut child,
        ["refused", "recovered"],
        "uncommitted changes",
        &format!("{refused_rounds} refused rounds"),
    );
    assert!(p.report().contains("rows=7"), "{}", p.report());
}

#[test]
fn one_alert_per_incident_then_one_recovery_alert() {
    let p = Project::new("incid");
    assert_eq!(p.apply(&[]).0, 0);
    p.write_spec_with(1, "1", 2, "scope: project", &p.notify_section());
    // gemctl connects anew every round: the engine is unreachable until this
    // path leads to its socket.
    let engine = match std::env::var("DOCKER_HOST") {
        Ok(h) => h
            .strip_prefix("unix://")
            .expect("this test needs the engine on a unix socket")
            .to_string(),
        Err(_) => "/var/run/docker.sock".to_string(),
    };
    let door = p.dir.join("engine.sock");
    let docker_host = format!("unix://{}", door.display());
    let mut child = p.spawn_reconcile_with("300ms", &[("DOCKER_HOST", &docker_host)]);
    let codes = || -> Vec<i64> {
        p.reconcile_rounds()
            .iter()
            .map(|r| r["fields"]["exit_code"].as_i64().unwrap())
            .collect()
    };
    wait_until("ten rounds", Duration::from_secs(60), || {
        codes().len() >= 10
    });
    assert!(
        codes().iter().all(|c| *c == 1),
        "every round failed: {:?}",
        codes()
    );
    assert!(
        p.reconcile_log().contains("cannot reach the Docker engine"),
        "{}",
        p.reconcile_log()
    );
    let sent = p.alerts();
    assert_eq!(sent.len(), 1, "{} failed rounds: {sent:?}", codes().len());
    assert_eq!(sent[0]["event"], "failed");
    assert_eq!(sent[0]["project"], p.name.as_str());

    std::os::unix::fs::symlink(&engine, &door).unwrap();
    wait_until("a round that succeeds", Duration::from_secs(60), || {
        codes().contains(&0)
    });
    let rounds = codes().len();
    wait_until("three more rounds", Duration::from_secs(30), || {
        codes().len() >= rounds + 3
    });
    assert_eq!(terminate(&mut child), Some(0));
    assert!(
        codes().iter().skip_while(|c| **c == 1).all(|c| *c == 0),
        "{:?}",
        codes()
    );
    let sent = p.alerts();
    let events: Vec<&str> = sent.iter().map(|a| a["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["failed", "recovered"], "{sent:?}");
    assert_eq!(sent[1]["project"], p.name.as_str());
    assert_eq!(sent[1]["resolved"][0]["event"], "failed");
    assert!(
        sent[1]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the Docker engine"),
        "{}",
        sent[1]
    );
    assert!(p.report().contains("gen=1"), "{}", p.report());
}

#[test]
fn a_release_that_fails_in_reconcile_is_told_once_while_held_and_its_fix_recovers() {
    let p = Project::new("heldal");
    assert_eq!(p.apply(&[]).0, 0);
    p.write_spec_with(2, "broken", 2, "scope: project", &p.notify_section());
    let mut child = p.spawn_reconcile_with("300ms", &[]);
    let codes = || -> Vec<i64> {
        p.reconcile_rounds()
            .iter()
            .map(|r| r["fields"]["exit_code"].as_i64().unwrap())
            .collect()
    };
    wait_until(
        "the rollback and four held rounds",
        Duration::from_secs(120),
        || {
            let c = codes();
            c.first() == Some(&4) && c.iter().skip(1).filter(|c| **c == 3).count() >= 4
        },
    );
    let sent = p.alerts();
    assert_eq!(sent.len(), 1, "rounds {:?}: {sent:?}", codes());
    assert_eq!(sent[0]["event"], "failed");
    assert_eq!(sent[0]["report"]["outcome"], "rolled_back");
    assert!(p.report().contains("gen=1"), "{}", p.report());

    p.write_spec_with(3, "2", 2, "scope: project", &p.notify_section());
    gen3_deployed_then_alerted(
        &p,
        &mut child,
        ["failed", "recovered"],
        "generation 2 failed",
        &format!("rounds {:?}", codes()),
    );
}

/// Waits until the reconcile loop deployed generation 3 and ran two more rounds,
/// stops it, and checks it sent exactly the `expected` alerts, the recovery
/// naming what cleared (`cleared`).
fn gen3_deployed_then_alerted(
    p: &Project,
    child: &mut std::process::Child,
    expected: [&str; 2],
    cleared: &str,
    context: &str,
) {
    wait_until("generation 3 deployed", Duration::from_secs(120), || {
        TcpStream::connect(("127.0.0.1", p.tcp)).is_ok() && p.report().contains("gen=3")
    });
    let rounds = p.reconcile_rounds().len();
    wait_until("two more rounds", Duration::from_secs(30), || {
        p.reconcile_rounds().len() >= rounds + 2
    });
    assert_eq!(terminate(child), Some(0));
    let sent = p.alerts();
    let events: Vec<&str> = sent.iter().map(|a| a["event"].as_str().unwrap()).collect();
    assert_eq!(events, expected, "{context}: {sent:?}");
    assert!(
        sent[1]["resolved"][0]["message"]
            .as_str()
            .unwrap()
            .contains(cleared),
        "{}",
        sent[1]
    );
}

#[test]
fn reconcile_repairs_drift_follows_the_spec_and_stops_cleanly_on_sigterm() {
    let p = Project::new("reco");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(25);
    let mut child = p.spawn_reconcile();

    // A killed app is back within a round or two.
    docker_ok(&["kill", &p.app(1)]);
    wait_until("the app to be repaired", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", p.tcp)).is_ok() && p.report().starts_with("OK ")
    });

    // A spec change (as after a `git pull`) is picked up and deployed.
    p.write_spec(2, "2", 2, "scope: project");
    wait_until(
        "the upgrade to generation 2",
        Duration::from_secs(90),
        || TcpStream::connect(("127.0.0.1", p.tcp)).is_ok() && p.report().contains("gen=2"),
    );
    assert!(p.report().contains("rows=25"));

    // SIGTERM: the loop ends cleanly and releases the lock.
    let started = Instant::now();
    assert_eq!(terminate(&mut child), Some(0));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!p.storage().join(".gemctl/lock").exists(), "lock released");
    let log = p.reconcile_log();
    assert!(
        p.reconcile_rounds().len() >= 3,
        "one JSON line per round: {log}"
    );
    assert!(log.contains("signal received: stopping"), "{log}");
}
