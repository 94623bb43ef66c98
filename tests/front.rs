//! The front door against the real engine: HAProxy (`gemctl-test/haproxy:2.6`)
//! owns the public ports and forwards to the live generation's app. Clients that
//! keep sending through a streamed upgrade see no failed request and no refused
//! connection; a release that never becomes healthy leaves the front on the old
//! generation; a front that dies comes back by itself forwarding where it did; a
//! gemctl killed at any step from the hold to the switch converges on the next run.

mod real;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use real::outcomes::{
    Client, Outcome, assert_none_failed, post, report, serving_generation, summary, tcp_line,
};
use real::{Project, Watched, docker, docker_ok, require_haproxy, sql, wait_until};

fn front_project(test: &str, hold: &str) -> Project {
    require_haproxy();
    let p = Project::new(test);
    p.write_front_spec(1, "1", hold);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    p
}

#[test]
fn a_streamed_upgrade_behind_the_front_fails_no_request_and_refuses_no_connection() {
    let p = front_project("frupg", "30s");
    assert_eq!(
        p.holders_of_public_ports(),
        [p.front()],
        "only the front publishes"
    );
    assert_eq!(serving_generation(&p), "1");
    p.insert_rows(20_000);
    let before: u64 = sql(&p.db(1), "app", "select count(*) from items")
        .parse()
        .unwrap();

    let (http, tcp) = (p.http, p.tcp);
    let writer = Client::start(Duration::from_millis(20), move || post(http));
    let reporter = Client::start(Duration::from_millis(50), move || report(tcp));
    p.write_front_spec(2, "2", "30s");
    let (code, out) = p.apply(&[]);
    std::thread::sleep(Duration::from_millis(500));
    let writes = writer.finish();
    let reports = reporter.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("copy mode: stream"), "{out}");
    assert!(out.contains("switch the front to"), "{out}");
    assert!(
        !out.contains("on its public ports"),
        "no app is recreated for its ports: {out}"
    );

    let longest_write = assert_none_failed(&p, &writes, &reports);
    assert!(writes.len() > 20 && reports.len() > 10);
    // Requests that arrived in the freeze were held, not answered at once.
    assert!(
        longest_write > Duration::from_millis(300),
        "{longest_write:?}"
    );

    let acked = writes.len() as u64;
    let after: u64 = sql(&p.db(2), "app", "select count(*) from items")
        .parse()
        .unwrap();
    assert!(
        after >= before + acked,
        "{before} rows before, {acked} writes acknowledged, {after} in generation 2"
    );
    assert_eq!(serving_generation(&p), "2");
    assert_eq!(p.holders_of_public_ports(), [p.front()]);
    let status: serde_json::Value =
        serde_json::from_slice(&p.gemctl(&["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(status["front"]["forwards_to"], 2, "{status}");
    assert_eq!(status["serving"], 2, "{status}");
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));
}

#[test]
fn a_dump_upgrade_longer_than_the_hold_answers_503_with_the_page_and_refuses_nothing() {
    let p = front_project("frlong", "2s");
    for _ in 0..4 {
        p.insert_rows(100_000);
    }
    let http = p.http;
    let writer = Client::start(Duration::from_millis(20), move || post(http));
    p.write_front_spec_with(2, "2", "2s", "  copy: dump\n");
    let (code, out) = p.apply(&[]);
    std::thread::sleep(Duration::from_millis(500));
    let writes = writer.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("copy mode: dump"), "{out}");
    let (bad, _) = summary("HTTP writes", &writes);
    assert!(
        !bad.is_empty(),
        "the freeze outlasted the hold: some requests got the page"
    );
    for outcome in &bad {
        let Outcome::Failed(answer) = outcome else {
            panic!("refused: {bad:?}");
        };
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 2"),
            "{answer}"
        );
        assert!(answer.contains("Temporarily unavailable"), "{answer}");
    }
    assert_eq!(writes.last().map(|w| &w.0), Some(&Outcome::Ok));
    assert_eq!(serving_generation(&p), "2");
}

