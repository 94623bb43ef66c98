//! The planner with a front door: the front is made before anything stops, apps
//! behind it are never recreated for their ports, the front switches to a new
//! generation only after its health checks, and a run killed after any step
//! converges with the front forwarding to the live generation (the fake engine).

mod support;

use std::time::Duration;

use gemctl::observed::{ContainerState, Observed};
use gemctl::plan::Action;
use gemctl::spec::{HumanDuration, Spec};
use support::*;

/// Project `shop` behind a front door at `generation`.
fn front_spec(generation: u64) -> Spec {
    support::front_spec_with(generation, "")
}

/// A host deployed to `generation` behind the front, by the fake engine.
fn deployed_behind_front(generation: u64) -> Observed {
    let mut obs = Observed::default();
    for g in 1..=generation {
        let spec = front_spec(g);
        let plan = plan_for(&spec, &obs).unwrap();
        apply(&spec, &mut obs, &plan).unwrap();
    }
    obs
}

#[test]
fn a_fresh_host_gets_its_front_first_and_the_app_behind_it() {
    let spec = front_spec(1);
    let p = plan_for(&spec, &Observed::default()).unwrap();
    assert_eq!(
        described(&p),
        [
            "create network shop-net",
            "start shop-front on the public ports",
            "start db-1 on a fresh data directory",
            "wait until db-1 accepts queries",
            "record generation 1's data as ready (fresh)",
            "start gem-1 with its health ports on 127.0.0.1 only",
            "point the front's idle slot at gem-1",
            "check health of gem-1",
            "switch the front to gem-1 (held requests go there)",
            "record generation 1 as live",
        ]
    );
    let mut obs = Observed::default();
    apply(&spec, &mut obs, &p).unwrap();
    assert!(plan_for(&spec, &obs).unwrap().is_empty());
    let front = obs.storage.front.as_ref().unwrap();
    assert_eq!(front.live_generation(), Some(1));
}

#[test]
fn an_upgrade_behind_the_front_switches_it_and_recreates_no_app() {
    let obs = deployed_behind_front(1);
    let spec = front_spec(2);
    let p = plan_for(&spec, &obs).unwrap();
    let steps = described(&p);
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.action, Action::ExposeApp { .. })),
        "{steps:?}"
    );
    let at = |what: &str| {
        steps
            .iter()
            .position(|s| s == what)
            .unwrap_or_else(|| panic!("{what}: {steps:?}"))
    };
    assert!(at("stop gem-1") < at("check health of gem-2"));
    assert!(at("check health of gem-2") < at("switch the front to gem-2 (held requests go there)"));
    assert!(
        at("switch the front to gem-2 (held requests go there)")
            < at("record generation 2 as live")
    );
    let mut after = obs.clone();
    apply(&spec, &mut after, &p).unwrap();
    assert!(plan_for(&spec, &after).unwrap().is_empty());
    assert_eq!(after.storage.front.unwrap().live_generation(), Some(2));
}

#[test]
fn a_stopped_front_is_started_and_nothing_else() {
    let mut obs = deployed_behind_front(2);
    let front = obs
        .containers
        .iter_mut()
        .find(|c| c.name == "shop-front")
        .unwrap();
    front.state = ContainerState::Exited;
    let p = plan_for(&front_spec(2), &obs).unwrap();
    assert_eq!(described(&p), ["start shop-front"]);
}

#[test]
fn a_changed_front_is_made_again() {
    let obs = deployed_behind_front(1);
    let mut spec = front_spec(1);
    spec.front.as_mut().unwrap().hold = HumanDuration(Duration::from_secs(5));
    let p = plan_for(&spec, &obs).unwrap();
    assert_eq!(
        described(&p),
        ["make shop-front again (its public ports close for a moment)"]
    );
}

/// Killed after each step of an upgrade behind the front, a re-run converges: the
/// front forwards to the generation recorded live, whose app runs, and only one
/// app runs.
#[test]
fn killed_after_any_step_of_an_upgrade_behind_the_front_converges() {
    let before = deployed_behind_front(1);
    let spec = front_spec(2);
    let plan = plan_for(&spec, &before).unwrap();
    for done in 0..plan.steps.len() {
        let mut obs = before.clone();
        for step in &plan.steps[..done] {
            apply_step(&spec, &mut obs, &step.action).unwrap();
        }
        let again = plan_for(&spec, &obs)
            .unwrap_or_else(|r| panic!("killed after {done} steps: refused: {r}"));
        apply(&spec, &mut obs, &again).unwrap_or_else(|e| panic!("killed after {done} steps: {e}"));
        assert!(
            plan_for(&spec, &obs).unwrap().is_empty(),
            "killed after {done} steps"
        );
        let live = obs.storage.live;
        assert_eq!(live, Some(2), "killed after {done} steps");
        assert_eq!(
            obs.storage.front.as_ref().unwrap().live_generation(),
            live,
            "killed after {done} steps"
        );
        let running_apps = obs
            .containers
            .iter()
            .filter(|c| c.name.starts_with("gem-") && c.state.is_up())
            .count();
        assert_eq!(running_apps, 1, "killed after {done} steps");
    }
}
