//! The streamed upgrade against the real engine and real PostgreSQL: every row,
//! sequence and role arrives; the old app serves during the base backup; nothing
//! of the replication (slot, standby setting, password) is left behind; a broken
//! new app falls back with every row; acknowledged writes survive the switch; and
//! a gemctl killed at any step converges on the next run.

mod real;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use real::client::try_post;
use real::{Project, Watched, docker, docker_ok, sql};

/// Rows, tables, sequences and a role beyond the app's own, in two databases.
fn more_data(p: &Project) {
    let db = p.db(1);
    sql(&db, "app", "create database shop");
    sql(&db, "app", "create role reader login password 'r3ader'");
    sql(
        &db,
        "shop",
        "create table orders (id serial primary key, amount numeric not null); \
         insert into orders (amount) select g * 1.5 from generate_series(1, 5000) g; \
         create sequence invoice_no start 1000; \
         select nextval('invoice_no') from generate_series(1, 7)",
    );
    sql(
        &db,
        "app",
        "create table notes (id bigint primary key, body text); \
         insert into notes select g, repeat('x', g % 50) from generate_series(1, 3000) g",
    );
}

/// What `more_data` made, as it reads in `db`.
fn more_digest(db: &str) -> Vec<String> {
    vec![
        sql(
            db,
            "shop",
            "select count(*) || ':' || md5(string_agg(t::text, ',' order by id)) from orders t",
        ),
        sql(db, "shop", "select last_value from invoice_no"),
        sql(db, "shop", "select last_value from orders_id_seq"),
        sql(
            db,
            "app",
            "select count(*) || ':' || md5(string_agg(t::text, ',' order by id)) from notes t",
        ),
        sql(db, "app", "select last_value from items_id_seq"),
    ]
}

fn pgdata(p: &Project, g: u64) -> std::path::PathBuf {
    p.storage().join(g.to_string()).join("pgdata")
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &Path, needle: &[u8]) -> Option<String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                return Some(path.display().to_string());
            }
        }
    }
    None
}

/// Nothing of the replication is left in generation `g`'s data directory.
fn no_replication_left(p: &Project, g: u64) {
    let dir = pgdata(p, g);
    assert!(
        !dir.join("standby.signal").exists(),
        "standby.signal in {g}"
    );
    assert!(
        !dir.join("gemctl-standby.pgpass").exists(),
        "password file in {g}"
    );
    let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        !auto.contains("primary_conninfo") && !auto.contains("primary_slot_name"),
        "standby settings in {g}: {auto}"
    );
    let slots: Vec<_> = std::fs::read_dir(dir.join("pg_replslot"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(slots.is_empty(), "slots in {g}: {slots:?}");
    assert_eq!(any_file_holds(&dir, b"s3cret"), None, "the password in {g}");
}

fn health_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"status\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("OK ")
}

