//! The planner, one situation per test: what an operator would find on the host,
//! and the plan gemctl must make of it.

mod support;

use gemctl::cli::diff as render;
use gemctl::desired;
use gemctl::labels;
use gemctl::observed::{ContainerState, Damage, FailedGeneration, History, Marker, Observed};
use gemctl::plan::{self, Action, PlanKind, PlanOptions};
use support::*;

#[test]
fn fresh_host_is_bootstrapped_in_order() {
    let p = plan_for(&spec(1), &Observed::default()).unwrap();
    assert_eq!(p.kind, PlanKind::Bootstrap);
    assert_eq!(
        described(&p),
        [
            "create network shop-net",
            "start db-1 on a fresh data directory",
            "wait until db-1 accepts queries",
            "record generation 1's data as ready (fresh)",
            "start gem-1 with its health ports on 127.0.0.1 only",
            "check health of gem-1",
            "expose gem-1 on its public ports",
            "check health of gem-1",
            "record generation 1 as live",
        ]
    );
    assert!(p.steps.iter().all(|s| !s.reason.is_empty()));
}

#[test]
fn converged_host_has_an_empty_plan() {
    let obs = deployed(&[1]);
    let p = plan_for(&spec(1), &obs).unwrap();
    assert!(p.is_empty(), "{:?}", described(&p));
    assert_eq!(p.kind, PlanKind::InSync);
}

#[test]
fn upgrade_follows_the_design_order() {
    let obs = deployed(&[1]);
    let p = plan_for(&spec(2), &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Upgrade { from: 1 });
    assert_eq!(
        described(&p),
        [
            "start db-2 on a fresh data directory",
            "wait until db-2 accepts queries",
            "stop gem-1",
            "copy data of generation 1 into generation 2",
            "verify generation 2's data against generation 1",
            "record generation 2's data as ready (copied from 1)",
            "start gem-2 with its health ports on 127.0.0.1 only",
            "check health of gem-2",
            "expose gem-2 on its public ports",
            "check health of gem-2",
            "record generation 2 as live",
            "stop db-1 (data kept)",
        ]
    );
    assert_eq!(
        p.summary().to_string(),
        "Plan: 2 to start, 2 to stop, 0 to remove, 1 data copy"
    );
}

#[test]
fn upgrade_can_jump_several_generations() {
    let obs = deployed(&[2]);
    let p = plan_for(&spec(5), &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Upgrade { from: 2 });
    assert!(
        p.steps
            .iter()
            .any(|s| s.action == Action::CopyData { from: 2, to: 5 })
    );
}

#[test]
fn retention_prunes_older_generations_as_visible_steps() {
    let obs = deployed(&[1, 2, 3]);
    let p = plan_for(&spec(4), &obs).unwrap();
    let tail: Vec<String> = described(&p).into_iter().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "delete the data of generation 1",
            "remove db-1",
            "remove gem-1"
        ]
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.action, Action::RemoveData { generation: 2 | 3 }))
    );
}

#[test]
fn lowering_retain_prunes_without_a_new_generation() {
    let obs = deployed(&[1, 2, 3]);
    let p = plan_for(&spec_with(3, 1, "v3", "host"), &obs).unwrap();
    assert_eq!(
        described(&p),
        [
            "remove gem-1",
            "remove db-1",
            "delete the data of generation 1"
        ]
    );
}

#[test]
fn rollback_restarts_the_retained_generation_and_keeps_newer_data() {
    let obs = deployed(&[1, 2]);
    let p = plan_for(&spec_with(1, 2, "v1", "host"), &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Rollback { from: 2 });
    assert_eq!(
        described(&p),
        [
            "start db-1",
            "wait until db-1 accepts queries",
            "stop gem-2",
            "start gem-1",
            "check health of gem-1",
            "record generation 1 as live",
            "stop db-2 (data kept)",
        ]
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("writes made in generation 2 are NOT in it")),
        "{:?}",
        p.notes
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.action, Action::RemoveData { .. }))
    );
}

