//! App-only releases (`db.copy: none`) against the real engine: the new app runs
//! on the live generation's database and starts beside the old app. Behind the
//! front, clients writing every 20 ms and reconnecting every 50 ms see no failed
//! request and no refused connection, a connection open to the old app when the
//! front switches is answered by it before it stops, and going back is code-only.
//! Without a front the release works with a short gap. A gemctl killed at any step
//! of the release converges on the next run.

mod real;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use real::outcomes::{Client, assert_none_failed, post, report, serving_generation, summary};
use real::{Project, Watched, require_haproxy, sql};

/// Keeps a silent TCP client's connection open this long (the fixture waits for
/// its line), so that it is still open when the front switches away.
const OPEN_FOR: &str = "FIXTURE_TCP_WAIT_SECS: \"8\"";

/// Generation `generation` of `p` behind the front, its app waiting 8 s for a TCP
/// client's line, with `db_lines` in the db section.
fn write_spec(p: &Project, generation: u64, tag: &str, db_lines: &str) {
    p.write_front_spec_with(generation, tag, "30s", db_lines);
    let text = std::fs::read_to_string(&p.spec).unwrap();
    let text = text.replacen(
        "PGDATABASE: app }",
        &format!("PGDATABASE: app, {OPEN_FOR} }}"),
        1,
    );
    std::fs::write(&p.spec, text).unwrap();
}

fn deployed(test: &str) -> Project {
    require_haproxy();
    let p = Project::new(test);
    write_spec(&p, 1, "1", "");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    p
}

fn count(p: &Project, g: u64) -> u64 {
    sql(&p.db(g), "app", "select count(*) from items")
        .parse()
        .unwrap()
}

fn running(p: &Project, part: &str) -> Vec<String> {
    p.containers()
        .into_iter()
        .filter(|c| c.contains(part) && c.ends_with("running"))
        .collect()
}

#[test]
fn an_app_only_release_behind_the_front_fails_nothing_and_lets_open_requests_finish() {
    let p = deployed("shrel");
    p.insert_rows(1_000);
    let before = count(&p, 1);
    let (http, tcp) = (p.http, p.tcp);
    let writer = Client::start(Duration::from_millis(20), move || post(http));
    let reporter = Client::start(Duration::from_millis(50), move || report(tcp));

    write_spec(&p, 2, "2", "  copy: none\n");
    let started = Instant::now();
    let mut w = Watched::start(&p);
    // While generation 2 is checked, the front still forwards to generation 1: a
    // client connects to it and stays silent.
    assert!(w.until(|v| Watched::step_started(v, "check_health")));
    let mut open = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(w.until(|v| Watched::step_started(v, "drain_front")));
    // The front switched: that connection is still open to generation 1's app,
    // which answers it before it stops.
    std::thread::sleep(Duration::from_millis(500));
    open.write_all(b"status\n").unwrap();
    let mut answer = String::new();
    let _ = open.read_to_string(&mut answer);
    drop(open);
    assert!(
        answer.starts_with("OK ") && answer.contains("gen=1"),
        "{answer:?}"
    );
    // Read to the end, so that apply never waits on a full pipe.
    w.until(|_| false);
    let status = w.child.wait().unwrap();
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let writes = writer.finish();
    let reports = reporter.finish();
    assert!(status.success(), "apply failed");
    // The drain ended when the connection closed, not at `front.drain` (30 s).
    assert!(took < Duration::from_secs(25), "{took:?}");

    assert_none_failed(&p, &writes, &reports);
    // The clients ran through the release (a quick one on a busy machine gives
    // fewer attempts: 18 writes were seen).
    assert!(
        writes.len() > 5 && reports.len() > 5,
        "{} {}",
        writes.len(),
        reports.len()
    );

    // One database, the old one, with every write; no copy was made.
    assert_eq!(serving_generation(&p), "2");
    assert_eq!(running(&p, "-db-"), [format!("{} running", p.db(1))]);
    assert_eq!(running(&p, "-gem-"), [format!("{} running", p.app(2))]);
    let after = count(&p, 1);
    assert!(
        after >= before + writes.len() as u64,
        "{before} rows before, {} writes acknowledged, {after} after",
        writes.len()
    );
    let status: serde_json::Value =
        serde_json::from_slice(&p.gemctl(&["status", "--output", "json"]).stdout).unwrap();
    let g2 = status["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["generation"] == 2)
        .unwrap();
    assert_eq!(g2["shares_db_of"], 1, "{status}");
    assert_eq!(g2["db"]["name"], p.db(1), "{status}");
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));

    // Going back is code-only: the same database, and nothing fails.
    let writer = Client::start(Duration::from_millis(20), move || post(http));
    let o = p.gemctl(&["rollback"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let writes = writer.finish();
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("code only"), "{out}");
    assert!(!out.contains("NOT in it"), "{out}");
    let (bad_writes, _) = summary("HTTP writes (rollback)", &writes);
    assert!(bad_writes.is_empty(), "failed writes: {bad_writes:?}");
    assert_eq!(serving_generation(&p), "1");
    assert_eq!(running(&p, "-db-"), [format!("{} running", p.db(1))]);
}

