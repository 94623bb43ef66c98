//! The planner's streamed upgrade, against the fake engine: the steps and their
//! order (the freeze comes after the copy), the mode chosen and why, and a kill at
//! every step boundary converging on the next plan without deleting the source.

mod support;

use gemctl::observed::{ContainerState, Marker, Observed};
use gemctl::plan::{Action, Mode};
use gemctl::spec::{CopyMode, VerifyMode};
use support::{HostEdit, apply, apply_step, deployed, described, plan_for, spec};

/// Generation 1 deployed on PostgreSQL 15, with the db image at `image`.
fn on_15(image: Option<u32>) -> Observed {
    let mut obs = deployed(&[1]);
    for g in &mut obs.storage.generations {
        g.pg_major = Some(15);
    }
    obs.db_image_major = image;
    obs
}

#[test]
fn a_same_major_upgrade_streams_while_the_old_app_serves_and_freezes_last() {
    let obs = on_15(Some(15));
    let p = plan_for(&spec(2), &obs).unwrap();
    let copy = p.copy.clone().expect("an upgrade says how it copies");
    assert_eq!(copy.mode, Mode::Stream);
    assert!(copy.reason.contains("PostgreSQL 15"), "{}", copy.reason);
    assert_eq!(
        described(&p),
        [
            "allow replication from the private network in db-1",
            "base backup of generation 1 into generation 2 (pg_backup_start, files copied on the host, pg_backup_stop)",
            "start db-2 on its existing data",
            "wait until db-2 accepts queries",
            "wait until generation 2 has caught up with generation 1",
            "stop gem-1",
            "checkpoint and shut down db-1 cleanly (data kept)",
            "wait until generation 2 has replayed generation 1's shutdown checkpoint",
            "promote db-2 and check that it accepts writes",
            "record generation 2's data as ready (copied from 1)",
            "start gem-2 with its health ports on 127.0.0.1 only",
            "check health of gem-2",
            "expose gem-2 on its public ports",
            "check health of gem-2",
            "record generation 2 as live",
        ]
    );
    assert_eq!(
        p.summary().to_string(),
        "Plan: 2 to start, 2 to stop, 0 to remove, 1 data copy"
    );
}

#[test]
fn another_or_unknown_major_dumps_and_says_why() {
    for image in [Some(17), None] {
        let p = plan_for(&spec(2), &on_15(image)).unwrap();
        let copy = p.copy.clone().unwrap();
        assert_eq!(copy.mode, Mode::Dump, "{image:?}");
        assert!(
            p.steps
                .iter()
                .any(|s| matches!(s.action, Action::CopyData { .. })),
            "{:?}",
            described(&p)
        );
    }
}

#[test]
fn a_stream_asked_across_major_versions_is_refused_naming_both() {
    let mut s = spec(2);
    s.db.copy = CopyMode::Stream;
    let refusal = plan_for(&s, &on_15(Some(17))).unwrap_err();
    let text = refusal.to_string();
    assert!(
        text.contains("PostgreSQL 15") && text.contains("PostgreSQL 17"),
        "{text}"
    );
}

#[test]
fn full_verification_compares_in_the_freeze_before_the_old_db_stops() {
    let mut s = spec(2);
    s.db.verify = VerifyMode::Full;
    let d = described(&plan_for(&s, &on_15(Some(15))).unwrap());
    let at = |what: &str| d.iter().position(|x| x.starts_with(what)).unwrap();
    assert!(at("stop gem-1") < at("verify generation 2"));
    assert!(at("verify generation 2") < at("checkpoint and shut down db-1"));
}

/// A kill after each step of the streamed upgrade: the next plan converges to
/// generation 2 (a third is empty), never deletes generation 1's data, and never
/// runs two apps.
#[test]
fn killed_at_every_step_of_a_streamed_upgrade_the_next_plan_converges() {
    let s = spec(2);
    let start = on_15(Some(15));
    let p = plan_for(&s, &start).unwrap();
    for k in 0..p.steps.len() {
        let mut obs = start.clone();
        for step in &p.steps[..k] {
            apply_step(&s, &mut obs, &step.action).unwrap();
        }
        let next =
            plan_for(&s, &obs).unwrap_or_else(|r| panic!("killed after {k} steps: refused: {r}"));
        assert!(
            !next
                .steps
                .iter()
                .any(|st| matches!(st.action, Action::RemoveData { generation: 1 })),
            "killed after {k} steps: deletes generation 1: {:?}",
            described(&next)
        );
        apply(&s, &mut obs, &next)
            .unwrap_or_else(|e| panic!("killed after {k} steps: {e}\n{:?}", described(&next)));
        assert!(
            plan_for(&s, &obs).unwrap().is_empty(),
            "killed after {k} steps"
        );
        assert_eq!(obs.storage.live, Some(2), "killed after {k} steps");
        let g1 = obs.storage.generations.iter().find(|g| g.generation == 1);
        assert!(g1.is_some_and(|g| g.ready()), "killed after {k} steps");
    }
}

#[test]
fn killed_after_the_freeze_before_the_promotion_the_old_app_serves_during_the_redo() {
    let s = spec(2);
    let start = on_15(Some(15));
    let p = plan_for(&s, &start).unwrap();
    let promote = p
        .steps
        .iter()
        .position(|st| matches!(st.action, Action::Promote { .. }))
        .unwrap();
    let mut obs = start.clone();
    for step in &p.steps[..=promote] {
        apply_step(&s, &mut obs, &step.action).unwrap();
    }
    // Promoted, never marked ready: no app of 2 ever existed.
    assert!(
        obs.storage
            .generations
            .iter()
            .any(|g| g.generation == 2 && g.marker == Marker::Preparing)
    );
    let d = described(&plan_for(&s, &obs).unwrap());
    let at = |what: &str| {
        d.iter()
            .position(|x| x == what)
            .unwrap_or_else(|| panic!("{what} in {d:?}"))
    };
    // The promoted db goes before the old one starts: never two writable dbs.
    assert!(at("remove db-2") < at("start db-1"), "{d:?}");
    assert!(
        at("delete the data of generation 2") < at("start db-1"),
        "{d:?}"
    );
    assert!(
        at("start gem-1")
            < at(
                "base backup of generation 1 into generation 2 (pg_backup_start, files copied on the host, pg_backup_stop)"
            )
    );
}

#[test]
fn a_public_app_on_half_made_streamed_data_is_refused_not_deleted() {
    let s = spec(2);
    let obs = on_15(Some(15)).marker(2, Marker::Preparing).labelled(
        "gem-2",
        &[
            ("io.gemctl.project", "shop"),
            ("io.gemctl.role", "app"),
            ("io.gemctl.generation", "2"),
            ("io.gemctl.exposure", "public"),
        ],
        ContainerState::Exited,
    );
    assert!(plan_for(&s, &obs).is_err());
}