#[test]
fn rollback_with_todays_image_still_runs_the_generation_as_made() {
    let obs = deployed(&[1, 2]);
    // The operator only changed `generation`, not the image.
    let p = plan_for(&spec_with(1, 2, "v2", "host"), &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Rollback { from: 2 });
    assert!(p.notes.iter().any(|n| n.contains("runs as it was made")));
}

#[test]
fn stopped_app_is_started_and_checked() {
    let obs = deployed(&[1]).set_state("gem-1", ContainerState::Exited);
    let p = plan_for(&spec(1), &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Repair);
    assert_eq!(described(&p), ["start gem-1", "check health of gem-1"]);
}

#[test]
fn stopped_db_is_started_and_waited_for() {
    let obs = deployed(&[1]).set_state("db-1", ContainerState::Exited);
    let p = plan_for(&spec(1), &obs).unwrap();
    assert_eq!(
        described(&p),
        ["start db-1", "wait until db-1 accepts queries"]
    );
}

#[test]
fn missing_app_is_recreated_through_the_health_gate() {
    let obs = deployed(&[1]).without("gem-1");
    let p = plan_for(&spec(1), &obs).unwrap();
    assert_eq!(
        described(&p),
        [
            "start gem-1 with its health ports on 127.0.0.1 only",
            "check health of gem-1",
            "expose gem-1 on its public ports",
            "check health of gem-1",
        ]
    );
}

#[test]
fn missing_db_is_recreated_on_its_existing_data() {
    let obs = deployed(&[1]).without("db-1");
    let p = plan_for(&spec(1), &obs).unwrap();
    assert_eq!(
        described(&p),
        [
            "start db-1 on its existing data",
            "wait until db-1 accepts queries"
        ]
    );
}

#[test]
fn image_changed_without_bumping_generation_is_refused() {
    let obs = deployed(&[1]);
    let r = plan_for(&spec_with(1, 2, "v9", "host"), &obs).unwrap_err();
    assert_eq!(r.problems.len(), 1);
    let p = &r.problems[0];
    assert_eq!(p.container.as_deref(), Some("gem-1"));
    assert!(p.seen.contains("example/shop:v1") && p.seen.contains("example/shop:v9"));
    assert!(p.fix.contains("bump `generation` to 2"), "{}", p.fix);
}

/// Defect 11: the refusal names the field, not only "a different spec".
#[test]
fn env_changed_without_bumping_generation_is_refused_naming_the_key() {
    let obs = deployed(&[1]);
    let mut s = spec(1);
    s.db.env.insert("POSTGRES_USER".into(), "shop_owner".into());
    s.app.env.insert("LOG_LEVEL".into(), "info".into());
    let r = plan_for(&s, &obs).unwrap_err();
    let seen: Vec<&str> = r.problems.iter().map(|p| p.seen.as_str()).collect();
    assert_eq!(
        seen,
        [
            "gem-1 was made from a different spec for generation 1: env.LOG_LEVEL added: info",
            "db-1 was made from a different spec for generation 1: \
             env.POSTGRES_USER changed: shop → shop_owner",
        ]
    );
}

/// Defect 11: ports are a set; their order in the spec means nothing.
#[test]
fn a_reordered_port_list_is_no_change() {
    let obs = deployed(&[1]);
    let mut s = spec(1);
    s.app.ports.reverse();
    let p = plan_for(&s, &obs).unwrap();
    assert!(p.is_empty(), "{:?}", described(&p));
    assert!(render::container_diffs(&p, &s, &obs).is_empty());
}

#[test]
fn a_container_made_before_settings_were_recorded_is_refused_saying_so() {
    let mut obs = deployed(&[1]);
    for c in &mut obs.containers {
        c.labels.remove(labels::SETTINGS);
    }
    let mut s = spec(1);
    s.app.env.insert("LOG_LEVEL".into(), "info".into());
    let r = plan_for(&s, &obs).unwrap_err();
    assert_eq!(
        r.problems[0].seen,
        "gem-1 was made from a different spec for generation 1: \
         made before gemctl recorded settings; only the fingerprint differs \
         (earlier gemctl also counted the order of `ports`)"
    );
    let r = plan_for(&spec_with(1, 2, "v9", "host"), &obs).unwrap_err();
    assert!(
        r.problems[0].seen.ends_with(
            "image changed: example/shop:v1 → example/shop:v9 \
                 (made before gemctl recorded settings, so other changes cannot be named)"
        ),
        "{}",
        r.problems[0].seen
    );
}

