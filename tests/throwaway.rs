//! Throwaway copies of live data, against the real engine: a preview made while a
//! writer writes through the live app (nothing fails, the preview holds every row
//! acknowledged before its copy began), testers' rows that never reach
//! production when the preview is promoted, `--discard`; `apply --check` that
//! reports a bad and a good release and leaves the host exactly as it was;
//! restore drills of a good backup and of one that will not load (alerted once
//! by reconcile); and a gemctl killed while it copies for a preview or while it
//! drills a backup.

mod real;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use real::outcomes::{Client, post, summary};
use real::{Project, docker_ok, http_to as http, sql, wait_until};

/// The `preview:` section on `port`.
fn preview(port: u16) -> String {
    format!("preview:\n  ports: [\"127.0.0.1:{port}:8080\"]\n")
}

fn count(db: &str) -> u64 {
    sql(db, "app", "select count(*) from items")
        .parse()
        .unwrap()
}

fn preview_db(p: &Project) -> String {
    format!("{}-preview-db", p.name)
}

/// A gemctl a test started, killed when the test ends before it did (declared
/// after the project, it goes first: nothing writes to the project's directory
/// once that is removed).
struct Spawned(Option<std::process::Child>);

impl Spawned {
    /// Its exit and output, once it ends.
    fn wait(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }

