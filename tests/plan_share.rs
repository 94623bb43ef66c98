//! The planner for app-only releases (`db.copy: none`): the new generation runs on
//! the live generation's database, its app starts beside the old one, nothing
//! freezes, going back is code-only, and a database is kept as long as any kept
//! generation runs on it (the fake engine).

mod support;

use gemctl::observed::{Marker, Observed, Pin};
use gemctl::plan::{Action, Mode, Plan};
use gemctl::spec::{CopyMode, Spec};
use support::*;

/// Project `shop` at `generation` with `db.copy: none`, retaining `retain`.
fn sharing(generation: u64, retain: u32) -> Spec {
    let mut s = spec_with(generation, retain, &format!("v{generation}"), "host");
    s.db.copy = CopyMode::None;
    s
}

/// The same behind a front door.
fn sharing_behind_front(generation: u64) -> Spec {
    front_spec_with(generation, "  copy: none\n")
}

fn applied(spec: &Spec, obs: &Observed) -> (Plan, Observed) {
    let p = plan_for(spec, obs).unwrap_or_else(|r| panic!("refused: {r}"));
    let mut after = obs.clone();
    apply(spec, &mut after, &p).unwrap_or_else(|e| panic!("{e}\n{:#?}", described(&p)));
    assert!(
        plan_for(spec, &after).unwrap().is_empty(),
        "converges: {:?}",
        described(&p)
    );
    (p, after)
}

fn running(obs: &Observed, prefix: &str) -> Vec<String> {
    obs.containers
        .iter()
        .filter(|c| c.name.starts_with(prefix) && c.state.is_up())
        .map(|c| c.name.clone())
        .collect()
}

fn stops_a_db(p: &Plan) -> bool {
    p.steps.iter().any(|s| {
        matches!(
            s.action,
            Action::StopDb { .. } | Action::StopPrimary { .. } | Action::HoldFront { .. }
        )
    })
}

#[test]
fn behind_a_front_the_new_app_starts_beside_the_old_and_nothing_freezes() {
    let obs = deployed_with(&[sharing_behind_front(1)]);
    let (p, after) = applied(&sharing_behind_front(2), &obs);
    assert_eq!(
        described(&p),
        [
            "record that generation 2 runs on generation 1's database (no copy)",
            "start gem-2 with its health ports on 127.0.0.1 only",
            "point the front's idle slot at gem-2",
            "check health of gem-2",
            "switch the front to gem-2 (held requests go there)",
            "let the requests open to generation 1's app finish (up to front.drain)",
            "stop gem-1",
            "record generation 2 as live",
        ]
    );
    assert!(!stops_a_db(&p), "no freeze, no hold: {:?}", described(&p));
    assert_eq!(p.copy.as_ref().unwrap().mode, Mode::None);
    assert!(
        p.notes.iter().any(|n| n.contains("code only")),
        "{:?}",
        p.notes
    );
    assert_eq!(running(&after, "db-"), ["db-1"]);
    assert_eq!(running(&after, "gem-"), ["gem-2"]);
    assert_eq!(db_gen(&after, 2), 1);
}

#[test]
fn without_a_front_the_old_app_stops_only_once_the_new_one_is_healthy() {
    let obs = deployed_with(&[spec(1)]);
    let (p, after) = applied(&sharing(2, 2), &obs);
    assert_eq!(
        described(&p),
        [
            "record that generation 2 runs on generation 1's database (no copy)",
            "start gem-2 with its health ports on 127.0.0.1 only",
            "check health of gem-2",
            "stop gem-1",
            "expose gem-2 on its public ports",
            "check health of gem-2",
            "record generation 2 as live",
        ]
    );
    assert!(
        p.copy.as_ref().unwrap().reason.contains("short gap"),
        "{:?}",
        p.copy
    );
    assert_eq!(running(&after, "db-"), ["db-1"]);
}

#[test]
fn going_back_over_an_app_only_release_is_code_only() {
    let mut obs = deployed_with(&[sharing_behind_front(1), sharing_behind_front(2)]);
    obs.storage.pin = Some(Pin {
        generation: 1,
        spec_generation: 2,
        at: "2026-12-05T00:00:00Z".into(),
        reason: "test".into(),
        restore_from: None,
    });
    let (p, after) = applied(&sharing_behind_front(2), &obs);
    assert!(!stops_a_db(&p), "{:?}", described(&p));
    let steps = described(&p);
    let at = |what: &str| steps.iter().position(|s| s == what).expect(what);
    assert!(at("switch the front to gem-1 (held requests go there)") < at("stop gem-2"));
    assert!(
        p.notes.iter().any(|n| n.contains("code only"))
            && !p.notes.iter().any(|n| n.contains("NOT in it")),
        "{:?}",
        p.notes
    );
    assert_eq!(running(&after, "gem-"), ["gem-1"]);
    assert_eq!(running(&after, "db-"), ["db-1"]);
}