/// Defect 11: `diff` shows an env-only release as the key with both values.
#[test]
fn diff_of_an_env_only_release_names_the_key_and_both_values() {
    let mut obs = Observed::default();
    let mut s1 = spec(1);
    s1.app.env.insert("LOG_LEVEL".into(), "debug".into());
    let p = plan_for(&s1, &obs).unwrap();
    support::apply(&s1, &mut obs, &p).unwrap();

    let mut s2 = s1.clone();
    s2.generation.0 = 2;
    s2.app.env.insert("LOG_LEVEL".into(), "info".into());
    let p = plan_for(&s2, &obs).unwrap();
    let diffs = render::container_diffs(&p, &s2, &obs);
    let app = diffs.iter().find(|d| d.container == "gem-2").unwrap();
    assert_eq!(app.was.as_deref(), Some("gem-1"));
    assert!(app.note.is_none());
    assert!(
        app.text.contains("\n-env.LOG_LEVEL: debug\n")
            && app.text.contains("\n+env.LOG_LEVEL: info\n"),
        "{}",
        app.text
    );
    let fields: Vec<String> = app.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        fields,
        [
            "env.GEM_DB_HOST changed: db-1 → db-2",
            "env.GEM_GENERATION changed: 1 → 2",
            "env.LOG_LEVEL changed: debug → info",
        ]
    );
}

#[test]
fn diff_against_a_container_without_recorded_settings_says_only_the_fingerprint_differs() {
    let mut obs = deployed(&[1]);
    for c in &mut obs.containers {
        c.labels.remove(labels::SETTINGS);
    }
    let s = spec_with(2, 2, "v1", "host");
    let p = plan_for(&s, &obs).unwrap();
    let diffs = render::container_diffs(&p, &s, &obs);
    let app = diffs.iter().find(|d| d.container == "gem-2").unwrap();
    assert_eq!(
        app.note.as_deref(),
        Some("gem-1 was made before gemctl recorded settings; only the fingerprint differs")
    );
    assert!(app.changes.is_empty());
    assert!(app.text.contains("-spec-hash: "), "{}", app.text);
}

#[test]
fn half_made_db_of_an_interrupted_apply_is_redone() {
    // Killed after db-2 was created, before the copy: gem-1 still serves.
    let s = spec(2);
    let mut obs = deployed(&[1]);
    let first = plan_for(&s, &obs).unwrap();
    support::apply_step(&s, &mut obs, &first.steps[0].action).unwrap();
    let p = plan_for(&s, &obs).unwrap();
    assert_eq!(
        described(&p)[..4],
        [
            "remove db-2",
            "delete the data of generation 2",
            "start db-2 on a fresh data directory",
            "wait until db-2 accepts queries",
        ]
    );
    assert!(
        p.steps
            .iter()
            .any(|s| s.action == Action::CopyData { from: 1, to: 2 })
    );
}

#[test]
fn apply_killed_during_the_copy_resumes_from_a_clean_copy() {
    let s = spec(2);
    let mut obs = deployed(&[1]);
    let first = plan_for(&s, &obs).unwrap();
    // Steps up to and including "stop gem-1"; then the copy container was running.
    for step in &first.steps[..3] {
        support::apply_step(&s, &mut obs, &step.action).unwrap();
    }
    obs = obs.labelled(
        "shop-copy-2",
        &[
            (labels::PROJECT, "shop"),
            (labels::ROLE, labels::ROLE_COPY),
            (labels::GENERATION, "2"),
        ],
        ContainerState::Running,
    );
    let p = plan_for(&s, &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Upgrade { from: 1 });
    let d = described(&p);
    assert_eq!(d[0], "remove shop-copy-2");
    assert_eq!(d[1], "remove db-2");
    assert_eq!(d[2], "delete the data of generation 2");
    assert!(!d.contains(&"stop gem-1".to_string()), "already stopped");
    // db-1 is still up, gem-1 is down: the copy can run again from generation 1.
    support::apply(&s, &mut obs, &p).unwrap();
    assert!(plan_for(&s, &obs).unwrap().is_empty());
}