#[test]
fn an_app_only_release_without_a_front_keeps_the_database_and_says_so() {
    let p = Project::new("shnof");
    p.write_spec(1, "1", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    p.insert_rows(500);
    let before = p.table_digest(&p.db(1));

    p.write_spec_with(2, "2", 2, "scope: project", "  copy: none");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("short gap"), "{out}");
    assert!(!out.contains("copy data"), "{out}");
    assert_eq!(running(&p, "-db-"), [format!("{} running", p.db(1))]);
    assert_eq!(p.with_public_ports(), [p.app(2)]);
    assert!(p.report().contains("gen=2"), "{}", p.report());
    assert_eq!(p.table_digest(&p.db(1)), before);
    assert_eq!(p.generations_on_disk(), [1, 2]);
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));
}

/// Killed at each step of an app-only release behind the front, a re-run
/// converges: generation 2 serves through the front on generation 1's database,
/// one app runs, and no second database was ever made.
#[test]
fn killed_at_any_step_of_an_app_only_release_converges() {
    for action in [
        "share_db",
        "create_app_probe",
        "switch_front",
        "drain_front",
        "stop_app",
        "set_live",
    ] {
        let p = deployed("shkil");
        write_spec(&p, 2, "2", "  copy: none\n");
        Watched::kill_at(&p, action, 1);
        let (code, out) = p.apply(&[]);
        assert_eq!(code, 0, "killed at {action}: {out}");
        assert_eq!(
            p.gemctl(&["diff"]).status.code(),
            Some(0),
            "killed at {action}"
        );
        assert_eq!(serving_generation(&p), "2", "killed at {action}");
        assert_eq!(
            running(&p, "-gem-"),
            [format!("{} running", p.app(2))],
            "killed at {action}"
        );
        let dbs: Vec<String> = p
            .containers()
            .into_iter()
            .filter(|c| c.contains("-db-"))
            .collect();
        assert_eq!(dbs, [format!("{} running", p.db(1))], "killed at {action}");
        assert_eq!(p.holders_of_public_ports(), [p.front()]);
        eprintln!("killed at {action}: converged");
    }
}

/// A release that never becomes healthy: the old app served throughout (it was
/// never stopped), the failed generation's record goes, the database is untouched.
#[test]
fn a_never_healthy_app_only_release_leaves_the_old_app_serving() {
    let p = deployed("shbrk");
    p.insert_rows(300);
    let before = p.table_digest(&p.db(1));
    let (http, tcp) = (p.http, p.tcp);
    let writer = Client::start(Duration::from_millis(20), move || post(http));
    let reporter = Client::start(Duration::from_millis(50), move || report(tcp));
    write_spec(&p, 2, "broken", "  copy: none\n");
    let (code, out) = p.apply(&[]);
    let writes = writer.finish();
    let reports = reporter.finish();
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("kept serving"), "{out}");
    assert_none_failed(&p, &writes, &reports);
    assert_eq!(serving_generation(&p), "1");
    assert_eq!(p.generations_on_disk(), [1]);
    assert_eq!(running(&p, "-db-"), [format!("{} running", p.db(1))]);
    // Every write of the attempt is in generation 1's data, on top of what was there.
    assert_ne!(p.table_digest(&p.db(1)), before);
    assert!(count(&p, 1) >= 300 + writes.len() as u64);
}
