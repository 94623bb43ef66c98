//! Never delete what may have served, on the real engine: damaged markers and state
//! files make gemctl refuse (exit 3) naming the file, never delete data, and
//! `gemctl repair-state` rebuilds what the evidence proves. Each test is named after
//! the defect it pins.

mod real;

use real::*;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn removed_emptied_or_truncated_ready_marker_of_the_live_generation_deletes_nothing() {
    let p = Project::new("mrklive");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(50);
    let before = p.table_digest(&p.db(1));
    let marker = p.storage().join("1").join("gemctl-ready.json");

    for damage in ["remove", "", "{\"copied_fr"] {
        if damage == "remove" {
            std::fs::remove_file(&marker).unwrap();
        } else {
            std::fs::write(&marker, damage).unwrap();
        }
        let diff = p.gemctl(&["diff"]);
        assert_eq!(diff.status.code(), Some(3), "{damage:?}: {}", text(&diff));
        let out = text(&diff);
        assert!(
            out.contains(marker.to_str().unwrap()),
            "names the file: {out}"
        );
        assert!(!out.contains("delete the data"), "{out}");
        let (code, out) = p.apply(&[]);
        assert_eq!(code, 3, "{damage:?}: {out}");
        assert!(out.contains("repair-state"), "says what to do: {out}");
        let status = p.gemctl(&["status"]);
        assert_eq!(status.status.code(), Some(3));
        assert!(
            text(&status).contains("unknown (marker)"),
            "{}",
            text(&status)
        );

        assert_eq!(p.table_digest(&p.db(1)), before, "no row lost ({damage:?})");
        assert_eq!(p.generations_on_disk(), [1]);
        assert!(p.report().contains("rows=50"), "the app still serves");

        // Generation 1 served: its marker is rebuilt as ready.
        let repair = p.gemctl(&["repair-state"]);
        assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
        assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));
    }
}

#[test]
fn removed_ready_marker_of_a_retained_generation_is_refused_and_rollback_still_has_it() {
    let p = Project::new("mrkret");
    p.two_generations(30, 0);
    let retained = p.storage().join("1").join("gemctl-ready.json");
    std::fs::remove_file(&retained).unwrap();

    p.write_spec(3, "2", 1, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(retained.to_str().unwrap()), "{out}");
    assert_eq!(
        p.generations_on_disk(),
        [1, 2],
        "nothing deleted, nothing made"
    );
    let rollback = p.gemctl(&["rollback"]);
    assert_eq!(rollback.status.code(), Some(3), "{}", text(&rollback));
    assert!(
        !p.storage().join(".gemctl/pin").exists(),
        "nothing is pinned on records that cannot be trusted"
    );

    p.write_spec(2, "2", 2, "scope: project");
    let repair = p.gemctl(&["repair-state"]);
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
    assert!(text(&repair).contains("mark generation 1's data ready"));
    let rollback = p.gemctl(&["rollback"]);
    assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
    let report = p.report();
    assert!(
        report.contains("gen=1") && report.contains("rows=30"),
        "{report}"
    );
}

#[test]
fn half_made_data_without_any_marker_is_refused_until_declared_debris() {
    let p = Project::new("debris");
    assert_eq!(p.apply(&[]).0, 0);
    // What an older gemctl (or a hand) could leave: a directory with no marker.
    std::fs::create_dir_all(p.storage().join("2").join("pgdata")).unwrap();
    std::fs::write(
        p.storage().join("2").join("pgdata").join("PG_VERSION"),
        "15\n",
    )
    .unwrap();
    p.write_spec(2, "2", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("--discard 2"), "{out}");
    assert!(p.storage().join("2/pgdata/PG_VERSION").exists());

    let repair = p.gemctl(&["repair-state"]);
    assert_eq!(repair.status.code(), Some(3), "unproven: {}", text(&repair));
    let refused = p.gemctl(&["repair-state", "--discard", "1"]);
    assert!(
        text(&refused).contains("--discard 1 refused"),
        "the live generation is never debris: {}",
        text(&refused)
    );
    let repair = p.gemctl(&["repair-state", "--discard", "2"]);
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("delete the data of generation 2"), "{out}");
    assert!(p.report().contains("gen=2"));
}

#[test]
fn corrupt_pin_history_served_record_and_lock_are_refused_naming_the_file() {
    let p = Project::new("corrupt");
    assert_eq!(p.apply(&[]).0, 0);
    let state = p.storage().join(".gemctl");

    // A corrupt pin is never silently ignored.
    std::fs::write(state.join("pin"), "{bad").unwrap();
    p.write_spec(2, "2", 2, "scope: project");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(state.join("pin").to_str().unwrap()), "{out}");
    assert!(out.contains("gemctl unpin"), "{out}");
    let status = p.gemctl(&["status"]);
    assert!(
        text(&status).contains("is not a valid pin"),
        "{}",
        text(&status)
    );
    assert_eq!(p.generations_on_disk(), [1]);
    assert_eq!(p.gemctl(&["unpin"]).status.code(), Some(0));
    p.write_spec(1, "1", 2, "scope: project");
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));

    // A corrupt history names its own path and the fix.
    std::fs::write(state.join("history.json"), "{\"failed\": [").unwrap();
    let diff = p.gemctl(&["diff"]);
    assert_eq!(diff.status.code(), Some(3), "{}", text(&diff));
    assert!(
        text(&diff).contains(state.join("history.json").to_str().unwrap()),
        "{}",
        text(&diff)
    );
    assert!(text(&diff).contains("--reset-history"), "{}", text(&diff));
    let repair = p.gemctl(&["repair-state", "--reset-history"]);
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
    assert!(text(&repair).contains("moved aside"), "{}", text(&repair));
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(0));

    // The record of served generations is rebuilt from the live pointer and labels.
    std::fs::write(state.join("served.json"), "").unwrap();
    assert_eq!(p.gemctl(&["diff"]).status.code(), Some(3));
    assert_eq!(p.gemctl(&["repair-state"]).status.code(), Some(0));
    let served = std::fs::read_to_string(state.join("served.json")).unwrap();
    assert!(served.contains('1'), "{served}");

    // An empty lock left by a crash is taken over once it is old.
    let lock = state.join("lock");
    std::fs::write(&lock, "").unwrap();
    let (code, out) = p.apply(&[]);
    assert_eq!(
        code, 1,
        "a fresh unreadable lock may be being written: {out}"
    );
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .unwrap();
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(!lock.exists(), "released");
}

#[test]
fn rollback_interrupted_after_recording_live_is_finished_by_running_it_again() {
    let p = Project::new("rollrerun");
    p.two_generations(0, 0);
    let rollback = p.gemctl(&["rollback"]);
    assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
    // What a kill right after "record generation 1 as live" leaves: the pin, live
    // 1, and db-2 still running (its stop was the step after).
    docker_ok(&["start", &p.db(2)]);

    let again = p.gemctl(&["rollback"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("finishing the rollback to generation 1"));
    assert!(p.report().contains("gen=1"));
    assert!(
        p.containers().contains(&format!("{} exited", p.db(2))),
        "{:?}",
        p.containers()
    );
    assert_eq!(p.generations_on_disk(), [1, 2]);
}