#[test]
fn apply_killed_after_the_verified_copy_continues_with_the_app() {
    let s = spec(2);
    let mut obs = deployed(&[1]);
    let first = plan_for(&s, &obs).unwrap();
    for step in &first.steps[..6] {
        support::apply_step(&s, &mut obs, &step.action).unwrap();
    }
    let p = plan_for(&s, &obs).unwrap();
    assert_eq!(
        described(&p),
        [
            "start gem-2 with its health ports on 127.0.0.1 only",
            "check health of gem-2",
            "expose gem-2 on its public ports",
            "check health of gem-2",
            "record generation 2 as live",
            "stop db-1 (data kept)",
        ]
    );
}

#[test]
fn unrecognised_container_is_refused_under_host_scope() {
    let obs = deployed(&[1]).stranger("redis", "redis:7");
    let r = plan_for(&spec(1), &obs).unwrap_err();
    assert_eq!(r.problems.len(), 1);
    assert!(r.problems[0].seen.contains("redis"));
    assert!(r.problems[0].fix.contains("ignore"));
}

#[test]
fn ignore_patterns_and_project_scope_leave_strangers_alone() {
    let obs = deployed(&[1]).stranger("monitoring-agent", "agent:1");
    assert!(plan_for(&spec(1), &obs).unwrap().is_empty());
    let obs = deployed(&[1]).stranger("redis", "redis:7");
    assert!(
        plan_for(&spec_with(1, 2, "v1", "project"), &obs)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn name_collision_is_refused_even_in_project_scope() {
    let obs = deployed(&[1]).stranger("gem-8", "someone/else:1");
    let r = plan_for(&spec_with(8, 2, "v8", "project"), &obs).unwrap_err();
    assert_eq!(r.problems[0].container.as_deref(), Some("gem-8"));
    assert!(r.problems[0].seen.contains("not made by gemctl"));
}

#[test]
fn mislabelled_container_is_refused() {
    let obs = deployed(&[1]).labelled(
        "gem-3",
        &[
            (labels::PROJECT, "shop"),
            (labels::ROLE, "db"),
            (labels::GENERATION, "3"),
        ],
        ContainerState::Exited,
    );
    let r = plan_for(&spec(1), &obs).unwrap_err();
    assert!(r.problems[0].seen.contains("does not match"));
}

#[test]
fn every_unrecognised_container_is_listed() {
    let obs = deployed(&[1])
        .stranger("redis", "redis:7")
        .stranger("db-4", "postgres:16");
    let r = plan_for(&spec(1), &obs).unwrap_err();
    let names: Vec<_> = r
        .problems
        .iter()
        .filter_map(|p| p.container.clone())
        .collect();
    assert_eq!(names, ["redis", "db-4"]);
}

#[test]
fn generation_below_the_newest_without_data_is_refused() {
    let obs = deployed(&[3, 4, 5]);
    // Generation 1 was never here; 3 and 4 are retained.
    let r = plan_for(&spec(1), &obs).unwrap_err();
    assert!(r.problems[0].seen.contains("only move forward"));
    assert!(r.problems[0].fix.contains("3, 4"));
}

fn failed(spec: &gemctl::spec::Spec, generation: u64) -> History {
    History {
        failed: vec![FailedGeneration {
            generation,
            spec_hash: desired::generation_hash(spec, generation),
            at: "2026-11-23T10:00:00Z".into(),
            reason: "tcp :7000 never answered OK".into(),
            report: None,
        }],
    }
}

#[test]
fn failed_generation_is_held_back_not_retried() {
    let obs = deployed(&[1]);
    let s = spec(2);
    let p = plan::plan(&s, &obs, &failed(&s, 2), PlanOptions::default()).unwrap();
    assert_eq!(p.target, 1);
    assert!(p.is_empty());
    assert!(p.hold.as_deref().unwrap().contains("--retry"));
}

#[test]
fn failed_generation_with_drift_repairs_the_previous_one() {
    let obs = deployed(&[1]).set_state("gem-1", ContainerState::Exited);
    let s = spec(2);
    let p = plan::plan(&s, &obs, &failed(&s, 2), PlanOptions::default()).unwrap();
    assert_eq!(described(&p), ["start gem-1", "check health of gem-1"]);
}

#[test]
fn failed_generation_is_tried_again_with_retry_or_a_changed_spec() {
    let obs = deployed(&[1]);
    let s = spec(2);
    let retry = PlanOptions { retry_failed: true };
    let p = plan::plan(&s, &obs, &failed(&s, 2), retry).unwrap();
    assert_eq!(p.kind, PlanKind::Upgrade { from: 1 });
    let fixed = spec_with(2, 2, "v2-fixed", "host");
    let p = plan::plan(&fixed, &obs, &failed(&s, 2), PlanOptions::default()).unwrap();
    assert_eq!(p.kind, PlanKind::Upgrade { from: 1 });
}

#[test]
fn planning_is_deterministic() {
    let obs = deployed(&[1, 2]).set_state("gem-2", ContainerState::Exited);
    let a = plan_for(&spec(4), &obs).unwrap();
    let b = plan_for(&spec(4), &obs).unwrap();
    assert_eq!(a, b);
}

#[test]
fn plan_json_round_trips() {
    let p = plan_for(&spec(2), &deployed(&[1])).unwrap();
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.contains(r#""action":"copy_data""#), "{text}");
    let back: gemctl::plan::Plan = serde_json::from_str(&text).unwrap();
    assert_eq!(back, p);
}

fn pinned(obs: Observed, generation: u64, spec_generation: u64) -> Observed {
    let mut obs = obs;
    obs.storage.pin = Some(gemctl::observed::Pin {
        generation,
        spec_generation,
        at: "2026-11-23T10:00:00Z".into(),
        reason: "`gemctl rollback` (ops)".into(),
        restore_from: None,
    });
    obs
}

fn restore_pinned(obs: Observed, generation: u64, spec_generation: u64) -> Observed {
    let mut obs = obs;
    obs.storage.pin = Some(gemctl::observed::Pin {
        generation,
        spec_generation,
        at: "2026-11-25T10:00:00Z".into(),
        reason: "`gemctl restore` (ops)".into(),
        restore_from: Some("/backups/shop-gen2-20261125T090000.000Z.tar".into()),
    });
    obs
}

#[test]
fn a_restore_builds_the_next_generation_from_the_backup_and_keeps_the_old_one() {
    let s = spec(2);
    let mut obs = restore_pinned(deployed(&[1, 2]), 3, 2);
    let p = plan_for(&s, &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Restore);
    assert_eq!(p.target, 3);
    assert_eq!(
        described(&p),
        [
            "start db-3 on a fresh data directory",
            "wait until db-3 accepts queries",
            "restore backup /backups/shop-gen2-20261125T090000.000Z.tar into generation 3",
            "record generation 3's data as ready (fresh)",
            "stop gem-2",
            "start gem-3 with its health ports on 127.0.0.1 only",
            "check health of gem-3",
            "expose gem-3 on its public ports",
            "check health of gem-3",
            "record generation 3 as live",
            "stop db-2 (data kept)",
        ],
        "the old app serves until the restore is done; nothing of generation 2 is removed"
    );
    assert!(p.pinned.as_deref().unwrap().contains("moves past 3"));
    support::apply(&s, &mut obs, &p).unwrap();
    let again = plan_for(&s, &obs).unwrap();
    assert!(again.is_empty(), "the pin holds: {:?}", described(&again));
    assert!(again.pinned.is_some());
    // The spec catching up with the restored generation (same release) keeps it.
    let same = plan_for(&spec_with(3, 2, "v2", "host"), &obs).unwrap();
    assert!(same.is_empty(), "{:?}", described(&same));
    assert!(same.pinned.is_some());
    // A different release under the restored number is refused, not deployed over it.
    let r = plan_for(&spec(3), &obs).unwrap_err();
    assert!(
        r.problems[0].fix.contains("bump `generation` to 4"),
        "{r:?}"
    );
    // Moving past it upgrades from the restored data.
    let next = plan_for(&spec(4), &obs).unwrap();
    assert_eq!(next.kind, PlanKind::Upgrade { from: 3 });
    assert!(next.pinned.is_none());
}

#[test]
fn an_interrupted_restore_is_redone_from_scratch() {
    let s = spec(2);
    let mut obs = restore_pinned(deployed(&[1, 2]), 3, 2);
    let p = plan_for(&s, &obs).unwrap();
    // Stop right after the restore step: generation 3 is half-made.
    for step in p.steps.iter().take(3) {
        support::apply_step(&s, &mut obs, &step.action).unwrap();
    }
    let redo = plan_for(&s, &obs).unwrap();
    assert_eq!(redo.kind, PlanKind::Restore);
    let d = described(&redo);
    assert!(d.contains(&"remove db-3".to_string()), "{d:?}");
    assert!(d.iter().any(|l| l.starts_with("restore backup")), "{d:?}");
    support::apply(&s, &mut obs, &redo).unwrap();
    assert!(plan_for(&s, &obs).unwrap().is_empty());
}

#[test]
fn a_fresh_host_can_bootstrap_from_a_backup() {
    let mut s = spec(1);
    s.bootstrap = Some(gemctl::spec::BootstrapSpec {
        from_backup: "/backups/old.tar".into(),
    });
    let p = plan_for(&s, &Observed::default()).unwrap();
    assert_eq!(p.kind, PlanKind::Bootstrap);
    let d = described(&p);
    assert_eq!(d[3], "restore backup /backups/old.tar into generation 1");
    assert_eq!(d[4], "record generation 1's data as ready (fresh)");
    // Only a fresh host: an upgrade copies from the previous generation as always.
    s.generation = gemctl::spec::Generation(2);
    let up = plan_for(&s, &deployed(&[1])).unwrap();
    assert!(
        !described(&up).iter().any(|l| l.starts_with("restore")),
        "{:?}",
        described(&up)
    );
}

#[test]
fn a_pin_holds_the_host_on_the_rolled_back_generation() {
    let s = spec(2);
    let mut obs = pinned(deployed(&[1, 2]), 1, 2);
    let p = plan_for(&s, &obs).unwrap();
    assert_eq!(p.kind, PlanKind::Rollback { from: 2 });
    assert_eq!(p.target, 1);
    assert!(p.pinned.as_deref().unwrap().contains("gemctl unpin"));
    assert!(p.notes.iter().any(|n| n.contains("NOT in it")));
    support::apply(&s, &mut obs, &p).unwrap();
    let again = plan_for(&s, &obs).unwrap();
    assert!(again.is_empty(), "the pin holds: {:?}", described(&again));
    assert!(again.pinned.is_some());
}

#[test]
fn a_pin_lapses_when_the_spec_generation_moves_on() {
    let obs = pinned(deployed(&[1, 2]), 1, 2);
    // Pinned while the spec said 2; the spec now says 3.
    let p = plan_for(&spec(3), &obs).unwrap();
    assert_eq!(p.target, 3);
    assert!(p.pinned.is_none());
}

#[test]
fn a_pin_to_a_generation_without_data_is_refused() {
    let obs = pinned(deployed(&[1, 2]), 7, 2);
    let r = plan_for(&spec(2), &obs).unwrap_err();
    assert!(r.problems[0].fix.contains("gemctl unpin"));
}

// Deleting needs proof that the data never served (issue: never delete what may
// have served). Each test damages what the planner reads the way an accident would.

fn refusal_text(spec: &gemctl::spec::Spec, obs: &Observed) -> String {
    plan_for(spec, obs)
        .expect_err("must refuse, not plan")
        .to_string()
}

#[test]
fn missing_ready_marker_of_the_live_generation_is_refused_not_deleted() {
    for marker in [
        Marker::Missing,
        Marker::Unreadable {
            problem: "is empty".into(),
        },
        Marker::Unreadable {
            problem: "is not valid JSON".into(),
        },
    ] {
        let obs = deployed(&[1]).marker(1, marker);
        let text = refusal_text(&spec(1), &obs);
        assert!(text.contains("/srv/shop/1/gemctl-ready.json"), "{text}");
        assert!(text.contains("repair-state"), "{text}");
        assert!(text.contains("rebuild its marker as ready"), "{text}");
    }
}

#[test]
fn missing_ready_marker_of_a_retained_generation_is_refused_not_deleted() {
    let obs = deployed(&[1, 2]).marker(1, Marker::Missing);
    let text = refusal_text(&spec(2), &obs);
    assert!(
        text.contains("/srv/shop/1/gemctl-ready.json is missing"),
        "{text}"
    );
    let upgrade = refusal_text(&spec(3), &obs);
    assert!(upgrade.contains("generation 1's data"), "{upgrade}");
}

#[test]
fn damaged_state_file_is_refused_naming_the_file_and_the_fix() {
    let mut obs = deployed(&[1]);
    obs.storage.damage.push(Damage {
        file: "/srv/shop/.gemctl/pin".into(),
        problem: "is not a valid pin: key must be a string".into(),
        fix: "run `gemctl unpin -f SPEC`".into(),
    });
    let text = refusal_text(&spec(1), &obs);
    assert!(
        text.contains("/srv/shop/.gemctl/pin is not a valid pin"),
        "{text}"
    );
    assert!(text.contains("fix: run `gemctl unpin -f SPEC`"), "{text}");
}

#[test]
fn half_made_data_without_a_served_record_is_refused_not_redone() {
    let mut obs = deployed(&[1]).data(2, false);
    obs.storage.served = None;
    let text = refusal_text(&spec(2), &obs);
    assert!(
        text.contains("no record of which generations served"),
        "{text}"
    );
    assert!(text.contains("--discard 2"), "{text}");
}

#[test]
fn preparing_data_of_a_generation_that_served_is_refused() {
    let mut obs = deployed(&[1]).data(2, false);
    obs.storage.served.as_mut().unwrap().insert(2);
    let text = refusal_text(&spec(2), &obs);
    assert!(
        text.contains("in the record of generations that served"),
        "{text}"
    );
}

#[test]
fn discarded_data_of_a_failed_generation_is_cleared_away() {
    let obs = deployed(&[1]).data(2, true).marker(
        2,
        Marker::Discarded {
            reason: "failed".into(),
        },
    );
    let p = plan::plan(&spec(2), &obs, &failed(&spec(2), 2), PlanOptions::default()).unwrap();
    assert!(
        described(&p).contains(&"delete the data of generation 2".to_string()),
        "{:?}",
        described(&p)
    );
}

#[test]
fn failed_generation_that_was_exposed_keeps_its_data() {
    // Ready data and a public app: it may have taken writes before failing.
    let mut obs = deployed(&[1, 2]);
    obs.storage.live = Some(1);
    obs.storage.served.as_mut().unwrap().remove(&2);
    let obs = obs.set_state("gem-2", ContainerState::Exited);
    let p = plan::plan(&spec(2), &obs, &failed(&spec(2), 2), PlanOptions::default()).unwrap();
    let steps = described(&p);
    assert!(steps.contains(&"remove gem-2".to_string()), "{steps:?}");
    assert!(
        !steps.iter().any(|s| s.starts_with("delete the data")),
        "{steps:?}"
    );
    assert!(
        p.notes.iter().any(|n| n.contains("its data is kept")),
        "{:?}",
        p.notes
    );
}

#[test]
fn an_app_fingerprinted_in_the_specs_port_order_by_an_older_gemctl_is_not_refused() {
    let spec = spec(1);
    let mut obs = deployed(&[1]);
    let mut legacy = desired::app(&spec, 1);
    legacy.ports = spec.app.ports.iter().map(|p| p.raw.clone()).collect();
    let app = obs
        .containers
        .iter_mut()
        .find(|c| c.name == "gem-1")
        .unwrap();
    app.labels
        .insert(labels::SPEC_HASH.into(), legacy.spec_hash());
    app.labels.remove(labels::SETTINGS);
    let p = plan_for(&spec, &obs).expect("not refused");
    assert!(p.is_empty(), "{:?}", described(&p));
}