#[test]
fn a_streamed_upgrade_keeps_every_row_sequence_and_role_and_leaves_no_replication_behind() {
    let p = Project::new("strm");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(20_000);
    more_data(&p);
    let items = p.table_digest(&p.db(1));
    let more = more_digest(&p.db(1));
    // The official image allows no replication connection; the test image's own
    // line goes, so that gemctl's is what the stream uses.
    let db1 = p.db(1);
    let hba = sql(&db1, "app", "show hba_file");
    docker_ok(&[
        "exec",
        &db1,
        "sed",
        "-i",
        "/^host replication all all/d",
        &hba,
    ]);
    sql(&db1, "app", "select pg_reload_conf()");

    p.write_spec(2, "2", 2, "scope: project");
    let o = p.gemctl(&["diff"]);
    let diff = String::from_utf8_lossy(&o.stdout);
    assert!(diff.contains("copy mode: stream"), "{diff}");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("base backup of generation 1"), "{out}");
    assert!(out.contains("write freeze:"), "{out}");

    let db2 = p.db(2);
    let hba_text = docker_ok(&["exec", &db2, "cat", &hba]);
    assert!(
        hba_text.contains("# added by gemctl") && hba_text.contains("host replication app samenet"),
        "db-2 inherits the replication line for the next upgrade: {hba_text}"
    );
    assert_eq!(p.table_digest(&db2), items);
    assert_eq!(more_digest(&db2), more);
    assert_eq!(
        docker_ok(&[
            "exec",
            &db2,
            "psql",
            "postgresql://reader:r3ader@127.0.0.1/shop",
            "-X",
            "-tA",
            "-c",
            "select current_user",
        ]),
        "reader",
        "the role logs in with its password"
    );
    // Writable, and the app writes to it.
    p.insert_rows(10);
    assert!(p.report().contains("gen=2"), "{}", p.report());
    assert_eq!(
        sql(&db2, "app", "select count(*) from pg_replication_slots"),
        "0"
    );
    no_replication_left(&p, 1);
    no_replication_left(&p, 2);
    assert_eq!(
        p.containers(),
        [
            format!("{} exited", p.db(1)),
            format!("{} running", p.db(2)),
            format!("{} exited", p.app(1)),
            format!("{} running", p.app(2)),
        ]
    );

    // The report says how the data came over.
    let o = p.gemctl(&["history", "--output", "json"]);
    let history = real::history_entries(&o);
    let last = &history[0];
    assert_eq!(last["copy"]["mode"], "stream", "{history:#?}");
    assert!(
        last["copy"]["bytes"].as_u64().unwrap() > 1_000_000,
        "{history:#?}"
    );
    assert!(last["copy"]["freeze_ms"].as_u64().is_some(), "{history:#?}");
    assert!(last["copy"]["lag_bytes"].as_u64().is_some(), "{history:#?}");
    eprintln!(
        "freeze: {} ms, lag at the freeze: {} bytes, base backup: {} bytes",
        last["copy"]["freeze_ms"], last["copy"]["lag_bytes"], last["copy"]["bytes"]
    );

    // db-1's control data, read from the host as in the freeze, is what
    // pg_controldata says (the fallback when gemctl may not read the file).
    let spec = gemctl::spec::Spec::load_with(&p.spec, gemctl::spec::EnvFiles::Check).unwrap();
    let from_host = gemctl::stream::read_control_file(&pgdata(&p, 1)).expect("root reads it");
    let by_tool = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let engine = gemctl::docker::Docker::connect().await.unwrap();
        gemctl::stream::control_data(&engine, &spec, 1, 2)
            .await
            .unwrap()
    });
    assert_eq!(from_host, by_tool);
    assert_eq!(by_tool.state, "shut down");

    let o = p.gemctl(&["status"]);
    let status = String::from_utf8_lossy(&o.stdout);
    assert!(status.contains("last upgrade: stream, freeze "), "{status}");

    // A rollback starts generation 1's db again: no slot of gemctl's in it.
    p.write_spec(1, "1", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        sql(&p.db(1), "app", "select count(*) from pg_replication_slots"),
        "0"
    );
    assert_eq!(p.table_digest(&p.db(1)), items);
}

#[test]
fn the_old_app_serves_during_the_base_backup() {
    let p = Project::new("srvbb");
    assert_eq!(p.apply(&[]).0, 0);
    for _ in 0..4 {
        p.insert_rows(100_000);
    }
    p.write_spec(2, "2", 2, "scope: project");
    let mut w = Watched::start(&p);
    assert!(w.until(|v| Watched::step_started(v, "base_backup")));
    // While the base backup runs (until the next step starts), the old app answers
    // its health every time it is asked.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, tcp) = (stop.clone(), p.tcp);
        std::thread::spawn(move || {
            let (mut asked, mut answered) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                asked += 1;
                if health_answers(tcp) {
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (asked, answered)
        })
    };
    assert!(w.until(|v| v["event"] == "step_started"));
    stop.store(true, Ordering::SeqCst);
    let (asked, answered) = poller.join().unwrap();
    assert!(
        asked > 0 && answered == asked,
        "health answered {answered} of {asked} times while the base backup ran"
    );
    assert!(w.until(|v| v["event"] == "step_started" && v["step"]["action"] == "set_live"));
    assert_eq!(w.child.wait().unwrap().code(), Some(0));
}