#[test]
fn a_database_is_kept_while_any_kept_generation_runs_on_it() {
    // 1 owns the data; 2, 3 and 4 run on it, with one generation retained.
    let mut obs = deployed_with(&[spec_with(1, 1, "v1", "host")]);
    for g in 2..=4 {
        let (p, after) = applied(&sharing(g, 1), &obs);
        assert!(
            !p.steps
                .iter()
                .any(|s| matches!(s.action, Action::RemoveData { generation: 1 })),
            "generation {g}: {:?}",
            described(&p)
        );
        obs = after;
    }
    let dirs: Vec<u64> = obs
        .storage
        .generations
        .iter()
        .map(|d| d.generation)
        .collect();
    assert_eq!(
        dirs,
        [1, 3, 4],
        "2 pruned (a marker only), 1 kept under 3 and 4"
    );

    // 5 copies 1's data (4 runs on it): 4 is retained, so 1 stays too; 3 goes.
    let (p, after) = applied(&spec_with(5, 1, "v5", "host"), &obs);
    assert!(
        p.steps.iter().any(|s| matches!(
            s.action,
            Action::CopyData { from: 1, to: 5 } | Action::BaseBackup { from: 1, to: 5 }
        )),
        "the copy reads generation 1's database: {:?}",
        described(&p)
    );
    let dirs: Vec<u64> = after
        .storage
        .generations
        .iter()
        .map(|d| d.generation)
        .collect();
    assert_eq!(dirs, [1, 4, 5]);

    // 6 retains 5 only: 4 goes before 1, the database it ran on.
    let (p, after) = applied(&spec_with(6, 1, "v6", "host"), &after);
    let removed: Vec<u64> = p
        .steps
        .iter()
        .filter_map(|s| match s.action {
            Action::RemoveData { generation } => Some(generation),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [4, 1], "{:?}", described(&p));
    assert!(
        after
            .storage
            .generations
            .iter()
            .all(|d| d.marker != Marker::Shares { db: 1 })
    );
}

#[test]
fn a_changed_db_section_with_copy_none_is_refused() {
    let obs = deployed_with(&[spec(1)]);
    let mut s = sharing(2, 2);
    s.db.env.insert("POSTGRES_USER".into(), "other".into());
    let refusal = plan_for(&s, &obs).unwrap_err();
    assert!(
        refusal.to_string().contains("copy: none") && refusal.to_string().contains("db-1"),
        "{refusal}"
    );
}

#[test]
fn a_shared_marker_naming_missing_data_is_refused() {
    let mut obs = deployed_with(&[spec(1), sharing(2, 2)]);
    obs.storage.generations.retain(|d| d.generation != 1);
    obs.containers.retain(|c| c.name != "db-1");
    let refusal = plan_for(&sharing(2, 2), &obs).unwrap_err();
    assert!(
        refusal.to_string().contains("has no data of its own"),
        "{refusal}"
    );
}

/// Killed after each step of an app-only release, with and without a front, a
/// re-run converges on the new generation with one app and the one database.
#[test]
fn killed_after_any_step_of_an_app_only_release_converges() {
    for (before, spec) in [
        (deployed_with(&[spec(1)]), sharing(2, 2)),
        (
            deployed_with(&[sharing_behind_front(1)]),
            sharing_behind_front(2),
        ),
    ] {
        let plan = plan_for(&spec, &before).unwrap();
        for done in 0..plan.steps.len() {
            let mut obs = before.clone();
            for step in &plan.steps[..done] {
                apply_step(&spec, &mut obs, &step.action).unwrap();
            }
            let again = plan_for(&spec, &obs)
                .unwrap_or_else(|r| panic!("killed after {done} steps: refused: {r}"));
            assert!(
                !stops_a_db(&again),
                "killed after {done}: {:?}",
                described(&again)
            );
            apply(&spec, &mut obs, &again)
                .unwrap_or_else(|e| panic!("killed after {done} steps: {e}"));
            assert!(plan_for(&spec, &obs).unwrap().is_empty());
            assert_eq!(obs.storage.live, Some(2), "killed after {done} steps");
            assert_eq!(running(&obs, "gem-"), ["gem-2"], "killed after {done}");
            assert_eq!(running(&obs, "db-"), ["db-1"], "killed after {done}");
        }
    }
}

/// Killed after the front switched, the re-run still lets the old app's open
/// requests finish before it stops it.
#[test]
fn killed_after_the_switch_the_old_app_still_drains_before_it_stops() {
    let before = deployed_with(&[sharing_behind_front(1)]);
    let spec = sharing_behind_front(2);
    let plan = plan_for(&spec, &before).unwrap();
    let switched = plan
        .steps
        .iter()
        .position(|s| matches!(s.action, Action::SwitchFront { .. }))
        .unwrap();
    let mut obs = before.clone();
    for step in &plan.steps[..=switched] {
        apply_step(&spec, &mut obs, &step.action).unwrap();
    }
    let again = described(&plan_for(&spec, &obs).unwrap());
    assert_eq!(
        again,
        [
            "let the requests open to generation 1's app finish (up to front.drain)",
            "stop gem-1",
            "record generation 2 as live",
        ]
    );
}