#[test]
fn a_release_that_never_becomes_healthy_leaves_the_front_on_the_old_generation() {
    let p = front_project("frbrk", "60s");
    let (http, tcp) = (p.http, p.tcp);
    let writer = Client::start(Duration::from_millis(20), move || post(http));
    let reporter = Client::start(Duration::from_millis(50), move || report(tcp));
    p.write_front_spec(2, "broken", "60s");
    let (code, out) = p.apply(&[]);
    std::thread::sleep(Duration::from_millis(500));
    let writes = writer.finish();
    let reports = reporter.finish();
    assert_eq!(code, 4, "{out}");
    assert!(
        !out.contains(&format!("switch the front to {}", p.app(2))),
        "{out}"
    );
    assert_none_failed(&p, &writes, &reports);
    assert_eq!(serving_generation(&p), "1");
    assert_eq!(p.generations_on_disk(), [1]);
}

#[test]
fn a_front_that_dies_or_is_stopped_comes_back_forwarding_to_the_live_generation() {
    let p = front_project("frdie", "30s");
    p.write_front_spec(2, "2", "30s");
    assert_eq!(p.apply(&[]).0, 0);
    assert_eq!(serving_generation(&p), "2");

    // Killed from the host as a crash would: its restart policy brings it back, and
    // it forwards where its configuration, rewritten at the switch, says.
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &p.front()]);
    assert!(
        std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("the front answers again", Duration::from_secs(30), || {
        tcp_line(p.tcp).contains("gen=2")
    });
    let restarts = docker_ok(&["inspect", "-f", "{{.RestartCount}}", &p.front()]);
    assert_ne!(restarts.trim(), "0", "the engine restarted it");
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));

    // Stopped by hand: the next apply starts it, and nothing else; reconcile too.
    docker_ok(&["stop", &p.front()]);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("start {}", p.front())), "{out}");
    assert_eq!(serving_generation(&p), "2");
    docker_ok(&["stop", &p.front()]);
    let reconciler = p.spawn_reconcile();
    wait_until(
        "reconcile starts the front",
        Duration::from_secs(30),
        || docker_ok(&["inspect", "-f", "{{.State.Running}}", &p.front()]).trim() == "true",
    );
    drop(reconciler);
    assert_eq!(serving_generation(&p), "2");

    // Its logs are one command away.
    let logs = p.gemctl(&["logs", "--role", "front", "--tail", "50"]);
    assert_eq!(logs.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("Loading success"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
}

#[test]
fn killed_from_the_hold_to_the_switch_converges_with_the_front_on_the_live_app() {
    for action in [
        "hold_front",
        "stop_app",
        "prepare_front",
        "switch_front",
        "set_live",
    ] {
        let p = front_project("frkil", "30s");
        p.insert_rows(1_000);
        p.write_front_spec(2, "2", "30s");
        Watched::kill_at(&p, action, 1);

        let (code, out) = p.apply(&[]);
        assert_eq!(code, 0, "killed at {action}: {out}");
        assert_eq!(
            p.gemctl(&["diff"]).status.code(),
            Some(0),
            "killed at {action}"
        );
        let live = serving_generation(&p);
        let status: serde_json::Value =
            serde_json::from_slice(&p.gemctl(&["status", "--output", "json"]).stdout).unwrap();
        assert_eq!(
            status["front"]["forwards_to"].to_string(),
            live,
            "killed at {action}: {status}"
        );
        assert_eq!(status["live"].to_string(), live, "killed at {action}");
        let running_apps: Vec<String> = p
            .containers()
            .into_iter()
            .filter(|c| c.contains("-gem-") && c.ends_with("running"))
            .collect();
        assert_eq!(
            running_apps.len(),
            1,
            "killed at {action}: {running_apps:?}"
        );
        assert_eq!(p.holders_of_public_ports(), [p.front()]);
        eprintln!("killed at {action}: converged to generation {live}");
        let _ = docker(&["ps"]);
    }
}

/// One `GET path` through the front's HTTP port: the whole answer, head and body.
fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn maintenance_answers_with_the_message_keeps_the_front_healthy_and_survives_a_restart() {
    let p = front_project("frmnt", "30s");
    // The spec's own page and TCP line: the front is made again with them.
    std::fs::write(
        p.dir.join("page.html"),
        "<!doctype html><title>Shop</title><p>100% back: {{message}}</p>\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&p.spec).unwrap().replacen(
        "  hold: 30s\n",
        "  hold: 30s\n  page: page.html\n  line: \"DOWN {message} (retry)\"\n",
        1,
    );
    std::fs::write(&p.spec, text).unwrap();
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("make"), "{out}");
    let o = p.gemctl(&[
        "maintenance",
        "on",
        "--message",
        "Back at 5; <soon>",
        "--retry-after",
        "2m",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let page = get(p.http, "/rows");
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    assert!(
        page.to_ascii_lowercase().contains("retry-after: 120"),
        "{page}"
    );
    assert!(
        page.contains("<p>100% back: Back at 5; &lt;soon&gt;</p>"),
        "{page}"
    );
    assert!(get(p.http, "/__gemctl/front").starts_with("HTTP/1.1 200"));
    assert_eq!(tcp_line(p.tcp), "DOWN Back at 5; &lt;soon&gt; (retry)");
    let status: serde_json::Value =
        serde_json::from_slice(&p.gemctl(&["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(
        status["front"]["maintenance"]["message"], "Back at 5; <soon>",
        "{status}"
    );
    // An apply meanwhile says so: clients still get the page.
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("The front answers in maintenance"), "{out}");

    // The front reads the setting from its directory when it starts again.
    docker_ok(&["restart", &p.front()]);
    // Docker's proxy accepts on the host port before HAProxy listens: wait for an
    // answer, which must be the maintenance page.
    let mut page = String::new();
    wait_until(
        "the front answers after its restart",
        Duration::from_secs(20),
        || {
            page = get(p.http, "/rows");
            !page.is_empty()
        },
    );
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    assert!(page.contains("Back at 5; &lt;soon&gt;"), "{page}");

    assert_eq!(p.gemctl(&["maintenance", "off"]).status.code(), Some(0));
    assert!(get(p.http, "/rows").starts_with("HTTP/1.1 200"));
    assert!(tcp_line(p.tcp).starts_with("OK "), "{}", tcp_line(p.tcp));
    assert_eq!(serving_generation(&p), "1");
}

#[test]
fn a_front_that_cannot_start_stops_the_apply_before_anything_stops() {
    let p = front_project("frnost", "30s");
    docker_ok(&["stop", &p.front()]);
    // Someone else took the front's public HTTP port meanwhile.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", p.http)).unwrap();
    p.write_front_spec(2, "2", "30s");
    let (code, out) = p.apply(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&format!("start {}", p.front())), "{out}");
    assert!(
        out.contains(&format!(
            "127.0.0.1:{} is held by a process outside Docker: pid {}",
            p.http,
            std::process::id()
        )),
        "the holder is named: {out}"
    );
    let running: Vec<String> = p
        .containers()
        .into_iter()
        .filter(|c| c.ends_with("running"))
        .collect();
    assert!(
        running.iter().any(|c| c.starts_with(&p.app(1)))
            && running.iter().any(|c| c.starts_with(&p.db(1))),
        "generation 1 still runs: {running:?}"
    );
    assert!(!running.iter().any(|c| c.contains("-2")), "{running:?}");
    drop(squatter);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(serving_generation(&p), "2");
}

/// A changed front replaces the one in place only once HAProxy accepts the new
/// configuration and its new ports are free: otherwise the old front keeps
/// serving and the apply says why.
#[test]
fn a_changed_front_that_could_not_start_leaves_the_old_one_serving() {
    let p = front_project("frchg", "30s");
    let good = std::fs::read_to_string(&p.spec).unwrap();
    let front_image = format!("front:\n  image: {}\n", real::HAPROXY_IMAGE);
    assert!(good.contains(&front_image), "{good}");

    // An image without HAProxy: its check fails before anything is removed.
    std::fs::write(
        &p.spec,
        good.replacen(&front_image, "front:\n  image: gemctl-test/app:1\n", 1),
    )
    .unwrap();
    let (code, out) = p.apply(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("check of the new front configuration")
            && out.contains(&format!("{} keeps running as it was", p.front())),
        "{out}"
    );
    assert_eq!(serving_generation(&p), "1");

    // A new public port someone else holds: named, and nothing is removed.
    let taken = real::spec::free_port();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    std::fs::write(
        &p.spec,
        good.replacen(
            &format!("127.0.0.1:{}:8080", p.http),
            &format!("127.0.0.1:{taken}:8080"),
            1,
        ),
    )
    .unwrap();
    let (code, out) = p.apply(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "127.0.0.1:{taken} is held by a process outside Docker"
        )),
        "{out}"
    );
    assert_eq!(serving_generation(&p), "1");
    drop(squatter);

    std::fs::write(&p.spec, good).unwrap();
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));
}