#[test]
fn the_base_backup_is_held_in_a_session_of_its_own_or_through_docker_exec_when_refused() {
    let p = Project::new("strhba");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(5_000);
    let before = p.table_digest(&p.db(1));
    // gemctl connects to db-1 from the host and holds the backup in that session.
    p.write_spec(2, "2", 2, "scope: project");
    let (code, out) = p.apply(&["--output", "json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("held in a session over TCP to "), "{out}");
    assert_eq!(p.table_digest(&p.db(2)), before);
    no_replication_left(&p, 2);

    // db-2 refuses connections from the host's end of the private network (the
    // bridge's gateway), as an operator's pg_hba.conf may: the backup is held by
    // psql inside db-2 instead.
    p.insert_rows(1_000);
    let before = p.table_digest(&p.db(2));
    let gateway = String::from_utf8_lossy(
        &docker(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            &format!("{}-net", p.name),
        ])
        .stdout,
    )
    .trim()
    .to_string();
    assert!(!gateway.is_empty());
    let db2 = p.db(2);
    let hba = sql(&db2, "app", "show hba_file");
    docker_ok(&[
        "exec",
        &db2,
        "sed",
        "-i",
        &format!("1i host all all {gateway}/32 reject"),
        &hba,
    ]);
    sql(&db2, "app", "select pg_reload_conf()");
    p.write_spec(3, "1", 2, "scope: project");
    let (code, out) = p.apply(&["--output", "json"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("held in a psql session in {db2} (docker exec)")),
        "{out}"
    );
    assert_eq!(p.table_digest(&p.db(3)), before);
    assert!(p.report().contains("gen=3"), "{}", p.report());
    no_replication_left(&p, 3);
    p.insert_rows(1);
}

#[test]
fn a_never_healthy_app_after_the_promotion_falls_back_to_the_old_db_with_every_row() {
    let p = Project::new("strbrk");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(5_000);
    let before = p.table_digest(&p.db(1));
    p.write_spec(2, "broken", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("promote"), "{out}");
    assert_eq!(p.table_digest(&p.db(1)), before);
    assert_eq!(p.with_public_ports(), [p.app(1)]);
    assert!(p.report().contains("gen=1"), "{}", p.report());
    assert_eq!(
        sql(&p.db(1), "app", "select count(*) from pg_replication_slots"),
        "0"
    );
    assert_eq!(p.generations_on_disk(), [1]);
    no_replication_left(&p, 1);
    p.insert_rows(1);
}

#[test]
fn a_base_backup_that_fails_falls_back_before_the_freeze_with_the_old_app_serving() {
    let p = Project::new("strbbf");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(1_000);
    let before = p.table_digest(&p.db(1));
    // No WAL sender: the base backup cannot connect.
    sql(&p.db(1), "app", "alter system set max_wal_senders = 0");
    docker_ok(&["restart", &p.db(1)]);
    real::wait_until("db-1 back", Duration::from_secs(60), || {
        docker(&["exec", &p.db(1), "pg_isready", "-q", "-h", "127.0.0.1"])
            .status
            .success()
    });
    p.write_spec(2, "2", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("base backup"), "{out}");
    assert!(out.contains("generation 1 kept serving"), "{out}");
    assert_eq!(p.generations_on_disk(), [1]);
    assert_eq!(
        p.containers(),
        [
            format!("{} running", p.db(1)),
            format!("{} running", p.app(1)),
        ]
    );
    assert_eq!(p.table_digest(&p.db(1)), before);
    assert_eq!(
        sql(&p.db(1), "app", "select count(*) from pg_replication_slots"),
        "0"
    );
    no_replication_left(&p, 1);
}

#[test]
fn every_write_acknowledged_during_a_streamed_upgrade_is_in_the_new_db() {
    let p = Project::new("strwr");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(50_000);
    let before: u64 = sql(&p.db(1), "app", "select count(*) from items")
        .parse()
        .unwrap();
    p.write_spec(2, "2", 2, "scope: project");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acked, port) = (stop.clone(), acked.clone(), p.http);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if try_post(port) {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (code, out) = p.apply(&[]);
    // Some writes land on generation 2 as well.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(code, 0, "{out}");
    let after: u64 = sql(&p.db(2), "app", "select count(*) from items")
        .parse()
        .unwrap();
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 10, "the writer wrote: {acked}");
    assert!(
        after >= before + acked,
        "{before} rows before, {acked} writes acknowledged, {after} rows in generation 2"
    );
}

