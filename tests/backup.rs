//! Backups and restores on the real Docker engine with real PostgreSQL: a backup
//! taken while the app writes, restored into a new generation; damaged backups
//! refused with nothing changed; retention; bootstrap from a backup; and the
//! reconcile loop taking scheduled backups and leaving a failed generation alone.
//!
//! Needs the images from `scripts/build-images`. Every test has its own project,
//! names, ports and storage, removed when the test ends, pass or fail.

mod real;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use real::*;

/// One value from `psql` in a db container of the project.
fn query(db: &str, sql: &str) -> String {
    docker_ok(&[
        "exec", db, "psql", "-U", "app", "-d", "app", "-X", "-tA", "-c", sql,
    ])
}

/// `count:md5` of the items with `id <= upto`, in id order.
fn digest_upto(db: &str, upto: u64) -> String {
    query(
        db,
        &format!(
            "select count(*) || ':' || md5(coalesce(string_agg(t::text, ',' order by id), '')) \
             from items t where id <= {upto}"
        ),
    )
}

fn backups_json(p: &Project) -> Vec<serde_json::Value> {
    let o = p.gemctl(&["backups", "-o", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["backups"].as_array().unwrap().clone()
}

fn backup_dir(p: &Project) -> PathBuf {
    p.storage().join("backups")
}

/// Takes a backup with `gemctl backup`; returns its path.
fn take_backup(p: &Project) -> PathBuf {
    let o = p.gemctl(&["backup", "-o", "json"]);
    assert!(o.status.success(), "gemctl backup failed");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    PathBuf::from(v["backup"]["path"].as_str().unwrap())
}

/// Everything an operator could see change: containers (name, id, state), the
/// files under the storage root, the live pointer and the pin.
fn host_state(p: &Project) -> (Vec<String>, Vec<String>) {
    let containers = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.gemctl.project={}", p.name),
        "--format",
        "{{.Names}} {{.ID}} {{.State}}",
    ]);
    let mut containers: Vec<String> = containers.lines().map(str::to_string).collect();
    containers.sort();
    let mut files = Vec::new();
    fn walk(dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            // The audit trail records the refusal too: that is its job.
            if path.ends_with("audit.jsonl") {
                continue;
            }
            // Stop above the database's own files: postgres changes them as it runs.
            if path.ends_with("pgdata") {
                out.push(path.display().to_string());
                continue;
            }
            let contents = if path.is_file() {
                std::fs::read_to_string(&path).unwrap_or_default()
            } else {
                String::new()
            };
            out.push(format!("{} {contents}", path.display()));
            if path.is_dir() && depth < 3 {
                walk(&path, depth + 1, out);
            }
        }
    }
    walk(&p.storage(), 0, &mut files);
    files.sort();
    (containers, files)
}