    /// Killed with SIGKILL now.
    fn kill(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Project `name`'s generation 1 live with `rows` rows, its spec with a
/// `preview:` section on a free port (returned).
fn live_with_preview_port(name: &str, rows: u64) -> (Project, u16) {
    let p = Project::new(name);
    let port = real::spec::free_port();
    p.write_spec_with(1, "1", 2, "scope: project", &preview(port));
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(rows);
    (p, port)
}

/// `gemctl backups --drill --latest -o json`, which must pass: its document.
fn drill_latest(p: &Project) -> serde_json::Value {
    let o = p.gemctl(&["backups", "--drill", "--latest", "-o", "json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["drill"]["passed"], true, "{doc}");
    doc
}

/// Names of this project's throwaway containers of `kind`.
fn throwaways(p: &Project, kind: &str) -> Vec<String> {
    docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.gemctl.project={}", p.name),
        "--filter",
        &format!("label=io.gemctl.throwaway={kind}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn a_preview_copies_live_data_while_it_serves_and_promote_leaves_testers_rows_behind() {
    let (p, port) = live_with_preview_port("prev", 5_000);

    // Generation 2 is previewed while a client writes through the live app.
    p.write_spec_with(2, "2", 2, "scope: project", &preview(port));
    let http_port = p.http;
    let writer = Client::start(Duration::from_millis(20), move || post(http_port));
    std::thread::sleep(Duration::from_millis(300));
    let before = count(&p.db(1));
    let o = p.gemctl(&["preview"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seen = writer.finish();
    let (failed, _) = summary("writer through the live app", &seen);
    assert!(failed.is_empty(), "the live app kept serving: {failed:?}");
    let acked = seen.len() as u64;
    assert!(
        count(&preview_db(&p)) >= before,
        "the preview holds every row acknowledged before its copy began"
    );
    let (status, body) = http(port, "GET", "/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("gen=2"), "{body}");

    // Status shows it; --discard leaves nothing; --refresh-less preview again.
    let s = p.gemctl(&["status", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(doc["preview"]["record"]["generation"], 2, "{doc}");
    assert_eq!(doc["preview"]["record"]["from"], 1, "{doc}");
    assert!(doc["generations"].as_array().unwrap().len() == 1, "{doc}");
    let o = p.gemctl(&["preview", "--discard"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(throwaways(&p, "preview").is_empty());
    assert!(!p.storage().join("preview").exists());
    let o = p.gemctl(&["preview"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Testers write to the preview; production writes go on.
    let (status, body) = http(port, "POST", "/rows?n=777");
    assert_eq!(status, 200, "{body}");
    p.insert_rows(11);
    let production = count(&p.db(1));
    assert_eq!(production, 5_000 + acked + 11);

    // Promote: the plan says the preview goes; generation 2 has production's
    // rows, not the testers'.
    let diff = p.gemctl(&["diff"]);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains("discard the preview"), "{text}");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        count(&p.db(2)),
        production,
        "every production row, no tester's"
    );
    assert!(throwaways(&p, "preview").is_empty());
    assert!(!p.storage().join("preview").exists());
}

/// What `apply --check` must leave as it was: every container (name, id, state)
/// and the storage root's listing, generation directories included.
fn host_snapshot(p: &Project) -> (Vec<String>, BTreeSet<String>) {
    let containers = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.gemctl.project={}", p.name),
        "--format",
        "{{.Names}} {{.ID}} {{.State}}",
    ])
    .lines()
    .map(str::to_string)
    .collect::<BTreeSet<_>>()
    .into_iter()
    .collect();
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(p.storage()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        files.insert(name.clone());
        if name.bytes().all(|b| b.is_ascii_digit()) {
            for inner in std::fs::read_dir(entry.path()).unwrap().flatten() {
                files.insert(format!("{name}/{}", inner.file_name().to_string_lossy()));
            }
        }
    }
    (containers, files)
}

#[test]
fn apply_check_reports_a_bad_and_a_good_release_and_leaves_the_host_as_it_was() {
    let p = Project::new("check");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(100);
    let before = host_snapshot(&p);

    p.write_spec(2, "broken", 2, "scope: project");
    let o = p.gemctl(&["apply", "--check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("check FAILED") && out.contains("mode=broken"),
        "{out}"
    );
    assert!(
        out.contains("--- last lines of"),
        "the logs are shown: {out}"
    );
    assert_eq!(host_snapshot(&p), before);

    p.write_spec(2, "2", 2, "scope: project");
    let o = p.gemctl(&["apply", "--check", "-o", "json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["passed"], true, "{doc}");
    assert_eq!(doc["generation"], 2, "{doc}");
    assert_eq!(host_snapshot(&p), before);
    assert!(throwaways(&p, "check").is_empty());

    real::create_stranger(&p.app(7));
    let o = p.gemctl(&["apply", "--check"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A copy of `good` under a newer backup name whose dumps will not load, with a
/// checksum file that matches it.
fn unloadable_copy(p: &Project, good: &std::path::Path) -> String {
    let work = p.dir.join("bad");
    std::fs::create_dir_all(&work).unwrap();
    let run = |cmd: &str| {
        let o = Command::new("bash")
            .args(["-c", cmd])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&format!("tar -xf {}", good.display()));
    run("for f in $(cut -f1 databases.tsv); do printf 'not a dump' > \"$f\"; done");
    let name = format!("{}-gen1-29991231T000000.000Z.tar", p.name);
    let dir = good.parent().unwrap();
    run(&format!(
        "tar -cf {dir}/{name} gemctl-backup.txt globals.sql databases.tsv $(cut -f1 databases.tsv) && \
         cd {dir} && sha256sum {name} > {name}.sha256",
        dir = dir.display()
    ));
    name
}

#[test]
fn a_drill_proves_a_good_backup_and_a_bad_one_fails_and_is_alerted_once() {
    let p = Project::new("drill");
    p.write_spec_with(
        1,
        "1",
        2,
        "scope: project",
        &format!(
            "backup:\n  drill:\n    every: 1s\n    check: select 1 from items limit 1\n{}",
            p.notify_section()
        ),
    );
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(321);
    let o = p.gemctl(&["backup"]);
    assert_eq!(o.status.code(), Some(0));
    let before = host_snapshot(&p);

    let doc = drill_latest(&p);
    assert_eq!(doc["drill"]["tables"]["app"]["public.items"], 321, "{doc}");
    assert_eq!(doc["drill"]["check_rows"], 1, "{doc}");
    assert!(throwaways(&p, "drill").is_empty());
    assert!(!p.storage().join("drill").exists());
    let listing = p.gemctl(&["backups"]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("passed"));
    let (containers, _) = host_snapshot(&p);
    assert_eq!(containers, before.0, "the live generation is untouched");

    let good = p
        .storage()
        .join("backups")
        .join(doc["drill"]["backup"].as_str().unwrap());
    let bad = unloadable_copy(&p, &good);
    // Reconcile drills the newest backup not drilled yet, and tells of its
    // failure once, however many rounds see it.
    let mut r = p.spawn_reconcile();
    wait_until(
        "the bad backup is drilled",
        Duration::from_secs(120),
        || {
            p.storage()
                .join("backups")
                .join(format!("{bad}.drill.json"))
                .exists()
        },
    );
    wait_until("a few more rounds", Duration::from_secs(60), || {
        p.reconcile_rounds().len() >= 4
    });
    real::terminate(&mut r);
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            p.storage()
                .join("backups")
                .join(format!("{bad}.drill.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["passed"], false, "{record}");
    let told: Vec<serde_json::Value> = p
        .alerts()
        .into_iter()
        .filter(|a| a["event"] == "drill_failed")
        .collect();
    assert_eq!(told.len(), 1, "told once: {told:?}");
    let o = p.gemctl(&["backups", "--drill", &bad]);
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn killed_while_copying_for_a_preview_discard_or_apply_converges() {
    for then in ["discard", "apply"] {
        let (p, port) = live_with_preview_port(&format!("pk{then}"), 200_000);
        p.write_spec_with(2, "2", 2, "scope: project", &preview(port));
        let child = spawn(&p, &["preview"]);
        let copying = p.storage().join("preview").join("pgdata");
        wait_until("the preview's copy begins", Duration::from_secs(60), || {
            copying.exists()
        });
        child.kill();
        match then {
            "discard" => {
                let o = p.gemctl(&["preview", "--discard"]);
                assert_eq!(o.status.code(), Some(0));
            }
            _ => {
                let (code, out) = p.apply(&[]);
                assert_eq!(code, 0, "{out}");
                assert_eq!(count(&p.db(2)), 200_000);
            }
        }
        assert!(throwaways(&p, "preview").is_empty(), "{then}");
        assert!(!p.storage().join("preview").exists(), "{then}");
        let live = p.db(if then == "apply" { 2 } else { 1 });
        assert_eq!(
            sql(&live, "app", "select count(*) from pg_replication_slots"),
            "0",
            "{then}: no slot left in the live database"
        );
        // The lock was the killed gemctl's: the next command took it over.
        let (code, out) = p.apply(&[]);
        assert_eq!(code, 0, "{out}");
    }
}

#[test]
fn killed_while_drilling_the_next_drill_cleans_up_and_passes() {
    // Killed while the drill's db starts, then while the backup is restored
    // into it (its one-shot job runs).
    for (at, container) in [("db", "drill-db"), ("restore", "drill-copy")] {
        let p = Project::new(&format!("dk{at}"));
        assert_eq!(p.apply(&[]).0, 0);
        p.insert_rows(50_000);
        let o = p.gemctl(&["backup"]);
        assert_eq!(o.status.code(), Some(0));
        let before = host_snapshot(&p);
        let child = spawn(&p, &["backups", "--drill", "--latest"]);
        let name = format!("{}-{container}", p.name);
        wait_until(&format!("{name} exists"), Duration::from_secs(60), || {
            throwaways(&p, "drill").contains(&name)
        });
        child.kill();
        assert!(
            !throwaways(&p, "drill").is_empty(),
            "{at}: something was left"
        );

        // What the killed drill left is no stranger to an apply, and the next
        // drill removes it, drills and leaves nothing behind.
        let (code, out) = p.apply(&[]);
        assert_eq!(code, 0, "{at}: {out}");
        let doc = drill_latest(&p);
        assert_eq!(
            doc["drill"]["tables"]["app"]["public.items"], 50_000,
            "{at}: {doc}"
        );
        assert!(throwaways(&p, "drill").is_empty(), "{at}");
        assert!(!p.storage().join("drill").exists(), "{at}");
        let (containers, _) = host_snapshot(&p);
        assert_eq!(
            containers, before.0,
            "{at}: the live generation is untouched"
        );
    }
}

/// Spawns `gemctl ARGS -f SPEC` with its output captured.
fn spawn(p: &Project, args: &[&str]) -> Spawned {
    Spawned(Some(
        Command::new(env!("CARGO_BIN_EXE_gemctl"))
            .args(args)
            .args(["-f", p.spec.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

#[test]
fn a_running_check_is_left_to_it_and_a_preview_being_made_makes_apply_wait() {
    let (p, port) = live_with_preview_port("inuse", 2_000);

    // A deploy check of the slow tag (8 s to healthy) runs on its copy...
    p.write_spec_with(2, "slow", 2, "scope: project", &preview(port));
    let check = spawn(&p, &["apply", "--check"]);
    // While its copy is made and catches up (its db exists, its app does not
    // yet), the copy needs the live database: a deploy then waits for the
    // project's lock (it would take the copy's slot name and stop the live db).
    let (check_db, check_app) = (
        format!("{}-check-db", p.name),
        format!("{}-check-app", p.name),
    );
    wait_until("the check's db exists", Duration::from_secs(60), || {
        throwaways(&p, "check").contains(&check_db)
    });
    let mut went_live = false;
    if !throwaways(&p, "check").contains(&check_app) {
        let (code, out) = p.apply(&[]);
        // (Or the check had just detached: then the deploy goes live.)
        went_live = code == 0 && throwaways(&p, "check").contains(&check_app);
        assert!(
            code == 1 && out.contains("another gemctl is working on this project") || went_live,
            "{code}: {out}"
        );
    }
    wait_until("the check's app exists", Duration::from_secs(60), || {
        throwaways(&p, "check").contains(&check_app)
    });
    // ...a second one is refused, naming the first...
    let o = p.gemctl(&["apply", "--check"]);
    assert_ne!(o.status.code(), Some(0));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains(&format!("the check of project {} is in use by", p.name))
            && said.contains("`apply --check`"),
        "{said}"
    );
    // ...`status` says who runs it...
    let o = p.gemctl(&["status"]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("in use: the check (a throwaway copy), by pid")
            && shown.contains("`apply --check`"),
        "{shown}"
    );
    // ...and a deploy meanwhile leaves it alone and goes live.
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        went_live || out.contains("a deploy check is running"),
        "{out}"
    );
    let done = check.wait();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(throwaways(&p, "check").is_empty());
    assert!(!p.storage().join("check").exists());
    assert_eq!(count(&p.db(2)), 2_000);

    // An apply while a preview is being made is refused until it is up; then it
    // discards the preview and goes live.
    p.write_spec_with(3, "slow", 2, "scope: project", &preview(port));
    let making = spawn(&p, &["preview"]);
    let preview_app = format!("{}-preview-app", p.name);
    wait_until("the preview's app exists", Duration::from_secs(60), || {
        throwaways(&p, "preview").contains(&preview_app)
    });
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("making (or discarding) the preview"), "{out}");
    assert_eq!(p.with_public_ports(), [p.app(2)]);
    let made = making.wait();
    assert_eq!(made.status.code(), Some(0));
    assert_eq!(http(port, "GET", "/rows").0, 200, "the preview serves");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(throwaways(&p, "preview").is_empty());
    assert_eq!(count(&p.db(3)), 2_000);
}

#[test]
fn a_preview_of_a_project_behind_a_front_door_is_published_on_its_own_port() {
    let p = Project::new("pvfront");
    let port = real::spec::free_port();
    p.write_front_spec_with(1, "1", "30s", &preview(port));
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(500);
    p.write_front_spec_with(2, "2", "30s", &preview(port));
    let o = p.gemctl(&["preview"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The preview answers on its port with the rows copied; the front still
    // sends the project's clients to generation 1.
    assert_eq!(http(port, "GET", "/rows"), (200, "500".to_string()));
    assert!(p.report().contains("gen=1"), "{}", p.report());
    p.insert_rows(1);
    assert_eq!(http(port, "GET", "/rows"), (200, "500".to_string()));

    // Promoted: the front goes to generation 2, built from live data.
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(p.report().contains("gen=2"), "{}", p.report());
    assert_eq!(count(&p.db(2)), 501);
    assert!(throwaways(&p, "preview").is_empty());
}