/// Kills gemctl when a given step of a streamed upgrade starts, then applies
/// again: the host converges (to 2, or back to 1), every row is kept, one app is
/// public, one db runs, and no slot of gemctl's stays in it.
/// Every step boundary of a streamed upgrade, in order: the step gemctl is killed
/// at (the `nth` time it starts).
const KILL_POINTS: [(&str, usize); 12] = [
    ("allow_replication", 1),
    ("base_backup", 1),
    ("create_db", 1),
    ("wait_catch_up", 1),
    ("stop_app", 1),
    ("stop_primary", 1),
    ("wait_replay", 1),
    ("promote", 1),
    ("mark_ready", 1),
    ("create_app_probe", 1),
    ("expose_app", 1),
    ("set_live", 1),
];

// The table is run in three parts so that they run side by side.
#[test]
fn killed_while_the_old_app_serves_a_streamed_upgrade_converges_on_the_next_run() {
    killed_at(&KILL_POINTS[..4]);
}

#[test]
fn killed_in_the_freeze_of_a_streamed_upgrade_converges_on_the_next_run() {
    killed_at(&KILL_POINTS[4..8]);
}

#[test]
fn killed_during_the_cut_over_of_a_streamed_upgrade_converges_on_the_next_run() {
    killed_at(&KILL_POINTS[8..]);
}

/// Kills a streamed upgrade at each of `points`, runs apply again, and checks it
/// converged: one public app, one running db, every row, no replication left.
fn killed_at(points: &[(&str, usize)]) {
    for &(action, nth) in points {
        let p = Project::new("strkil");
        assert_eq!(p.apply(&[]).0, 0);
        p.insert_rows(30_000);
        let before = p.table_digest(&p.db(1));
        p.write_spec(2, "2", 2, "scope: project");
        Watched::kill_at(&p, action, nth);

        let (code, out) = p.apply(&[]);
        assert_eq!(code, 0, "killed at {action}: {out}");
        assert_eq!(
            p.gemctl(&["diff"]).status.code(),
            Some(0),
            "killed at {action}"
        );
        let public = p.with_public_ports();
        assert_eq!(public.len(), 1, "killed at {action}: {public:?}");
        let live: u64 = if public[0] == p.app(2) { 2 } else { 1 };
        assert_eq!(p.table_digest(&p.db(live)), before, "killed at {action}");
        let running_dbs: Vec<String> = p
            .containers()
            .into_iter()
            .filter(|c| c.contains("-db-") && c.ends_with("running"))
            .collect();
        assert_eq!(running_dbs.len(), 1, "killed at {action}: {running_dbs:?}");
        assert_eq!(
            sql(
                &p.db(live),
                "app",
                "select count(*) from pg_replication_slots"
            ),
            "0",
            "killed at {action}"
        );
        assert_eq!(
            sql(&p.db(live), "app", "select pg_is_in_recovery()"),
            "f",
            "killed at {action}"
        );
        no_replication_left(&p, 1);
        if live == 2 {
            no_replication_left(&p, 2);
        }
        p.insert_rows(1);
        eprintln!("killed at {action}: converged to generation {live}");
        let _ = docker(&["ps"]);
    }
}

#[test]
fn full_verification_in_stream_mode_compares_every_table_in_the_freeze() {
    let p = Project::new("strvfy");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(20_000);
    let before = p.table_digest(&p.db(1));
    p.write_spec_with(2, "2", 2, "scope: project", "  verify: full");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("copy mode: stream"), "{out}");
    let at = |what: &str| out.find(what).unwrap_or_else(|| panic!("{what}: {out}"));
    assert!(at("verify generation 2's data against generation 1") > at("stop "));
    assert!(at("verify generation 2's data") < at("checkpoint and shut down"));
    assert_eq!(p.table_digest(&p.db(2)), before);
}

/// The exposed app is made off its network and put on it once it runs (its public
/// ports are set up then, with its interface up). One a gemctl killed between the
/// two left running without its network (and its ports) is observed as stopped:
/// the next run starts it, which puts it on its network with its ports.
#[test]
fn an_exposed_app_left_off_its_network_by_a_killed_run_is_put_back_on_it() {
    let p = Project::new("strnet");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(10);
    docker_ok(&[
        "network",
        "disconnect",
        &format!("{}-net", p.name),
        &p.app(1),
    ]);
    assert!(p.with_public_ports().is_empty());
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("start {}", p.app(1))), "{out}");
    assert_eq!(p.with_public_ports(), [p.app(1)]);
    p.insert_rows(1);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(&format!("start {}", p.app(1))), "{out}");
}