#[test]
fn a_backup_taken_while_the_app_writes_restores_every_committed_row_into_a_new_generation() {
    let p = Project::new("bkwr");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(200_000);

    // One writer adds rows request after request, before, during and after the
    // backup; `committed` is the row count the app last confirmed.
    let stop = AtomicBool::new(false);
    let committed = AtomicU64::new(0);
    let failed_writes = AtomicU64::new(0);
    let (before, during) = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = p.http("POST", "/rows?n=3");
                match (status, body.parse::<u64>()) {
                    (200, Ok(n)) => committed.store(n, Ordering::SeqCst),
                    _ => {
                        failed_writes.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        wait_until("the writer to run", Duration::from_secs(30), || {
            committed.load(Ordering::SeqCst) > 200_030
        });
        let before = committed.load(Ordering::SeqCst);
        let path = take_backup(&p);
        let during = committed.load(Ordering::SeqCst) - before;
        assert!(path.is_file());
        stop.store(true, Ordering::SeqCst);
        (before, during)
    });
    assert_eq!(
        failed_writes.load(Ordering::SeqCst),
        0,
        "the app served every write while the backup ran"
    );
    assert!(during > 0, "writes went on during the backup");
    let final_rows = committed.load(Ordering::SeqCst);

    // The backup is listed, with its generation and an intact checksum.
    let list = backups_json(&p);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["generation"], 1);
    let o = p.gemctl(&["backups", "--verify"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(" ok"));

    // Restored into generation 2; generation 1 stays, stopped, for rollback.
    let expected = digest_upto(&p.db(1), before);
    let (code, out) = {
        let o = p.gemctl(&["restore", "--latest"]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    assert_eq!(code, Some(0), "{out}");
    assert!(p.report().contains("gen=2"), "{}", p.report());
    assert_eq!(
        digest_upto(&p.db(2), before),
        expected,
        "every row committed before the backup began is in the restored generation"
    );
    let restored: u64 = query(&p.db(2), "select count(*) from items")
        .parse()
        .unwrap();
    assert!(restored >= before && restored <= final_rows);
    assert_eq!(p.generations_on_disk(), vec![1, 2]);

    // Pinned: diff and status say so, and apply does not undo the restore even
    // though the spec still says generation 1.
    let diff = p.gemctl(&["diff"]);
    assert_eq!(diff.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&diff.stdout).contains("restored from"));
    let status = p.gemctl(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("restored from"));
    assert_eq!(p.apply(&[]).0, 0);
    assert!(p.report().contains("gen=2"));

    // The previous generation is still there to roll back to.
    let o = p.gemctl(&["rollback"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(p.report().contains("gen=1"));
    assert_eq!(
        query(&p.db(1), "select count(*) from items"),
        final_rows.to_string()
    );
}

#[test]
fn a_damaged_backup_is_refused_and_nothing_changes() {
    let p = Project::new("bkbad");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(1000);
    let good = take_backup(&p);
    let bytes = std::fs::read(&good).unwrap();
    let sum = std::fs::read_to_string(format!("{}.sha256", good.display())).unwrap();
    let elsewhere = p.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();

    let truncated = elsewhere.join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(elsewhere.join("truncated.tar.sha256"), &sum).unwrap();
    let flipped = elsewhere.join("flipped.tar");
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(&flipped, &damaged).unwrap();
    std::fs::write(elsewhere.join("flipped.tar.sha256"), &sum).unwrap();
    let unsummed = elsewhere.join("unsummed.tar");
    std::fs::write(&unsummed, &bytes).unwrap();

    let state = host_state(&p);
    for (file, says) in [
        (&truncated, "damaged"),
        (&flipped, "damaged"),
        (&unsummed, "no checksum file"),
    ] {
        let o = p.gemctl(&["restore", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{err}");
        assert!(err.contains("Nothing was changed"), "{err}");
        assert_eq!(
            host_state(&p),
            state,
            "restore of {} changed the host",
            file.display()
        );
    }
    assert!(p.report().contains("gen=1"));

    // The same backup, intact, restores.
    let o = p.gemctl(&["restore", good.file_name().unwrap().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        query(&p.db(2), "select count(*) from items"),
        "1000",
        "the intact backup restores"
    );
}

/// Copies a real backup under a name that says it was taken `days_old` days ago,
/// with a matching checksum file.
fn forge_old_backup(p: &Project, real: &Path, days_old: u64) -> String {
    let taken = std::time::SystemTime::now() - Duration::from_secs(days_old * 86_400);
    let name = gemctl::backup::file_name(&p.name, 1, taken);
    let path = backup_dir(p).join(&name);
    std::fs::copy(real, &path).unwrap();
    let sha = gemctl::backup::sha256_file(&path).unwrap();
    std::fs::write(
        backup_dir(p).join(format!("{name}.sha256")),
        format!("{sha}  {name}\n"),
    )
    .unwrap();
    name
}

fn names(p: &Project) -> Vec<String> {
    backups_json(p)
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn backup_retention_keeps_exactly_what_the_spec_says() {
    let p = Project::new("bkret");
    p.write_spec_with(1, "1", 2, "scope: project", "backup: { keep: 3 }");
    assert_eq!(p.apply(&[]).0, 0);
    let first = take_backup(&p);
    let old40 = forge_old_backup(&p, &first, 40);
    let old10 = forge_old_backup(&p, &first, 10);
    let old5 = forge_old_backup(&p, &first, 5);
    // What is not this project's backup is never touched.
    let foreign = "otherproject-gen1-20200101T000000.000Z.tar";
    std::fs::write(backup_dir(&p).join(foreign), b"not ours").unwrap();
    std::fs::write(backup_dir(&p).join("notes.txt"), b"operator notes").unwrap();
    // Leftovers of an interrupted backup go.
    let partial = format!(
        ".{}.partial",
        gemctl::backup::file_name(&p.name, 1, std::time::SystemTime::now())
    );
    std::fs::write(backup_dir(&p).join(&partial), b"half").unwrap();
    assert_eq!(names(&p).len(), 4);

    // keep: 3 → the three newest stay.
    let second = take_backup(&p);
    let newest_three = vec![
        old5.clone(),
        first.file_name().unwrap().to_str().unwrap().to_string(),
        second.file_name().unwrap().to_str().unwrap().to_string(),
    ];
    assert_eq!(names(&p), newest_three);
    assert!(!backup_dir(&p).join(format!("{old40}.sha256")).exists());
    assert!(!backup_dir(&p).join(format!("{old10}.sha256")).exists());
    assert!(!backup_dir(&p).join(&partial).exists());
    assert!(backup_dir(&p).join(foreign).exists());
    assert!(backup_dir(&p).join("notes.txt").exists());

    // max_age: 7d as well → the 5-day-old one stays, anything older would go;
    // keep: 1 alone → only the newest.
    forge_old_backup(&p, &first, 8);
    p.write_spec_with(
        1,
        "1",
        2,
        "scope: project",
        "backup: { keep: 10, max_age: 7d }",
    );
    let third = take_backup(&p);
    let n = names(&p);
    assert_eq!(n.len(), 4, "{n:?}");
    assert_eq!(n[0], old5);
    p.write_spec_with(1, "1", 2, "scope: project", "backup: { keep: 1 }");
    let fourth = take_backup(&p);
    assert_eq!(
        names(&p),
        vec![fourth.file_name().unwrap().to_str().unwrap().to_string()]
    );
    assert!(!third.exists());
    let o = p.gemctl(&["backups", "--verify"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn a_fresh_host_bootstraps_from_a_backup() {
    let source = Project::new("bksrc");
    assert_eq!(source.apply(&[]).0, 0);
    source.insert_rows(777);
    let backup = take_backup(&source);
    let expected = source.table_digest(&source.db(1));

    let p = Project::new("bkboot");
    p.write_spec_with(
        1,
        "1",
        2,
        "scope: project",
        &format!("bootstrap: {{ from_backup: {} }}", backup.display()),
    );
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restore backup"), "{out}");
    assert_eq!(p.table_digest(&p.db(1)), expected);
    assert!(p.report().contains("rows=777"), "{}", p.report());
}

#[test]
fn reconcile_takes_scheduled_backups_and_does_not_retry_a_failed_generation() {
    let p = Project::new("bkrec");
    let schedule = "backup: { every: 2s, keep: 2 }";
    p.write_spec_with(1, "1", 2, "scope: project", schedule);
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(10);
    // Generation 2 is a release that never becomes healthy.
    p.write_spec_with(2, "broken", 2, "scope: project", schedule);
    let mut child = p.spawn_reconcile();
    wait_until("six reconcile rounds", Duration::from_secs(150), || {
        p.reconcile_rounds().len() >= 6
    });
    // Backups are taken once generation 1 is back and in sync: wait for three.
    let taken = || p.reconcile_log().matches("scheduled backup taken").count();
    wait_until("three scheduled backups", Duration::from_secs(60), || {
        taken() >= 3
    });
    assert_eq!(terminate(&mut child), Some(0));

    let codes: Vec<u64> = p
        .reconcile_rounds()
        .iter()
        .map(|r| r["fields"]["exit_code"].as_u64().unwrap())
        .collect();
    assert_eq!(
        codes[0], 4,
        "the first round tries generation 2 and falls back: {codes:?}"
    );
    assert!(
        codes[1..].iter().all(|c| *c == 3),
        "later rounds hold generation 2 back instead of retrying it: {codes:?}"
    );
    let failures = std::fs::read_dir(p.storage().join(".gemctl/failures"))
        .unwrap()
        .count();
    assert_eq!(failures, 1, "generation 2 was tried exactly once");
    assert!(p.report().contains("gen=1"));

    // Held rounds still back up the live generation; retention keeps two.
    let kept = names(&p);
    assert_eq!(kept.len(), 2, "keep: 2 after {} backups: {kept:?}", taken());
}

#[test]
fn a_restored_generation_that_fails_its_health_checks_leaves_the_current_one_live() {
    // A backup from another project whose app role looks for its tables in a
    // schema that does not exist: the data restores, the app cannot work on it.
    let source = Project::new("bkfsrc");
    std::fs::write(
        source.dir.join("secrets.env"),
        "POSTGRES_PASSWORD=other\nPGPASSWORD=other\n",
    )
    .unwrap();
    assert_eq!(source.apply(&[]).0, 0);
    source.insert_rows(5);
    query(&source.db(1), "alter role app set search_path = nowhere");
    let backup = take_backup(&source);

    let p = Project::new("bkfail");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(42);
    // Another password here than in the source proves the superuser keeps this
    // spec's password (else the restore itself could not log in).
    let o = p.gemctl(&["restore", backup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "health checks fail → rolled back");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("restore's pin is removed"), "{out}");
    assert!(p.report().contains("gen=1 rows=42"), "{}", p.report());
    assert!(!p.storage().join(".gemctl/pin").exists());
    assert_eq!(
        p.generations_on_disk(),
        vec![1],
        "the failed restore is cleared away"
    );
    assert!(
        p.containers().iter().all(|c| !c.contains("-2 ")),
        "{:?}",
        p.containers()
    );
    // The spec is not blamed: no failure is recorded against generation 2, so a
    // later upgrade to 2 is not held back.
    let history =
        std::fs::read_to_string(p.storage().join(".gemctl/history.json")).unwrap_or_default();
    assert!(!history.contains("\"generation\": 2"), "{history}");
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));
}

#[test]
fn a_restore_that_cannot_load_the_backup_changes_nothing_that_serves() {
    let p = Project::new("bkload");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(7);
    let good = take_backup(&p);
    // A well-formed tar with a correct checksum whose database dump is garbage.
    let work = p.dir.join("forge");
    std::fs::create_dir_all(&work).unwrap();
    let tar = |args: &[&str]| {
        let o = Command::new("tar").args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    tar(&["-xf", good.to_str().unwrap(), "-C", work.to_str().unwrap()]);
    std::fs::write(work.join("1.dump"), b"PGDMP this is not a dump").unwrap();
    let forged = p.dir.join("forged.tar");
    tar(&[
        "-cf",
        forged.to_str().unwrap(),
        "-C",
        work.to_str().unwrap(),
        "gemctl-backup.txt",
        "globals.sql",
        "databases.tsv",
        "1.dump",
        "2.dump",
    ]);
    let sha = gemctl::backup::sha256_file(&forged).unwrap();
    std::fs::write(
        p.dir.join("forged.tar.sha256"),
        format!("{sha}  forged.tar\n"),
    )
    .unwrap();

    let o = p.gemctl(&["restore", forged.to_str().unwrap()]);
    // Like any failure of a new generation before it is live: it is removed and
    // the previous generation serves (it never stopped).
    assert_eq!(o.status.code(), Some(4));
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(err.contains("pg_restore"), "{err}");
    assert!(err.contains("pin is removed"), "{err}");
    assert!(p.report().contains("gen=1 rows=7"), "the app never stopped");
    assert!(!p.storage().join(".gemctl/pin").exists());
    // The fall back cleared what the attempt left: generation 1 only.
    assert_eq!(p.generations_on_disk(), vec![1]);
    assert_eq!(p.apply(&[]).0, 0);
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));
}

#[test]
fn a_restore_killed_while_loading_is_finished_by_the_next_apply() {
    let p = Project::new("bkkill");
    assert_eq!(p.apply(&[]).0, 0);
    for _ in 0..4 {
        p.insert_rows(50_000);
    }
    let backup = take_backup(&p);
    let expected = p.table_digest(&p.db(1));
    p.insert_rows(10);

    let spec = p.spec.to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemctl"))
        .args(["restore", "-f", &spec, backup.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let loader = format!("{}-copy-2", p.name);
    wait_until("the restore container", Duration::from_secs(90), || {
        !docker_ok(&["ps", "-q", "--filter", &format!("name=^{loader}$")]).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed mid-load: generation 1 still serves, the pin still asks for 2.
    assert!(p.report().contains("gen=1 rows=200010"), "{}", p.report());
    assert!(p.storage().join(".gemctl/pin").exists());

    // The next apply (or reconcile round) redoes the restore from scratch.
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restore backup"), "{out}");
    assert_eq!(p.table_digest(&p.db(2)), expected);
    assert!(p.report().contains("gen=2 rows=200000"), "{}", p.report());
    assert_eq!(p.with_public_ports(), [p.app(2)]);
}

#[test]
fn a_scheduled_backup_that_keeps_failing_is_notified_once() {
    let p = Project::new("bknote");
    assert_eq!(p.apply(&[]).0, 0);
    // The backup directory's place is taken by a file: every attempt fails.
    let blocker = p.dir.join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let alerts = p.dir.join("alerts.jsonl");
    p.write_spec_with(
        1,
        "1",
        2,
        "scope: project",
        &format!(
            "backup: {{ dir: {}, every: 1s }}\nnotify:\n  command: [\"sh\", \"-c\", \"cat >> {}; echo >> {}\"]\n",
            blocker.display(),
            alerts.display(),
            alerts.display()
        ),
    );
    let mut child = p.spawn_reconcile();
    let failed_rounds = || p.reconcile_log().matches("round failed").count();
    wait_until("four failed rounds", Duration::from_secs(60), || {
        failed_rounds() >= 4
    });
    assert_eq!(terminate(&mut child), Some(0));
    let text = std::fs::read_to_string(&alerts).unwrap();
    let sent: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        sent.len(),
        1,
        "one alert for {} failed rounds: {sent:?}",
        failed_rounds()
    );
    assert_eq!(sent[0]["event"], "backup_failed");
    assert!(
        sent[0]["message"]
            .as_str()
            .unwrap()
            .contains("not-a-directory"),
        "{}",
        sent[0]
    );
    // The app was never touched.
    assert!(p.report().contains("gen=1"));
}
